//! db-master: the vendor installer's `db`, the replication lines, and (in a
//! pair) keepalived with the VIP.

use anyhow::{Context, Result};

use super::db::{self, pair};
use super::step;
use crate::shared::role::DatabaseMode;
use crate::shared::role::RoleFile;
use crate::vm::engine::{Ctx, Step};

pub fn steps(role: &RoleFile) -> Vec<Step> {
    let mut v = vec![
        step("install-db", db::install_db_check, db::install_db_apply),
        step("pg-config", db::pg_config_check, db::pg_config_apply),
    ];
    if role.database.mode == DatabaseMode::Pair {
        v.push(step(
            "keepalived",
            db::keepalived_check,
            db::keepalived_apply,
        ));
        v.push(step("vip-ready", vip_check, vip_apply));
        v.push(step(
            "single-primary",
            db::single_primary_check,
            db::single_primary_apply,
        ));
    }
    v
}

fn vip_check(c: &Ctx) -> Result<bool> {
    Ok(pair(c)
        && c.role
            .database
            .vip
            .is_some_and(|vip| db::pg_ready(c, &vip.to_string())))
}

fn vip_apply(c: &Ctx) -> Result<()> {
    let vip = c.role.database.vip.context("no VIP in a pair")?;
    c.wait_until(
        &format!(
            "PostgreSQL to answer on the VIP {vip}:{}",
            c.role.database.port
        ),
        || db::pg_ready(c, &vip.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::exec::Recording;
    use crate::vm::testing::{fixture_role, journal_for, put};

    #[test]
    fn vip_ready_waits_for_postgresql_on_the_vip_and_names_it_when_the_bound_runs_out() {
        let dir = tempfile::tempdir().unwrap();
        let role = fixture_role("db1");
        let fake = Recording::new();
        fake.on_seq("pg_isready -q -h 192.0.2.10", &[(2, ""), (2, ""), (0, "")]);
        let c = Ctx::new(dir.path(), &role, &fake, 60, None, journal_for(&role));
        assert!(!vip_check(&c).unwrap());
        vip_apply(&c).unwrap();
        assert_eq!(
            fake.log(),
            [
                "+ pg_isready -q -h 192.0.2.10 -p 5432 -t 2",
                "+ pg_isready -q -h 192.0.2.10 -p 5432 -t 2",
                "sleep 1s",
                "+ pg_isready -q -h 192.0.2.10 -p 5432 -t 2",
            ]
        );
        assert_eq!(c.journal.borrow().waiting_for, None);

        let never = Recording::new();
        never.on("pg_isready", 2, "");
        let c = Ctx::new(dir.path(), &role, &never, 10, None, journal_for(&role));
        let e = format!("{:#}", vip_apply(&c).unwrap_err());
        assert!(
            e.contains("PostgreSQL to answer on the VIP 192.0.2.10:5432"),
            "{e}"
        );
        assert_eq!(
            c.journal.borrow().waiting_for.as_deref(),
            Some("PostgreSQL to answer on the VIP 192.0.2.10:5432")
        );
    }

    #[test]
    fn single_primary_holds_until_the_guard_fences_this_server() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("db1");
        let fake = Recording::new();
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        assert!(db::single_primary_check(&c).unwrap());
        put(
            root,
            crate::shared::paths::FENCED,
            r#"{"since":1800000000,"peer":"db2","peer_ip":"192.0.2.12","reason":"it answers as a primary"}"#,
        );
        assert!(!db::single_primary_check(&c).unwrap());
        let e = db::single_primary_apply(&c).unwrap_err().to_string();
        assert!(
            e.starts_with("NOT A PRIMARY") && e.contains("its peer db2 (192.0.2.12)"),
            "{e}"
        );
        assert!(
            fake.log().is_empty(),
            "the step only reports: {:?}",
            fake.log()
        );
    }

    #[test]
    fn with_rejoin_auto_single_primary_rejoins_the_fenced_server_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut role = fixture_role("db1");
        role.database.rejoin = crate::shared::role::Rejoin::Auto;
        put(root, crate::shared::paths::DB_PASSWORD, "pw\n");
        put(root, "/var/lib/postgresql/15/main/PG_VERSION", "15\n");
        put(root, "/var/lib/postgresql/15/main/standby.signal", "");
        put(
            root,
            crate::shared::paths::FENCED,
            r#"{"since":1800000000,"peer":"db2","peer_ip":"192.0.2.12","reason":"it answers as a primary"}"#,
        );
        let fake = Recording::new();
        fake.on("SELECT pg_is_in_recovery()", 0, "f\n");
        fake.on("pg_stat_wal_receiver", 0, "streaming\n");
        let c = Ctx::new(root, &role, &fake, 60, None, journal_for(&role));
        db::single_primary_apply(&c).unwrap();
        assert!(db::single_primary_check(&c).unwrap(), "the fence is gone");
        assert!(fake.ran("pg_rewind"));
        assert!(fake.ran("cp -a --reflink=auto"), "the old data kept aside");
    }
}
