//! What both database servers do: the vendor installer's `db`, pg_hba and
//! postgresql.conf, keepalived, and the check that this server is not a
//! second writable primary. Used by [`super::db_master`] and
//! [`super::db_replica`].

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::shared::paths;
use crate::shared::render;
use crate::shared::role::{DatabaseMode, Peer, Postgres, RoleFile};
use crate::vm::edits;
use crate::vm::engine::Ctx;
use crate::vm::exec::Cmd;
use crate::vm::guard;

/// The socket directory of Debian's (and Astra's) PostgreSQL.
pub const SOCKET_DIR: &str = "/var/run/postgresql";

pub fn pg<'a>(c: &Ctx<'a>) -> Result<&'a Postgres> {
    c.role
        .host
        .postgres
        .as_ref()
        .context("this host has no PostgreSQL in its role file")
}

pub fn pair(c: &Ctx) -> bool {
    c.role.database.mode == DatabaseMode::Pair
}

/// Where postgresql.conf and pg_hba.conf are (Debian's layout).
pub fn conf_dir(c: &Ctx) -> Result<String> {
    Ok(format!("/etc/postgresql/{}/main", pg(c)?.major))
}

pub fn data_dir(c: &Ctx) -> Result<PathBuf> {
    Ok(c.path(&pg(c)?.data_dir))
}

pub fn db_password(c: &Ctx) -> Result<String> {
    let p = c.path(paths::DB_PASSWORD);
    let t = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(t.lines().next().unwrap_or("").to_string())
}

/// psql as the postgres superuser on the local server.
pub fn psql_local(c: &Ctx, sql: &str) -> Cmd {
    psql_local_cmd(c.role, sql)
}

/// [`psql_local`] with several statements, each its own `-c` (so each
/// runs outside a transaction block, as ALTER SYSTEM must), in one process.
pub fn psql_local_each(c: &Ctx, sqls: &[&str]) -> Cmd {
    let mut cmd = psql_local_cmd(c.role, sqls.first().copied().unwrap_or(""));
    for sql in sqls.iter().skip(1) {
        cmd = cmd.args(["-c", sql]);
    }
    cmd
}

/// [`psql_local`] outside a step.
pub fn psql_local_cmd(role: &RoleFile, sql: &str) -> Cmd {
    Cmd::new("runuser").args([
        "-u",
        "postgres",
        "--",
        "psql",
        "-X",
        "-A",
        "-t",
        "-q",
        "-h",
        SOCKET_DIR,
        "-p",
        &role.database.port.to_string(),
        "-c",
        sql,
    ])
}

/// psql as the DB user on another server (`host`), the password from
/// `passfile`, giving up a connection after `timeout` seconds; unaligned
/// tuples only, so the answer is the bare value.
pub fn psql_as_user(role: &RoleFile, host: &str, passfile: &Path, timeout: u32, sql: &str) -> Cmd {
    let db = &role.database;
    Cmd::new("psql")
        .args(["-X", "-A", "-t", "-q", "-h", host, "-p"])
        .arg(db.port.to_string())
        .args(["-U", &db.user, "-d", "postgres", "-c", sql])
        .env("PGPASSFILE", passfile.display().to_string())
        .env("PGCONNECT_TIMEOUT", timeout.to_string())
}

/// A libpq password file for the DB user, 0600, owned by `owner`.
pub fn passfile(c: &Ctx, owner: Option<&str>) -> Result<PathBuf> {
    let name = owner.map_or("pgpass".to_string(), |o| format!("pgpass-{o}"));
    let vm_path = format!("/var/lib/airlock/{name}");
    let user = &c.role.database.user;
    c.write(
        &vm_path,
        &format!("*:*:*:{user}:{}\n", db_password(c)?),
        0o600,
    )?;
    let p = c.path(&vm_path);
    if let Some(o) = owner {
        c.exec
            .run(&Cmd::new("chown").args([o, &p.display().to_string()]))?;
    }
    Ok(p)
}

pub fn systemctl(action: &str, unit: &str) -> Cmd {
    Cmd::new("systemctl").args([action, unit])
}

pub fn pg_ready(c: &Ctx, host: &str) -> bool {
    c.exec.ok(&Cmd::new("pg_isready").args([
        "-q",
        "-h",
        host,
        "-p",
        &c.role.database.port.to_string(),
        "-t",
        "2",
    ]))
}

pub fn local_pg_ready(c: &Ctx) -> bool {
    pg_ready(c, SOCKET_DIR)
}

/// The vendor's install.sh: its prompts answered on stdin, the PostgreSQL
/// major the plan expects in `PG_MAJOR`, and a secret its command line
/// insists on (the join token) last, hidden in logs.
pub fn vendor_install(
    c: &Ctx,
    args: &[&str],
    answers: Option<String>,
    secret_last: Option<&str>,
) -> Result<String> {
    let script = c.path(&format!("{}/install.sh", c.role.vendor_dir));
    if !script.is_file() {
        bail!(
            "{} is missing: the vendor disc's files must be at {} (airlock-firstboot prepare puts them there)",
            script.display(),
            c.role.vendor_dir
        );
    }
    let mut cmd = Cmd::new("bash")
        .arg(script.display().to_string())
        .args(args.iter().copied())
        .env("PG_MAJOR", c.role.database.postgresql.to_string());
    if let Some(a) = answers {
        cmd = cmd.stdin(a);
    }
    if let Some(secret) = secret_last {
        cmd = cmd.secret_arg(secret);
    }
    Ok(c.exec.run(&cmd)?.stdout)
}

/// A data directory in standby mode (PostgreSQL 12+ `standby.signal`, 11
/// `recovery.conf`).
pub fn is_standby(dir: &Path) -> bool {
    dir.join("standby.signal").is_file() || dir.join("recovery.conf").is_file()
}

/// The data directory is a standby streaming from `master`.
pub fn is_standby_of(dir: &Path, master: Ipv4Addr) -> bool {
    let conninfo = [dir.join("postgresql.auto.conf"), dir.join("recovery.conf")]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .any(|t| t.contains(&format!("host={master}")) || t.contains(&format!("host='{master}'")));
    is_standby(dir) && conninfo
}

/// Replaces the data directory (the fresh cluster the vendor installer made
/// on this clone) with a base backup of the master. `-R` writes the standby
/// settings; the connection's `application_name` (this host's name) goes
/// into their `primary_conninfo`, so the primary's
/// `synchronous_standby_names` can name this standby's WAL receiver (as
/// `rejoin` writes it too).
pub fn replace_with_base_backup(c: &Ctx, src: &Peer) -> Result<()> {
    let pg = pg(c)?;
    let dir = data_dir(c)?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::shared::writer::set_mode(&dir, 0o700)?;
    let dir_s = dir.display().to_string();
    c.exec
        .run(&Cmd::new("chown").args(["postgres:postgres", &dir_s]))?;
    let slot = pg
        .slot
        .clone()
        .unwrap_or_else(|| crate::shared::paths::REPLICATION_SLOT.into());
    let passfile = passfile(c, Some("postgres"))?;
    let base = Cmd::new("runuser").args([
        "-u",
        "postgres",
        "--",
        "env",
        &format!("PGPASSFILE={}", passfile.display()),
        "pg_basebackup",
        "-h",
        &src.ip.to_string(),
        "-p",
        &pg.port.to_string(),
        "-U",
        &pg.user,
        "--checkpoint=fast",
        "-d",
        &format!("application_name={}", c.role.host.name),
        "-D",
        &dir_s,
        "-R",
        &format!("--slot={slot}"),
    ]);
    // The source may be restarting (its own pg-config step restarts it
    // once): a refused connection is waited out, anything else is an error.
    let mut failed = None;
    c.wait_for(
        &format!("a base backup from {} ({})", src.name, src.ip),
        || match base_backup(c, &base) {
            Ok(()) => Ok(()),
            Err(why) if source_not_up(&why) => Err(why),
            Err(why) => {
                failed = Some(why);
                Ok(())
            }
        },
    )?;
    match failed {
        Some(why) => bail!("{why}"),
        None => Ok(()),
    }
}

/// One `pg_basebackup`: with -C to create the slot; when it exists already
/// (an earlier attempt), pg_basebackup refuses, cleans up, and runs again
/// without -C.
fn base_backup(c: &Ctx, base: &Cmd) -> std::result::Result<(), String> {
    let with_slot = base.clone().arg("-C");
    let failed = |cmd: &Cmd, stderr: &str| format!("`{}` failed: {}", cmd.line(), stderr.trim());
    let first = c.exec.output(&with_slot).map_err(|e| format!("{e:#}"))?;
    if first.success() {
        return Ok(());
    }
    if !first.stderr.contains("already exists") {
        return Err(failed(&with_slot, &first.stderr));
    }
    let second = c.exec.output(base).map_err(|e| format!("{e:#}"))?;
    if second.success() {
        Ok(())
    } else {
        Err(failed(base, &second.stderr))
    }
}

/// libpq's words for a server that is not accepting connections (yet).
fn source_not_up(why: &str) -> bool {
    [
        "Connection refused",
        "the database system is starting up",
        "the database system is shutting down",
        "No route to host",
    ]
    .iter()
    .any(|w| why.contains(w))
}

/// What the local WAL receiver says (`streaming` when it streams).
pub fn streaming_status(c: &Ctx) -> String {
    c.exec
        .output(&psql_local(c, "SELECT status FROM pg_stat_wal_receiver"))
        .map(|o| o.stdout.trim().to_string())
        .unwrap_or_default()
}

/// Waits until the local server streams from `src`.
pub fn wait_streaming(c: &Ctx, src: &Peer) -> Result<()> {
    c.wait_for(
        &format!("streaming replication from {} ({})", src.name, src.ip),
        || match streaming_status(c) {
            s if s == "streaming" => Ok(()),
            s if s.is_empty() => Err("no WAL receiver yet".into()),
            s => Err(format!("the WAL receiver is {s}")),
        },
    )
}

// --- install-db ----------------------------------------------------------------

/// The PostgreSQL majors installed (`/usr/lib/postgresql/MAJOR`).
fn installed_majors(c: &Ctx) -> Vec<u32> {
    let mut v: Vec<u32> = fs::read_dir(c.path("/usr/lib/postgresql"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// The plan's major is the one installed, or a message saying what to do.
fn major_problem(c: &Ctx) -> Result<Option<String>> {
    let want = pg(c)?.major;
    if c.path(&format!("/usr/lib/postgresql/{want}/bin/postgres"))
        .exists()
    {
        return Ok(None);
    }
    let have = installed_majors(c);
    Ok(Some(if have.is_empty() {
        format!(
            "PostgreSQL {want} is not installed (no /usr/lib/postgresql/{want}/bin/postgres): the vendor installer did not install it"
        )
    } else {
        let list: Vec<String> = have.iter().map(u32::to_string).collect();
        format!(
            "the recipe says database.postgresql = {want}, but this VM has PostgreSQL {}: set database.postgresql = {} in the recipe and build the bundle again",
            list.join(", "),
            list.last().expect("not empty")
        )
    }))
}

pub fn install_db_check(c: &Ctx) -> Result<bool> {
    if major_problem(c)?.is_some() || !local_pg_ready(c) {
        return Ok(false);
    }
    let user = &c.role.database.user;
    let out = c.exec.output(&psql_local(
        c,
        &format!(
            "SELECT 1 FROM pg_roles WHERE rolname = '{}' AND rolcanlogin",
            user.replace('\'', "''")
        ),
    ))?;
    Ok(out.success() && out.stdout.trim() == "1")
}

pub fn install_db_apply(c: &Ctx) -> Result<()> {
    // A power cut in the middle of an earlier installation leaves dpkg
    // half-configured: finish that first.
    c.exec.run(&Cmd::new("dpkg").args(["--configure", "-a"]))?;
    let answers = format!("{}\n{}\n", c.role.database.user, db_password(c)?);
    vendor_install(c, &["db"], Some(answers), None)?;
    if let Some(problem) = major_problem(c)? {
        bail!("{problem}");
    }
    Ok(())
}

// --- pg-config -----------------------------------------------------------------

fn hba_lines(c: &Ctx) -> String {
    render::pg_hba_lines(c.role).unwrap_or_default()
}

pub fn pg_config_check(c: &Ctx) -> Result<bool> {
    let dir = conf_dir(c)?;
    let hba = c.read(&format!("{dir}/pg_hba.conf"));
    let conf = c.read(&format!("{dir}/postgresql.conf"));
    let guard_ok = !pair(c) || c.read(paths::PG_GUARD_DROPIN) == render::pg_guard_dropin();
    Ok(!hba.is_empty()
        && edits::pg_hba_with(&hba, &hba_lines(c)) == hba
        && conf_settings(c).iter().all(|(k, v)| conf_has(&conf, k, v))
        && guard_ok)
}

/// What postgresql.conf must say, as (key, value as written). In a pair,
/// `wal_log_hints` lets `airlock-firstboot rejoin` rewind a former primary
/// with pg_rewind instead of copying the whole cluster again, and a
/// walsender (a walreceiver) gives up a silent peer after 10 s, not 60,
/// so a primary cut off from its standby stops, and both sides see the cut,
/// in time. With `synchronous`, a commit waits for the peer's WAL receiver,
/// named (its `application_name` is its host name: base backup and rejoin
/// write it), so no other replication connection can stand in for it;
/// `crate::vm::sync` degrades and restores.
fn conf_settings(c: &Ctx) -> Vec<(&'static str, String)> {
    let mut v = vec![("listen_addresses", "'*'".to_string())];
    if pair(c) {
        v.push(("wal_log_hints", "on".into()));
        v.push(("wal_sender_timeout", "'10s'".into()));
        v.push(("wal_receiver_timeout", "'10s'".into()));
        if c.role.database.synchronous
            && let Some(names) = crate::vm::sync::standby_names(c.role)
        {
            v.push(("synchronous_standby_names", names));
            v.push(("synchronous_commit", "on".into()));
        }
    }
    v
}

/// `key` is set to `value` (quotes aside).
fn conf_has(conf: &str, key: &str, value: &str) -> bool {
    edits::pg_conf_get(conf, key).as_deref() == Some(value.trim_matches('\''))
}

pub fn pg_config_apply(c: &Ctx) -> Result<()> {
    let dir = conf_dir(c)?;
    let hba_path = format!("{dir}/pg_hba.conf");
    let conf_path = format!("{dir}/postgresql.conf");
    let read = |p: &str| fs::read_to_string(c.path(p)).with_context(|| format!("reading {p}"));
    let (hba, conf) = (read(&hba_path)?, read(&conf_path)?);
    let new_hba = edits::pg_hba_with(&hba, &hba_lines(c));
    if new_hba != hba {
        c.rewrite(&hba_path, &new_hba)?;
    }
    // Both settings take effect only at a restart.
    let mut new_conf = conf.clone();
    for (key, value) in conf_settings(c) {
        if !conf_has(&new_conf, key, &value) {
            new_conf = edits::pg_conf_with(&new_conf, key, &value);
        }
    }
    let restart = new_conf != conf;
    if restart {
        c.rewrite(&conf_path, &new_conf)?;
    }
    let action = if restart { "restart" } else { "reload" };
    c.exec.run(&systemctl(action, "postgresql"))?;
    // The start guard comes after this step's own restart: at the first
    // installation there is no failover to guard against, and a guard
    // would wait its full bound for a peer that has no PostgreSQL yet.
    if pair(c) && c.write(paths::PG_GUARD_DROPIN, &render::pg_guard_dropin(), 0o644)? {
        c.exec.run(&Cmd::new("systemctl").arg("daemon-reload"))?;
    }
    Ok(())
}

// --- keepalived ------------------------------------------------------------------

/// keepalived.conf and its scripts, as this host's role renders them.
fn keepalived_files(c: &Ctx) -> Result<Vec<(String, u32, String)>> {
    let conf =
        render::keepalived_conf(c.role).context("this host has no keepalived configuration")?;
    let mut files = vec![
        ("/etc/keepalived/keepalived.conf".to_string(), 0o644, conf),
        (
            format!("{}/pg-ready.sh", paths::KEEPALIVED_SCRIPTS),
            0o755,
            render::pg_ready_script(c.role),
        ),
    ];
    if c.role.host.vrrp.as_ref().is_some_and(|v| v.promote) {
        files.push((
            format!("{}/promote.sh", paths::KEEPALIVED_SCRIPTS),
            0o755,
            render::promote_script(c.role),
        ));
    }
    Ok(files)
}

pub fn keepalived_check(c: &Ctx) -> Result<bool> {
    let files_ok = keepalived_files(c)?.iter().all(|(p, mode, content)| {
        c.read(p) == *content && crate::shared::writer::mode_of(&c.path(p)) == Some(*mode)
    });
    Ok(files_ok && c.exec.ok(&systemctl("is-active", "keepalived")))
}

pub fn keepalived_apply(c: &Ctx) -> Result<()> {
    if !c
        .exec
        .ok(&Cmd::new("sh").args(["-c", "command -v keepalived"]))
    {
        c.exec
            .run(&Cmd::new("apt-get").args(["install", "-y", "-q", "keepalived"]))?;
    }
    for (p, mode, content) in keepalived_files(c)? {
        c.write(&p, &content, mode)?;
    }
    // keepalived watches this file; PostgreSQL's unit keeps it current from
    // its next start on. Until then it says what holds now.
    if !c.path(paths::PG_DOWN).exists() {
        let down = if local_pg_ready(c) { "0\n" } else { "1\n" };
        c.write(paths::PG_DOWN, down, 0o644)?;
    }
    c.exec.run(&systemctl("enable", "keepalived"))?;
    c.exec.run(&systemctl("restart", "keepalived"))?;
    Ok(())
}

// --- single-primary ---------------------------------------------------------------

pub fn single_primary_check(c: &Ctx) -> Result<bool> {
    Ok(guard::Fence::load(c.root).is_none())
}

/// Fenced because the peer is the primary now: with `database.rejoin =
/// "auto"` it re-joins as the peer's standby (its data kept aside), else it
/// stays read-only and says what to do.
pub fn single_primary_apply(c: &Ctx) -> Result<()> {
    let f = guard::Fence::load(c.root).context("the fence record vanished")?;
    if !f.isolated && c.role.database.rejoin == crate::shared::role::Rejoin::Auto {
        eprintln!(
            "airlock-firstboot: {} is the primary now; re-joining it as a standby (database.rejoin = \"auto\")",
            f.peer
        );
        let r = crate::vm::rejoin::rejoin(c)?;
        eprintln!(
            "airlock-firstboot: re-joined; the old data directory is kept at {}",
            r.old_data.display()
        );
        return Ok(());
    }
    bail!("{}", f.explain(&data_dir(c)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::exec::Recording;
    use crate::vm::testing::{fixture_role, journal_for, put};

    #[test]
    fn install_db_passes_the_major_and_refuses_another_one_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("db1");
        put(root, paths::DB_PASSWORD, "s3cret\n");
        put(root, "/opt/airlock/vendor/install.sh", "#!/bin/sh\n");
        put(root, "/usr/lib/postgresql/11/bin/postgres", "");
        let fake = Recording::new();
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        let e = format!("{:#}", install_db_apply(&c).unwrap_err());
        assert!(
            e.contains("database.postgresql = 15")
                && e.contains("this VM has PostgreSQL 11")
                && e.contains("set database.postgresql = 11"),
            "{e}"
        );
        let cmds = fake.commands();
        assert_eq!(cmds[0], "dpkg --configure -a");
        assert_eq!(
            cmds[1],
            format!(
                "PG_MAJOR=15 bash {}/opt/airlock/vendor/install.sh db <(14 bytes on stdin)",
                root.display()
            )
        );
        assert!(!cmds.concat().contains("s3cret"));
    }

    #[test]
    fn pg_config_edits_in_place_keeping_the_file_and_installs_the_guard() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("db2");
        put(
            root,
            "/etc/postgresql/15/main/pg_hba.conf",
            "local all all peer\n",
        );
        put(
            root,
            "/etc/postgresql/15/main/postgresql.conf",
            "#listen_addresses = 'localhost'\nport = 5432\n",
        );
        let fake = Recording::new();
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        assert!(!pg_config_check(&c).unwrap());
        pg_config_apply(&c).unwrap();
        assert!(pg_config_check(&c).unwrap());
        let hba = c.read("/etc/postgresql/15/main/pg_hba.conf");
        assert!(hba.starts_with("# airlock"), "{hba}");
        assert!(hba.contains("host replication dbuser 192.0.2.11/32 md5"));
        assert_eq!(
            fake.commands(),
            ["systemctl restart postgresql", "systemctl daemon-reload"]
        );
        assert!(c.read(paths::PG_GUARD_DROPIN).contains("pg-guard %i"));
        let conf = c.read("/etc/postgresql/15/main/postgresql.conf");
        assert_eq!(
            conf,
            "#listen_addresses = 'localhost'\nport = 5432\nlisten_addresses = '*'\t# airlock\nwal_log_hints = on\t# airlock\nwal_sender_timeout = '10s'\t# airlock\nwal_receiver_timeout = '10s'\t# airlock\n"
        );
        // Done again, nothing changes and nothing restarts.
        let again = Recording::new();
        let c = Ctx::new(root, &role, &again, 0, None, journal_for(&role));
        pg_config_apply(&c).unwrap();
        assert_eq!(again.commands(), ["systemctl reload postgresql"]);
        assert_eq!(c.read("/etc/postgresql/15/main/postgresql.conf"), conf);
    }

    #[test]
    fn keepalived_is_rendered_by_the_runner_and_restarted() {
        let dir = tempfile::tempdir().unwrap();
        let role = fixture_role("db1");
        let fake = Recording::new();
        fake.on("systemctl is-active keepalived", 3, "");
        let c = Ctx::new(dir.path(), &role, &fake, 0, None, journal_for(&role));
        keepalived_apply(&c).unwrap();
        assert_eq!(
            fake.commands(),
            [
                "sh -c 'command -v keepalived'",
                "pg_isready -q -h /var/run/postgresql -p 5432 -t 2",
                "systemctl enable keepalived",
                "systemctl restart keepalived"
            ]
        );
        assert_eq!(c.read(paths::PG_DOWN), "0\n");
        let conf = c.read("/etc/keepalived/keepalived.conf");
        // The real path, never a test root.
        assert!(conf.contains("script \"/etc/airlock/keepalived/pg-ready.sh\""));
        assert_eq!(
            crate::shared::writer::mode_of(&c.path("/etc/airlock/keepalived/promote.sh")),
            Some(0o755)
        );
        assert!(!keepalived_check(&c).unwrap(), "not active yet");
    }
}
