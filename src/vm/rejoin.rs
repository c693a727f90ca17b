//! `airlock-firstboot rejoin`: a former primary becomes a streaming standby
//! of its peer, which is the primary now.
//!
//! After a failover the old master comes back read-only (the start guard
//! fenced it, see [`crate::vm::guard`]). A person decides that its own
//! writes since the failover may go, and runs this: the peer must answer
//! as the primary; the old data directory is copied aside, never deleted;
//! `pg_rewind` rewinds the cluster to the peer's timeline (the pg-config
//! step sets `wal_log_hints` for it), or, when it cannot, a fresh base
//! backup replaces it; the replication slot is made on the peer; the
//! server starts as a standby and must stream before this returns.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::shared::paths;
use crate::shared::role::Peer;
use crate::vm::edits;
use crate::vm::engine::Ctx;
use crate::vm::exec::Cmd;
use crate::vm::guard::{self, PeerState};
use crate::vm::roles::db::{self, pg, systemctl};

/// How the cluster was brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Rewind,
    /// pg_rewind could not (its error is kept).
    BaseBackup(String),
}

/// What `rejoin` did, for the person who ran it.
#[derive(Debug, Clone)]
pub struct Rejoined {
    pub peer: Peer,
    pub method: Method,
    /// Where the old data directory was kept.
    pub old_data: PathBuf,
}

/// Turns this DB server into a streaming standby of its peer.
pub fn rejoin(c: &Ctx) -> Result<Rejoined> {
    let peer = peer_that_is_primary(c)?;
    stop_postgresql(c)?;
    let old_data = keep_old_data(c)?;
    let passfile = db::passfile(c, Some("postgres"))?;
    let method = match rewind(c, &peer, &passfile) {
        Ok(()) => {
            make_slot_on(c, &peer)?;
            follow(c, &peer, &passfile)?;
            Method::Rewind
        }
        Err(why) => {
            let why = format!("{why:#}");
            eprintln!("airlock-firstboot: pg_rewind could not rewind: {why}; taking a base backup");
            db::replace_with_base_backup(c, &peer)?;
            Method::BaseBackup(why)
        }
    };
    forget_the_failover(c)?;
    start_streaming(c, &peer)?;
    Ok(Rejoined {
        peer,
        method,
        old_data,
    })
}

/// The peer, which must answer as the primary: following anything else
/// could leave the cluster with no primary at all.
fn peer_that_is_primary(c: &Ctx) -> Result<Peer> {
    let Some(vrrp) = &c.role.host.vrrp else {
        bail!(
            "{} is not a DB server of a pair: rejoin makes a former primary the standby of its peer",
            c.role.host.name
        );
    };
    let peer = vrrp.peer.clone();
    let passfile = db::passfile(c, None)?;
    match guard::ask_peer(c.exec, c.role, &peer.ip.to_string(), &passfile) {
        PeerState::Primary => Ok(peer),
        PeerState::Standby => bail!(
            "the peer {} ({}) is a standby, not the primary: there is nothing to follow. If this server holds the data, it is the one to keep; see `airlock-firstboot status` on both",
            peer.name,
            peer.ip
        ),
        PeerState::Unreachable(why) => bail!(
            "the peer {} ({}) does not answer ({why}): rejoin needs the primary reachable; nothing was changed",
            peer.name,
            peer.ip
        ),
    }
}

/// Stops the local cluster and waits until its postmaster is gone: the
/// stop of Debian's `postgresql` unit may return before that.
fn stop_postgresql(c: &Ctx) -> Result<()> {
    c.exec.run(&systemctl("stop", "postgresql"))?;
    let pid = db::data_dir(c)?.join("postmaster.pid");
    c.wait_until("the local PostgreSQL to stop", || !pid.exists())
}

/// Copies the data directory aside (`main.airlock-old-SECONDS`), so the
/// writes only this server saw are never lost.
fn keep_old_data(c: &Ctx) -> Result<PathBuf> {
    let dir = db::data_dir(c)?;
    if !dir.join("PG_VERSION").is_file() {
        bail!(
            "{} holds no PostgreSQL cluster: nothing to rejoin (a new replica is made by `airlock-firstboot run`)",
            dir.display()
        );
    }
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let aside = dir.with_file_name(format!(
        "{name}.airlock-old-{}",
        crate::shared::journal::now()
    ));
    c.exec.run(&Cmd::new("cp").args([
        "-a",
        "--reflink=auto",
        &dir.display().to_string(),
        &aside.display().to_string(),
    ]))?;
    Ok(aside)
}

/// `pg_rewind` from the peer, as the postgres user.
fn rewind(c: &Ctx, peer: &Peer, passfile: &Path) -> Result<()> {
    let pg = pg(c)?;
    let source = format!(
        "host={} port={} user={} dbname=postgres",
        peer.ip, pg.port, pg.user
    );
    let mut cmd = Cmd::new("runuser").args([
        "-u",
        "postgres",
        "--",
        "env",
        &format!("PGPASSFILE={}", passfile.display()),
        &format!("/usr/lib/postgresql/{}/bin/pg_rewind", pg.major),
        &format!("--target-pgdata={}", db::data_dir(c)?.display()),
        &format!("--source-server={source}"),
    ]);
    if pg.major >= 15 {
        // A cluster that was not shut down cleanly (a killed primary) is
        // first recovered by pg_rewind in single-user mode, which needs
        // Debian's configuration file, outside the data directory.
        let conf = c.path(&format!("{}/postgresql.conf", db::conf_dir(c)?));
        cmd = cmd.arg(format!("--config-file={}", conf.display()));
    }
    c.exec.run(&cmd)?;
    Ok(())
}

/// The replication slot this server streams through, on the peer (a base
/// backup makes its own with `-C`).
fn make_slot_on(c: &Ctx, peer: &Peer) -> Result<()> {
    let slot = slot_name(c)?;
    let sql = format!(
        "SELECT pg_create_physical_replication_slot('{slot}') WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}')"
    );
    let passfile = db::passfile(c, None)?;
    let peer_ip = peer.ip.to_string();
    c.exec
        .run(&db::psql_as_user(c.role, &peer_ip, &passfile, 5, &sql))?;
    Ok(())
}

fn slot_name(c: &Ctx) -> Result<String> {
    Ok(pg(c)?
        .slot
        .clone()
        .unwrap_or_else(|| paths::REPLICATION_SLOT.into()))
}

/// The rewound cluster's standby settings: it came from the peer, whose own
/// `primary_conninfo` (if any) names this server.
fn follow(c: &Ctx, peer: &Peer, passfile: &Path) -> Result<()> {
    let pg = pg(c)?;
    let conninfo = format!(
        "'user={} passfile={} host={} port={} application_name={}'",
        pg.user,
        passfile.display(),
        peer.ip,
        pg.port,
        c.role.host.name
    );
    let slot = format!("'{}'", slot_name(c)?);
    if c.role.database.postgresql >= 12 {
        let auto = c.read(&format!("{}/postgresql.auto.conf", pg.data_dir));
        let auto = edits::pg_conf_with(&auto, "primary_conninfo", &conninfo);
        let auto = edits::pg_conf_with(&auto, "primary_slot_name", &slot);
        write_data_file(c, "postgresql.auto.conf", &auto)?;
        write_data_file(c, "standby.signal", "")?;
    } else {
        let text = format!(
            "standby_mode = 'on'\nprimary_conninfo = {conninfo}\nprimary_slot_name = {slot}\nrecovery_target_timeline = 'latest'\n"
        );
        write_data_file(c, "recovery.conf", &text)?;
    }
    Ok(())
}

/// Writes `name` in the data directory atomically, owned by postgres.
fn write_data_file(c: &Ctx, name: &str, text: &str) -> Result<()> {
    let vm_path = format!("{}/{name}", pg(c)?.data_dir);
    c.write(&vm_path, text, 0o600)?;
    let path = c.path(&vm_path).display().to_string();
    c.exec
        .run(&Cmd::new("chown").args(["postgres:postgres", &path]))?;
    Ok(())
}

/// This server follows now: the records of the failover go.
fn forget_the_failover(c: &Ctx) -> Result<()> {
    for p in [paths::FENCED, paths::PROMOTED] {
        match fs::remove_file(c.path(p)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {p}"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Starts PostgreSQL (as a standby: the guard leaves a standby alone) and
/// waits until it streams from the peer.
fn start_streaming(c: &Ctx, peer: &Peer) -> Result<()> {
    c.exec.run(&systemctl("start", "postgresql"))?;
    db::wait_streaming(c, peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::exec::Recording;
    use crate::vm::testing::{fixture_role, fixture_role_pg, journal_for, put};

    const ASK_PEER: &str = "SELECT pg_is_in_recovery()";

    /// The peer answers as the primary; the local server streams once
    /// started.
    fn a_primary_peer() -> Recording {
        let fake = Recording::new();
        fake.on(ASK_PEER, 0, "f\n");
        fake.on("pg_stat_wal_receiver", 0, "streaming\n");
        fake
    }

    /// db1, the old master, fenced after a failover to db2.
    fn old_master(root: &Path, role: &crate::shared::role::RoleFile) {
        let data = &role.host.postgres.as_ref().unwrap().data_dir;
        // A password no temporary directory's name can contain.
        put(root, paths::DB_PASSWORD, "Secret-Pw-7\n");
        put(root, &format!("{data}/PG_VERSION"), "15\n");
        put(root, &format!("{data}/standby.signal"), "");
        put(
            root,
            &format!("{data}/postgresql.auto.conf"),
            "# Do not edit this file manually!\nprimary_conninfo = 'user=dbuser host=192.0.2.11 port=5432'\n",
        );
        put(root, paths::FENCED, "{}");
    }

    #[test]
    fn a_fenced_old_master_is_rewound_and_follows_its_peer() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("db1");
        old_master(root, &role);
        let fake = a_primary_peer();
        let c = Ctx::new(root, &role, &fake, 60, None, journal_for(&role));
        let r = rejoin(&c).unwrap();
        assert_eq!(r.method, Method::Rewind);
        assert_eq!(r.peer.name, "db2");
        let data = root.join("var/lib/postgresql/15/main");
        let aside = r.old_data.display().to_string();
        assert!(
            aside.starts_with(&format!("{}.airlock-old-", data.display())),
            "{aside}"
        );
        let cmds = fake.commands();
        let at = |needle: &str| {
            cmds.iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle} not run: {cmds:#?}"))
        };
        // The order that matters: ask, stop, copy aside, rewind, slot, start.
        let order = [
            at(ASK_PEER),
            at("systemctl stop postgresql"),
            at("cp -a --reflink=auto"),
            at("/usr/lib/postgresql/15/bin/pg_rewind"),
            at("pg_create_physical_replication_slot("),
            at("systemctl start postgresql"),
            at("pg_stat_wal_receiver"),
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{cmds:#?}");
        assert!(cmds[at("pg_rewind")].ends_with(&format!(
            "--target-pgdata={} '--source-server=host=192.0.2.12 port=5432 user=dbuser dbname=postgres' --config-file={}/etc/postgresql/15/main/postgresql.conf",
            data.display(),
            root.display()
        )));
        assert!(cmds.iter().all(|l| !l.contains("Secret-Pw-7")), "{cmds:#?}");
        let auto = fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
        assert!(
            auto.contains(&format!(
                "primary_conninfo = 'user=dbuser passfile={}/var/lib/airlock/pgpass-postgres host=192.0.2.12 port=5432 application_name=db1'",
                root.display()
            )) && auto.contains("primary_slot_name = 'replica'")
                && !auto.contains("host=192.0.2.11"),
            "{auto}"
        );
        assert!(data.join("standby.signal").is_file());
        assert!(!root.join("var/lib/airlock/fenced.json").exists());
    }

    #[test]
    fn when_pg_rewind_cannot_a_base_backup_replaces_the_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("db1");
        old_master(root, &role);
        let fake = a_primary_peer();
        fake.on_stderr(
            "pg_rewind",
            1,
            "pg_rewind: error: target server needs to use either data checksums or \"wal_log_hints = on\"",
        );
        let c = Ctx::new(root, &role, &fake, 60, None, journal_for(&role));
        let r = rejoin(&c).unwrap();
        let Method::BaseBackup(why) = &r.method else {
            panic!("{:?}", r.method)
        };
        assert!(why.contains("wal_log_hints"), "{why}");
        assert!(fake.ran("pg_basebackup -h 192.0.2.12 -p 5432 -U dbuser --checkpoint=fast"));
        assert!(fake.ran("-R --slot=replica -C"));
        // The standby names itself as pg_rewind's path does.
        assert!(fake.ran("--checkpoint=fast -d application_name=db1 -D"));
        assert!(!fake.ran("pg_create_physical_replication_slot"));
        assert!(
            fake.ran("cp -a --reflink=auto"),
            "the old data is kept first"
        );
    }

    #[test]
    fn nothing_changes_unless_the_peer_answers_as_the_primary() {
        for (code, out, said) in [
            (0, "t\n", "is a standby, not the primary"),
            (2, "", "does not answer"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            let role = fixture_role("db1");
            old_master(root, &role);
            let fake = Recording::new();
            fake.on(ASK_PEER, code, out);
            let c = Ctx::new(root, &role, &fake, 60, None, journal_for(&role));
            let e = format!("{:#}", rejoin(&c).unwrap_err());
            assert!(e.contains(said) && e.contains("db2 (192.0.2.12)"), "{e}");
            assert!(!fake.ran("systemctl"), "{:?}", fake.commands());
            assert!(root.join("var/lib/airlock/fenced.json").exists());
        }
    }

    #[test]
    fn postgresql_11_follows_through_recovery_conf() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role_pg("db1", 11);
        old_master(root, &role);
        let fake = a_primary_peer();
        let c = Ctx::new(root, &role, &fake, 60, None, journal_for(&role));
        rejoin(&c).unwrap();
        assert!(fake.ran("/usr/lib/postgresql/11/bin/pg_rewind"));
        let rc = fs::read_to_string(root.join("var/lib/postgresql/11/main/recovery.conf")).unwrap();
        assert!(
            rc.starts_with("standby_mode = 'on'\nprimary_conninfo = 'user=dbuser passfile=")
                && rc.contains("host=192.0.2.12 port=5432 application_name=db1'\n")
                && rc.ends_with(
                    "primary_slot_name = 'replica'\nrecovery_target_timeline = 'latest'\n"
                ),
            "{rc}"
        );
    }

    #[test]
    fn a_server_that_is_not_in_a_pair_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let role = fixture_role("disp1");
        let fake = Recording::new();
        let c = Ctx::new(dir.path(), &role, &fake, 60, None, journal_for(&role));
        let e = rejoin(&c).unwrap_err().to_string();
        assert!(e.contains("disp1 is not a DB server of a pair"), "{e}");
        assert!(fake.commands().is_empty());
    }

    #[test]
    fn nothing_is_copied_while_the_postmaster_still_runs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("db1");
        old_master(root, &role);
        put(root, "/var/lib/postgresql/15/main/postmaster.pid", "4242\n");
        let fake = a_primary_peer();
        let c = Ctx::new(root, &role, &fake, 3, None, journal_for(&role));
        let e = format!("{:#}", rejoin(&c).unwrap_err());
        assert!(e.contains("the local PostgreSQL to stop"), "{e}");
        assert!(!fake.ran("cp -a"), "{:?}", fake.commands());
    }
}
