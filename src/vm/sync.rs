//! Synchronous replication (`database.synchronous = true`) and how it
//! degrades, the way Patroni's synchronous mode does.
//!
//! pg-config names the peer's WAL receiver in `synchronous_standby_names`
//! on both DB servers ([`standby_names`]; base backup and rejoin give the
//! receiver its host name as `application_name`), so a commit on the
//! primary returns only once *that* standby has flushed it: a failover
//! loses no acknowledged commit, and no other replication connection can
//! stand in for it. keepalived's check calls [`tick`] every second:
//! - on the **primary**, it reads what PostgreSQL really has (the setting
//!   in force and the peer's walsender), not what a file says: a setting
//!   copied by a base backup or left by a person counts too. When the peer
//!   has not streamed for [`DEGRADE_AFTER`] seconds *and the primary
//!   reaches a majority of the voters* (an isolated primary never
//!   degrades: it fences itself instead, so it never acknowledges alone
//!   what the cluster would lose), it sets `synchronous_standby_names = ''`
//!   (ALTER SYSTEM, reload): it keeps serving, and
//!   [`paths::SYNC_UNPROTECTED`] says since when it is unprotected. Once
//!   the peer streams again (its walsender is past catch-up) it resets it:
//!   commits wait for the peer again.
//! - on the **standby**, while its WAL receiver streams, it asks the
//!   primary (as the DB user, like the start guard) whether it is the
//!   synchronous standby *now*, and records when it last was
//!   ([`paths::SYNC_LAST_STREAMING`]). Streaming alone is not enough: a
//!   standby that reconnected to a degraded primary streams while it
//!   catches up, yet lacks what the primary acknowledged without it.
//!
//! The promotion rule ([`may_promote`]): the primary degrades only after
//! the standby has been gone [`DEGRADE_AFTER`] seconds, so a standby that
//! was in sync less than that before it is promoted holds every
//! acknowledged commit. Otherwise it is not promoted, and says why. A new
//! primary serves alone at once: the psql that promotes it then stops the
//! waiting ([`STOP_WAITING`]); its standby is the server that just died.
//! The two hosts' clocks are compared here (NTP keeps them within far less
//! than a second).

use anyhow::Result;

use crate::shared::journal;
use crate::shared::paths;
use crate::shared::role::RoleFile;
use crate::vm::engine::Ctx;
use crate::vm::roles::db::psql_local;

/// A primary with no streaming standby for this long (seconds) stops
/// waiting for one. Longer than the isolated primary's fence bound plus a
/// promotion's vote, so the rule in [`may_promote`] admits a standby
/// promoted after a cut.
pub const DEGRADE_AFTER: i64 = 20;

/// Where the primary stands, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncState {
    /// The standby streams and commits wait for it.
    Protected,
    /// No standby streams; commits still wait (until [`DEGRADE_AFTER`]).
    Waiting { since: i64 },
    /// Degraded: commits are acknowledged by the primary alone.
    Unprotected { since: i64 },
    /// A standby: whether it streams, and whether the primary said it is
    /// its synchronous standby at this check.
    Standby { streaming: bool, in_sync: bool },
}

/// A host name as PostgreSQL's `application_name` and a SQL literal carry
/// it unchanged: letters, digits and hyphens (what `plan` accepts).
fn plain(name: &str) -> Option<&str> {
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .then_some(name)
}

/// `synchronous_standby_names` as postgresql.conf says it: the peer's WAL
/// receiver, by its host name. `None` without a peer (or with a name that
/// could not be written there: `plan` refuses such names).
pub fn standby_names(role: &RoleFile) -> Option<String> {
    let peer = plain(&role.host.vrrp.as_ref()?.peer.name)?;
    Some(format!("'\"{peer}\"'"))
}

/// What the primary's PostgreSQL says: the standby names in force (empty:
/// degraded) and whether the peer's walsender streams.
struct PrimaryFacts {
    waits: bool,
    peer_streams: bool,
}

fn primary_facts(c: &Ctx) -> Option<PrimaryFacts> {
    let peer = plain(&c.role.host.vrrp.as_ref()?.peer.name)?;
    let sql = format!(
        "SELECT current_setting('synchronous_standby_names') <> '', count(*) FILTER (WHERE state = 'streaming') FROM pg_stat_replication WHERE application_name = '{peer}'"
    );
    let out = c.exec.output(&psql_local(c, &sql)).ok()?;
    if !out.success() {
        return None;
    }
    let (waits, streams) = out.stdout.trim().split_once('|')?;
    Some(PrimaryFacts {
        waits: waits == "t",
        peer_streams: streams.parse::<u32>().ok()? > 0,
    })
}

/// Asks the primary whether this standby's walsender streams and is its
/// synchronous standby now (not merely connected and catching up).
fn primary_has_me_in_sync(c: &Ctx) -> bool {
    let Some(vrrp) = c.role.host.vrrp.as_ref() else {
        return false;
    };
    let Some(me) = plain(&c.role.host.name) else {
        return false;
    };
    let Ok(passfile) = crate::vm::roles::db::passfile(c, None) else {
        return false;
    };
    let sql = format!(
        "SELECT sync_state FROM pg_stat_replication WHERE application_name = '{me}' AND state = 'streaming'"
    );
    let ask =
        crate::vm::roles::db::psql_as_user(c.role, &vrrp.peer.ip.to_string(), &passfile, 1, &sql)
            .bounded(ASK_PRIMARY_SECS);
    c.exec
        .output(&ask)
        .is_ok_and(|o| o.success() && o.stdout.lines().any(|l| l.trim() == "sync"))
}

fn set_standby_names(c: &Ctx, sql: &str) -> Result<()> {
    c.exec
        .run(&crate::vm::roles::db::psql_local_each(c, &[sql, RELOAD]))?;
    Ok(())
}

/// Stop waiting for a standby (ALTER SYSTEM, then the reload that applies
/// it): what a new primary runs right after its promotion, in that psql.
pub const STOP_WAITING: &str = "ALTER SYSTEM SET synchronous_standby_names = ''";
/// Wait for the named standby again (postgresql.conf's setting).
pub const WAIT_AGAIN: &str = "ALTER SYSTEM RESET synchronous_standby_names";
pub const RELOAD: &str = "SELECT pg_reload_conf()";

/// Records that this primary serves alone, for `status`.
pub fn record_unprotected(c: &Ctx) -> Result<()> {
    record_unprotected_since(c, journal::now())
}

fn record_unprotected_since(c: &Ctx, since: i64) -> Result<()> {
    c.write(paths::SYNC_UNPROTECTED, &format!("{since}\n"), 0o644)?;
    Ok(())
}

fn read_time(c: &Ctx, path: &str) -> Option<i64> {
    c.read(path).trim().parse().ok()
}

/// What keepalived's check has just learnt, for [`tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The local server is the primary; `majority`: it reaches its peer or
    /// a majority of the voters.
    Primary { majority: bool },
    /// The local server is a standby; `primary_answers`: the primary's port
    /// answered this check. Only then is the primary asked whether it has
    /// this standby in sync: a question to a silent primary would hold the
    /// check's verdict past keepalived's takeover.
    Standby { primary_answers: bool },
}

/// The psql that asks the primary gives up after this long (seconds).
const ASK_PRIMARY_SECS: u64 = 1;

/// Every second, from keepalived's check.
pub fn tick(c: &Ctx, seen: Seen) -> Result<SyncState> {
    let now = journal::now();
    let (primary, majority) = match seen {
        Seen::Primary { majority } => (true, majority),
        Seen::Standby { primary_answers } => (false, primary_answers),
    };
    // What the other role wrote is stale now (a failover, a re-join).
    let stale: &[&str] = if primary {
        &[paths::SYNC_LAST_STREAMING, paths::SYNC_CONNECTION]
    } else {
        &[paths::SYNC_ABSENT_SINCE, paths::SYNC_UNPROTECTED]
    };
    for p in stale {
        let _ = std::fs::remove_file(c.path(p));
    }
    if !primary {
        return standby_tick(c, now, majority);
    }
    let Some(facts) = primary_facts(c) else {
        // PostgreSQL does not answer (stopped, starting): nothing to judge.
        return Ok(match read_time(c, paths::SYNC_UNPROTECTED) {
            Some(since) => SyncState::Unprotected { since },
            None => SyncState::Waiting {
                since: read_time(c, paths::SYNC_ABSENT_SINCE).unwrap_or(now),
            },
        });
    };
    if facts.peer_streams {
        let _ = std::fs::remove_file(c.path(paths::SYNC_ABSENT_SINCE));
    }
    if !facts.waits {
        // Degraded, by this check or not (a promotion, a base backup that
        // copied the setting, a person).
        if facts.peer_streams {
            set_standby_names(c, WAIT_AGAIN)?;
            let _ = std::fs::remove_file(c.path(paths::SYNC_UNPROTECTED));
            return Ok(SyncState::Protected);
        }
        let since = match read_time(c, paths::SYNC_UNPROTECTED) {
            Some(t) => t,
            None => {
                record_unprotected_since(c, now)?;
                now
            }
        };
        return Ok(SyncState::Unprotected { since });
    }
    let _ = std::fs::remove_file(c.path(paths::SYNC_UNPROTECTED));
    if facts.peer_streams {
        return Ok(SyncState::Protected);
    }
    let since = match read_time(c, paths::SYNC_ABSENT_SINCE) {
        Some(t) => t,
        None => {
            c.write(paths::SYNC_ABSENT_SINCE, &format!("{now}\n"), 0o644)?;
            now
        }
    };
    if now - since >= DEGRADE_AFTER && majority {
        degrade_now(c)?;
        return Ok(SyncState::Unprotected { since: now });
    }
    Ok(SyncState::Waiting { since })
}

/// The standby's half. While its WAL receiver streams and the primary
/// answers, it asks the primary whether it is in sync; a yes is recorded
/// with the receiver's connection (its process and start point). Later
/// messages on that same connection keep the sighting fresh without a
/// question (after a cut, until the receiver gives up): a primary degrades
/// only after [`DEGRADE_AFTER`] seconds without the peer's walsender
/// streaming, and that walsender streamed as long as this connection lived.
fn standby_tick(c: &Ctx, now: i64, primary_answers: bool) -> Result<SyncState> {
    let Some(receiver) = receiver(c) else {
        return Ok(SyncState::Standby {
            streaming: false,
            in_sync: false,
        });
    };
    let in_sync = primary_answers && primary_has_me_in_sync(c);
    let seen = if in_sync {
        c.write(
            paths::SYNC_CONNECTION,
            &format!("{}\n", receiver.connection),
            0o644,
        )?;
        Some(now)
    } else {
        (c.read(paths::SYNC_CONNECTION).trim() == receiver.connection)
            .then_some(receiver.last_message)
    };
    if let Some(t) = seen.filter(|t| read_time(c, paths::SYNC_LAST_STREAMING) < Some(*t)) {
        c.write(paths::SYNC_LAST_STREAMING, &format!("{t}\n"), 0o644)?;
    }
    Ok(SyncState::Standby {
        streaming: true,
        in_sync,
    })
}

/// The local WAL receiver while it streams.
struct Receiver {
    /// Its process and where it started: a new connection differs.
    connection: String,
    /// When the primary last sent it something (the receiver's clock).
    last_message: i64,
}

const RECEIVER: &str = "SELECT pid, receive_start_lsn, extract(epoch FROM last_msg_receipt_time)::bigint FROM pg_stat_wal_receiver WHERE status = 'streaming'";

fn receiver(c: &Ctx) -> Option<Receiver> {
    let out = c.exec.output(&psql_local(c, RECEIVER)).ok()?;
    if !out.success() {
        return None;
    }
    let line = out.stdout.trim();
    let (connection, last) = line.rsplit_once('|')?;
    Some(Receiver {
        connection: connection.to_string(),
        last_message: last.parse().ok()?,
    })
}

/// Commits stop waiting for a standby; recorded for `status`.
pub fn degrade_now(c: &Ctx) -> Result<()> {
    set_standby_names(c, STOP_WAITING)?;
    record_unprotected(c)
}

/// Whether this standby may be promoted without losing an acknowledged
/// commit; `Err` says why not, for a person.
pub fn may_promote(c: &Ctx, now: i64) -> std::result::Result<(), String> {
    if !c.role.database.synchronous {
        return Ok(());
    }
    let Some(last) = read_time(c, paths::SYNC_LAST_STREAMING) else {
        return Err(format!(
            "synchronous replication: the primary has not had this standby in sync since it booted, so it may lack commits the primary acknowledged; a person must decide (to promote it anyway, losing those: pg_ctlcluster {} main promote)",
            c.role.database.postgresql
        ));
    };
    if now - last >= DEGRADE_AFTER {
        return Err(format!(
            "synchronous replication: the primary last had this standby in sync {} s ago; after {DEGRADE_AFTER} s the primary may have stopped waiting for it and acknowledged commits it does not have; a person must decide (to promote it anyway, losing those: pg_ctlcluster {} main promote)",
            now - last,
            c.role.database.postgresql
        ));
    }
    Ok(())
}

/// For `status`: one line on a DB server in synchronous mode.
pub fn describe(root: &std::path::Path) -> Option<String> {
    let read = |p: &str| -> Option<i64> {
        std::fs::read_to_string(crate::vm::engine::under(root, p))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    if let Some(since) = read(paths::SYNC_UNPROTECTED) {
        return Some(format!(
            "Synchronous replication: UNPROTECTED since {}: no standby streams, commits are acknowledged by this server alone",
            crate::shared::timefmt::rfc2822_utc(since)
        ));
    }
    if let Some(since) = read(paths::SYNC_ABSENT_SINCE) {
        return Some(format!(
            "Synchronous replication: no standby streams since {}; commits wait for one (for up to {DEGRADE_AFTER} s, then this server serves alone)",
            crate::shared::timefmt::rfc2822_utc(since)
        ));
    }
    read(paths::SYNC_LAST_STREAMING).map(|t| {
        format!(
            "Synchronous replication: the primary last had this standby in sync at {}",
            crate::shared::timefmt::rfc2822_utc(t)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::exec::Recording;
    use crate::vm::testing::{fixture_role, journal_for, put};

    /// The primary's one question (the setting in force, the peer streams).
    const FACTS: &str = "FROM pg_stat_replication WHERE application_name";
    /// The standby's question to its primary.
    const IN_SYNC: &str = "SELECT sync_state FROM pg_stat_replication";

    /// A standby's check whose primary's port answered.
    const ANSWERS: Seen = Seen::Standby {
        primary_answers: true,
    };

    /// db2 in a synchronous pair, with its password, and what its WAL
    /// receiver says while it streams on connection 4242.
    fn standby_site() -> (tempfile::TempDir, crate::shared::role::RoleFile, String) {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), paths::DB_PASSWORD, "Secret-Pw-7\n");
        let streaming = format!("4242|0/5000000|{}\n", journal::now());
        (dir, sync_role("db2"), streaming)
    }

    fn sync_role(host: &str) -> crate::shared::role::RoleFile {
        let mut r = fixture_role(host);
        r.database.synchronous = true;
        r
    }

    #[test]
    fn the_peer_is_named_and_a_name_that_cannot_be_written_is_refused() {
        let role = sync_role("db1");
        assert_eq!(standby_names(&role).as_deref(), Some("'\"db2\"'"));
        let mut odd = role.clone();
        odd.host.vrrp.as_mut().unwrap().peer.name = "db2'; DROP".into();
        assert_eq!(standby_names(&odd), None);
        let mut alone = role;
        alone.host.vrrp = None;
        assert_eq!(standby_names(&alone), None);
    }

    #[test]
    fn a_primary_without_its_standby_degrades_after_the_bound_only_with_a_majority() {
        let dir = tempfile::tempdir().unwrap();
        let (root, role) = (dir.path(), sync_role("db1"));
        let fake = Recording::new();
        fake.on(FACTS, 0, "t|0\n");
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        assert!(matches!(
            tick(&c, Seen::Primary { majority: true }).unwrap(),
            SyncState::Waiting { .. }
        ));
        assert!(
            fake.log()
                .iter()
                .any(|l| l.contains("WHERE application_name = ") && l.contains("db2")),
            "the peer, by name: {:?}",
            fake.log()
        );
        assert!(!fake.ran("ALTER SYSTEM"), "not before the bound");
        put(
            root,
            paths::SYNC_ABSENT_SINCE,
            &format!("{}\n", journal::now() - DEGRADE_AFTER),
        );
        assert!(matches!(
            tick(&c, Seen::Primary { majority: false }).unwrap(),
            SyncState::Waiting { .. }
        ));
        assert!(
            !fake.ran("ALTER SYSTEM"),
            "an isolated primary never degrades"
        );
        assert!(matches!(
            tick(&c, Seen::Primary { majority: true }).unwrap(),
            SyncState::Unprotected { .. }
        ));
        assert!(fake.ran("ALTER SYSTEM SET synchronous_standby_names"));
        assert!(fake.ran("SELECT pg_reload_conf()"));
        assert!(describe(root).unwrap().contains("UNPROTECTED since"));

        // The standby streams again: commits wait for it again.
        let back = Recording::new();
        back.on(FACTS, 0, "f|1\n");
        let c = Ctx::new(root, &role, &back, 0, None, journal_for(&role));
        assert_eq!(
            tick(&c, Seen::Primary { majority: true }).unwrap(),
            SyncState::Protected
        );
        assert!(back.ran("ALTER SYSTEM RESET synchronous_standby_names"));
        assert!(describe(root).is_none());
    }

    #[test]
    fn a_primary_that_does_not_wait_is_unprotected_whatever_the_files_say_and_restores() {
        // A base backup copied an ALTER SYSTEM value; no file says so.
        let dir = tempfile::tempdir().unwrap();
        let (root, role) = (dir.path(), sync_role("db2"));
        let fake = Recording::new();
        fake.on(FACTS, 0, "f|0\n");
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        assert!(matches!(
            tick(&c, Seen::Primary { majority: true }).unwrap(),
            SyncState::Unprotected { .. }
        ));
        assert!(!fake.ran("ALTER SYSTEM"), "nothing to restore while alone");
        assert!(describe(root).unwrap().contains("UNPROTECTED since"));
        // The record gone (a check that still took this server for a
        // standby removed it while it was promoted), the setting still
        // empty, the peer streams: restored all the same.
        std::fs::remove_file(c.path(paths::SYNC_UNPROTECTED)).unwrap();
        let back = Recording::new();
        back.on(FACTS, 0, "f|1\n");
        let c = Ctx::new(root, &role, &back, 0, None, journal_for(&role));
        assert_eq!(
            tick(&c, Seen::Primary { majority: true }).unwrap(),
            SyncState::Protected
        );
        assert!(back.ran("ALTER SYSTEM RESET synchronous_standby_names"));
        // The files say unprotected, PostgreSQL waits: PostgreSQL wins.
        put(root, paths::SYNC_UNPROTECTED, "1\n");
        let waits = Recording::new();
        waits.on(FACTS, 0, "t|1\n");
        let c = Ctx::new(root, &role, &waits, 0, None, journal_for(&role));
        assert_eq!(
            tick(&c, Seen::Primary { majority: true }).unwrap(),
            SyncState::Protected
        );
        assert!(!waits.ran("ALTER SYSTEM"));
        assert!(describe(root).is_none());
    }

    #[test]
    fn a_standby_counts_only_when_the_primary_has_it_in_sync_and_says_why_not_otherwise() {
        let (dir, role, streaming) = standby_site();
        let root = dir.path();
        // Streaming while it catches up a degraded primary: not counted.
        let catching_up = Recording::new();
        catching_up.on("pg_stat_wal_receiver", 0, &streaming);
        catching_up.on(IN_SYNC, 0, "");
        let c = Ctx::new(root, &role, &catching_up, 0, None, journal_for(&role));
        assert_eq!(
            tick(&c, ANSWERS).unwrap(),
            SyncState::Standby {
                streaming: true,
                in_sync: false
            }
        );
        assert!(
            catching_up
                .log()
                .iter()
                .any(|l| l.contains(IN_SYNC) && l.contains("db2")),
            "{:?}",
            catching_up.log()
        );
        assert!(catching_up.ran("-h 192.0.2.11"), "asks the primary");
        assert!(!c.path(paths::SYNC_LAST_STREAMING).exists());
        let e = may_promote(&c, journal::now()).unwrap_err();
        assert!(e.contains("has not had this standby in sync"), "{e}");

        // The primary's port did not answer this check: not asked either
        // (the question would hold the check's verdict).
        let silent = Recording::new();
        silent.on("pg_stat_wal_receiver", 0, &streaming);
        let c = Ctx::new(root, &role, &silent, 0, None, journal_for(&role));
        tick(
            &c,
            Seen::Standby {
                primary_answers: false,
            },
        )
        .unwrap();
        assert!(!silent.ran(IN_SYNC));
        assert!(catching_up.ran("timeout 1 psql"), "bounded");

        // Not streaming: the primary is not even asked.
        let cut = Recording::new();
        cut.on("pg_stat_wal_receiver", 0, "");
        let c = Ctx::new(root, &role, &cut, 0, None, journal_for(&role));
        tick(&c, ANSWERS).unwrap();
        assert!(!cut.ran(IN_SYNC));
    }

    #[test]
    fn a_sighting_lasts_as_long_as_its_connection_and_ages_out() {
        let (dir, role, streaming) = standby_site();
        let root = dir.path();
        let fake = Recording::new();
        fake.on("pg_stat_wal_receiver", 0, &streaming);
        fake.on(IN_SYNC, 0, "sync\n");
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        put(root, paths::SYNC_UNPROTECTED, "1\n");
        tick(&c, ANSWERS).unwrap();
        assert!(
            !c.path(paths::SYNC_UNPROTECTED).exists(),
            "a standby is not unprotected"
        );
        assert!(may_promote(&c, journal::now() + DEGRADE_AFTER - 1).is_ok());
        let e = may_promote(&c, journal::now() + DEGRADE_AFTER + 1).unwrap_err();
        assert!(
            e.contains("may have stopped waiting") && e.contains("pg_ctlcluster 15 main promote"),
            "{e}"
        );
        assert!(
            describe(root)
                .unwrap()
                .contains("last had this standby in sync")
        );

        // The primary no longer answers (a cut): the connection it had in
        // sync still streams and its later messages keep the sighting
        // fresh; another connection (a reconnect) does not.
        let later = journal::now() + 7;
        let same = Recording::new();
        same.on(
            "pg_stat_wal_receiver",
            0,
            &format!("4242|0/5000000|{later}\n"),
        );
        let c = Ctx::new(root, &role, &same, 0, None, journal_for(&role));
        let cut = Seen::Standby {
            primary_answers: false,
        };
        tick(&c, cut).unwrap();
        assert_eq!(read_time(&c, paths::SYNC_LAST_STREAMING), Some(later));
        let other = Recording::new();
        other.on(
            "pg_stat_wal_receiver",
            0,
            &format!("4343|0/6000000|{}\n", later + 5),
        );
        let c = Ctx::new(root, &role, &other, 0, None, journal_for(&role));
        tick(&c, cut).unwrap();
        assert_eq!(read_time(&c, paths::SYNC_LAST_STREAMING), Some(later));

        let async_role = fixture_role("db2");
        let c = Ctx::new(root, &async_role, &fake, 0, None, journal_for(&async_role));
        assert!(
            may_promote(&c, journal::now() + 1000).is_ok(),
            "asynchronous: always"
        );
    }
}
