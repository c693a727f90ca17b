//! PostgreSQL's start guard: never two writable primaries after a reboot.
//!
//! After a failover the replica is the primary. When the old master comes
//! back (a reboot, or its PostgreSQL started again) its data directory still
//! says "primary", and it would take writes that the cluster never sees.
//! `airlock-firstboot pg-guard` runs before every start of a PostgreSQL
//! cluster on a DB host of a pair (a systemd drop-in, `ExecStartPre`): when
//! the local cluster would start as a primary while the peer answers as a
//! primary, it puts the local cluster in standby mode (read-only) and records
//! why in [`paths::FENCED`]; `status` and the runner's `single-primary` step
//! say so, and keepalived's notify script will not promote it. Nothing is
//! deleted: the fenced server waits for a person (or a re-join) to make it a
//! replica of the new primary.
//!
//! When the peer cannot be reached within [`PEER_WAIT`], the guard lets the
//! server start as it is and says so: with two servers alone, an unreachable
//! peer cannot be told from a dead one.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::shared::journal::{Journal, StepState};
use crate::shared::paths;
use crate::shared::role::DatabaseMode;
use crate::shared::role::RoleFile;
use crate::shared::writer::{RootWriter, Writer};
use crate::vm::engine::under;
use crate::vm::exec::{Cmd, Exec};

/// How long the guard tries to reach the peer before a start.
pub const PEER_WAIT: Duration = Duration::from_secs(20);

/// Why this server runs read-only (`/var/lib/airlock/fenced.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    /// Seconds since the epoch.
    pub since: i64,
    pub peer: String,
    pub peer_ip: String,
    pub reason: String,
    /// It stopped itself: it reached neither its peer nor a majority of the
    /// witnesses (see [`crate::vm::quorum`]).
    #[serde(default)]
    pub isolated: bool,
}

impl Fence {
    pub fn load(root: &Path) -> Option<Fence> {
        let text = fs::read_to_string(under(root, paths::FENCED)).ok()?;
        Some(serde_json::from_str(&text).unwrap_or_else(|_| Fence {
            since: 0,
            peer: "?".into(),
            peer_ip: "?".into(),
            reason: format!("{} exists but cannot be read", paths::FENCED),
            isolated: false,
        }))
    }

    /// What a person reads: what happened and what to do.
    pub fn explain(&self, data_dir: &Path) -> String {
        if self.isolated {
            return format!(
                "ISOLATED: this DB server was the primary, but at {} it could reach neither its peer {} ({}) nor a majority of the witnesses ({}). It stopped PostgreSQL so it would take no write the cluster could lose; nothing was deleted. It starts PostgreSQL again by itself once it reaches them: as the primary if {} was not promoted meanwhile, else read-only (then see `airlock-firstboot rejoin`).",
                crate::shared::timefmt::rfc2822_utc(self.since),
                self.peer,
                self.peer_ip,
                self.reason,
                self.peer
            );
        }
        format!(
            "NOT A PRIMARY: this DB server was a primary, but its peer {} ({}) is the primary now ({}). To keep the cluster from two writable primaries, its PostgreSQL was started read-only (standby mode) at {}. Its data ({}) may hold writes the new primary never saw; nothing was deleted. To make it a standby of {} once you have decided those writes may go: `airlock-firstboot rejoin` (it keeps a copy of {} and removes {})",
            self.peer,
            self.peer_ip,
            self.reason,
            crate::shared::timefmt::rfc2822_utc(self.since),
            data_dir.display(),
            self.peer,
            data_dir.display(),
            paths::FENCED
        )
    }
}

/// When keepalived promoted this server (seconds since the epoch).
pub fn promoted(root: &Path) -> Option<i64> {
    let text = fs::read_to_string(under(root, paths::PROMOTED)).ok()?;
    Some(text.trim().parse().unwrap_or(0))
}

/// What the peer said when asked whether it is in recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerState {
    Primary,
    Standby,
    Unreachable(String),
}

/// Asks the peer's PostgreSQL, as the DB user, whether it is in recovery.
pub fn ask_peer(exec: &dyn Exec, role: &RoleFile, peer_ip: &str, passfile: &Path) -> PeerState {
    let cmd = crate::vm::roles::db::psql_as_user(
        role,
        peer_ip,
        passfile,
        2,
        "SELECT pg_is_in_recovery()",
    );
    match exec.output(&cmd) {
        Ok(o) if o.success() && o.stdout.trim() == "f" => PeerState::Primary,
        Ok(o) if o.success() && o.stdout.trim() == "t" => PeerState::Standby,
        Ok(o) => PeerState::Unreachable(o.stderr.trim().to_string()),
        Err(e) => PeerState::Unreachable(format!("{e:#}")),
    }
}

/// `airlock-firstboot pg-guard`: runs before PostgreSQL starts. Returns what
/// it decided, for the log.
pub fn pg_guard(root: &Path, exec: &dyn Exec, peer_wait: Duration) -> Result<String> {
    let role_path = under(root, paths::ROLE_FILE);
    if !role_path.is_file() {
        return Ok("no role file: not a cluster DB server yet".into());
    }
    let role = RoleFile::load(&role_path)?;
    let (Some(pg), Some(vrrp)) = (&role.host.postgres, &role.host.vrrp) else {
        return Ok("not a DB server of a pair".into());
    };
    if role.database.mode != DatabaseMode::Pair {
        return Ok("a single DB server".into());
    }
    let installed = Journal::load(&under(root, paths::JOURNAL))?
        .and_then(|j| j.step("install-db").map(|s| s.state == StepState::Done))
        .unwrap_or(false);
    if !installed {
        return Ok("PostgreSQL is being installed: nothing to guard yet".into());
    }
    let data = under(root, &pg.data_dir);
    if !data.join("PG_VERSION").is_file() || crate::vm::roles::db::is_standby(&data) {
        return Ok("the local cluster starts as a standby".into());
    }
    let passfile = write_passfile(root, &role)?;
    let peer_ip = vrrp.peer.ip.to_string();
    // It stopped itself while isolated: it stays stopped until its peer
    // answers (a reboot does not end an isolation).
    let isolated = Fence::load(root).filter(|f| f.isolated);
    let start = exec.now();
    let state = loop {
        match ask_peer(exec, &role, &peer_ip, &passfile) {
            PeerState::Unreachable(_) if exec.now() - start < peer_wait => {
                exec.sleep(Duration::from_secs(2));
            }
            other => break other,
        }
    };
    match state {
        PeerState::Standby => {
            if isolated.is_some() {
                fs::remove_file(under(root, paths::FENCED))
                    .with_context(|| format!("removing {}", paths::FENCED))?;
            }
            Ok(format!(
                "the peer {} is a standby: starting as the primary",
                vrrp.peer.name
            ))
        }
        PeerState::Unreachable(why) if isolated.is_some() => bail!(
            "this server stopped itself while isolated ({}), and its peer {} ({peer_ip}) still does not answer ({why}): it stays stopped; it starts by itself once it reaches its peer",
            paths::FENCED,
            vrrp.peer.name
        ),
        PeerState::Unreachable(why) => Ok(format!(
            "WARNING: the peer {} ({peer_ip}) did not answer within {} s ({why}): starting as the primary it was",
            vrrp.peer.name,
            peer_wait.as_secs()
        )),
        PeerState::Primary => {
            fence(root, exec, &role, &data)?;
            Ok(format!(
                "the peer {} ({peer_ip}) is the primary: this server starts READ-ONLY (standby mode); see `airlock-firstboot status`",
                vrrp.peer.name
            ))
        }
    }
}

fn write_passfile(root: &Path, role: &RoleFile) -> Result<std::path::PathBuf> {
    let pw = fs::read_to_string(under(root, paths::DB_PASSWORD))
        .with_context(|| format!("reading {}", paths::DB_PASSWORD))?;
    let line = format!(
        "*:*:*:{}:{}\n",
        role.database.user,
        pw.lines().next().unwrap_or("")
    );
    RootWriter::new(root).write("var/lib/airlock/pgpass-guard", line.as_bytes(), 0o600)?;
    Ok(under(root, "/var/lib/airlock/pgpass-guard"))
}

/// Puts the local cluster in standby mode and records why.
fn fence(root: &Path, exec: &dyn Exec, role: &RoleFile, data: &Path) -> Result<()> {
    let vrrp = role.host.vrrp.as_ref().expect("checked by the caller");
    let (file, content) = if role.database.postgresql >= 12 {
        ("standby.signal", "")
    } else {
        ("recovery.conf", "standby_mode = 'on'\n")
    };
    let mut w = RootWriter::new(data);
    w.write(file, content.as_bytes(), 0o600)?;
    exec.run(
        &Cmd::new("chown").args(["postgres:postgres", &data.join(file).display().to_string()]),
    )?;
    let record = Fence {
        since: crate::shared::journal::now(),
        peer: vrrp.peer.name.clone(),
        peer_ip: vrrp.peer.ip.to_string(),
        reason: "it answered as a primary when this server started".into(),
        isolated: false,
    };
    RootWriter::new(root).write(
        paths::FENCED.trim_start_matches('/'),
        serde_json::to_string_pretty(&record)?.as_bytes(),
        0o644,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::exec::Recording;
    use crate::vm::testing::{fixture_role, fixture_role_pg, journal_for, put};

    fn lay_out(root: &Path, role: &RoleFile, install_done: bool) {
        put(root, paths::ROLE_FILE, &role.to_toml().unwrap());
        put(root, paths::DB_PASSWORD, "pw\n");
        let mut j = journal_for(role);
        if install_done {
            j.set("install-db", StepState::Done, None);
        }
        j.save(&under(root, paths::JOURNAL)).unwrap();
        put(
            root,
            &format!(
                "{}/PG_VERSION",
                role.host.postgres.as_ref().unwrap().data_dir
            ),
            "15\n",
        );
    }

    #[test]
    fn an_old_master_whose_peer_is_primary_starts_read_only_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("db1");
        lay_out(root, &role, true);
        let fake = Recording::new();
        fake.on("SELECT pg_is_in_recovery()", 0, "f\n");
        let said = pg_guard(root, &fake, PEER_WAIT).unwrap();
        assert!(said.contains("READ-ONLY"), "{said}");
        assert!(
            root.join("var/lib/postgresql/15/main/standby.signal")
                .is_file()
        );
        let f = Fence::load(root).unwrap();
        assert_eq!((f.peer.as_str(), f.peer_ip.as_str()), ("db2", "192.0.2.12"));
        assert!(f.explain(Path::new("/d")).starts_with("NOT A PRIMARY"));
        assert!(fake.ran("psql -X -A -t -q -h 192.0.2.12 -p 5432 -U dbuser"));
    }

    #[test]
    fn postgresql_11_gets_a_recovery_conf() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role_pg("db1", 11);
        lay_out(root, &role, true);
        put(root, "/var/lib/postgresql/11/main/PG_VERSION", "11\n");
        let fake = Recording::new();
        fake.on("pg_is_in_recovery", 0, "f\n");
        pg_guard(root, &fake, PEER_WAIT).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("var/lib/postgresql/11/main/recovery.conf")).unwrap(),
            "standby_mode = 'on'\n"
        );
    }

    #[test]
    fn a_standby_peer_or_an_installation_in_progress_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("db1");
        lay_out(root, &role, true);
        let fake = Recording::new();
        fake.on("pg_is_in_recovery", 0, "t\n");
        assert!(
            pg_guard(root, &fake, PEER_WAIT)
                .unwrap()
                .contains("is a standby")
        );
        assert!(Fence::load(root).is_none());

        let other = tempfile::tempdir().unwrap();
        lay_out(other.path(), &role, false);
        let fake = Recording::new();
        fake.on("pg_is_in_recovery", 0, "f\n");
        assert!(
            pg_guard(other.path(), &fake, PEER_WAIT)
                .unwrap()
                .contains("being installed")
        );
        assert!(fake.commands().is_empty());
    }

    #[test]
    fn an_unreachable_peer_is_asked_for_a_bounded_time_then_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("db1");
        lay_out(root, &role, true);
        let fake = Recording::new();
        fake.on_stderr(
            "pg_is_in_recovery",
            2,
            "could not connect: No route to host",
        );
        let said = pg_guard(root, &fake, PEER_WAIT).unwrap();
        assert!(
            said.contains("WARNING") && said.contains("No route to host"),
            "{said}"
        );
        let asked = fake
            .commands()
            .iter()
            .filter(|c| c.contains("pg_is_in_recovery"))
            .count();
        assert_eq!(asked, 11, "every 2 s for 20 s");
        assert!(Fence::load(root).is_none());
    }

    #[test]
    fn a_server_that_stopped_itself_while_isolated_starts_only_once_its_peer_answers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("db1");
        lay_out(root, &role, true);
        put(
            root,
            paths::FENCED,
            r#"{"since":1,"peer":"db2","peer_ip":"192.0.2.12","reason":"ISOLATED","isolated":true}"#,
        );
        let fake = Recording::new();
        fake.on_stderr("pg_is_in_recovery", 2, "timeout expired");
        let e = pg_guard(root, &fake, Duration::from_secs(4))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stays stopped") && e.contains("timeout expired"),
            "{e}"
        );
        assert!(Fence::load(root).is_some());

        let fake = Recording::new();
        fake.on("pg_is_in_recovery", 0, "t\n");
        assert!(
            pg_guard(root, &fake, PEER_WAIT)
                .unwrap()
                .contains("starting as the primary")
        );
        assert!(Fence::load(root).is_none(), "the isolation is over");
    }
}
