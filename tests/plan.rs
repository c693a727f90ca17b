//! `airlock plan`: the shipped recipes resolve, and every consistency check
//! answers a bad recipe with exit 1 and a message naming the field or host.

use std::fs;

use crate::common::{Run, airlock, repo_dir};

fn stand() -> String {
    fs::read_to_string(repo_dir().join("recipes/space-vdi-5.4-ha.toml")).unwrap()
}

/// Writes `text` as `site.toml` in a fresh directory and runs `airlock plan`.
fn plan_text(text: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("site.toml"), text).unwrap();
    let mut args = vec!["plan", "site.toml"];
    args.extend_from_slice(extra);
    airlock(dir.path(), &args)
}

/// The stand recipe with one edit; asserts it fails with exit 1 and that
/// stderr carries each of `expect`.
fn assert_rejected(edited: String, expect: &[&str]) -> Run {
    let run = plan_text(&edited, &[]);
    assert_eq!(run.code, 1, "expected exit 1\nstderr:\n{}", run.stderr);
    for e in expect {
        assert!(
            run.stderr.contains(e),
            "missing {e:?} in stderr:\n{}",
            run.stderr
        );
    }
    assert!(run.stdout.is_empty(), "no plan is printed for a bad recipe");
    run
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "recipe has no {from:?}");
    text.replacen(from, to, 1)
}

const EXTRA_MANAGER: &str =
    "\n[[host]]\nname = \"spmanager3\"\nrole = \"manager\"\nip = \"10.10.143.181\"\n";

#[test]
fn shipped_stand_recipe_plans_five_hosts() {
    let run = airlock(&repo_dir(), &["plan", "recipes/space-vdi-5.4-ha.toml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for host in ["spdb1", "spdb2", "spleader", "spmanager1", "spmanager2"] {
        assert!(run.stdout.contains(host), "{host} missing:\n{}", run.stdout);
    }
    assert!(
        run.stdout
            .contains("VIP 10.10.143.178:5432 (VRRP router id 51")
    );
    // One router id and one user for both peers: the article's mistakes
    // cannot be expressed.
    assert_eq!(run.stdout.matches("router id 51 peer").count(), 2);
    assert!(
        run.stdout
            .contains("streams from spdb1 (10.10.143.176) as dbuser")
    );
    assert!(run.stdout.contains("/opt/main and /opt/devel"));
}

#[test]
fn shipped_minimal_recipe_is_single_db_mode() {
    let run = airlock(
        &repo_dir(),
        &["plan", "recipes/single-db-one-dispatcher.toml"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("single server labdb at 192.168.50.10:5432"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("swarm init, DB 192.168.50.10:5432"));
}

#[test]
fn json_output_has_every_host_and_value() {
    let run = plan_text(&stand(), &["--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["ok"], true);
    let hosts = v["plan"]["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 5);
    let db2 = &hosts[1];
    assert_eq!(db2["vrrp"]["state"], "BACKUP");
    assert_eq!(db2["vrrp"]["priority"], 100);
    assert_eq!(db2["vrrp"]["virtual_router_id"], 51);
    assert_eq!(db2["postgres"]["replicate_from"]["ip"], "10.10.143.176");
    assert_eq!(db2["postgres"]["user"], "dbuser");
    assert_eq!(
        hosts[3]["dispatcher"]["token_source"],
        "ssh airlock-token@10.10.143.174"
    );
    // The media of the stand are not next to the temporary recipe: warnings.
    let problems = v["problems"].as_array().unwrap();
    assert!(problems.iter().all(|p| p["severity"] == "warning"));
    assert!(problems.iter().any(|p| p["key"] == "media.main"));
}

#[test]
fn vip_only_failover_reproduces_the_article() {
    let text = replace_once(
        &stand(),
        "failover = \"promote\"",
        "failover = \"vip-only\"",
    );
    let run = plan_text(&text, &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let hosts = &v["plan"]["hosts"];
    assert_eq!(hosts[0]["vrrp"]["state"], "MASTER");
    assert_eq!(hosts[0]["vrrp"]["priority"], 255);
    assert_eq!(hosts[1]["vrrp"]["priority"], 200);
    assert_eq!(hosts[1]["vrrp"]["promote"], false);
}

#[test]
fn missing_media_is_a_warning_for_plan() {
    let run = plan_text(&stand(), &[]);
    assert_eq!(run.code, 0);
    assert!(
        run.stderr.contains("site.toml:21:8: warning: media.main:"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("does not exist"));
}

/// `plan` lists every disc the repository is merged from, in merge order,
/// and names a missing update disc by its index, line and column; `build`
/// refuses it.
#[test]
fn plan_lists_the_sources_and_names_a_missing_update_disc() {
    let dir = tempfile::tempdir().unwrap();
    let text = replace_once(
        &stand(),
        "devel = \"../media/1.7.0-devel.iso\"\n",
        "devel = \"../media/1.7.0-devel.iso\"\nupdates = [\"1.7.1-update.iso\", \"up/1.7.2\"]\n",
    );
    fs::write(dir.path().join("site.toml"), text).unwrap();
    fs::write(dir.path().join("1.7.1-update.iso"), "").unwrap();

    let run = airlock(dir.path(), &["plan", "site.toml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sources: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Sources"))
        .take(4)
        .collect();
    assert_eq!(
        sources,
        [
            "Sources  main     ../media/1.7.0-main.iso",
            "         devel    ../media/1.7.0-devel.iso",
            "         update1  1.7.1-update.iso",
            "         update2  up/1.7.2",
        ],
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Vendor   ../media/space-dispatcher-5.4.iso"),
        "{}",
        run.stdout
    );
    let missing =
        "site.toml:23:32: warning: media.updates[1]: up/1.7.2 (update disc 2) does not exist";
    assert!(run.stderr.contains(missing), "{}", run.stderr);
    assert!(
        !run.stderr.contains("media.updates[0]"),
        "the first update disc is there: {}",
        run.stderr
    );

    let run = airlock(dir.path(), &["plan", "site.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        v["plan"]["media"]["updates"],
        serde_json::json!(["1.7.1-update.iso", "up/1.7.2"])
    );
    assert!(
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["key"] == "media.updates[1]" && p["location"]["line"] == 23)
    );

    // For a build, the missing update disc is an error.
    assert_eq!(airlock(dir.path(), &["keygen", "--out", "keys"]).code, 0);
    let run = airlock(
        dir.path(),
        &[
            "build",
            "site.toml",
            "--key",
            "keys/signing-key.asc",
            "--out",
            "b",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "site.toml:23:32: error: media.updates[1]: up/1.7.2 (update disc 2) does not exist"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn unreadable_recipe_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let run = airlock(dir.path(), &["plan", "nowhere.toml"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("reading recipe nowhere.toml"),
        "{}",
        run.stderr
    );
}

#[test]
fn usage_error_is_exit_2() {
    let run = airlock(&repo_dir(), &["plan"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("RECIPE"));
}

#[test]
fn unknown_key_names_line_path_and_spelling() {
    let text = replace_once(&stand(), "role = \"leader\"", "rol = \"leader\"");
    assert_rejected(
        text,
        &[
            "site.toml:66:1: host[2].rol: unknown field `rol`",
            "did you mean `role`?",
        ],
    );
}

#[test]
fn wrong_type_names_line_and_path() {
    let text = replace_once(&stand(), "port = 5432", "port = \"5432\"");
    assert_rejected(
        text,
        &["site.toml:37:8: database.port: invalid type: string"],
    );
}

#[test]
fn missing_field_names_the_field() {
    let text = replace_once(&stand(), "user = \"dbuser\"\n", "");
    assert_rejected(text, &["database.user: missing field `user`"]);
}

#[test]
fn unsupported_version_is_rejected() {
    let text = replace_once(&stand(), "version = 1", "version = 7");
    assert_rejected(
        text,
        &["version: unsupported recipe version 7", "reads version 1"],
    );
}

#[test]
fn duplicate_host_name() {
    let text = replace_once(&stand(), "name = \"spmanager2\"", "name = \"spmanager1\"");
    assert_rejected(
        text,
        &["host[4].name: \"spmanager1\" is also the name of host[3]"],
    );
}

#[test]
fn duplicate_ip() {
    let text = replace_once(&stand(), "ip = \"10.10.143.180\"", "ip = \"10.10.143.179\"");
    assert_rejected(
        text,
        &["host[4].ip: 10.10.143.179 (spmanager2) is also the address of host[3] (spmanager1)"],
    );
}

#[test]
fn duplicate_mac_is_found_across_spellings() {
    let text = replace_once(
        &stand(),
        "ip = \"10.10.143.179\"",
        "ip = \"10.10.143.179\"\nmac = \"52:54:00:aa:bb:cc\"",
    );
    let text = replace_once(
        &text,
        "ip = \"10.10.143.180\"",
        "ip = \"10.10.143.180\"\nmac = \"52-54-00-AA-BB-CC\"",
    );
    assert_rejected(
        text,
        &["host[4].mac: 52-54-00-AA-BB-CC (spmanager2) is also the MAC of host[3] (spmanager1)"],
    );
}

#[test]
fn malformed_mac_and_uuid() {
    let text = replace_once(
        &stand(),
        "ip = \"10.10.143.179\"",
        "ip = \"10.10.143.179\"\nmac = \"52:54:00:aa:bb\"\nuuid = \"not-a-uuid\"",
    );
    assert_rejected(
        text,
        &[
            "host[3].mac: \"52:54:00:aa:bb\" (spmanager1) is not a MAC address",
            "host[3].uuid: \"not-a-uuid\" (spmanager1) is not an SMBIOS UUID",
        ],
    );
}

#[test]
fn multicast_mac_is_rejected() {
    let text = replace_once(
        &stand(),
        "ip = \"10.10.143.179\"",
        "ip = \"10.10.143.179\"\nmac = \"01:00:5e:00:00:12\"",
    );
    assert_rejected(
        text,
        &["host[3].mac: 01:00:5e:00:00:12 (spmanager1) is a multicast address"],
    );
}

#[test]
fn host_outside_cidr() {
    let text = replace_once(&stand(), "10.10.143.174", "10.10.144.174");
    assert_rejected(
        text,
        &["site.toml:67:6: error: host[2].ip: 10.10.144.174 (spleader) is outside 10.10.143.0/24"],
    );
}

#[test]
fn host_on_broadcast_or_gateway() {
    let text = replace_once(&stand(), "10.10.143.174", "10.10.143.255");
    assert_rejected(
        text,
        &["host[2].ip: 10.10.143.255 (spleader) is the network or broadcast address"],
    );
    let text = replace_once(&stand(), "10.10.143.174", "10.10.143.1");
    assert_rejected(
        text,
        &["host[2].ip: 10.10.143.1 (spleader) is the gateway's address"],
    );
}

#[test]
fn vip_outside_cidr() {
    let text = replace_once(
        &stand(),
        "vip = \"10.10.143.178\"",
        "vip = \"10.10.99.178\"",
    );
    assert_rejected(
        text,
        &["database.vip: 10.10.99.178 is outside 10.10.143.0/24"],
    );
}

#[test]
fn vip_is_a_host_address() {
    let text = replace_once(
        &stand(),
        "vip = \"10.10.143.178\"",
        "vip = \"10.10.143.177\"",
    );
    assert_rejected(
        text,
        &["database.vip: 10.10.143.177 is the address of host[1] (spdb2)"],
    );
}

#[test]
fn vip_is_network_or_broadcast() {
    for addr in ["10.10.143.0", "10.10.143.255"] {
        let text = replace_once(
            &stand(),
            "vip = \"10.10.143.178\"",
            &format!("vip = \"{addr}\""),
        );
        assert_rejected(
            text,
            &[&format!(
                "database.vip: {addr} is the network or broadcast address"
            )],
        );
    }
}

#[test]
fn gateway_outside_cidr_and_host_bits() {
    let text = replace_once(
        &stand(),
        "gateway = \"10.10.143.1\"",
        "gateway = \"10.10.1.1\"",
    );
    assert_rejected(text, &["network.gateway: 10.10.1.1 is outside"]);
    let text = replace_once(
        &stand(),
        "cidr = \"10.10.143.0/24\"",
        "cidr = \"10.10.143.7/24\"",
    );
    assert_rejected(
        text,
        &["network.cidr: 10.10.143.7/24 has host bits set; the network is 10.10.143.0/24"],
    );
}

#[test]
fn two_db_masters() {
    let text = replace_once(&stand(), "role = \"db-replica\"", "role = \"db-master\"");
    assert_rejected(
        text,
        &["host[1].role: spdb2 is a second db-master (host[0] spdb1 is the first)"],
    );
}

#[test]
fn no_db_master() {
    let text = replace_once(&stand(), "role = \"db-master\"", "role = \"manager\"");
    // Also four dispatchers now: both are reported.
    assert_rejected(
        text,
        &["host: no host has role \"db-master\"", "4 dispatchers"],
    );
}

#[test]
fn two_db_replicas() {
    let text = format!(
        "{}\n[[host]]\nname = \"spdb3\"\nrole = \"db-replica\"\nip = \"10.10.143.175\"\n",
        stand()
    );
    assert_rejected(text, &["host[5].role: spdb3 is a second db-replica"]);
}

#[test]
fn no_leader_and_two_leaders() {
    let text = replace_once(&stand(), "role = \"leader\"", "role = \"manager\"");
    assert_rejected(text, &["host: no host has role \"leader\""]);
    let text = replace_once(&stand(), "role = \"manager\"", "role = \"leader\"");
    assert_rejected(
        text,
        &["host[3].role: spmanager1 is a second leader (host[2] spleader is the first)"],
    );
}

#[test]
fn even_number_of_dispatchers() {
    let text = format!("{}{EXTRA_MANAGER}", stand());
    assert_rejected(
        text,
        &[
            "host[5].role: 4 dispatchers (leader + managers); use an odd number from 1 to 7",
            "Raft majority",
        ],
    );
}

#[test]
fn more_than_seven_dispatchers() {
    let mut text = stand();
    for i in 3..=8 {
        text.push_str(&format!(
            "\n[[host]]\nname = \"spmanager{i}\"\nrole = \"manager\"\nip = \"10.10.143.{}\"\n",
            180 + i
        ));
    }
    assert_rejected(text, &["9 dispatchers", "at most 7"]);
}

#[test]
fn router_id_out_of_range() {
    for bad in ["0", "256"] {
        let text = replace_once(
            &stand(),
            "virtual_router_id = 51",
            &format!("virtual_router_id = {bad}"),
        );
        assert_rejected(
            text,
            &[&format!(
                "site.toml:36:21: error: database.virtual_router_id: {bad} is out of range; VRRP router ids are 1..=255"
            )],
        );
    }
}

#[test]
fn pair_needs_router_id_and_vip() {
    let text = replace_once(&stand(), "virtual_router_id = 51\n", "");
    let text = replace_once(&text, "vip = \"10.10.143.178\"\n", "");
    assert_rejected(
        text,
        &[
            "database: missing field `virtual_router_id`",
            "database: missing field `vip`",
        ],
    );
}

#[test]
fn single_db_mode_rejects_a_vip() {
    let text =
        fs::read_to_string(repo_dir().join("recipes/single-db-one-dispatcher.toml")).unwrap();
    let text = replace_once(
        &text,
        "user = \"dbuser\"",
        "user = \"dbuser\"\nvip = \"192.168.50.5\"",
    );
    assert_rejected(text, &["database.vip: set, but there is no db-replica"]);
}

#[test]
fn invalid_hostname() {
    let text = replace_once(&stand(), "name = \"spdb2\"", "name = \"sp_db2\"");
    assert_rejected(
        text,
        &["host[1].name: \"sp_db2\" is not a valid hostname: it contains '_'"],
    );
    let text = replace_once(&stand(), "name = \"spdb2\"", "name = \"-spdb2\"");
    assert_rejected(
        text,
        &["host[1].name: \"-spdb2\" is not a valid hostname: it starts or ends with '-'"],
    );
}

#[test]
fn invalid_domain_label() {
    let text = replace_once(
        &stand(),
        "domain = \"vdi.example.local\"",
        "domain = \"vdi..local\"",
    );
    assert_rejected(
        text,
        &["cluster.domain: label \"\" of \"vdi..local\" is empty"],
    );
}

#[test]
fn unknown_postgresql_major() {
    let text = replace_once(&stand(), "postgresql = 11", "postgresql = 9");
    assert_rejected(
        text,
        &["database.postgresql: PostgreSQL 9 is not known to airlock"],
    );
}

#[test]
fn postgres_superuser_is_not_the_db_user() {
    let text = replace_once(&stand(), "user = \"dbuser\"", "user = \"postgres\"");
    assert_rejected(
        text,
        &["database.user: `postgres` is PostgreSQL's own superuser"],
    );
}

#[test]
fn every_problem_is_listed_at_once() {
    let text = replace_once(
        &stand(),
        "virtual_router_id = 51",
        "virtual_router_id = 300",
    );
    let text = replace_once(&text, "name = \"spdb2\"", "name = \"spdb1\"");
    let text = replace_once(&text, "10.10.143.174", "10.9.0.1");
    let run = assert_rejected(
        text,
        &[
            "database.virtual_router_id",
            "host[1].name",
            "host[2].ip",
            "3 error(s)",
        ],
    );
    assert_eq!(run.stderr.matches(": error: ").count(), 3, "{}", run.stderr);
}

#[test]
fn missing_password_file_is_reported() {
    let text = replace_once(
        &stand(),
        "# password_file = \"secrets/db-password\"",
        "password_file = \"secrets/db-password\"",
    );
    let run = plan_text(&text, &[]);
    assert_eq!(run.code, 0);
    assert!(
        run.stderr.contains("warning: database.password_file:"),
        "{}",
        run.stderr
    );
}

/// Interface names with YAML, shell or keepalived syntax never reach a
/// rendered file.
#[test]
fn interface_names_with_syntax_in_them_are_refused() {
    for bad in [
        "*eth0",
        "{eth0",
        "#eth0",
        "eth0\"",
        "eth'0",
        "$(reboot)",
        "eth0 x",
        "a-very-long-name0",
    ] {
        let edited = replace_once(
            &stand(),
            "interface = \"eth0\"",
            &format!("interface = {}", toml::Value::String(bad.into())),
        );
        assert_rejected(edited, &["network.interface", "not a Linux interface name"]);
    }
}

/// Tens of thousands of problems are all reported, each at its own line,
/// in linear time (each used to re-read the whole recipe).
#[test]
fn a_huge_recipe_is_checked_whole_and_quickly() {
    let mut text = stand();
    let n = 20_000;
    for i in 0..n {
        text.push_str(&format!(
            "\n[[host]]\nname = \"m{i}\"\nrole = \"manager\"\nip = \"10.10.143.180\"\n"
        ));
    }
    let run = plan_text(&text, &[]);
    assert_eq!(run.code, 1);
    let dupes = run.stderr.matches("is also the address of").count();
    assert!(
        dupes >= n,
        "{dupes} duplicates reported:\n{}",
        &run.stderr[..2000.min(run.stderr.len())]
    );
    let last_line = text.lines().count();
    assert!(
        run.stderr.contains(&format!(
            "site.toml:{last_line}:6: error: host[{}].ip",
            n + 4
        )),
        "the last host's line is named"
    );
}

#[test]
fn rejoin_and_synchronous_need_a_pair_that_promotes() {
    let vip_only = replace_once(
        &stand(),
        "failover = \"promote\"",
        "failover = \"vip-only\"",
    );
    assert_rejected(
        replace_once(&vip_only, "rejoin = \"manual\"", "rejoin = \"auto\""),
        &["database.rejoin", "nothing is ever promoted"],
    );
    let single =
        fs::read_to_string(repo_dir().join("recipes/single-db-one-dispatcher.toml")).unwrap();
    let edited = single.replacen(
        "[database]\n",
        "[database]\nsynchronous = true\nrejoin = \"auto\"\n",
        1,
    );
    assert_rejected(
        edited,
        &[
            "database.synchronous",
            "no db-replica to wait for",
            "database.rejoin",
        ],
    );
    let both = replace_once(
        &replace_once(&stand(), "synchronous = false", "synchronous = true"),
        "rejoin = \"manual\"",
        "rejoin = \"auto\"",
    );
    let run = plan_text(&both, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("synchronous replication, re-join auto"),
        "{}",
        run.stdout
    );
}

/// keepalived's `nopreempt` holds only when every peer starts as BACKUP: in
/// promote mode both DB servers are BACKUP with nopreempt (the master by
/// its higher priority), and nothing in a recipe can make one MASTER.
#[test]
fn promote_mode_starts_both_peers_as_backup_with_nopreempt() {
    let run = plan_text(&stand(), &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let hosts = v["plan"]["hosts"].as_array().unwrap();
    let vrrp: Vec<&serde_json::Value> = hosts
        .iter()
        .filter_map(|h| h.get("vrrp").filter(|v| !v.is_null()))
        .collect();
    assert_eq!(vrrp.len(), 2);
    for v in &vrrp {
        assert_eq!(v["state"], "BACKUP", "{v}");
        assert_eq!(v["nopreempt"], true, "{v}");
    }
    assert!(vrrp[0]["priority"].as_u64() > vrrp[1]["priority"].as_u64());
    let forced = replace_once(
        &stand(),
        "failover = \"promote\"",
        "failover = \"promote\"\nstate = \"MASTER\"",
    );
    assert_rejected(forced, &["database.state: unknown field `state`"]);
}

#[test]
fn a_package_list_entry_that_is_not_a_package_name_or_repeats_is_named() {
    let text = replace_once(
        &stand(),
        "[database]",
        "[packages]\ndb-master = [\"keepalived\", \"postgresql-11=11.7\", \"keepalived\"]\nmanager = [\"Docker.io\"]\n\n[database]",
    );
    let run = assert_rejected(
        text,
        &[
            "packages.db-master[1]: \"postgresql-11=11.7\" is not a Debian package name",
            "packages.db-master[2]: \"keepalived\" is listed twice",
            "packages.manager[0]: \"Docker.io\" is not a Debian package name",
        ],
    );
    assert!(!run.stderr.contains("db-master[0]"), "{}", run.stderr);
}
