//! `airlock bake`: payloads and seeds, checked with cloud-init, netplan,
//! keepalived, blkid and isoinfo.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Run, airlock_bin, repo_dir};
use airlock::shared::render;
use airlock::shared::role::RoleFile;

const HOSTS: [&str; 5] = ["spdb1", "spdb2", "spleader", "spmanager1", "spmanager2"];

fn bake(dir: &Path, recipe: &Path, extra: &[&str]) -> Run {
    let out = Command::new(airlock_bin())
        .arg("bake")
        .arg(recipe)
        .args(["--out", "out"])
        .args(extra)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    Run::from_output(out)
}

fn stand() -> PathBuf {
    repo_dir().join("recipes/space-vdi-5.4-ha.toml")
}

/// A copy of the stand recipe with `edit` applied, in `dir`.
fn edited(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let text = edit(fs::read_to_string(stand()).unwrap());
    let p = dir.join("site.toml");
    fs::write(&p, text).unwrap();
    p
}

fn baked(extra_edit: impl Fn(String) -> String) -> (tempfile::TempDir, Run) {
    let dir = tempfile::tempdir().unwrap();
    let recipe = edited(dir.path(), extra_edit);
    let run = bake(dir.path(), &recipe, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    (dir, run)
}

fn run_tool(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_user_data_passes_cloud_init_schema() {
    let (dir, _) = baked(|t| t);
    for h in HOSTS {
        let ud = dir.path().join("out/payloads").join(h).join("user-data");
        let (code, out) = run_tool(
            Command::new("cloud-init")
                .args(["schema", "--config-file"])
                .arg(&ud),
        );
        assert_eq!(code, 0, "{h}: {out}");
        assert!(out.contains("Valid cloud-config"), "{h}: {out}");
    }
    // A broken one is refused: the check can fail.
    let ud = dir.path().join("out/payloads/spdb1/user-data");
    let broken = fs::read_to_string(&ud)
        .unwrap()
        .replace("write_files:", "write_files: 42\nno_such_key_at_all: [");
    let bad = dir.path().join("broken-user-data");
    fs::write(&bad, broken).unwrap();
    let (code, out) = run_tool(
        Command::new("cloud-init")
            .args(["schema", "--config-file"])
            .arg(&bad),
    );
    assert_eq!(code, 1, "{out}");
}

/// cloud-init's own ifupdown renderer (what Debian and Astra use) gives each
/// clone its default route with the `gateway` keyword: a 0.0.0.0/0 route
/// would become `post-up route add … || true`, and `route` (net-tools) is
/// not on a minimal system, so the clone would silently have none.
#[test]
fn cloud_init_renders_the_default_route_without_net_tools() {
    let (dir, _) = baked(|t| t);
    for h in HOSTS {
        let nc = dir
            .path()
            .join("out/payloads")
            .join(h)
            .join("network-config");
        let out = dir.path().join("eni").join(h);
        let (code, said) = run_tool(
            Command::new("cloud-init")
                .args([
                    "devel",
                    "net-convert",
                    "-k",
                    "yaml",
                    "-D",
                    "debian",
                    "-O",
                    "eni",
                    "-p",
                ])
                .arg(&nc)
                .arg("-d")
                .arg(&out),
        );
        assert_eq!(code, 0, "{h}: {said}");
        let eni: String = walkdir::WalkDir::new(&out)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .map(|e| fs::read_to_string(e.path()).unwrap())
            .collect();
        assert!(eni.contains("    gateway 10.10.143.1\n"), "{h}: {eni}");
        assert!(!eni.contains("route add"), "{h}: {eni}");
    }
}

#[test]
fn network_configs_pass_netplan_generate() {
    let (dir, _) = baked(|t| {
        t.replace(
            "ip = \"10.10.143.176\"",
            "ip = \"10.10.143.176\"\nmac = \"52:54:00:0a:8f:b0\"",
        )
    });
    for h in HOSTS {
        let nc = fs::read_to_string(
            dir.path()
                .join("out/payloads")
                .join(h)
                .join("network-config"),
        )
        .unwrap();
        let root = dir.path().join("netplan").join(h);
        fs::create_dir_all(root.join("etc/netplan")).unwrap();
        let wrapped: String = std::iter::once("network:\n".to_string())
            .chain(nc.lines().map(|l| format!("  {l}\n")))
            .collect();
        let file = root.join("etc/netplan/50-cloud-init.yaml");
        fs::write(&file, wrapped).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let (code, out) = run_tool(
            Command::new("netplan")
                .arg("generate")
                .arg("--root-dir")
                .arg(&root),
        );
        assert_eq!(code, 0, "{h}: {out}");
        let units: Vec<_> = fs::read_dir(root.join("run/systemd/network"))
            .unwrap()
            .collect();
        assert!(!units.is_empty(), "{h}: netplan wrote no networkd unit");
    }
    let by_mac = fs::read_to_string(
        dir.path()
            .join("netplan/spdb1/run/systemd/network/10-netplan-eth0.link"),
    );
    assert!(by_mac.is_ok_and(|t| t.contains("MACAddress=52:54:00:0a:8f:b0")));
}

#[test]
fn seeds_are_cidata_images_holding_the_three_files() {
    let (dir, _) = baked(|t| t);
    for h in HOSTS {
        let iso = dir.path().join("out/seeds").join(format!("{h}.iso"));
        let (code, label) = run_tool(
            Command::new("blkid")
                .args(["-o", "value", "-s", "LABEL"])
                .arg(&iso),
        );
        assert_eq!((code, label.trim()), (0, "cidata"), "{h}");
        for f in ["user-data", "meta-data", "network-config"] {
            let out = Command::new("isoinfo")
                .args(["-R", "-x", &format!("/{f}"), "-i"])
                .arg(&iso)
                .output()
                .unwrap();
            let want = fs::read(dir.path().join("out/payloads").join(h).join(f)).unwrap();
            assert_eq!(out.stdout, want, "{h}: {f} read back from the seed differs");
        }
    }
}

/// The role file baked into a host's payload.
fn baked_role(payload: &Path) -> RoleFile {
    RoleFile::load(&payload.join("rootfs/etc/airlock/role.toml")).unwrap()
}

/// Runs `keepalived -t` on a keepalived.conf, with the scripts the runner
/// renders put in place under a temporary directory (keepalived checks that
/// they exist).
fn keepalived_check(role: &RoleFile, conf: &str, scratch: &Path) -> (i32, String) {
    let scripts = scratch.join("scripts");
    fs::create_dir_all(&scripts).unwrap();
    fs::write(scripts.join("pg-ready.sh"), render::pg_ready_script(role)).unwrap();
    fs::write(scripts.join("promote.sh"), render::promote_script(role)).unwrap();
    // The quorum check is the runner itself: an executable stands in.
    let runner = scripts.join("airlock-firstboot");
    fs::write(&runner, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&runner, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let conf = conf
        .replace("/etc/airlock/keepalived", scripts.to_str().unwrap())
        .replace(
            "/usr/local/sbin/airlock-firstboot",
            runner.to_str().unwrap(),
        );
    let file = scratch.join("keepalived.conf");
    fs::write(&file, conf).unwrap();
    run_tool(Command::new("keepalived").arg("-t").arg("-f").arg(&file))
}

#[test]
fn every_keepalived_conf_passes_keepalived_t() {
    for (mode, edit) in [
        ("promote", ""),
        ("vip-only", "failover = \"vip-only\""),
        ("unicast", "vrrp = \"unicast\""),
    ] {
        let (dir, _) = baked(|t| {
            t.replace("failover = \"promote\"\n", "")
                .replace("vrrp = \"multicast\"\n", "")
                .replace("user = \"dbuser\"", &format!("user = \"dbuser\"\n{edit}"))
        });
        for h in ["spdb1", "spdb2"] {
            let role = baked_role(&dir.path().join("out/payloads").join(h));
            let conf = render::keepalived_conf(&role).unwrap();
            let (code, out) = keepalived_check(&role, &conf, &dir.path().join("k").join(h));
            assert_eq!(code, 0, "{mode} {h}: {out}");
        }
        let leader = baked_role(&dir.path().join("out/payloads/spleader"));
        assert!(render::keepalived_conf(&leader).is_none());
    }
    // A router id keepalived refuses is caught by the same check.
    let (dir, _) = baked(|t| t);
    let role = baked_role(&dir.path().join("out/payloads/spdb1"));
    let conf = render::keepalived_conf(&role)
        .unwrap()
        .replace("virtual_router_id 51", "virtual_router_id 300");
    let (code, out) = keepalived_check(&role, &conf, &dir.path().join("bad"));
    assert_ne!(code, 0, "{out}");
}

#[test]
fn both_peers_share_one_router_id_and_one_user() {
    let (dir, _) = baked(|t| t);
    let p = |h: &str, f: &str| {
        fs::read_to_string(
            dir.path()
                .join("out/payloads")
                .join(h)
                .join("rootfs")
                .join(f),
        )
        .unwrap()
    };
    let role = |h: &str| baked_role(&dir.path().join("out/payloads").join(h));
    for h in ["spdb1", "spdb2"] {
        let conf = render::keepalived_conf(&role(h)).unwrap();
        assert!(conf.contains("virtual_router_id 51\n"), "{h}: {conf}");
    }
    assert!(
        render::pg_hba_lines(&role("spdb1"))
            .unwrap()
            .contains("host replication dbuser 10.10.143.177/32 md5")
    );
    assert!(
        render::pg_hba_lines(&role("spdb2"))
            .unwrap()
            .contains("host replication dbuser 10.10.143.176/32 md5")
    );
    let role: toml::Value = toml::from_str(&p("spdb2", "etc/airlock/role.toml")).unwrap();
    assert_eq!(role["host"]["postgres"]["user"].as_str(), Some("dbuser"));
    assert_eq!(
        role["host"]["postgres"]["replicate_from"]["ip"].as_str(),
        Some("10.10.143.176")
    );
    assert_eq!(
        role["repository"]["vendor_paths"].as_array().unwrap().len(),
        2
    );
}

#[test]
fn the_token_rendezvous_pins_the_leader_and_restricts_the_key() {
    let (dir, _) = baked(|t| t);
    let root = |h: &str| dir.path().join("out/payloads").join(h).join("rootfs");
    let host_pub =
        fs::read_to_string(root("spleader").join("etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
    let known =
        fs::read_to_string(root("spmanager1").join("etc/airlock/ssh/leader_known_hosts")).unwrap();
    assert_eq!(known, format!("10.10.143.174 {host_pub}"));
    let auth =
        fs::read_to_string(root("spleader").join("etc/airlock/ssh/token_authorized_keys")).unwrap();
    assert!(
        auth.starts_with(
            "restrict,command=\"/usr/local/sbin/airlock-firstboot token\" ssh-ed25519 "
        ),
        "{auth}"
    );
    // The client key matches the authorised public key (ssh-keygen -y).
    let key = root("spmanager1").join("etc/airlock/ssh/token_client_key");
    let (code, derived) = run_tool(Command::new("ssh-keygen").arg("-y").arg("-f").arg(&key));
    assert_eq!(code, 0, "{derived}");
    let derived_key: Vec<&str> = derived.split_whitespace().take(2).collect();
    assert!(auth.contains(&derived_key.join(" ")));
    // Managers get no DB password, and a host key of their own.
    assert!(!root("spmanager1").join("etc/airlock/db-password").exists());
    let own =
        fs::read_to_string(root("spmanager1").join("etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
    assert_ne!(own, host_pub);
}

#[test]
fn every_host_pins_every_host_key_and_answers_only_through_its_forced_command() {
    let (dir, _) = baked(|t| t);
    let root = |h: &str| dir.path().join("out/payloads").join(h).join("rootfs");
    let mut publics = Vec::new();
    for h in HOSTS {
        let public = fs::read_to_string(root(h).join("etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
        // The private half derives the public one (ssh-keygen -y).
        let (code, derived) = run_tool(
            Command::new("ssh-keygen")
                .arg("-y")
                .arg("-f")
                .arg(root(h).join("etc/ssh/ssh_host_ed25519_key")),
        );
        assert_eq!(code, 0, "{derived}");
        assert!(public.starts_with(derived.trim()), "{h}");
        publics.push(public);
        let auth =
            fs::read_to_string(root(h).join("etc/airlock/ssh/peer_authorized_keys")).unwrap();
        assert!(
            auth.starts_with(
                "restrict,command=\"/usr/local/sbin/airlock-firstboot answer\" ssh-ed25519 "
            ),
            "{auth}"
        );
        let (code, client) = run_tool(
            Command::new("ssh-keygen")
                .arg("-y")
                .arg("-f")
                .arg(root(h).join("etc/airlock/ssh/peer_client_key")),
        );
        assert_eq!(code, 0, "{client}");
        assert!(auth.contains(client.split_whitespace().nth(1).unwrap()));
    }
    let mut distinct = publics.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), HOSTS.len(), "one host key per host");
    let known =
        fs::read_to_string(root("spdb2").join("etc/airlock/ssh/cluster_known_hosts")).unwrap();
    assert_eq!(known.lines().count(), HOSTS.len());
    for (h, public) in HOSTS.iter().zip(&publics) {
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        assert!(
            known
                .lines()
                .any(|l| l.contains(&format!(",{h} {}", key.join(" ")))),
            "{h} in {known}"
        );
    }
}

#[test]
fn secrets_are_private_and_never_printed() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, run) = baked(|t| t);
    let secrets: toml::Value =
        toml::from_str(&fs::read_to_string(dir.path().join("out/secrets.toml")).unwrap()).unwrap();
    let mode = |p: &str| {
        fs::metadata(dir.path().join("out").join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("secrets.toml"), 0o600);
    assert_eq!(mode("payloads/spdb1/rootfs/etc/airlock/db-password"), 0o600);
    assert_eq!(
        mode("payloads/spmanager1/rootfs/etc/airlock/ssh/token_client_key"),
        0o600
    );
    assert_eq!(mode("payloads/spleader/user-data"), 0o600);
    assert_eq!(mode("seeds/spleader.iso"), 0o600);
    let printed = format!("{}{}", run.stdout, run.stderr);
    for key in ["db_password", "leader_host_key", "token_client_key"] {
        let value = secrets[key].as_str().unwrap();
        for line in value
            .lines()
            .filter(|l| l.len() > 8 && !l.starts_with("-----"))
        {
            assert!(!printed.contains(line), "{key} appears in the output");
        }
    }
    let pw = secrets["db_password"].as_str().unwrap();
    assert_eq!(
        fs::read_to_string(
            dir.path()
                .join("out/payloads/spdb2/rootfs/etc/airlock/db-password")
        )
        .unwrap(),
        format!("{pw}\n")
    );
}

#[test]
fn baking_twice_gives_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = edited(dir.path(), |t| t);
    assert_eq!(bake(dir.path(), &recipe, &["--secrets", "s.toml"]).code, 0);
    fs::rename(dir.path().join("out"), dir.path().join("first")).unwrap();
    let run = bake(dir.path(), &recipe, &["--secrets", "s.toml"]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains("secrets read from s.toml"),
        "{}",
        run.stdout
    );
    let list = |d: &str| -> Vec<(String, Vec<u8>)> {
        let base = dir.path().join(d);
        let mut v: Vec<_> = walkdir::WalkDir::new(&base)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                (
                    e.path().strip_prefix(&base).unwrap().display().to_string(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let (a, b) = (list("first"), list("out"));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0);
        assert!(x.1 == y.1, "{} differs", x.0);
    }
}

#[test]
fn a_changed_host_gets_a_new_instance_id_and_inventory_maps_macs() {
    let (one, _) = baked(|t| t);
    let (two, _) = baked(|t| {
        t.replace("ip = \"10.10.143.180\"", "ip = \"10.10.143.180\"\nmac = \"52:54:00:00:01:80\"\nuuid = \"4C4C4544-0042-3510-8052-B4C04F333232\"")
    });
    let inv = |d: &Path| -> toml::Value {
        toml::from_str(&fs::read_to_string(d.join("out/inventory.toml")).unwrap()).unwrap()
    };
    let (a, b) = (inv(one.path()), inv(two.path()));
    let host = |v: &toml::Value, i: usize| v["host"][i].clone();
    assert_eq!(
        host(&a, 0)["instance_id"],
        host(&b, 0)["instance_id"],
        "spdb1 did not change"
    );
    assert_ne!(
        host(&a, 4)["instance_id"],
        host(&b, 4)["instance_id"],
        "spmanager2 changed"
    );
    assert_eq!(host(&b, 4)["mac"].as_str(), Some("52:54:00:00:01:80"));
    assert_eq!(
        host(&b, 4)["uuid"].as_str(),
        Some("4c4c4544-0042-3510-8052-b4c04f333232")
    );
    assert_eq!(host(&b, 4)["seed"].as_str(), Some("seeds/spmanager2.iso"));
}

#[test]
fn a_bad_recipe_bakes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = edited(dir.path(), |t| {
        t.replace("virtual_router_id = 51", "virtual_router_id = 0")
    });
    let run = bake(dir.path(), &recipe, &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("database.virtual_router_id: 0 is out of range"),
        "{}",
        run.stderr
    );
    assert!(!dir.path().join("out").exists());
}

/// A broken secrets file is named with its line, never quoted: the line may
/// be the password.
#[test]
fn a_broken_secrets_file_never_shows_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = edited(dir.path(), |t| t);
    fs::write(
        dir.path().join("s.toml"),
        "db_password = \"Sup3rSecretPassw0rd\nleader_host_key = \"x\"\n",
    )
    .unwrap();
    let run = bake(dir.path(), &recipe, &["--secrets", "s.toml"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("s.toml") && run.stderr.contains("line 1"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("Sup3rSecret") && !run.stdout.contains("Sup3rSecret"),
        "{}",
        run.stderr
    );
}
