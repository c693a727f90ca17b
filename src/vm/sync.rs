//! Synchronous replication (`database.synchronous = true`) and how it
//! degrades, the way Patroni's synchronous mode does.
//!
//! pg-config sets `synchronous_standby_names = '*'` on both DB servers, so
//! a commit on the primary returns only once the standby has flushed it: a
//! failover loses no acknowledged commit. keepalived's check calls [`tick`]
//! every second:
//! - on the **primary**, when no standby has streamed for [`DEGRADE_AFTER`]
//!   seconds *and the primary reaches a majority of the voters* (an isolated
//!   primary never degrades: it fences itself instead, so it never
//!   acknowledges alone what the cluster would lose), it sets
//!   `synchronous_standby_names = ''` (ALTER SYSTEM, reload): it keeps
//!   serving, and [`paths::SYNC_UNPROTECTED`] says since when it is
//!   unprotected. Once a standby streams again it resets it: commits wait
//!   for the standby again.
//! - on the **standby**, it records when the primary last sent it anything
//!   while it streamed (`pg_stat_wal_receiver.last_msg_receipt_time`;
//!   [`paths::SYNC_LAST_STREAMING`]).
//!
//! The promotion rule ([`may_promote`]): the primary degrades only after
//! the standby has been gone [`DEGRADE_AFTER`] seconds, so a standby that
//! streamed less than that before it is promoted holds every acknowledged
//! commit. Otherwise it is not promoted, and says why. A new primary
//! serves alone at once: the psql that promotes it then stops the waiting
//! ([`STOP_WAITING`]); its standby is the server that just died.

use anyhow::Result;

use crate::shared::journal;
use crate::shared::paths;
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
    /// A standby streams and commits wait for it.
    Protected,
    /// No standby streams; commits still wait (until [`DEGRADE_AFTER`]).
    Waiting { since: i64 },
    /// Degraded: commits are acknowledged by the primary alone.
    Unprotected { since: i64 },
    /// A standby: it records when it last streamed.
    Standby { streaming: bool },
}

/// The time of the primary's last message to a streaming receiver.
const LAST_MESSAGE: &str = "SELECT extract(epoch FROM last_msg_receipt_time)::bigint FROM pg_stat_wal_receiver WHERE status = 'streaming'";

fn streaming_standbys(c: &Ctx) -> Option<u32> {
    let out = c
        .exec
        .output(&psql_local(
            c,
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
        ))
        .ok()?;
    out.success().then(|| out.stdout.trim().parse().ok())?
}

fn set_standby_names(c: &Ctx, sql: &str) -> Result<()> {
    c.exec
        .run(&crate::vm::roles::db::psql_local_each(c, &[sql, RELOAD]))?;
    Ok(())
}

/// Stop waiting for a standby (ALTER SYSTEM, then the reload that applies
/// it): what a new primary runs right after its promotion, in that psql.
pub const STOP_WAITING: &str = "ALTER SYSTEM SET synchronous_standby_names = ''";
pub const RELOAD: &str = "SELECT pg_reload_conf()";

/// Records that this primary serves alone, for `status` and the restore.
pub fn record_unprotected(c: &Ctx) -> Result<()> {
    c.write(
        paths::SYNC_UNPROTECTED,
        &format!("{}\n", journal::now()),
        0o644,
    )?;
    Ok(())
}

fn read_time(c: &Ctx, path: &str) -> Option<i64> {
    c.read(path).trim().parse().ok()
}

/// Every second, from keepalived's check. `primary`: the local server is
/// the primary; `majority`: it reaches a majority of the voters.
pub fn tick(c: &Ctx, primary: bool, majority: bool) -> Result<SyncState> {
    let now = journal::now();
    // What the other role wrote is stale now (a failover, a re-join).
    let stale: &[&str] = if primary {
        &[paths::SYNC_LAST_STREAMING]
    } else {
        &[paths::SYNC_ABSENT_SINCE, paths::SYNC_UNPROTECTED]
    };
    for p in stale {
        let _ = std::fs::remove_file(c.path(p));
    }
    if !primary {
        // When the primary last sent something, by the receiver's own
        // clock: it says "streaming" for a while after a cut, this does not.
        let last = c
            .exec
            .output(&psql_local(c, LAST_MESSAGE))
            .ok()
            .filter(|o| o.success())
            .and_then(|o| o.stdout.trim().parse::<i64>().ok());
        if let Some(t) = last {
            c.write(paths::SYNC_LAST_STREAMING, &format!("{t}\n"), 0o644)?;
        }
        return Ok(SyncState::Standby {
            streaming: last.is_some(),
        });
    }
    let unprotected = read_time(c, paths::SYNC_UNPROTECTED);
    match streaming_standbys(c) {
        Some(n) if n > 0 => {
            let _ = std::fs::remove_file(c.path(paths::SYNC_ABSENT_SINCE));
            if unprotected.is_some() {
                set_standby_names(c, "ALTER SYSTEM RESET synchronous_standby_names")?;
                std::fs::remove_file(c.path(paths::SYNC_UNPROTECTED))?;
            }
            Ok(SyncState::Protected)
        }
        _ => {
            if let Some(since) = unprotected {
                return Ok(SyncState::Unprotected { since });
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
    }
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
            "synchronous replication: this standby has not streamed since it booted, so it may lack commits the primary acknowledged; a person must decide (to promote it anyway, losing those: pg_ctlcluster {} main promote)",
            c.role.database.postgresql
        ));
    };
    if now - last >= DEGRADE_AFTER {
        return Err(format!(
            "synchronous replication: this standby last streamed {} s ago; after {DEGRADE_AFTER} s the primary may have stopped waiting for it and acknowledged commits it does not have; a person must decide (to promote it anyway, losing those: pg_ctlcluster {} main promote)",
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
            "Synchronous replication: this standby last streamed at {}",
            crate::shared::timefmt::rfc2822_utc(t)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::exec::Recording;
    use crate::vm::testing::{fixture_role, journal_for, put};

    const REPLICATION: &str = "FROM pg_stat_replication";

    fn sync_role(host: &str) -> crate::shared::role::RoleFile {
        let mut r = fixture_role(host);
        r.database.synchronous = true;
        r
    }

    #[test]
    fn a_primary_without_its_standby_degrades_after_the_bound_only_with_a_majority() {
        let dir = tempfile::tempdir().unwrap();
        let (root, role) = (dir.path(), sync_role("db1"));
        let fake = Recording::new();
        fake.on(REPLICATION, 0, "0\n");
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        assert!(matches!(
            tick(&c, true, true).unwrap(),
            SyncState::Waiting { .. }
        ));
        assert!(!fake.ran("ALTER SYSTEM"), "not before the bound");
        put(
            root,
            paths::SYNC_ABSENT_SINCE,
            &format!("{}\n", journal::now() - DEGRADE_AFTER),
        );
        assert!(matches!(
            tick(&c, true, false).unwrap(),
            SyncState::Waiting { .. }
        ));
        assert!(
            !fake.ran("ALTER SYSTEM"),
            "an isolated primary never degrades"
        );
        assert!(matches!(
            tick(&c, true, true).unwrap(),
            SyncState::Unprotected { .. }
        ));
        assert!(fake.ran("ALTER SYSTEM SET synchronous_standby_names"));
        assert!(fake.ran("SELECT pg_reload_conf()"));
        assert!(describe(root).unwrap().contains("UNPROTECTED since"));

        // The standby streams again: commits wait for it again.
        let back = Recording::new();
        back.on(REPLICATION, 0, "1\n");
        let c = Ctx::new(root, &role, &back, 0, None, journal_for(&role));
        assert_eq!(tick(&c, true, true).unwrap(), SyncState::Protected);
        assert!(back.ran("ALTER SYSTEM RESET synchronous_standby_names"));
        assert!(describe(root).is_none());
    }

    #[test]
    fn a_standby_that_streamed_lately_may_be_promoted_and_says_why_not_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let (root, role) = (dir.path(), sync_role("db2"));
        let fake = Recording::new();
        fake.on("pg_stat_wal_receiver", 0, &format!("{}\n", journal::now()));
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        let e = may_promote(&c, journal::now()).unwrap_err();
        assert!(e.contains("has not streamed since it booted"), "{e}");
        put(root, paths::SYNC_UNPROTECTED, "1\n");
        tick(&c, false, true).unwrap();
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

        let async_role = fixture_role("db2");
        let c = Ctx::new(root, &async_role, &fake, 0, None, journal_for(&async_role));
        assert!(
            may_promote(&c, journal::now() + 1000).is_ok(),
            "asynchronous: always"
        );
    }
}
