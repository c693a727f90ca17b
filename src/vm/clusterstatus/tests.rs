//! `status --cluster` end to end with the recording fake: the local host
//! (db1) asks PostgreSQL and `ip` itself, the four others answer over the
//! (faked) SSH channel; and `answer status` as the peer user.

use std::path::Path;

use super::*;
use crate::shared::journal::StepState;
use crate::shared::status::{DbView, SwarmView};
use crate::vm::exec::Recording;
use crate::vm::testing::{fixture_role, journal_for, put};

/// What PostgreSQL 15 printed for [`PG_FACTS_SQL`] on a primary with a
/// streaming standby (measured; the standby's address filled in).
const PRIMARY: &str = r#"{"in_recovery" : false, "timeline" : 1, "current_lsn" : "0/3000000", "receive_lsn" : null, "replay_lsn" : null, "replication" : [{"application_name" : "walreceiver", "client_addr" : "192.0.2.12", "state" : "streaming", "sync_state" : "async", "replay_lsn" : "0/3000000", "lag_bytes" : 0, "lag_seconds" : 0.100286}], "wal_receiver" : null}"#;
/// ... and on that standby.
const STANDBY: &str = r#"{"in_recovery" : true, "timeline" : 1, "current_lsn" : null, "receive_lsn" : "0/3000000", "replay_lsn" : "0/3000000", "replication" : [], "wal_receiver" : {"status" : "streaming", "timeline" : 1, "sender_host" : "192.0.2.11", "slot_name" : "replica"}}"#;
/// ... and on the standby once promoted.
const PROMOTED: &str = r#"{"in_recovery" : false, "timeline" : 2, "current_lsn" : "0/3000108", "receive_lsn" : "0/3000000", "replay_lsn" : "0/3000000", "replication" : [], "wal_receiver" : null}"#;

fn ip_addrs(with_vip: bool) -> String {
    let mut s = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
        2: eth0    inet 192.0.2.11/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever\n"
        .to_string();
    if with_vip {
        s.push_str("2: eth0    inet 192.0.2.10/24 scope global secondary eth0\\       valid_lft forever preferred_lft forever\n");
    }
    s
}

/// `docker node ls --format '{{json .}}'` on disp1 (docker 20.10).
const NODES: &str = r#"{"Availability":"Active","EngineVersion":"20.10.24","Hostname":"disp1","ID":"k1","ManagerStatus":"Leader","Self":true,"Status":"Ready","TLSStatus":"Ready"}
{"Availability":"Active","EngineVersion":"20.10.24","Hostname":"disp2","ID":"k2","ManagerStatus":"Reachable","Self":false,"Status":"Ready","TLSStatus":"Ready"}
{"Availability":"Active","EngineVersion":"20.10.24","Hostname":"disp3","ID":"k3","ManagerStatus":"Reachable","Self":false,"Status":"Ready","TLSStatus":"Ready"}
"#;

fn done_journal(role: &RoleFile) -> Journal {
    let mut j = journal_for(role);
    for s in j.steps.iter_mut() {
        s.state = StepState::Done;
    }
    j
}

/// A clone's root for `host`: its role file and a complete journal.
fn lay_out(root: &Path, host: &str) -> RoleFile {
    let role = fixture_role(host);
    put(root, paths::ROLE_FILE, &role.to_toml().unwrap());
    done_journal(&role)
        .save(&under(root, paths::JOURNAL))
        .unwrap();
    role
}

fn db_state(host: &str, pg: &str, holds_vip: bool, age: i64) -> DbState {
    DbState {
        version: STATUS_VERSION,
        host: host.into(),
        written: now() - age,
        postgres: Some(serde_json::from_str(pg).unwrap()),
        postgres_error: None,
        vip: Some("192.0.2.10".parse().unwrap()),
        holds_vip: Some(holds_vip),
        vip_error: None,
        fenced: None,
        promoted: None,
    }
}

/// A remote host's healthy answer.
fn healthy(host: &str) -> HostStatus {
    let role = fixture_role(host);
    let db = match host {
        "db1" => Some(DbView::of(db_state(host, PRIMARY, true, 1), now())),
        "db2" => Some(DbView::of(db_state(host, STANDBY, false, 1), now())),
        _ => None,
    };
    HostStatus {
        version: STATUS_VERSION,
        cluster: role.cluster.clone(),
        host: host.into(),
        role: role.host.role,
        time: now(),
        runner: RunnerStatus::from_journal(Some(&done_journal(&role))),
        db,
        swarm: role.host.role.is_dispatcher().then(|| SwarmView {
            nodes: parse_nodes(NODES).unwrap(),
            error: None,
        }),
    }
}

/// What a remote host says: a line, or an SSH failure (exit, stderr).
enum Says {
    Line(String),
    Fails(i32, &'static str),
}

fn line(s: &HostStatus) -> Says {
    Says::Line(s.to_line())
}

/// `status --cluster` on db1: PostgreSQL and `ip` answer `pg`/`vip`
/// locally; `others` answer over SSH (healthy unless given).
fn from_db1(pg: &str, vip: bool, others: Vec<(&str, Says)>) -> (ClusterStatus, Recording) {
    let dir = tempfile::tempdir().unwrap();
    let role = lay_out(dir.path(), "db1");
    let fake = Recording::new();
    fake.on("pg_control_checkpoint", 0, pg);
    fake.on("ip -o -4 addr show", 0, &ip_addrs(vip));
    for h in ["db2", "disp1", "disp2", "disp3"] {
        let ip = role.hosts.iter().find(|e| e.name == h).unwrap().ip;
        let pattern = format!("airlock-peer@{ip} status");
        match others.iter().find(|(n, _)| *n == h).map(|(_, s)| s) {
            None => fake.on(&pattern, 0, &format!("{}\n", healthy(h).to_line())),
            Some(Says::Line(l)) => fake.on(&pattern, 0, &format!("{l}\n")),
            Some(Says::Fails(code, err)) => fake.on_stderr(&pattern, *code, err),
        };
    }
    let cs = cluster_status(dir.path(), &fake, &role);
    (cs, fake)
}

fn has(cs: &ClusterStatus, needle: &str) -> bool {
    cs.not_ready.iter().any(|w| w.contains(needle))
}

#[test]
fn a_healthy_cluster_is_ready_and_says_who_is_what() {
    let (cs, fake) = from_db1(PRIMARY, true, vec![]);
    assert!(cs.ready, "{:#?}", cs.not_ready);
    let mine = cs.hosts[0].status.as_ref().unwrap().db.as_ref().unwrap();
    assert_eq!((mine.age_secs, mine.stale), (Some(0), false));
    assert_eq!(cs.db.primaries, ["db1"]);
    assert_eq!(cs.db.vip_on, ["db1"]);
    assert_eq!(cs.db.standbys[0].name, "db2");
    assert_eq!(cs.db.standbys[0].lag_bytes, Some(0));
    assert_eq!(cs.swarm.source.as_deref(), Some("disp1"));
    assert!(cs.swarm.managers.iter().all(|m| m.reachable));
    let text = to_text(&cs);
    for l in [
        "db1 (db-master, 192.0.2.11): runner done",
        "  PostgreSQL primary, timeline 1, WAL at 0/3000000",
        "    sends to db2 (192.0.2.12): streaming async, lag 0 bytes / 0.100 s",
        "  PostgreSQL standby, timeline 1, WAL receiver streaming from 192.0.2.11",
        "DB: primary db1 (timeline 1), standby db2 streaming, lag 0 bytes / 0.100 s\n",
        "VIP: 192.0.2.10 on db1\n",
        "swarm: managers disp1 (Leader), disp2 (Reachable), disp3 (Reachable): all reachable (as disp1 lists them)\n",
        "runners: 5 of 5 done\n",
        "\nREADY: ",
    ] {
        assert!(text.contains(l), "{l:?} in\n{text}");
    }
    // Asked locally as root: PostgreSQL through runuser, bounded; the
    // others at once over SSH, each bounded.
    assert!(fake.ran(
        "timeout 1 runuser -u postgres -- psql -X -A -t -q -h /var/run/postgresql -p 5432 -c"
    ));
    let asked: Vec<String> = fake
        .commands()
        .into_iter()
        .filter(|c| c.ends_with(" status"))
        .collect();
    assert_eq!(asked.len(), 4, "{asked:?}");
    assert!(asked.iter().all(|c| c.starts_with("timeout 6 ssh ")));
    // The JSON for machines reads back.
    let json = serde_json::to_string_pretty(&cs).unwrap();
    assert_eq!(serde_json::from_str::<ClusterStatus>(&json).unwrap(), cs);
}

#[test]
fn a_host_that_does_not_answer_is_named_with_the_reason() {
    let (cs, _) = from_db1(
        PRIMARY,
        true,
        vec![
            (
                "disp2",
                Says::Fails(
                    255,
                    "ssh: connect to host 192.0.2.22 port 22: No route to host",
                ),
            ),
            ("disp3", Says::Fails(124, "")),
        ],
    );
    assert!(!cs.ready);
    assert!(
        has(
            &cs,
            "disp2: unreachable: ssh: connect to host 192.0.2.22 port 22: No route to host (exit status 255)"
        ),
        "{:#?}",
        cs.not_ready
    );
    assert!(has(&cs, "disp3: unreachable: no answer within 6 s"));
    let text = to_text(&cs);
    assert!(text.contains("disp3 (manager, 192.0.2.23): UNREACHABLE: no answer within 6 s"));
    assert!(text.contains("runners: 3 of 5 done"), "{text}");
    assert!(
        text.contains("\nNOT READY:\n  - disp2: unreachable"),
        "{text}"
    );
    // The swarm is judged from disp1, which answered: disp2 and disp3 are
    // still managers there.
    assert!(cs.swarm.managers.iter().all(|m| m.reachable));
}

#[test]
fn a_waiting_runner_is_named_with_what_it_waits_for() {
    let role = fixture_role("disp3");
    let mut j = journal_for(&role);
    for s in j.steps.iter_mut().take(4) {
        s.state = StepState::Done;
    }
    j.set("wait-leader", StepState::Running, None);
    j.start_waiting("the swarm port of the leader disp1 (192.0.2.21:2377)");
    j.waiting_since = Some(now() - 30);
    j.attempted("Connection refused");
    let mut waiting = healthy("disp3");
    waiting.runner = RunnerStatus::from_journal(Some(&j));
    let (cs, _) = from_db1(PRIMARY, true, vec![("disp3", line(&waiting))]);
    assert!(!cs.ready);
    assert!(
        has(
            &cs,
            "disp3: the runner waits at step wait-leader for 30 s for the swarm port of the leader disp1 (192.0.2.21:2377); the last attempt said: Connection refused"
        ),
        "{:#?}",
        cs.not_ready
    );
    let text = to_text(&cs);
    assert!(text.contains("disp3 (manager, 192.0.2.23): runner waiting (4 of 6 steps) at step wait-leader\n  waiting for: the swarm port"), "{text}");
}

#[test]
fn two_primaries_are_a_split_brain_said_first_and_loudly() {
    let mut db2 = healthy("db2");
    db2.db = Some(DbView::of(db_state("db2", PROMOTED, false, 1), now()));
    let (cs, _) = from_db1(PRIMARY, true, vec![("db2", line(&db2))]);
    assert!(!cs.ready);
    assert!(cs.db.split_brain);
    assert_eq!(cs.db.primaries, ["db1", "db2"]);
    assert!(
        cs.not_ready[0].starts_with("SPLIT BRAIN: db1 and db2 all answer as the primary"),
        "{:#?}",
        cs.not_ready
    );
    let text = to_text(&cs);
    assert!(text.starts_with("*** SPLIT BRAIN: db1 and db2 all answer as the primary ***\n"));
    assert!(
        text.contains("DB: primary db1 and db2 (SPLIT BRAIN)"),
        "{text}"
    );
}

#[test]
fn the_vip_on_the_standby_is_not_ready() {
    let mut db2 = healthy("db2");
    db2.db = Some(DbView::of(db_state("db2", STANDBY, true, 0), now()));
    let (cs, _) = from_db1(PRIMARY, false, vec![("db2", line(&db2))]);
    assert_eq!(cs.db.vip_on, ["db2"]);
    assert_eq!(
        cs.not_ready,
        [
            "the VIP 192.0.2.10 is on db2, which is not the primary (db1 is): the dispatchers reach a server that cannot take their writes"
        ]
    );
    assert!(to_text(&cs).contains("VIP: 192.0.2.10 on db2\n"));

    let (cs, _) = from_db1(PRIMARY, true, vec![("db2", line(&db2))]);
    assert_eq!(
        cs.not_ready,
        ["the VIP 192.0.2.10 is on db1 and db2 at once"]
    );
    let (cs, _) = from_db1(PRIMARY, false, vec![]);
    assert_eq!(cs.not_ready, ["nobody holds the VIP 192.0.2.10"]);
}

#[test]
fn a_stale_db_state_is_said_and_not_trusted() {
    let mut db2 = healthy("db2");
    db2.db = Some(DbView::of(db_state("db2", STANDBY, false, 42), now()));
    let (cs, _) = from_db1(PRIMARY, true, vec![("db2", line(&db2))]);
    assert!(!cs.ready);
    // 42 s, or 43 when the clock ticked between writing and judging it.
    assert!(
        ["42", "43"].iter().any(|age| has(
            &cs,
            &format!("db2: its DB state is {age} s old, stale (keepalived's check writes it every second as root; is keepalived running?)")
        )),
        "{:#?}",
        cs.not_ready
    );
    assert_eq!(cs.db.unknown, ["db2"]);
    assert!(cs.db.standbys.is_empty());
    let text = to_text(&cs);
    assert!(text.contains("  DB state STALE: 42 s old"), "{text}");
    assert!(
        text.contains("DB: primary db1 (timeline 1); not known: db2"),
        "{text}"
    );
}

#[test]
fn a_garbled_answer_is_refused_with_what_came() {
    let mut other = healthy("disp2");
    other.host = "disp3".into();
    let (cs, _) = from_db1(
        PRIMARY,
        true,
        vec![
            ("disp1", Says::Line("Welcome to Astra Linux".into())),
            ("disp2", line(&other)),
            (
                "disp3",
                Says::Line(r#"{"version":7,"host":"disp3"}"#.into()),
            ),
        ],
    );
    assert!(!cs.ready);
    for want in [
        "disp1: its answer refused: the answer is not JSON: \"Welcome to Astra Linux\"",
        "disp2: its answer refused: it answered as disp3 of cluster lab",
        "disp3: its answer refused: the answer is status format version 7; this runner reads version 1",
        "swarm: no dispatcher could list the swarm's nodes (disp1: its answer refused; disp2: its answer refused; disp3: its answer refused)",
    ] {
        assert!(has(&cs, want), "{want}: {:#?}", cs.not_ready);
    }
    assert!(cs.hosts[2].status.is_none());
}

#[test]
fn a_fenced_old_master_and_an_unreachable_manager_are_named() {
    let mut db1_fenced: PgFacts = serde_json::from_str(STANDBY).unwrap();
    db1_fenced.wal_receiver = None;
    let mut db2 = healthy("db2");
    db2.db = Some(DbView::of(db_state("db2", PROMOTED, true, 0), now()));
    let nodes = NODES.replace(
        r#""Hostname":"disp3","ID":"k3","ManagerStatus":"Reachable","Self":false,"Status":"Ready""#,
        r#""Hostname":"disp3","ID":"k3","ManagerStatus":"Unreachable","Self":false,"Status":"Down""#,
    );
    let mut disp1 = healthy("disp1");
    disp1.swarm = Some(SwarmView {
        nodes: parse_nodes(&nodes).unwrap(),
        error: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let role = lay_out(dir.path(), "db1");
    put(
        dir.path(),
        paths::FENCED,
        r#"{"since": 1800000000, "peer": "db2", "peer_ip": "192.0.2.12", "reason": "it answered as a primary when this server started"}"#,
    );
    let fake = Recording::new();
    fake.on(
        "pg_control_checkpoint",
        0,
        &serde_json::to_string(&db1_fenced).unwrap(),
    );
    fake.on("ip -o -4 addr show", 0, &ip_addrs(false));
    let local = local_status(dir.path(), &fake, &role, true);
    let mut hosts = Vec::new();
    for (h, st) in [
        ("db1", local),
        ("db2", db2),
        ("disp1", disp1),
        ("disp2", healthy("disp2")),
        ("disp3", healthy("disp3")),
    ] {
        let e = role.hosts.iter().find(|e| e.name == h).unwrap();
        hosts.push(HostReport {
            name: h.into(),
            role: e.role,
            ip: e.ip,
            status: Some(st),
            problem: None,
        });
    }
    let cs = verdict::summarize(&role, hosts, now());
    assert_eq!(cs.db.primaries, ["db2"]);
    assert_eq!(cs.db.vip_on, ["db2"]);
    assert_eq!(
        cs.not_ready,
        [
            "db1: a standby that does not stream (WAL receiver: none); NOT A PRIMARY, kept read-only since Fri, 15 Jan 2027 08:00:00 UTC: its peer db2 (192.0.2.12) was the primary (it answered as a primary when this server started): `airlock-firstboot rejoin` on it",
            "swarm: disp3 is not a reachable manager (manager Unreachable, node Down)",
        ]
    );
}

#[test]
fn the_db_state_is_written_world_readable_also_when_postgresql_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let role = lay_out(root, "db2");
    let fake = Recording::new();
    fake.on("pg_control_checkpoint", 0, STANDBY);
    fake.on("ip -o -4 addr show", 0, &ip_addrs(false));
    write_db_state(root, &fake, &role).unwrap();
    let path = under(root, paths::DB_STATE);
    assert_eq!(crate::shared::writer::mode_of(&path), Some(0o644));
    assert_eq!(
        crate::shared::writer::mode_of(path.parent().unwrap()),
        Some(0o755)
    );
    let s: DbState = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(s.holds_vip, Some(false));
    assert!(s.postgres.unwrap().in_recovery);
    assert!((now() - s.written).abs() <= 1);
    let ran = fake.commands();
    assert_eq!(ran.len(), 2, "{ran:?}");
    assert!(ran[0].starts_with(
        "PGCONNECT_TIMEOUT=1 timeout 1 runuser -u postgres -- psql -X -A -t -q -h /var/run/postgresql -p 5432 -c 'SELECT json_build_object('\\''in_recovery'\\'', pg_is_in_recovery(),"
    ), "{}", ran[0]);
    assert_eq!(ran[1], "ip -o -4 addr show");

    let fake = Recording::new();
    fake.on_stderr(
        "pg_control_checkpoint",
        2,
        "psql: error: connection to server on socket \"/var/run/postgresql/.s.PGSQL.5432\" failed: No such file or directory\n\tIs the server running locally and accepting connections on that socket?\n",
    );
    fake.on("ip -o -4 addr show", 0, &ip_addrs(true));
    write_db_state(root, &fake, &role).unwrap();
    let s: DbState = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(s.postgres.is_none());
    assert_eq!(
        s.postgres_error.unwrap(),
        "psql: error: connection to server on socket \"/var/run/postgresql/.s.PGSQL.5432\" failed: No such file or directory Is the server running locally and accepting connections on that socket?"
    );
    assert_eq!(s.holds_vip, Some(true));
}

#[test]
fn the_peer_user_answers_from_the_journal_and_the_state_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let role = lay_out(root, "db2");
    put(root, paths::DB_PASSWORD, "s3cret-pw\n");
    put(
        root,
        "/var/lib/airlock/pgpass-postgres",
        "*:*:*:dbuser:s3cret-pw\n",
    );
    let fake = Recording::new();
    // No state file yet: said, and the runner still reported.
    let said = crate::vm::peer::answer(&fake, root, &role, "status").unwrap();
    let s = HostStatus::parse(&said).unwrap();
    assert_eq!(s.runner.phase, RunnerPhase::Done);
    assert!(
        s.db.as_ref()
            .unwrap()
            .problem
            .as_deref()
            .unwrap()
            .contains("no DB state")
    );
    // A state written 60 s ago: stale, and how old.
    let state = db_state("db2", STANDBY, false, 60);
    put(
        root,
        paths::DB_STATE,
        &serde_json::to_string(&state).unwrap(),
    );
    let said = crate::vm::peer::answer(&fake, root, &role, "status").unwrap();
    assert!(!said.contains('\n'), "one line");
    let s = HostStatus::parse(&said).unwrap();
    let db = s.db.unwrap();
    assert!(db.stale);
    assert_eq!(db.age_secs, Some(60));
    assert!(!said.contains("s3cret-pw"));
    // It asked nothing of PostgreSQL, ip or docker: no right to.
    assert!(fake.commands().is_empty(), "{:?}", fake.commands());
}

#[test]
fn a_dispatcher_answers_with_the_swarm_through_its_one_sudo_rule() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let role = lay_out(root, "disp1");
    put(
        root,
        paths::TOKEN_FILE,
        "SWMTKN-1-0123456789abcdef-leader\n",
    );
    let mut j = journal_for(&role);
    j.set(
        "install-leader",
        StepState::Failed,
        Some("install.sh failed".into()),
    );
    j.last_error = Some(
        "install.sh printed: docker swarm join --token SWMTKN-1-0123456789abcdef-leader".into(),
    );
    // An older journal, written before tokens were masked.
    std::fs::write(
        under(root, paths::JOURNAL),
        serde_json::to_string(&j).unwrap(),
    )
    .unwrap();
    let fake = Recording::new();
    fake.on("docker node ls", 0, NODES);
    let said = crate::vm::peer::answer(&fake, root, &role, "status").unwrap();
    assert_eq!(
        fake.commands(),
        ["timeout 2 sudo -n /usr/bin/docker node ls --format '{{json .}}'"]
    );
    assert!(!said.contains("0123456789abcdef"), "{said}");
    let s = HostStatus::parse(&said).unwrap();
    assert_eq!(s.runner.phase, RunnerPhase::Failed);
    assert_eq!(s.runner.step.as_deref(), Some("install-leader"));
    assert_eq!(s.swarm.unwrap().nodes.len(), 3);
    assert!(s.db.is_none());

    let fake = Recording::new();
    fake.on_stderr("docker node ls", 1, "sudo: a password is required\n");
    let s = HostStatus::parse(&answer_status(root, &fake, &role)).unwrap();
    let e = s.swarm.unwrap().error.unwrap();
    assert!(e.starts_with("sudo: a password is required (the peer user may run `/usr/bin/docker node ls --format {{json .}}` through /etc/sudoers.d/airlock-peer"), "{e}");
    let fake = Recording::new();
    fake.on("docker node ls", 124, "");
    let s = HostStatus::parse(&answer_status(root, &fake, &role)).unwrap();
    assert_eq!(
        s.swarm.unwrap().error.unwrap(),
        "docker did not answer within 2 s"
    );
}

#[test]
fn db_servers_that_do_not_answer_are_not_known_and_nothing_is_claimed_of_them() {
    let role = fixture_role("disp1");
    let hosts = role
        .hosts
        .iter()
        .map(|e| {
            let db = matches!(e.role, Role::DbMaster | Role::DbReplica);
            HostReport {
                name: e.name.clone(),
                role: e.role,
                ip: e.ip,
                status: (!db).then(|| healthy(&e.name)),
                problem: db.then(|| "unreachable: no answer within 3 s".to_string()),
            }
        })
        .collect();
    let cs = verdict::summarize(&role, hosts, now());
    assert_eq!(
        cs.not_ready,
        [
            "db1: unreachable: no answer within 3 s",
            "db2: unreachable: no answer within 3 s",
            "no DB server answers as the primary (not known: db1, db2)",
            "no DB server known holds the VIP 192.0.2.10 (not known: db1, db2)",
        ]
    );
    assert!(to_text(&cs).contains(
        "DB: primary none; not known: db1, db2\nVIP: 192.0.2.10 on no DB server known\n"
    ));
}
