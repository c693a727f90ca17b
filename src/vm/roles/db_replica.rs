//! db-replica: waits for the master, installs PostgreSQL like it, replaces
//! the fresh cluster with a base backup of the master, streams from it, and
//! runs keepalived as the standby that takes the VIP (and is promoted) when
//! the master dies.

use anyhow::{Context, Result, bail};

use super::db::{self, is_standby, is_standby_of, local_pg_ready, pg, systemctl};
use super::step;
use crate::shared::role::Peer;
use crate::shared::role::RoleFile;
use crate::vm::engine::{Ctx, Step};
use crate::vm::guard;

pub fn steps(_role: &RoleFile) -> Vec<Step> {
    vec![
        step("wait-master", master_check, master_apply),
        step("install-db", db::install_db_check, db::install_db_apply),
        step("basebackup", standby_check, basebackup_apply),
        step("pg-config", db::pg_config_check, db::pg_config_apply),
        step("streaming", streaming_check, streaming_apply),
        step("keepalived", db::keepalived_check, db::keepalived_apply),
        step(
            "single-primary",
            db::single_primary_check,
            db::single_primary_apply,
        ),
    ]
}

fn source<'a>(c: &Ctx<'a>) -> Result<&'a Peer> {
    pg(c)?
        .replicate_from
        .as_ref()
        .context("no replication source in the role file")
}

/// keepalived promoted this server after a failover: it is the primary now.
fn promoted(c: &Ctx) -> bool {
    guard::promoted(c.root).is_some()
}

fn master_check(c: &Ctx) -> Result<bool> {
    Ok(promoted(c) || db::pg_ready(c, &source(c)?.ip.to_string()))
}

fn master_apply(c: &Ctx) -> Result<()> {
    let src = source(c)?;
    let what = format!(
        "the master {} ({}:{}) to accept connections",
        src.name,
        src.ip,
        pg(c)?.port
    );
    c.wait_until(&what, || db::pg_ready(c, &src.ip.to_string()))
}

fn standby_check(c: &Ctx) -> Result<bool> {
    let dir = db::data_dir(c)?;
    let primary_after_failover =
        promoted(c) && dir.join("PG_VERSION").is_file() && !is_standby(&dir);
    Ok((is_standby_of(&dir, source(c)?.ip) || primary_after_failover) && local_pg_ready(c))
}

fn basebackup_apply(c: &Ctx) -> Result<()> {
    let src = source(c)?;
    let dir = db::data_dir(c)?;
    let has_cluster = dir.join("PG_VERSION").is_file();
    let standby = has_cluster && is_standby_of(&dir, src.ip);
    // Decide before touching anything: a promoted replica keeps serving.
    if has_cluster && !standby && (c.done_before("basebackup") || promoted(c)) {
        bail!(
            "{} holds a primary, not a standby of {} ({}): this host was promoted after a failover and holds the data now. Refusing to wipe it (nothing was stopped). To make it a replica again, first make sure {} is the primary, then remove {} by hand and run airlock-firstboot again",
            dir.display(),
            src.name,
            src.ip,
            src.name,
            dir.display()
        );
    }
    let _ = c.exec.output(&systemctl("stop", "keepalived"));
    c.exec.run(&systemctl("stop", "postgresql"))?;
    if !standby {
        db::replace_with_base_backup(c, src)?;
    }
    c.exec.run(&systemctl("start", "postgresql"))?;
    c.wait_until("the local PostgreSQL to start as a standby", || {
        local_pg_ready(c)
    })
}

fn streaming_check(c: &Ctx) -> Result<bool> {
    Ok(promoted(c) || db::streaming_status(c) == "streaming")
}

fn streaming_apply(c: &Ctx) -> Result<()> {
    db::wait_streaming(c, source(c)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::exec::Recording;
    use crate::vm::testing::{fixture_role, journal_for, put};

    /// db2 with the DB password and the fresh cluster the installer made.
    fn fresh_replica() -> (tempfile::TempDir, RoleFile) {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), crate::shared::paths::DB_PASSWORD, "pw\n");
        put(dir.path(), "/var/lib/postgresql/15/main/PG_VERSION", "15\n");
        (dir, fixture_role("db2"))
    }

    #[test]
    fn the_fresh_cluster_is_replaced_by_a_base_backup_with_a_slot() {
        let (dir, role) = fresh_replica();
        let root = dir.path();
        let fake = Recording::new();
        // The slot exists from an earlier attempt: the second try has no -C.
        fake.on_stderr(
            "--slot=replica -C",
            1,
            "pg_basebackup: error: replication slot \"replica\" already exists",
        );
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        basebackup_apply(&c).unwrap();
        assert!(!root.join("var/lib/postgresql/15/main/PG_VERSION").exists());
        let data = root.join("var/lib/postgresql/15/main");
        let base = format!(
            "runuser -u postgres -- env PGPASSFILE={}/var/lib/airlock/pgpass-postgres pg_basebackup -h 192.0.2.11 -p 5432 -U dbuser --checkpoint=fast -d application_name=db2 -D {} -R --slot=replica",
            root.display(),
            data.display()
        );
        assert_eq!(
            fake.commands(),
            [
                "systemctl stop keepalived".to_string(),
                "systemctl stop postgresql".into(),
                format!("chown postgres:postgres {}", data.display()),
                format!(
                    "chown postgres {}/var/lib/airlock/pgpass-postgres",
                    root.display()
                ),
                format!("{base} -C"),
                base,
                "systemctl start postgresql".into(),
                "pg_isready -q -h /var/run/postgresql -p 5432 -t 2".into(),
            ]
        );
        assert_eq!(crate::shared::writer::mode_of(&data), Some(0o700));
    }

    #[test]
    fn a_promoted_replica_is_never_wiped_and_its_steps_hold() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("db2");
        put(root, "/var/lib/postgresql/15/main/PG_VERSION", "15\n");
        put(root, crate::shared::paths::PROMOTED, "1800000000\n");
        let fake = Recording::new();
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        assert!(standby_check(&c).unwrap());
        assert!(streaming_check(&c).unwrap());
        assert!(master_check(&c).unwrap());
        let e = format!("{:#}", basebackup_apply(&c).unwrap_err());
        assert!(
            e.contains("Refusing to wipe it (nothing was stopped)"),
            "{e}"
        );
        assert!(!fake.ran("systemctl stop"));
        assert!(root.join("var/lib/postgresql/15/main/PG_VERSION").exists());
    }

    #[test]
    fn wait_master_asks_the_master_until_it_answers() {
        let dir = tempfile::tempdir().unwrap();
        let role = fixture_role("db2");
        let fake = Recording::new();
        fake.on_seq("pg_isready -q -h 192.0.2.11", &[(2, ""), (0, "")]);
        let c = Ctx::new(dir.path(), &role, &fake, 60, None, journal_for(&role));
        master_apply(&c).unwrap();
        assert_eq!(
            fake.log(),
            [
                "+ pg_isready -q -h 192.0.2.11 -p 5432 -t 2",
                "sleep 1s",
                "+ pg_isready -q -h 192.0.2.11 -p 5432 -t 2",
            ]
        );
        assert!(master_check(&c).unwrap());
    }

    #[test]
    fn streaming_waits_for_the_wal_receiver_and_says_what_it_is_doing() {
        let dir = tempfile::tempdir().unwrap();
        let role = fixture_role("db2");
        let fake = Recording::new();
        fake.on_seq(
            "pg_stat_wal_receiver",
            &[(0, ""), (0, "startup\n"), (0, "streaming\n")],
        );
        let c = Ctx::new(dir.path(), &role, &fake, 60, None, journal_for(&role));
        streaming_apply(&c).unwrap();
        let psql = "runuser -u postgres -- psql -X -A -t -q -h /var/run/postgresql -p 5432 -c 'SELECT status FROM pg_stat_wal_receiver'";
        assert_eq!(fake.commands(), [psql, psql, psql]);
        assert!(streaming_check(&c).unwrap());

        let stuck = Recording::new();
        stuck.on("pg_stat_wal_receiver", 0, "waiting\n");
        let c = Ctx::new(dir.path(), &role, &stuck, 5, None, journal_for(&role));
        let e = format!("{:#}", streaming_apply(&c).unwrap_err());
        assert!(
            e.contains("streaming replication from db1 (192.0.2.11)")
                && e.contains("the WAL receiver is waiting"),
            "{e}"
        );
        assert!(!streaming_check(&c).unwrap());
    }

    #[test]
    fn a_master_that_is_restarting_is_waited_for_and_another_error_is_not() {
        let (dir, role) = fresh_replica();
        let root = dir.path();
        let fake = Recording::new();
        fake.on_stderr_seq(
            "pg_basebackup",
            &[
                (1, "pg_basebackup: error: connection to server at \"192.0.2.11\", port 5432 failed: Connection refused"),
                (1, "pg_basebackup: error: FATAL:  the database system is starting up"),
                (0, ""),
            ],
        );
        let c = Ctx::new(root, &role, &fake, 60, None, journal_for(&role));
        db::replace_with_base_backup(&c, &source(&c).unwrap().clone()).unwrap();
        let tries = fake
            .commands()
            .iter()
            .filter(|l| l.contains("pg_basebackup"))
            .count();
        assert_eq!(tries, 3);
        assert!(fake.log().contains(&"sleep 1s".to_string()));

        let fake = Recording::new();
        fake.on_stderr(
            "pg_basebackup",
            1,
            "pg_basebackup: error: FATAL:  password authentication failed for user \"dbuser\"",
        );
        let c = Ctx::new(root, &role, &fake, 60, None, journal_for(&role));
        let e = db::replace_with_base_backup(&c, &source(&c).unwrap().clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("password authentication failed"), "{e}");
        assert!(
            !fake.log().iter().any(|l| l.starts_with("sleep")),
            "no wait for that"
        );
    }
}
