//! The roles as named steps. Each step has a check (does its effect hold?)
//! and an action; the runner skips a step whose effect holds, so re-runs and
//! runs after a power cut converge on the same state.
//!
//! Every path on the VM is taken under `ctx.root` (`/` in production, a
//! temporary directory in tests); every command goes through the one
//! [`Runner`]; waits are bounded and say what they wait for.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::edits;
use crate::journal::{Journal, StepState};
use crate::payload;
use crate::plan::DatabaseMode;
use crate::recipe::Role;
use crate::role::{RoleFile, paths};
use crate::runner::{Cmd, Runner};

/// A wait that ran out: the runner exits "will retry" (75) and says what it
/// waited for.
#[derive(Debug, thiserror::Error)]
#[error("gave up after {seconds} s waiting for {what}")]
pub struct WaitTimeout {
    pub what: String,
    pub seconds: u64,
}

/// Everything a step needs.
pub struct Ctx<'a> {
    pub root: &'a Path,
    pub role: &'a RoleFile,
    pub runner: Runner,
    /// Upper bound of each wait, seconds.
    pub wait_bound: u64,
    /// The journal as it was before this run (what was done on this VM).
    pub before: Option<&'a Journal>,
}

impl Ctx<'_> {
    /// `p` (absolute on the VM) under the root.
    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// Acting on the machine itself (not a prepared root directory).
    pub fn live(&self) -> bool {
        self.root == Path::new("/")
    }

    fn pg(&self) -> Result<&crate::plan::PostgresPlan> {
        self.role
            .host
            .postgres
            .as_ref()
            .context("this host has no PostgreSQL in its role file")
    }

    /// Where postgresql.conf and pg_hba.conf are: Debian's
    /// /etc/postgresql/MAJOR/main, or `AIRLOCK_PG_CONF_DIR` (a cluster made by
    /// initdb keeps them in its data directory).
    pub fn pg_conf_dir(&self) -> Result<PathBuf> {
        Ok(match std::env::var("AIRLOCK_PG_CONF_DIR") {
            Ok(d) => PathBuf::from(d),
            Err(_) => self.path(&format!("/etc/postgresql/{}/main", self.pg()?.major)),
        })
    }

    pub fn data_dir(&self) -> Result<PathBuf> {
        Ok(self.path(&self.pg()?.data_dir))
    }

    fn db_password(&self) -> Result<String> {
        let p = self.path(paths::DB_PASSWORD);
        let t = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        Ok(t.lines().next().unwrap_or("").to_string())
    }

    /// psql as the postgres superuser on the local server (socket in PGHOST).
    fn psql_local(&self, sql: &str) -> Cmd {
        Cmd::new("runuser").args([
            "-u",
            "postgres",
            "--",
            "psql",
            "-X",
            "-A",
            "-t",
            "-q",
            "-p",
            &self.role.database.port.to_string(),
            "-c",
            sql,
        ])
    }

    /// A libpq password file for the DB user, 0600, owned by `owner`.
    fn passfile(&self, owner: Option<&str>) -> Result<PathBuf> {
        let name = owner.map_or("pgpass".to_string(), |o| format!("pgpass-{o}"));
        let p = self.path(&format!("/var/lib/airlock/{name}"));
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir)?;
        }
        let user = &self.role.database.user;
        crate::writer::Writer::write(
            &mut crate::writer::RootWriter::new(p.parent().expect("has a parent")),
            &name,
            format!("*:*:*:{user}:{}\n", self.db_password()?).as_bytes(),
            0o600,
        )?;
        if let Some(o) = owner {
            self.runner
                .run(&Cmd::new("chown").args([o, &p.display().to_string()]))?;
        }
        Ok(p)
    }

    fn systemctl(&self, action: &str, unit: &str) -> Cmd {
        Cmd::new("systemctl").args([action, unit])
    }

    /// Waits until `check` holds, backing off from 1 to 5 s, at most
    /// `wait_bound` seconds; says what it waits for.
    fn wait_for(&self, what: &str, mut check: impl FnMut() -> bool) -> Result<()> {
        let start = Instant::now();
        let mut pause = Duration::from_secs(1);
        let mut said = false;
        loop {
            if check() {
                return Ok(());
            }
            if start.elapsed().as_secs() >= self.wait_bound {
                return Err(WaitTimeout {
                    what: what.to_string(),
                    seconds: self.wait_bound,
                }
                .into());
            }
            if !said {
                eprintln!(
                    "airlock-firstboot: waiting for {what} (at most {} s)",
                    self.wait_bound
                );
                said = true;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    fn pg_ready(&self, host: &str) -> bool {
        self.runner.ok(&Cmd::new("pg_isready").args([
            "-q",
            "-h",
            host,
            "-p",
            &self.role.database.port.to_string(),
            "-t",
            "2",
        ]))
    }

    fn local_pg_ready(&self) -> bool {
        let host = std::env::var("PGHOST").unwrap_or_else(|_| "/var/run/postgresql".into());
        self.pg_ready(&host)
    }

    /// The vendor's install.sh: its prompts answered on stdin, and a secret
    /// its command line insists on (the join token) last, hidden in logs.
    fn vendor_install(
        &self,
        args: &[&str],
        answers: Option<String>,
        secret_last: Option<&str>,
    ) -> Result<String> {
        let dir = self.path(&self.role.vendor_dir);
        let script = dir.join("install.sh");
        if !script.is_file() {
            bail!(
                "{} is missing: the vendor disc's files must be at {} (airlock-firstboot prepare puts them there)",
                script.display(),
                self.role.vendor_dir
            );
        }
        let mut cmd = Cmd::new("bash")
            .arg(script.display().to_string())
            .args(args.iter().copied());
        if let Some(a) = answers {
            cmd = cmd.stdin(a);
        }
        if let Some(secret) = secret_last {
            cmd = cmd.secret_arg(secret);
        }
        Ok(self.runner.run(&cmd)?.stdout)
    }

    fn write(&self, vm_path: &str, content: &str, mode: u32) -> Result<bool> {
        crate::writer::Writer::write(
            &mut crate::writer::RootWriter::new(self.root),
            vm_path.trim_start_matches('/'),
            content.as_bytes(),
            mode,
        )
    }
}

/// One step of a role.
pub struct Step {
    pub name: &'static str,
    /// Does the step's effect hold?
    pub check: fn(&Ctx) -> Result<bool>,
    pub apply: fn(&Ctx) -> Result<()>,
}

/// The steps of this host's role, in order.
pub fn steps_for(role: &RoleFile) -> Vec<Step> {
    let mut v = vec![
        Step {
            name: "identity",
            check: identity_check,
            apply: identity_apply,
        },
        Step {
            name: "repository",
            check: repository_check,
            apply: repository_apply,
        },
        Step {
            name: "clone-hygiene",
            check: hygiene_check,
            apply: hygiene_apply,
        },
    ];
    let pair = role.database.mode == DatabaseMode::Pair;
    match role.host.role {
        Role::DbMaster => {
            v.push(Step {
                name: "install-db",
                check: install_db_check,
                apply: install_db_apply,
            });
            v.push(Step {
                name: "pg-config",
                check: pg_config_check,
                apply: pg_config_apply,
            });
            if pair {
                v.push(Step {
                    name: "keepalived",
                    check: keepalived_check,
                    apply: keepalived_apply,
                });
                v.push(Step {
                    name: "vip-ready",
                    check: vip_check,
                    apply: vip_apply,
                });
            }
        }
        Role::DbReplica => {
            v.push(Step {
                name: "wait-master",
                check: master_check,
                apply: master_apply,
            });
            v.push(Step {
                name: "install-db",
                check: install_db_check,
                apply: install_db_apply,
            });
            v.push(Step {
                name: "basebackup",
                check: standby_check,
                apply: basebackup_apply,
            });
            v.push(Step {
                name: "pg-config",
                check: pg_config_check,
                apply: pg_config_apply,
            });
            v.push(Step {
                name: "streaming",
                check: streaming_check,
                apply: streaming_apply,
            });
            v.push(Step {
                name: "keepalived",
                check: keepalived_check,
                apply: keepalived_apply,
            });
        }
        Role::Leader => {
            v.push(Step {
                name: "wait-db",
                check: db_check,
                apply: db_apply,
            });
            v.push(Step {
                name: "install-leader",
                check: leader_check,
                apply: leader_apply,
            });
            v.push(Step {
                name: "token-user",
                check: token_user_check,
                apply: token_user_apply,
            });
        }
        Role::Manager => {
            v.push(Step {
                name: "wait-leader",
                check: leader_port_check,
                apply: leader_port_apply,
            });
            v.push(Step {
                name: "join",
                check: manager_check,
                apply: manager_apply,
            });
        }
    }
    v
}

/// Runs the steps, recording each in the journal. Returns the journal; a
/// failing step's error is returned after it is recorded.
pub fn run_steps(
    ctx: &Ctx,
    steps: &[Step],
    journal: &mut Journal,
    journal_path: &Path,
) -> Result<()> {
    for step in steps {
        let was_done = journal
            .step(step.name)
            .is_some_and(|s| s.state == StepState::Done);
        // A done step is skipped when its effect still holds; an interrupted
        // or failed one is checked too, and re-applied when needed.
        let holds = (step.check)(ctx).unwrap_or(false);
        if holds {
            if !was_done {
                journal.set(step.name, StepState::Done, Some("already in place".into()));
                journal.save(journal_path)?;
            }
            continue;
        }
        journal.set(step.name, StepState::Running, None);
        journal.waiting_for = None;
        journal.save(journal_path)?;
        eprintln!("airlock-firstboot: step {}", step.name);
        let result = (step.apply)(ctx).and_then(|()| {
            if (step.check)(ctx)? {
                Ok(())
            } else {
                Err(anyhow!(
                    "the step ran, but its effect does not hold afterwards"
                ))
            }
        });
        match result {
            Ok(()) => {
                journal.set(step.name, StepState::Done, None);
                journal.last_error = None;
                journal.save(journal_path)?;
            }
            Err(e) => {
                let text = format!("{e:#}");
                if let Some(w) = e.downcast_ref::<WaitTimeout>() {
                    journal.set(step.name, StepState::Waiting, Some(w.what.clone()));
                    journal.waiting_for = Some(w.what.clone());
                } else {
                    journal.set(step.name, StepState::Failed, Some(first_line(&text)));
                }
                journal.last_error = Some(text);
                journal.save(journal_path)?;
                return Err(e.context(format!("step {}", step.name)));
            }
        }
    }
    Ok(())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

// --- common ------------------------------------------------------------------

/// The static network file, when cloud-init is absent.
const IFUPDOWN_FILE: &str = "/etc/network/interfaces.d/airlock";

fn without_cloud_init(c: &Ctx) -> bool {
    !c.path("/usr/bin/cloud-init").exists()
}

fn identity_check(c: &Ctx) -> Result<bool> {
    let hostname = fs::read_to_string(c.path("/etc/hostname")).unwrap_or_default();
    let hosts = fs::read_to_string(c.path("/etc/hosts")).unwrap_or_default();
    let net_ok = !without_cloud_init(c)
        || fs::read_to_string(c.path(IFUPDOWN_FILE)).unwrap_or_default()
            == payload::ifupdown_config(&c.role.host);
    Ok(hostname.trim() == c.role.host.name && hosts == payload::etc_hosts(c.role) && net_ok)
}

fn identity_apply(c: &Ctx) -> Result<()> {
    let h = &c.role.host;
    c.write("/etc/hostname", &format!("{}\n", h.name), 0o644)?;
    c.write("/etc/hosts", &payload::etc_hosts(c.role), 0o644)?;
    if c.live() {
        c.runner.run(&Cmd::new("hostname").arg(&h.name))?;
    }
    // cloud-init applies the seed's network-config; without it, the runner
    // sets the static address itself: a file for the next boots, and now.
    if without_cloud_init(c) {
        c.write(IFUPDOWN_FILE, &payload::ifupdown_config(h), 0o644)?;
        if c.live() {
            let addr = format!("{}/{}", h.ip, h.prefix);
            c.runner
                .run(&Cmd::new("ip").args(["addr", "replace", &addr, "dev", &h.interface]))?;
            c.runner
                .run(&Cmd::new("ip").args(["link", "set", &h.interface, "up"]))?;
            c.runner.run(&Cmd::new("ip").args([
                "route",
                "replace",
                "default",
                "via",
                &h.gateway.to_string(),
            ]))?;
        }
    }
    Ok(())
}

/// `target` relative to the directory holding `link` (both absolute on the
/// VM): `/opt/main` → `airlock/repo`. Relative links also resolve inside a
/// prepared root directory.
pub fn relative_target(link: &str, target: &str) -> PathBuf {
    let from: Vec<&str> = Path::new(link)
        .parent()
        .map(|p| {
            p.iter()
                .filter_map(|c| c.to_str())
                .filter(|c| *c != "/")
                .collect()
        })
        .unwrap_or_default();
    let to: Vec<&str> = Path::new(target)
        .iter()
        .filter_map(|c| c.to_str())
        .filter(|c| *c != "/")
        .collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

fn points_at(link: &Path, target: &Path) -> bool {
    fs::read_link(link).is_ok_and(|t| t == target)
}

fn repository_check(c: &Ctx) -> Result<bool> {
    let r = &c.role.repository;
    Ok(r.vendor_paths
        .iter()
        .all(|p| points_at(&c.path(p), &relative_target(p, &r.root)))
        && c.path(&r.trusted_keyring).is_file()
        && c.path(paths::APT_SOURCES).is_file())
}

fn repository_apply(c: &Ctx) -> Result<()> {
    let r = &c.role.repository;
    let release = c.path(&format!("{}/dists/{}/InRelease", r.root, r.suite));
    if !release.is_file() {
        bail!(
            "{} is missing: the signed repository must be at {} (run `airlock-firstboot prepare` on the reference VM before cloning)",
            release.display(),
            r.root
        );
    }
    if !c.path(&r.trusted_keyring).is_file() {
        bail!(
            "the archive key {} is missing (airlock-firstboot prepare installs it)",
            r.trusted_keyring
        );
    }
    for p in &r.vendor_paths {
        let link = c.path(p);
        let target = relative_target(p, &r.root);
        if points_at(&link, &target) {
            continue;
        }
        match fs::symlink_metadata(&link) {
            Ok(m) if m.is_dir() => bail!(
                "{p} is a directory, not airlock's link to {}: move it away (the vendor installer reads {p})",
                r.root
            ),
            Ok(_) => fs::remove_file(&link)?,
            Err(_) => {}
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent)?;
        }
        std::os::unix::fs::symlink(&target, &link)
            .with_context(|| format!("linking {p} to {}", r.root))?;
    }
    c.write(paths::APT_SOURCES, &payload::apt_sources(c.role), 0o644)?;
    if c.live() {
        c.runner.run(&Cmd::new("apt-get").args(["-q", "update"]))?;
    }
    Ok(())
}

fn hygiene_check(c: &Ctx) -> Result<bool> {
    let id = fs::read_to_string(c.path("/etc/machine-id")).unwrap_or_default();
    let ssh_dir = c.path("/etc/ssh");
    let keys_ok = !ssh_dir.is_dir() || c.path("/etc/ssh/ssh_host_ed25519_key").is_file();
    Ok(id.trim().len() == 32 && keys_ok)
}

fn hygiene_apply(c: &Ctx) -> Result<()> {
    let id = fs::read_to_string(c.path("/etc/machine-id")).unwrap_or_default();
    if id.trim().len() != 32 {
        // A sealed reference image has an empty machine-id: this clone gets its own.
        let mut bytes = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        let hex = crate::repo::hex(&bytes);
        c.write("/etc/machine-id", &format!("{hex}\n"), 0o444)?;
    }
    // A sealed image has no SSH host keys: this clone makes its own. (The
    // leader's comes from its payload, through cloud-init or the inventory,
    // before this step, because the managers pin it.)
    if c.path("/etc/ssh").is_dir() && !c.path("/etc/ssh/ssh_host_ed25519_key").is_file() {
        c.runner
            .run(&Cmd::new("ssh-keygen").args(["-A", "-f", &c.root.display().to_string()]))?;
    }
    Ok(())
}

// --- PostgreSQL ------------------------------------------------------------------

fn install_db_check(c: &Ctx) -> Result<bool> {
    if !c.local_pg_ready() {
        return Ok(false);
    }
    let user = &c.role.database.user;
    let out = c.runner.output(&c.psql_local(&format!(
        "SELECT 1 FROM pg_roles WHERE rolname = '{}' AND rolcanlogin",
        user.replace('\'', "''")
    )))?;
    Ok(out.success() && out.stdout.trim() == "1")
}

fn install_db_apply(c: &Ctx) -> Result<()> {
    if c.live() {
        // A power cut in the middle of an earlier installation leaves dpkg
        // half-configured: finish that first.
        c.runner
            .run(&Cmd::new("dpkg").args(["--configure", "-a"]))?;
    }
    let answers = format!("{}\n{}\n", c.role.database.user, c.db_password()?);
    c.vendor_install(&["db"], Some(answers), None)?;
    Ok(())
}

fn pg_config_check(c: &Ctx) -> Result<bool> {
    let dir = c.pg_conf_dir()?;
    let hba = fs::read_to_string(dir.join("pg_hba.conf")).unwrap_or_default();
    let conf = fs::read_to_string(dir.join("postgresql.conf")).unwrap_or_default();
    let lines = payload::pg_hba_lines(c.role).unwrap_or_default();
    Ok(edits::pg_hba_with(&hba, &lines) == hba
        && edits::pg_conf_get(&conf, "listen_addresses").as_deref() == Some("*"))
}

fn pg_config_apply(c: &Ctx) -> Result<()> {
    let dir = c.pg_conf_dir()?;
    let hba_path = dir.join("pg_hba.conf");
    let conf_path = dir.join("postgresql.conf");
    let hba =
        fs::read_to_string(&hba_path).with_context(|| format!("reading {}", hba_path.display()))?;
    let conf = fs::read_to_string(&conf_path)
        .with_context(|| format!("reading {}", conf_path.display()))?;
    let lines = payload::pg_hba_lines(c.role).unwrap_or_default();
    let new_hba = edits::pg_hba_with(&hba, &lines);
    let listen_ok = edits::pg_conf_get(&conf, "listen_addresses").as_deref() == Some("*");
    if new_hba != hba {
        fs::write(&hba_path, new_hba).with_context(|| format!("writing {}", hba_path.display()))?;
    }
    if !listen_ok {
        fs::write(
            &conf_path,
            edits::pg_conf_with(&conf, "listen_addresses", "'*'"),
        )
        .with_context(|| format!("writing {}", conf_path.display()))?;
        c.runner.run(&c.systemctl("restart", "postgresql"))?;
    } else {
        c.runner.run(&c.systemctl("reload", "postgresql"))?;
    }
    Ok(())
}

fn master_check(c: &Ctx) -> Result<bool> {
    let pg = c.pg()?;
    let src = pg
        .replicate_from
        .as_ref()
        .context("no replication source")?;
    Ok(c.pg_ready(&src.ip.to_string()))
}

fn master_apply(c: &Ctx) -> Result<()> {
    let pg = c.pg()?;
    let src = pg
        .replicate_from
        .as_ref()
        .context("no replication source")?;
    let what = format!(
        "the master {} ({}:{}) to accept connections",
        src.name, src.ip, pg.port
    );
    c.wait_for(&what, || c.pg_ready(&src.ip.to_string()))
}

/// The data directory is a standby streaming from this plan's master.
fn is_standby_of(dir: &Path, master: Ipv4Addr) -> bool {
    let signal = dir.join("standby.signal").is_file() || dir.join("recovery.conf").is_file();
    let conninfo = [dir.join("postgresql.auto.conf"), dir.join("recovery.conf")]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .any(|t| t.contains(&format!("host={master}")) || t.contains(&format!("host='{master}'")));
    signal && conninfo
}

fn standby_check(c: &Ctx) -> Result<bool> {
    let pg = c.pg()?;
    let src = pg
        .replicate_from
        .as_ref()
        .context("no replication source")?;
    Ok(is_standby_of(&c.data_dir()?, src.ip) && c.local_pg_ready())
}

fn basebackup_apply(c: &Ctx) -> Result<()> {
    let pg = c.pg()?;
    let src = pg
        .replicate_from
        .as_ref()
        .context("no replication source")?;
    let dir = c.data_dir()?;
    let has_cluster = dir.join("PG_VERSION").is_file();
    let standby = has_cluster && is_standby_of(&dir, src.ip);
    let replicated_before = c
        .before
        .and_then(|j| j.step("basebackup"))
        .is_some_and(|s| s.state == StepState::Done);
    // Decide before touching anything: a promoted replica keeps serving.
    if has_cluster && !standby && replicated_before {
        bail!(
            "{} holds a primary, not a standby of {} ({}): this host was promoted after a failover and holds the data now. Refusing to wipe it (nothing was stopped). To make it a replica again, first make sure {} is the primary, then remove {} by hand and run airlock-firstboot again",
            dir.display(),
            src.name,
            src.ip,
            src.name,
            dir.display()
        );
    }
    let _ = c.runner.output(&c.systemctl("stop", "keepalived"));
    c.runner.run(&c.systemctl("stop", "postgresql"))?;
    if standby {
        // Already a standby of this master (an interrupted run): keep it.
    } else if has_cluster {
        // The fresh cluster the vendor installer just made on this clone.
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    if !has_cluster || !is_standby_of(&dir, src.ip) {
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        c.runner
            .run(&Cmd::new("chown").args(["postgres:postgres", &dir.display().to_string()]))?;
        let slot = pg
            .slot
            .clone()
            .unwrap_or_else(|| crate::plan::REPLICATION_SLOT.into());
        let passfile = c.passfile(Some("postgres"))?;
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
            "-D",
            &dir.display().to_string(),
            "-R",
            &format!("--slot={slot}"),
        ]);
        // -C creates the slot; when it exists already (an earlier attempt),
        // pg_basebackup refuses, cleans up, and runs again without -C.
        let first = c.runner.output(&base.clone().arg("-C"))?;
        if !first.success() {
            if first.stderr.contains("already exists") {
                c.runner.run(&base)?;
            } else {
                bail!(
                    "`{}` failed: {}",
                    base.clone().arg("-C").line(),
                    first.stderr.trim()
                );
            }
        }
    }
    c.runner.run(&c.systemctl("start", "postgresql"))?;
    c.wait_for("the local PostgreSQL to start as a standby", || {
        c.local_pg_ready()
    })
}

fn streaming_status(c: &Ctx) -> String {
    c.runner
        .output(&c.psql_local("SELECT status FROM pg_stat_wal_receiver"))
        .map(|o| o.stdout.trim().to_string())
        .unwrap_or_default()
}

fn streaming_check(c: &Ctx) -> Result<bool> {
    Ok(streaming_status(c) == "streaming")
}

fn streaming_apply(c: &Ctx) -> Result<()> {
    let src = c
        .pg()?
        .replicate_from
        .clone()
        .context("no replication source")?;
    c.wait_for(
        &format!("streaming replication from {} ({})", src.name, src.ip),
        || streaming_status(c) == "streaming",
    )
}

// --- keepalived ---------------------------------------------------------------------

/// keepalived.conf as installed: under a test root, its script paths point
/// into that root.
fn keepalived_conf(c: &Ctx) -> Result<String> {
    let conf =
        payload::keepalived_conf(c.role).context("this host has no keepalived configuration")?;
    Ok(if c.live() {
        conf
    } else {
        conf.replace(
            paths::KEEPALIVED_SCRIPTS,
            &c.path(paths::KEEPALIVED_SCRIPTS).display().to_string(),
        )
    })
}

fn keepalived_check(c: &Ctx) -> Result<bool> {
    let installed =
        fs::read_to_string(c.path("/etc/keepalived/keepalived.conf")).unwrap_or_default();
    Ok(installed == keepalived_conf(c)? && c.runner.ok(&c.systemctl("is-active", "keepalived")))
}

fn keepalived_apply(c: &Ctx) -> Result<()> {
    if c.live()
        && !c
            .runner
            .ok(&Cmd::new("sh").args(["-c", "command -v keepalived"]))
    {
        c.runner
            .run(&Cmd::new("apt-get").args(["install", "-y", "-q", "keepalived"]))?;
    }
    for s in ["pg-ready.sh", "promote.sh"] {
        let p = c.path(&format!("{}/{s}", paths::KEEPALIVED_SCRIPTS));
        if p.is_file() {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
        }
    }
    c.write(
        "/etc/keepalived/keepalived.conf",
        &keepalived_conf(c)?,
        0o644,
    )?;
    if c.live() {
        c.runner.run(&c.systemctl("enable", "keepalived"))?;
    }
    c.runner.run(&c.systemctl("restart", "keepalived"))?;
    Ok(())
}

fn vip_check(c: &Ctx) -> Result<bool> {
    Ok(c.role
        .database
        .vip
        .is_some_and(|vip| c.pg_ready(&vip.to_string())))
}

fn vip_apply(c: &Ctx) -> Result<()> {
    let vip = c.role.database.vip.context("no VIP in a pair")?;
    c.wait_for(
        &format!(
            "PostgreSQL to answer on the VIP {vip}:{}",
            c.role.database.port
        ),
        || c.pg_ready(&vip.to_string()),
    )
}

// --- dispatchers ------------------------------------------------------------------------

/// The DB user can log in at the endpoint (not only: the server is up).
fn db_login_ok(c: &Ctx) -> bool {
    let db = &c.role.database;
    let Ok(passfile) = c.passfile(None) else {
        return false;
    };
    c.runner.ok(&Cmd::new("psql")
        .args([
            "-X",
            "-q",
            "-h",
            &db.endpoint.to_string(),
            "-p",
            &db.port.to_string(),
            "-U",
            &db.user,
            "-d",
            "postgres",
            "-c",
            "SELECT 1",
        ])
        .env("PGPASSFILE", passfile.display().to_string())
        .env("PGCONNECT_TIMEOUT", "3"))
}

fn db_check(c: &Ctx) -> Result<bool> {
    Ok(db_login_ok(c))
}

fn db_apply(c: &Ctx) -> Result<()> {
    let db = &c.role.database;
    c.wait_for(
        &format!(
            "the database at {}:{} to accept {}'s login",
            db.endpoint, db.port, db.user
        ),
        || db_login_ok(c),
    )
}

fn docker_info(c: &Ctx, field: &str) -> String {
    c.runner
        .output(&Cmd::new("docker").args(["info", "--format", &format!("{{{{{field}}}}}")]))
        .map(|o| o.stdout.trim().to_string())
        .unwrap_or_default()
}

fn leader_check(c: &Ctx) -> Result<bool> {
    let token = fs::read_to_string(c.path(paths::TOKEN_FILE)).unwrap_or_default();
    Ok(
        token.trim().starts_with("SWMTKN-1-")
            && docker_info(c, ".Swarm.LocalNodeState") == "active",
    )
}

fn leader_apply(c: &Ctx) -> Result<()> {
    let db = &c.role.database;
    let answers = format!("{}\n{}\n", db.user, c.db_password()?);
    let out = c.vendor_install(
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
                c.runner
                    .run(&Cmd::new("docker").args(["swarm", "join-token", "-q", "manager"]))?;
            o.stdout.trim().to_string()
        }
    };
    if !token.starts_with("SWMTKN-1-") {
        bail!("the vendor installer printed no swarm join token (SWMTKN-1-…)");
    }
    c.write(paths::TOKEN_FILE, &format!("{token}\n"), 0o640)?;
    Ok(())
}

fn token_home(c: &Ctx) -> PathBuf {
    c.path(&format!(
        "/home/{}/.ssh/authorized_keys",
        crate::plan::TOKEN_USER
    ))
}

fn token_user_check(c: &Ctx) -> Result<bool> {
    let want = fs::read_to_string(c.path(paths::TOKEN_AUTHORIZED_KEYS)).unwrap_or_default();
    let have = fs::read_to_string(token_home(c)).unwrap_or_default();
    let user_ok = !c.live() || c.runner.ok(&Cmd::new("id").arg(crate::plan::TOKEN_USER));
    Ok(!want.is_empty() && want == have && user_ok)
}

fn token_user_apply(c: &Ctx) -> Result<()> {
    let user = crate::plan::TOKEN_USER;
    if c.live() && !c.runner.ok(&Cmd::new("id").arg(user)) {
        c.runner.run(&Cmd::new("useradd").args([
            "--system",
            "--create-home",
            "--shell",
            "/bin/sh",
            "--comment",
            "airlock: serves the swarm join token to managers",
            user,
        ]))?;
        // No password, but not "locked" ('!'): sshd refuses locked accounts
        // even for keys when PAM is off.
        c.runner.run(&Cmd::new("usermod").args(["-p", "*", user]))?;
    }
    let want = fs::read_to_string(c.path(paths::TOKEN_AUTHORIZED_KEYS))
        .with_context(|| format!("reading {}", paths::TOKEN_AUTHORIZED_KEYS))?;
    let rel = format!("/home/{user}/.ssh/authorized_keys");
    // Public keys only: readable, as sshd reads it with the user's rights.
    c.write(&rel, &want, 0o644)?;
    if c.live() {
        c.runner.run(&Cmd::new("chown").args([
            "-R",
            &format!("{user}:{user}"),
            &format!("/home/{user}/.ssh"),
        ]))?;
    }
    // The forced command runs as the token user: it may read the token (0640).
    if c.runner.ok(&Cmd::new("getent").args(["group", user])) {
        let token = c.path(paths::TOKEN_FILE).display().to_string();
        c.runner.run(&Cmd::new("chgrp").args([user, &token]))?;
    }
    Ok(())
}

fn leader_port(c: &Ctx) -> SocketAddr {
    SocketAddr::from((c.role.swarm.leader_ip, c.role.swarm.port))
}

fn leader_port_check(c: &Ctx) -> Result<bool> {
    Ok(TcpStream::connect_timeout(&leader_port(c), Duration::from_secs(2)).is_ok())
}

fn leader_port_apply(c: &Ctx) -> Result<()> {
    let addr = leader_port(c);
    c.wait_for(
        &format!("the swarm leader {} at {addr}", c.role.swarm.leader),
        || TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok(),
    )
}

fn manager_check(c: &Ctx) -> Result<bool> {
    Ok(docker_info(c, ".Swarm.ControlAvailable") == "true")
}

/// Fetches the join token over SSH: the bundle's client key, the leader's
/// pinned host key, the token user's forced command.
fn fetch_token(c: &Ctx) -> Result<String> {
    let key = c.path(paths::TOKEN_CLIENT_KEY);
    let known = c.path(paths::LEADER_KNOWN_HOSTS);
    let leader = c.role.swarm.leader_ip.to_string();
    let out = c.runner.run(&Cmd::new("ssh").args([
        "-i",
        &key.display().to_string(),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        &format!("UserKnownHostsFile={}", known.display()),
        "-o",
        "HostKeyAlgorithms=ssh-ed25519",
        "-o",
        "ConnectTimeout=5",
        &format!("{}@{leader}", crate::plan::TOKEN_USER),
        "token",
    ]))?;
    edits::find_swarm_token(&out.stdout)
        .ok_or_else(|| anyhow!("the leader {leader} answered without a join token"))
}

fn manager_apply(c: &Ctx) -> Result<()> {
    let mut token = None;
    let mut last = String::new();
    let leader = &c.role.swarm.leader;
    let waited = c.wait_for(&format!("the join token from the leader {leader}"), || {
        match fetch_token(c) {
            Ok(t) => token = Some(t),
            Err(e) => last = first_line(&format!("{e:#}").replace('\n', " ")),
        }
        token.is_some()
    });
    if let Err(e) = waited {
        return Err(e.context(format!("the last attempt said: {last}")));
    }
    let token = token.expect("the wait succeeded");
    // Raft takes one new manager at a time: two joining at the same moment
    // can leave the swarm without quorum. Managers go in plan order, 15 s
    // apart (a join takes well under a second).
    let position = c
        .role
        .swarm
        .managers
        .iter()
        .position(|m| *m == c.role.host.name)
        .unwrap_or(0) as u64;
    if position > 0 && docker_info(c, ".Swarm.ControlAvailable") != "true" {
        eprintln!(
            "airlock-firstboot: manager {} of {}: joining {} s after the first",
            position + 1,
            c.role.swarm.managers.len(),
            15 * position
        );
        std::thread::sleep(Duration::from_secs(15 * position));
    }
    // Managers that join at the same moment can make Raft refuse one of them
    // ("can't initialize raft node"): leave the half-joined state and retry.
    let leader_ip = c.role.swarm.leader_ip.to_string();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match c.vendor_install(&["multi", "manager", &leader_ip], None, Some(&token)) {
            Ok(_) => break,
            Err(_) if docker_info(c, ".Swarm.ControlAvailable") == "true" => break,
            Err(e) if attempt < 5 => {
                eprintln!(
                    "airlock-firstboot: joining failed (attempt {attempt} of 5), retrying: {}",
                    first_line(&format!("{e:#}"))
                );
                let _ = c
                    .runner
                    .output(&Cmd::new("docker").args(["swarm", "leave", "--force"]));
                std::thread::sleep(Duration::from_secs(2 * attempt));
            }
            Err(e) => return Err(e),
        }
    }
    c.wait_for("this node to be a swarm manager", || {
        docker_info(c, ".Swarm.ControlAvailable") == "true"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative() {
        assert_eq!(
            relative_target("/opt/main", "/opt/airlock/repo"),
            PathBuf::from("airlock/repo")
        );
        assert_eq!(
            relative_target("/srv/x/main", "/opt/airlock/repo"),
            PathBuf::from("../../opt/airlock/repo")
        );
    }
}
