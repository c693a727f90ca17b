//! leader: waits until the DB user can log in, runs the vendor installer's
//! `multi leader` (swarm init) and keeps the join token it prints, and
//! serves that token to the managers through a restricted SSH key.

use anyhow::{Result, bail};

use super::common::{forced_command_user, forced_command_user_check};
use super::db::{db_password, passfile, psql_as_user, vendor_install};
use super::step;
use crate::shared::paths;
use crate::shared::paths::TOKEN_USER;
use crate::shared::role::RoleFile;
use crate::vm::edits;
use crate::vm::engine::{Ctx, Step};
use crate::vm::exec::Cmd;

pub fn steps(_role: &RoleFile) -> Vec<Step> {
    vec![
        step("wait-db", db_check, db_apply),
        step("install-leader", leader_check, leader_apply),
        step("token-user", token_user_check, token_user_apply),
    ]
}

/// Tries to log in as the DB user at the endpoint (not only: is the server
/// up); `Err` says why not.
fn db_login(c: &Ctx) -> std::result::Result<(), String> {
    let db = &c.role.database;
    let passfile = passfile(c, None).map_err(|e| format!("{e:#}"))?;
    let out = c
        .exec
        .output(&psql_as_user(
            c.role,
            &db.endpoint.to_string(),
            &passfile,
            3,
            "SELECT 1",
        ))
        .map_err(|e| format!("{e:#}"))?;
    if out.success() {
        Ok(())
    } else {
        Err(out.stderr.trim().to_string())
    }
}

fn db_check(c: &Ctx) -> Result<bool> {
    Ok(db_login(c).is_ok())
}

fn db_apply(c: &Ctx) -> Result<()> {
    let db = &c.role.database;
    c.wait_for(
        &format!(
            "the database at {}:{} to accept {}'s login",
            db.endpoint, db.port, db.user
        ),
        || db_login(c),
    )
}

pub fn docker_info(c: &Ctx, field: &str) -> String {
    c.exec
        .output(&Cmd::new("docker").args(["info", "--format", &format!("{{{{{field}}}}}")]))
        .map(|o| o.stdout.trim().to_string())
        .unwrap_or_default()
}

fn leader_check(c: &Ctx) -> Result<bool> {
    Ok(
        edits::find_swarm_token(&c.read(paths::TOKEN_FILE)).is_some()
            && docker_info(c, ".Swarm.LocalNodeState") == "active",
    )
}

fn leader_apply(c: &Ctx) -> Result<()> {
    let db = &c.role.database;
    let answers = format!("{}\n{}\n", db.user, db_password(c)?);
    let out = vendor_install(
        c,
        &[
            "multi",
            "leader",
            &db.endpoint.to_string(),
            &db.port.to_string(),
        ],
        Some(answers),
        None,
    )?;
    let token = match edits::find_swarm_token(&out) {
        Some(t) => t,
        None => {
            // The installer did not print it (a re-run on an active swarm).
            let o =
                c.exec
                    .run(&Cmd::new("docker").args(["swarm", "join-token", "-q", "manager"]))?;
            edits::find_swarm_token(&o.stdout).unwrap_or_default()
        }
    };
    if token.is_empty() {
        bail!("the vendor installer printed no swarm join token (SWMTKN-1-…)");
    }
    c.write(paths::TOKEN_FILE, &format!("{token}\n"), 0o640)?;
    Ok(())
}

fn token_user_check(c: &Ctx) -> Result<bool> {
    forced_command_user_check(c, TOKEN_USER, paths::TOKEN_AUTHORIZED_KEYS)
}

fn token_user_apply(c: &Ctx) -> Result<()> {
    forced_command_user(
        c,
        TOKEN_USER,
        "airlock swarm join token for managers",
        paths::TOKEN_AUTHORIZED_KEYS,
    )?;
    // The forced command runs as the token user: it may read the token (0640).
    let token = c.path(paths::TOKEN_FILE).display().to_string();
    c.exec.run(&Cmd::new("chgrp").args([TOKEN_USER, &token]))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::exec::Recording;
    use crate::vm::testing::{fixture_role, journal_for, put};

    #[test]
    fn the_token_user_is_created_with_a_comment_useradd_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("disp1");
        put(
            root,
            paths::TOKEN_AUTHORIZED_KEYS,
            "restrict,command=\"x\" ssh-ed25519 AAAA\n",
        );
        let fake = Recording::new();
        fake.on("id airlock-token", 1, "");
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        token_user_apply(&c).unwrap();
        let cmds = fake.commands();
        let useradd = cmds.iter().find(|l| l.starts_with("useradd ")).unwrap();
        // useradd exits 3 ("invalid comment") on a colon.
        let comment = useradd.split('\'').nth(1).unwrap();
        assert!(!comment.contains(':'), "{useradd}");
        assert_eq!(
            cmds,
            [
                "id airlock-token".to_string(),
                "useradd --system --create-home --shell /bin/sh --comment 'airlock swarm join token for managers' airlock-token".into(),
                "usermod -p '*' airlock-token".into(),
                format!("chown -R airlock-token:airlock-token {}/home/airlock-token/.ssh", root.display()),
                format!("chgrp airlock-token {}/var/lib/airlock/swarm-manager-token", root.display()),
            ]
        );
        assert_eq!(
            c.read("/home/airlock-token/.ssh/authorized_keys"),
            c.read(paths::TOKEN_AUTHORIZED_KEYS)
        );
    }

    #[test]
    fn the_leader_keeps_the_token_the_installer_prints_and_hides_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("disp1");
        put(root, paths::DB_PASSWORD, "pw\n");
        put(root, "/opt/airlock/vendor/install.sh", "");
        let fake = Recording::new();
        fake.on(
            "install.sh multi leader",
            0,
            "To add a manager, run on it:\n    sudo bash install.sh multi manager 192.0.2.21 SWMTKN-1-abcdefghijklmnopqrstuvwxyz0123456789\n",
        );
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        leader_apply(&c).unwrap();
        assert_eq!(
            c.read(paths::TOKEN_FILE),
            "SWMTKN-1-abcdefghijklmnopqrstuvwxyz0123456789\n"
        );
        assert_eq!(
            crate::shared::writer::mode_of(&c.path(paths::TOKEN_FILE)),
            Some(0o640)
        );
        assert!(
            fake.commands()[0]
                .ends_with("install.sh multi leader 192.0.2.10 5432 <(10 bytes on stdin)"),
            "{:?}",
            fake.commands()
        );
    }

    #[test]
    fn wait_db_logs_in_through_the_endpoint_with_a_password_file_not_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("disp1");
        // A password no temporary directory's name can contain.
        put(root, paths::DB_PASSWORD, "Secret-Pw-7\n");
        let fake = Recording::new();
        fake.on_stderr(
            "psql -X -A -t -q -h 192.0.2.10",
            2,
            "psql: error: connection to server at \"192.0.2.10\", port 5432 failed: Connection refused",
        );
        let c = Ctx::new(root, &role, &fake, 3, None, journal_for(&role));
        assert!(!db_check(&c).unwrap());
        let e = format!("{:#}", db_apply(&c).unwrap_err());
        assert!(
            e.contains("the database at 192.0.2.10:5432 to accept dbuser's login")
                && e.contains("Connection refused"),
            "{e}"
        );
        assert_eq!(
            c.journal.borrow().last_attempt.as_deref(),
            Some(
                "psql: error: connection to server at \"192.0.2.10\", port 5432 failed: Connection refused"
            )
        );
        assert_eq!(
            c.read("/var/lib/airlock/pgpass"),
            "*:*:*:dbuser:Secret-Pw-7\n"
        );
        assert_eq!(
            crate::shared::writer::mode_of(&c.path("/var/lib/airlock/pgpass")),
            Some(0o600)
        );
        assert!(
            fake.commands().iter().all(|l| !l.contains("Secret-Pw-7")),
            "{:?}",
            fake.commands()
        );

        let ok = Recording::new();
        let c = Ctx::new(root, &role, &ok, 3, None, journal_for(&role));
        db_apply(&c).unwrap();
        assert_eq!(
            ok.commands(),
            [format!(
                "PGPASSFILE={}/var/lib/airlock/pgpass PGCONNECT_TIMEOUT=3 psql -X -A -t -q -h 192.0.2.10 -p 5432 -U dbuser -d postgres -c 'SELECT 1'",
                root.display()
            )]
        );
    }
}
