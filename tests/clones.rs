//! The judge of the runner: five clones of one prepared image, booted under
//! systemd, become the cluster with nobody at the console.
//!
//! A Debian 12 reference root file system (debootstrap + systemd,
//! cloud-init, openssh-server, PostgreSQL, keepalived, docker.io; cached
//! under `target/clones/`) is prepared as a person would at the console of
//! the reference VM (`airlock-firstboot prepare --bundle`, under umask 027),
//! from a real bundle of the article's stand built a day "ahead" (so every
//! clone's clock is a day behind the repository's `Date`). Five overlay
//! copies boot with `systemd-nspawn -b`, each in its own network namespace
//! on one bridge; four get the three files of their seed in NoCloud's seed
//! directory, the fifth (a manager) has no seed and is found in the
//! inventory by the MAC of its NIC. Then:
//!
//! - a manager is powered off in the middle of its wait and booted again;
//! - every runner reaches `done` under systemd, with no ordering cycle;
//! - the replica streams, the VIP is on the master, a write through the VIP
//!   from a client namespace is read on the replica, `docker node ls` shows
//!   three managers, the five machine ids and SSH host keys are distinct,
//!   every clone has its default route;
//! - the master's postmaster is killed: a write through the VIP succeeds
//!   again (the time is printed, see BENCHMARKS.md);
//! - the old master is rebooted: it comes back read-only, and `status` says
//!   why;
//! - `airlock-firstboot rejoin` on it: it rewinds with pg_rewind, streams
//!   from the new primary, has what was written through the VIP meanwhile,
//!   and its runner completes again;
//! - the new primary's postmaster is killed: the VIP and the writes go back
//!   to the rejoined db1.
//!
//! Everything it makes (namespaces, mounts, containers) is removed at the
//! end, also when it fails (and what a killed run left is swept at the next
//! start). Addresses are 192.0.2.0/24 (TEST-NET-1), inside the namespaces
//! only. The containers get a cgroup v2 hierarchy
//! (`SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`): on a cgroup v1 host without
//! systemd, a container's systemd sometimes misses that a unit's cgroup
//! became empty and waits for ever (seen with cloud-config.service, whose
//! timeout is infinite); a VM has no such problem. Needs root, systemd-nspawn (systemd-container) and
//! debootstrap; `just clones` runs it, `scripts/test-all` too when root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SUITE: &str = "bookworm";
/// What the reference VM has besides a minimal Debian (Astra's reference VM
/// has the same services).
const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "ifupdown",
    "ca-certificates",
    "cloud-init",
    "openssh-server",
    "postgresql",
    "keepalived",
    "docker.io",
    "procps",
    "locales",
    "sudo",
];
/// Bumped when the image is made differently (the cache key).
const IMAGE_RECIPE: u32 = 3;
const PG_MAJOR: u32 = 15;
const NET: &str = "192.0.2";
const VIP: &str = "192.0.2.10";
/// How long the whole cluster may take to form, and each later wait.
const BOUND: Duration = Duration::from_secs(900);

/// (name, role, last octet, MAC, with a seed)
const HOSTS: [(&str, &str, u8, &str, bool); 5] = [
    ("db1", "db-master", 11, "52:54:00:c0:02:0b", true),
    ("db2", "db-replica", 12, "52:54:00:c0:02:0c", true),
    ("disp1", "leader", 21, "52:54:00:c0:02:15", true),
    ("disp2", "manager", 22, "52:54:00:c0:02:16", true),
    ("disp3", "manager", 23, "52:54:00:c0:02:17", false),
];

fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

/// Runs `cmd`; a failure is a test failure naming the command and its output.
fn sh(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) -> String {
    sh(Command::new("ip").args(args))
}

fn now_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What is missing to run this test, if anything.
fn missing() -> Option<String> {
    if sh(Command::new("id").arg("-u")).trim() != "0" {
        return Some("not root".into());
    }
    for t in ["systemd-nspawn", "debootstrap", "psql", "nsenter"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t} >/dev/null")])
            .status()
            .unwrap()
            .success();
        if !found {
            return Some(format!("{t} is not installed"));
        }
    }
    None
}

/// The Debian mirror this machine's apt uses for the suite (or
/// AIRLOCK_DEBIAN_MIRROR).
fn mirror() -> String {
    if let Ok(m) = std::env::var("AIRLOCK_DEBIAN_MIRROR") {
        return m;
    }
    let mut texts = vec![fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        for e in rd.flatten() {
            texts.push(fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    for t in &texts {
        // One-line style: deb URI SUITE COMPONENTS
        for l in t.lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() >= 3 && w[0] == "deb" && w[2] == SUITE {
                return w[1].to_string();
            }
        }
        // deb822 style: a stanza with `Suites: SUITE`.
        for stanza in t.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                    .unwrap_or_default()
            };
            if field("Suites:").iter().any(|s| s == SUITE)
                && let Some(u) = field("URIs:").first()
            {
                return u.clone();
            }
        }
    }
    panic!("no {SUITE} source in /etc/apt; set AIRLOCK_DEBIAN_MIRROR")
}

/// The cached reference root file system (built once, ~2 minutes).
fn reference_rootfs() -> PathBuf {
    let tag = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (SUITE, PACKAGES, IMAGE_RECIPE).hash(&mut h);
        format!("{:016x}", h.finish())
    };
    let cache = repo_dir().join("target/clones");
    let rootfs = cache.join(format!("debian-{SUITE}-{tag}"));
    if rootfs.join("usr/bin/cloud-init").exists() {
        return rootfs;
    }
    fs::create_dir_all(&cache).unwrap();
    let tmp = cache.join(format!("debian-{SUITE}-{tag}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    let started = Instant::now();
    eprintln!(
        "clones: building the reference root file system in {}",
        rootfs.display()
    );
    sh(Command::new("debootstrap")
        .args(["--variant=minbase", SUITE])
        .arg(&tmp)
        .arg(mirror())
        .stdout(Stdio::null()));
    // A configured locale, as a real reference VM has (cloud-init's locale
    // module fails without it).
    fs::write(tmp.join("etc/locale.gen"), "en_US.UTF-8 UTF-8\n").unwrap();
    sh(Command::new("chroot")
        .arg(&tmp)
        .args(["apt-get", "install", "-y", "-q", "--no-install-recommends"])
        .args(PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null()));
    let _ = Command::new("chroot")
        .arg(&tmp)
        .args(["apt-get", "clean"])
        .status();
    fs::rename(&tmp, &rootfs).unwrap();
    eprintln!(
        "clones: reference root file system built in {:?}",
        started.elapsed()
    );
    rootfs
}

/// The recipe of the stand, with the demo media.
fn recipe(media: &Path) -> String {
    let mut s = format!(
        r#"version = 1
[cluster]
name = "clones"
domain = "clones.test"
[network]
cidr = "{NET}.0/24"
gateway = "{NET}.1"
interface = "eth0"
[media]
main = "{m}/main"
devel = "{m}/devel"
vendor = "{m}/vendor"
[database]
vip = "{VIP}"
virtual_router_id = 42
postgresql = {PG_MAJOR}
user = "dbuser"
synchronous = {sync}
"#,
        m = media.display(),
        sync = synchronous()
    );
    for (name, role, last, mac, seed) in HOSTS {
        s.push_str(&format!(
            "[[host]]\nname = \"{name}\"\nrole = \"{role}\"\nip = \"{NET}.{last}\"\n"
        ));
        // The clone without a seed is found by its MAC.
        if !seed {
            s.push_str(&format!("mac = \"{mac}\"\n"));
        }
    }
    s
}

/// A real bundle, built as if the build machine's clock were a day ahead
/// of the clones'.
fn build_bundle(work: &Path) -> (PathBuf, String) {
    let ahead = (now_epoch() + 86_400).to_string();
    let airlock = |args: &[&str]| {
        sh(Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(args)
            .current_dir(work)
            .env("SOURCE_DATE_EPOCH", &ahead))
    };
    airlock(&["demo", "--out", "demo"]);
    airlock(&["keygen", "--out", "keys"]);
    fs::write(work.join("site.toml"), recipe(&work.join("demo/media"))).unwrap();
    airlock(&[
        "build",
        "site.toml",
        "--key",
        "keys/signing-key.asc",
        "--out",
        "bundle",
        "--runner",
        env!("CARGO_BIN_EXE_airlock-firstboot"),
        "--allow-new-glibc",
        // The roles' PostgreSQL, keepalived and Docker come with the
        // reference image (Debian), not from the demo discs.
        "--allow-incomplete",
    ]);
    let secrets: toml::Value =
        toml::from_str(&fs::read_to_string(work.join("site.secrets.toml")).unwrap()).unwrap();
    let password = secrets["db_password"].as_str().unwrap().to_string();
    (work.join("bundle"), password)
}

/// One booted clone.
struct Clone {
    name: String,
    role: String,
    ip: String,
    ns: String,
    merged: PathBuf,
    console: PathBuf,
    nspawn: Option<Child>,
    booted_epoch: i64,
}

impl Clone {
    /// Seconds from this clone's last boot to the end of its role, from its
    /// journal (the last step's finish).
    fn boot_to_done(&self) -> Option<i64> {
        let s = self.status();
        let last = s["journal"]["steps"]
            .as_array()?
            .iter()
            .filter_map(|st| st["finished"].as_i64())
            .max()?;
        Some(last - self.booted_epoch)
    }

    fn boot(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.console)
            .unwrap();
        let child = Command::new("systemd-nspawn")
            .arg("-b")
            .arg("-D")
            .arg(&self.merged)
            .args([
                "--register=no",
                "--keep-unit",
                "--capability=all",
                "--system-call-filter=@keyring bpf",
                "--console=read-only",
            ])
            .arg(format!("--network-namespace-path=/run/netns/{}", self.ns))
            .arg(format!("--machine=clone-{}", self.name))
            .env("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "network")
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nspawn = Some(child);
        self.booted_epoch = now_epoch();
    }

    fn running(&mut self) -> bool {
        self.nspawn
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// The container's init, as the host sees it.
    fn init_pid(&self) -> Option<u32> {
        let parent = self.nspawn.as_ref()?.id();
        let children = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    /// Runs a command inside the clone.
    fn exec(&self, args: &[&str]) -> Output {
        let Some(pid) = self.init_pid() else {
            panic!("{} is not running", self.name);
        };
        run(Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-a"])
            .args(args))
    }

    fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "on {}: {args:?}: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `airlock-firstboot status --json` read from the clone's disk.
    fn status(&self) -> serde_json::Value {
        let out = run(Command::new(env!("CARGO_BIN_EXE_airlock-firstboot"))
            .args(["status", "--json", "--root"])
            .arg(&self.merged));
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Waits for the container to end, at most `bound`.
    fn wait_down(&mut self, bound: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < bound {
            if !self.running() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// A clean shutdown (what `poweroff` inside does).
    fn poweroff(&mut self) {
        if let Some(pid) = self.init_pid() {
            let _ = Command::new("kill")
                .args(["-RTMIN+4", &pid.to_string()])
                .status();
        }
        if !self.wait_down(Duration::from_secs(60)) {
            self.power_cut();
        }
        self.nspawn = None;
    }

    /// The power cable: everything in the container dies at once.
    fn power_cut(&mut self) {
        if let Some(pid) = self.init_pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        if !self.wait_down(Duration::from_secs(30))
            && let Some(c) = self.nspawn.as_mut()
        {
            let _ = c.kill();
        }
        if let Some(mut c) = self.nspawn.take() {
            let _ = c.wait();
        }
    }

    /// What helps a person see why: the runner's status and log, the console.
    fn diagnose(&self) -> String {
        let mut s = format!("===== {} ({})\n", self.name, self.role);
        s.push_str(&format!("status: {}\n", self.status()));
        if self.init_pid().is_some() {
            for args in [
                &["systemctl", "list-jobs", "--no-pager"][..],
                &[
                    "systemctl",
                    "status",
                    "--no-pager",
                    "-n",
                    "5",
                    "airlock-firstboot.service",
                    "cloud-config.service",
                ][..],
                &["ps", "-ef"][..],
            ] {
                let out = self.exec(args);
                s.push_str(&String::from_utf8_lossy(&out.stdout));
            }
            let promote = self.exec(&[
                "journalctl",
                "--no-pager",
                "-n",
                "20",
                "-t",
                "airlock-promote",
                "-t",
                "Keepalived_vrrp",
            ]);
            s.push_str("--- promotions and VRRP states\n");
            s.push_str(&String::from_utf8_lossy(&promote.stdout));
            let out = self.exec(&[
                "journalctl",
                "--no-pager",
                "-n",
                "60",
                "-u",
                "airlock-firstboot",
                "-u",
                "postgresql@15-main",
                "-u",
                "keepalived",
                "-u",
                "cloud-init",
            ]);
            s.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        let console = fs::read_to_string(&self.console).unwrap_or_default();
        let tail: Vec<&str> = console.lines().rev().take(25).collect();
        s.push_str("--- console (last lines)\n");
        for l in tail.iter().rev() {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

/// Every namespace, mount and container of the test; all removed on drop.
struct Lab {
    work: PathBuf,
    tag: String,
    namespaces: Vec<String>,
    mounts: Vec<PathBuf>,
    clones: Vec<Clone>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.clones {
            c.power_cut();
        }
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg(m).status();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "delete", ns]).output();
        }
        if std::env::var_os("AIRLOCK_KEEP_CLONES").is_none() {
            let _ = fs::remove_dir_all(&self.work);
        }
    }
}

/// Removes what an earlier run killed before it could clean up (its
/// containers, mounts and namespaces under target/clones/run-*).
fn sweep_stale() {
    let base = repo_dir().join("target/clones");
    let prefix = format!("-D {}/run-", base.display());
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let pid = e.file_name().to_string_lossy().into_owned();
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.starts_with("systemd-nspawn") && cmdline.contains(&prefix) {
                let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                    .unwrap_or_default();
                for child in children.split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", child]).status();
                }
            }
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    for m in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
        if m.starts_with(&format!("{}/run-", base.display())) {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
    let list = String::from_utf8_lossy(&run(Command::new("ip").args(["netns", "list"])).stdout)
        .into_owned();
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let stale = ns
            .strip_prefix("al")
            .and_then(|r| r.split_once('-'))
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if stale {
            let _ = Command::new("ip").args(["netns", "delete", ns]).output();
        }
    }
    if let Ok(rd) = fs::read_dir(&base) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("run-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

impl Lab {
    fn new() -> Lab {
        sweep_stale();
        let tag = format!("al{}", std::process::id() % 100_000);
        let work = repo_dir().join("target/clones").join(format!("run-{tag}"));
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).unwrap();
        Lab {
            work,
            tag,
            namespaces: Vec::new(),
            mounts: Vec::new(),
            clones: Vec::new(),
        }
    }

    fn netns(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.tag);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ns
    }

    fn overlay(&mut self, name: &str, lower: &str) -> PathBuf {
        let base = self.work.join(name);
        for d in ["upper", "work", "merged"] {
            fs::create_dir_all(base.join(d)).unwrap();
        }
        let merged = base.join("merged");
        sh(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={lower},upperdir={},workdir={}",
                base.join("upper").display(),
                base.join("work").display()
            ))
            .arg(&merged));
        self.mounts.push(merged.clone());
        merged
    }

    fn umount(&mut self, merged: &Path) {
        sh(Command::new("umount").arg(merged));
        self.mounts.retain(|m| m != merged);
    }

    /// A switch namespace with a bridge holding the gateway address.
    fn switch(&mut self) -> String {
        let sw = self.netns("sw");
        let in_sw = |args: &[&str]| sh(Command::new("ip").args(["netns", "exec", &sw]).args(args));
        in_sw(&["ip", "link", "add", "br0", "type", "bridge"]);
        in_sw(&["ip", "addr", "add", &format!("{NET}.1/24"), "dev", "br0"]);
        in_sw(&["ip", "link", "set", "br0", "up"]);
        in_sw(&["ip", "link", "set", "lo", "up"]);
        sw
    }

    /// A namespace on the switch with `eth0` (MAC given); configured with an
    /// address only when `addr` is given (the clones configure their own).
    fn plug(&mut self, sw: &str, name: &str, mac: &str, addr: Option<&str>) -> String {
        let ns = self.netns(name);
        let (a, b) = (
            format!("{}h{name}", self.tag),
            format!("{}s{name}", self.tag),
        );
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        ip(&["link", "set", &a, "netns", &ns]);
        ip(&["link", "set", &b, "netns", sw]);
        let in_sw = |args: &[&str]| sh(Command::new("ip").args(["netns", "exec", sw]).args(args));
        in_sw(&["ip", "link", "set", &b, "master", "br0"]);
        in_sw(&["ip", "link", "set", &b, "up"]);
        let in_ns = |args: &[&str]| sh(Command::new("ip").args(["netns", "exec", &ns]).args(args));
        in_ns(&["ip", "link", "set", &a, "name", "eth0"]);
        in_ns(&["ip", "link", "set", "eth0", "address", mac]);
        in_ns(&["ip", "link", "set", "lo", "up"]);
        if let Some(addr) = addr {
            in_ns(&["ip", "addr", "add", addr, "dev", "eth0"]);
            in_ns(&["ip", "link", "set", "eth0", "up"]);
        }
        ns
    }

    fn clone_named(&mut self, name: &str) -> &mut Clone {
        self.clones.iter_mut().find(|c| c.name == name).unwrap()
    }

    fn diagnose(&self) -> String {
        self.clones.iter().map(Clone::diagnose).collect()
    }
}

/// The reference VM: the cached root file system with the bundle prepared
/// in it at its console, as a person would (umask 027). Returns the upper
/// layer that the clones share.
fn prepare_reference(lab: &mut Lab, rootfs: &Path, bundle: &Path) -> PathBuf {
    let merged = lab.overlay("reference", &rootfs.display().to_string());
    let out = run(Command::new("systemd-nspawn")
        .arg("-D")
        .arg(&merged)
        .args(["--register=no", "--keep-unit", "-q"])
        .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
        .arg(format!("--bind-ro={}:/media/airlock", bundle.display()))
        .args([
            "sh",
            "-c",
            "umask 027; /media/airlock/bin/airlock-firstboot prepare --bundle /media/airlock",
        ])
        .stdin(Stdio::null()));
    assert!(
        out.status.success(),
        "prepare on the reference VM: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    lab.umount(&merged);
    lab.work.join("reference/upper")
}

/// Makes the clones (not booted yet).
fn make_clones(lab: &mut Lab, sw: &str, layers: &str, bundle: &Path) {
    for (name, role, last, mac, seed) in HOSTS {
        let ns = lab.plug(sw, name, mac, None);
        let merged = lab.overlay(name, layers);
        if seed {
            let nocloud = merged.join("var/lib/cloud/seed/nocloud");
            fs::create_dir_all(&nocloud).unwrap();
            for f in ["user-data", "meta-data", "network-config"] {
                fs::copy(bundle.join("payloads").join(name).join(f), nocloud.join(f)).unwrap();
            }
        }
        let console = lab.work.join(format!("{name}.console"));
        lab.clones.push(Clone {
            name: name.into(),
            role: role.into(),
            ip: format!("{NET}.{last}"),
            ns,
            merged,
            console,
            nspawn: None,
            booted_epoch: 0,
        });
    }
}

/// Waits until `f` holds, at most `bound`; the lab's diagnosis on failure.
fn wait_until(
    lab: &mut Lab,
    what: &str,
    bound: Duration,
    mut f: impl FnMut(&mut Lab) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if f(lab) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < bound,
            "gave up after {bound:?} waiting for {what}\n{}",
            lab.diagnose()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn state(c: &Clone) -> String {
    c.status()["state"].as_str().unwrap_or("?").to_string()
}

/// psql from the client namespace as the DB user.
fn psql(client: &str, host: &str, password: &str, sql: &str) -> Output {
    run(Command::new("ip")
        .args([
            "netns", "exec", client, "psql", "-X", "-A", "-t", "-q", "-h", host,
        ])
        .args(["-U", "dbuser", "-d", "space", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "1"))
}

fn has_vip(c: &Clone) -> bool {
    let out = run(Command::new("ip").args(["netns", "exec", &c.ns, "ip", "-4", "addr", "show"]));
    String::from_utf8_lossy(&out.stdout).contains(&format!("inet {VIP}/"))
}

/// `AIRLOCK_CLONES_ONLY=failover` boots the five at once and stops after
/// the first failover (bench/failover times it; the dispatchers are the
/// witnesses, so the pair cannot fail over alone); by default every phase.
fn failover_only() -> bool {
    std::env::var("AIRLOCK_CLONES_ONLY").is_ok_and(|v| v == "failover")
}

#[test]
fn five_clones_under_systemd_become_the_cluster() {
    if let Some(why) = missing() {
        assert!(
            std::env::var_os("AIRLOCK_CLONES").is_none(),
            "AIRLOCK_CLONES is set but the clones cannot boot here: {why}"
        );
        eprintln!("clones: skipped ({why}); `just clones` runs this test as root");
        return;
    }
    let rootfs = reference_rootfs();
    let mut lab = Lab::new();
    let (bundle, password) = build_bundle(&lab.work.clone());
    let reference = prepare_reference(&mut lab, &rootfs, &bundle);
    let sw = lab.switch();
    let client = lab.plug(
        &sw,
        "client",
        "52:54:00:c0:02:63",
        Some(&format!("{NET}.99/24")),
    );
    let layers = format!("{}:{}", reference.display(), rootfs.display());
    make_clones(&mut lab, &sw, &layers, &bundle);
    if failover_only() {
        for c in &mut lab.clones {
            c.boot();
        }
    } else {
        boot_with_a_power_cut_in_a_wait(&mut lab);
    }
    every_role_done_under_systemd(&mut lab);
    each_clone_is_its_own_machine(&lab);
    the_pair_replicates_through_the_vip(&lab, &client, &password);
    the_swarm_has_three_managers(&lab);
    let started = Instant::now();
    loop {
        let (v, code) = cluster_status(&lab, "disp2");
        if code == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "status --cluster did not say ready within 90 s: {}\n{}",
            v["not_ready"],
            lab.diagnose()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    status_tells_the_truth(&lab, "disp2", "db1", Some("db2"), "installed");
    status_tells_the_truth(&lab, "db2", "db1", Some("db2"), "installed");
    the_as_built_report(&lab, &bundle);
    let took = the_vip_follows_a_dead_primary(&lab, &client, &password, ("db1", "db2", 2));
    eprintln!(
        "clones: failover: a write through the VIP succeeded {:.2} s after the master's postmaster was killed",
        took.as_secs_f64()
    );
    if failover_only() {
        return;
    }
    the_old_master_comes_back_read_only(&mut lab, &client, &password);
    the_old_master_rejoins_as_a_standby(&mut lab, &client, &password);
    let back = the_vip_follows_a_dead_primary(&lab, &client, &password, ("db2", "db1", 6));
    eprintln!(
        "clones: failover back to the rejoined db1: a write through the VIP {:.2} s after db2's postmaster was killed",
        back.as_secs_f64()
    );
    assert_eq!(
        local(
            clone(&lab, "db1"),
            "SELECT count(*) FROM clones WHERE n IN (4, 5, 6)"
        ),
        "3",
        "nothing written through the VIP is missing on db1"
    );
    the_killed_primary_rejoins_by_base_backup(&mut lab);
    a_cut_between_the_db_servers_promotes_nobody(&mut lab, &client, &password);
    an_isolated_master_stops_and_the_standby_takes_over(&mut lab, &client, &password);
    acknowledged_commits_survive_a_failover_under_load(&lab, &client, &password);
}

/// The DB pair and the managers first; the leader later, so the first
/// manager is caught waiting for it, powered off and booted again.
fn boot_with_a_power_cut_in_a_wait(lab: &mut Lab) {
    for n in ["db1", "db2", "disp2", "disp3"] {
        lab.clone_named(n).boot();
    }
    wait_until(lab, "disp2 to wait for its leader", BOUND, |lab| {
        let s = lab.clone_named("disp2").status();
        s["journal"]["waiting_for"]
            .as_str()
            .is_some_and(|w| w.contains("leader"))
    });
    std::thread::sleep(Duration::from_secs(3));
    eprintln!("clones: power cut on disp2 in the middle of its wait");
    let disp2 = lab.clone_named("disp2");
    disp2.power_cut();
    assert_eq!(state(disp2), "waiting", "the journal says where it was");
    disp2.boot();
    lab.clone_named("disp1").boot();
}

/// The stand, not airlock: under systemd-nspawn on a busy host a clone's
/// networking.service now and then fails to get its cgroup (exit status
/// 219/CGROUP, seen once in seven runs), and the clone sits without an
/// address until the bound. A VM has no such failure: the stand starts the
/// unit again and says so.
fn restart_a_network_the_stand_failed(c: &Clone) {
    let out = c.exec(&[
        "systemctl",
        "show",
        "-p",
        "ActiveState",
        "-p",
        "ExecMainStatus",
        "networking.service",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    if said.contains("ActiveState=failed") && said.contains("ExecMainStatus=219") {
        eprintln!(
            "clones: STAND: {}'s networking.service failed under systemd-nspawn (219/CGROUP); started again",
            c.name
        );
        c.exec(&["systemctl", "restart", "networking.service"]);
    }
}

fn every_role_done_under_systemd(lab: &mut Lab) {
    wait_until(lab, "every clone to finish its role", BOUND, |lab| {
        lab.clones.iter().all(|c| {
            let s = state(c);
            assert!(s != "failed", "{} failed:\n{}", c.name, c.diagnose());
            if s != "done" && c.init_pid().is_some() {
                restart_a_network_the_stand_failed(c);
            }
            s == "done"
        })
    });
    for c in &lab.clones {
        eprintln!(
            "clones: {} ({}) done {} s after its (last) boot",
            c.name,
            c.role,
            c.boot_to_done().map_or("?".into(), |t| t.to_string())
        );
    }
    // Under systemd, with nobody's help: the unit did it, with no cycle.
    for c in &lab.clones {
        let console = fs::read_to_string(&c.console).unwrap();
        assert!(
            !console.contains("ordering cycle"),
            "{}: an ordering cycle at boot:\n{console}",
            c.name
        );
        let active = c.exec_ok(&["systemctl", "is-active", "airlock-firstboot.service"]);
        assert_eq!(active, "active", "{}", c.name);
        let route = c.exec_ok(&["ip", "route", "show", "default"]);
        assert!(
            route.contains(&format!("via {NET}.1")),
            "{}: no default route: {route:?}",
            c.name
        );
        assert_eq!(c.exec_ok(&["hostname"]), c.name);
        assert!(c.exec_ok(&["hostname", "-I"]).contains(&c.ip), "{}", c.name);
    }
}

/// Distinct machine ids and SSH host keys, none of them the image's.
fn each_clone_is_its_own_machine(lab: &Lab) {
    let read = |c: &Clone, p: &str| fs::read_to_string(c.merged.join(p)).unwrap();
    let ids: std::collections::BTreeSet<String> = lab
        .clones
        .iter()
        .map(|c| read(c, "etc/machine-id"))
        .collect();
    assert_eq!(ids.len(), lab.clones.len(), "machine ids: {ids:?}");
    let keys: std::collections::BTreeSet<String> = lab
        .clones
        .iter()
        .map(|c| read(c, "etc/ssh/ssh_host_ed25519_key.pub"))
        .collect();
    assert_eq!(keys.len(), lab.clones.len(), "SSH host keys: {keys:?}");
    let image = read(&lab.clones[0], "var/lib/airlock/image-identity.json");
    for c in &lab.clones {
        let id = read(c, "etc/machine-id");
        assert!(!image.contains(id.trim()), "{} kept the image's id", c.name);
    }
}

fn clone<'a>(lab: &'a Lab, name: &str) -> &'a Clone {
    lab.clones.iter().find(|c| c.name == name).unwrap()
}

/// psql as postgres on the clone itself.
fn local(c: &Clone, sql: &str) -> String {
    c.exec_ok(&[
        "runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-q", "-d", "space", "-c", sql,
    ])
}

fn the_pair_replicates_through_the_vip(lab: &Lab, client: &str, password: &str) {
    let (db1, db2) = (clone(lab, "db1"), clone(lab, "db2"));
    assert!(has_vip(db1), "the VIP is on the master");
    assert!(!has_vip(db2));
    assert_eq!(
        local(db2, "SELECT status FROM pg_stat_wal_receiver"),
        "streaming"
    );
    let out = psql(
        client,
        VIP,
        password,
        "CREATE TABLE clones (n int); INSERT INTO clones VALUES (1)",
    );
    assert!(
        out.status.success(),
        "write through the VIP: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = String::new();
    for _ in 0..50 {
        seen = local(db2, "SELECT count(*) FROM clones");
        if seen == "1" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen, "1", "the replica has the row written through the VIP");
}

fn the_swarm_has_three_managers(lab: &Lab) {
    let managers = clone(lab, "disp1").exec_ok(&[
        "docker",
        "node",
        "ls",
        "--format",
        "{{.Hostname}} {{.ManagerStatus}}",
    ]);
    let reachable = managers
        .lines()
        .filter(|l| l.ends_with(" Leader") || l.ends_with(" Reachable"))
        .count();
    assert_eq!(reachable, 3, "docker node ls:\n{managers}");
}

/// Kills the primary's postmaster on `dead`; returns how long until a write
/// (of `n`) through the VIP succeeds again, on `next`.
fn the_vip_follows_a_dead_primary(
    lab: &Lab,
    client: &str,
    password: &str,
    (dead, next, n): (&str, &str, u32),
) -> Duration {
    let primary = clone(lab, dead);
    let pidfile = primary
        .merged
        .join(format!("var/lib/postgresql/{PG_MAJOR}/main/postmaster.pid"));
    let postmaster = fs::read_to_string(pidfile)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let killed = Instant::now();
    primary.exec_ok(&["kill", "-KILL", &postmaster]);
    let mut wrote = None;
    while killed.elapsed() < Duration::from_secs(60) {
        if psql(
            client,
            VIP,
            password,
            &format!("INSERT INTO clones VALUES ({n})"),
        )
        .status
        .success()
        {
            wrote = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let wrote = wrote.unwrap_or_else(|| {
        panic!(
            "no write through the VIP after the master died\n{}",
            lab.diagnose()
        )
    });
    let successor = clone(lab, next);
    assert!(has_vip(successor), "the VIP is on {next}");
    assert_eq!(local(successor, "SELECT pg_is_in_recovery()"), "f");
    eprintln!("clones: {next}: {}", last_promote_log(successor));
    wrote
}

/// What `airlock-firstboot promote` last said on `c` (syslog).
fn last_promote_log(c: &Clone) -> String {
    let out = c.exec(&[
        "journalctl",
        "--no-pager",
        "-o",
        "cat",
        "-t",
        "airlock-promote",
        "-n",
        "1",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Drops every packet `c` receives from each of `from` (both ways when both
/// sides do it); `heal` removes it.
fn drop_from(c: &Clone, from: &[&str]) {
    for ip in from {
        run_ok(&[
            "ip", "netns", "exec", &c.ns, "iptables", "-I", "INPUT", "-s", ip, "-j", "DROP",
        ]);
    }
}

/// Cuts `c` off the network (its NIC drops everything; loopback works).
fn isolate(c: &Clone) {
    for chain in [["INPUT", "-i"], ["OUTPUT", "-o"]] {
        run_ok(&[
            "ip", "netns", "exec", &c.ns, "iptables", "-I", chain[0], chain[1], "eth0", "-j",
            "DROP",
        ]);
    }
}

fn heal(c: &Clone) {
    for chain in ["INPUT", "OUTPUT"] {
        run_ok(&["ip", "netns", "exec", &c.ns, "iptables", "-F", chain]);
    }
}

fn run_ok(args: &[&str]) {
    let out = run(Command::new(args[0]).args(&args[1..]));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `c`'s PostgreSQL answers as a writable primary (asked on `c`).
fn writable(c: &Clone) -> bool {
    let out = c.exec(&[
        "runuser",
        "-u",
        "postgres",
        "--",
        "psql",
        "-X",
        "-A",
        "-t",
        "-q",
        "-c",
        "SELECT pg_is_in_recovery()",
    ]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "f"
}

/// Samples both DB servers for `secs` seconds; panics at the first moment
/// both are writable primaries or `bad` says so.
fn never_two_primaries(lab: &Lab, secs: u64, mut bad: impl FnMut(&Lab) -> Option<String>) -> u32 {
    let start = Instant::now();
    let mut samples = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        let (a, b) = (writable(clone(lab, "db1")), writable(clone(lab, "db2")));
        assert!(
            !(a && b),
            "TWO WRITABLE PRIMARIES {:.1} s into the cut\n{}",
            start.elapsed().as_secs_f64(),
            lab.diagnose()
        );
        if let Some(why) = bad(lab) {
            panic!(
                "{why} {:.1} s into the cut\n{}",
                start.elapsed().as_secs_f64(),
                lab.diagnose()
            );
        }
        samples += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    samples
}

/// db2 was the primary whose postmaster was killed: re-joined as db1's
/// standby by the base-backup fallback. (pg_rewind would now recover the
/// crashed cluster first, with Debian's configuration file: its WAL is
/// removed here, as when a fenced server's restarts have recycled it, so
/// pg_rewind cannot and the fallback is what is tested.)
fn the_killed_primary_rejoins_by_base_backup(lab: &mut Lab) {
    clone(lab, "db2").exec_ok(&[
        "sh",
        "-c",
        &format!("rm -f /var/lib/postgresql/{PG_MAJOR}/main/pg_wal/0000*"),
    ]);
    let started = Instant::now();
    let said = clone(lab, "db2").exec_ok(&[
        "/usr/local/sbin/airlock-firstboot",
        "rejoin",
        "--wait",
        "120",
    ]);
    eprintln!(
        "clones: rejoin of the killed db2 took {:.1} s: {said}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        said.contains("streams from db1") && said.contains("a base backup (pg_rewind could not"),
        "{said}"
    );
    wait_until(lab, "db2 to stream from db1", BOUND, |lab| {
        local(clone(lab, "db2"), "SELECT status FROM pg_stat_wal_receiver") == "streaming"
    });
}

/// Only the link between the DB servers is cut; the witnesses still see
/// db1, so db2 is never promoted and never takes the VIP.
fn a_cut_between_the_db_servers_promotes_nobody(lab: &mut Lab, client: &str, password: &str) {
    let (db1, db2) = (clone(lab, "db1"), clone(lab, "db2"));
    drop_from(db1, &[&db2.ip]);
    drop_from(db2, &[&db1.ip]);
    let samples = never_two_primaries(lab, 12, |lab| {
        has_vip(clone(lab, "db2")).then(|| "db2 took the VIP".to_string())
    });
    let wrote = psql(client, VIP, password, "INSERT INTO clones VALUES (7)");
    assert!(
        wrote.status.success(),
        "db1 still takes writes through the VIP: {}",
        String::from_utf8_lossy(&wrote.stderr)
    );
    let said: serde_json::Value = serde_json::from_str(&clone(lab, "db2").exec_ok(&[
        "/usr/local/sbin/airlock-firstboot",
        "status",
        "--json",
    ]))
    .unwrap();
    assert_eq!(said["quorum"]["verdict"], "not-eligible", "{said}");
    status_tells_the_truth(lab, "disp1", "db1", Some("db2"), "DB link cut");
    eprintln!(
        "clones: DB link cut for 12 s ({samples} samples): db2 stayed a standby without the VIP; its guard said: {}",
        said["quorum"]["reason"]
    );
    let (db1, db2) = (clone(lab, "db1"), clone(lab, "db2"));
    heal(db1);
    heal(db2);
    let healed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    wait_until(lab, "db2 to stream from db1 again", BOUND, |lab| {
        local(clone(lab, "db2"), "SELECT status FROM pg_stat_wal_receiver") == "streaming"
    });
    if synchronous() {
        // The pair is whole again only once db1 has db2 in sync (db2's
        // check asks it and records the time): the next phase's promotion
        // depends on it.
        wait_until(lab, "db1 to have db2 in sync again", BOUND, |lab| {
            let out = clone(lab, "db2").exec(&["cat", "/run/airlock/sync-last-streaming"]);
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u64>()
                .is_ok_and(|t| t >= healed)
        });
    }
}

/// db1, the primary, is cut off from everyone: db2 is promoted once db1 has
/// surely stopped itself; db1 stops taking writes within the bound; after
/// the cut heals db1 comes back read-only, and re-joins.
fn an_isolated_master_stops_and_the_standby_takes_over(
    lab: &mut Lab,
    client: &str,
    password: &str,
) {
    let cut = Instant::now();
    isolate(clone(lab, "db1"));
    let mut stopped = None;
    let mut wrote = None;
    while cut.elapsed() < Duration::from_secs(60) && (stopped.is_none() || wrote.is_none()) {
        let (a, b) = (writable(clone(lab, "db1")), writable(clone(lab, "db2")));
        assert!(
            !(a && b),
            "TWO WRITABLE PRIMARIES {:.1} s after db1 was isolated\n{}",
            cut.elapsed().as_secs_f64(),
            lab.diagnose()
        );
        if !a && stopped.is_none() {
            stopped = Some(cut.elapsed());
        }
        if wrote.is_none()
            && psql(client, VIP, password, "INSERT INTO clones VALUES (8)")
                .status
                .success()
        {
            wrote = Some(cut.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (stopped, wrote) = (
        stopped.unwrap_or_else(|| panic!("db1 kept taking writes\n{}", lab.diagnose())),
        wrote.unwrap_or_else(|| panic!("no write through the VIP\n{}", lab.diagnose())),
    );
    eprintln!(
        "clones: db1 isolated: it stopped taking writes {:.2} s after the cut; a write through the VIP succeeded on db2 {:.2} s after the cut; db2: {}",
        stopped.as_secs_f64(),
        wrote.as_secs_f64(),
        last_promote_log(clone(lab, "db2"))
    );
    assert!(stopped < wrote, "db1 stopped before db2 was promoted");
    // The DB state keepalived's check writes is up to a couple of seconds
    // old (status says how old): give the new primary's a moment.
    let asked = Instant::now();
    let (v, code) = loop {
        let (v, code) = cluster_status(lab, "disp1");
        if v["db"]["primaries"] == serde_json::json!(["db2"])
            || asked.elapsed() > Duration::from_secs(10)
        {
            break (v, code);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["db"]["primaries"], serde_json::json!(["db2"]), "{v:#}");
    let db1 = v["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["host"] == "db1" || h["name"] == "db1"))
        .cloned()
        .unwrap_or_default();
    eprintln!(
        "clones: status --cluster on disp1 (db1 isolated): exit {code}, not ready: {}; db1: {}",
        v["not_ready"], db1
    );
    heal(clone(lab, "db1"));
    wait_until(
        lab,
        "db1 to come back read-only after the cut healed",
        BOUND,
        |lab| {
            let db1 = clone(lab, "db1");
            local_try(db1, "SELECT pg_is_in_recovery()").as_deref() == Some("t")
        },
    );
    never_two_primaries(lab, 5, |lab| {
        (!has_vip(clone(lab, "db2"))).then(|| "the VIP left db2".to_string())
    });
    let db1 = lab.clone_named("db1");
    let fence = db1.status()["fenced"].clone();
    assert!(
        fence["reason"]
            .as_str()
            .is_some_and(|r| r.contains("answered as a primary")),
        "{fence}"
    );
    let said = clone(lab, "db1").exec_ok(&[
        "/usr/local/sbin/airlock-firstboot",
        "rejoin",
        "--wait",
        "120",
    ]);
    // pg_rewind, or a base backup when the fenced server's own restarts
    // have recycled the WAL it would need.
    assert!(said.contains("streams from db2"), "{said}");
    let why: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("pg_rewind:"))
        .collect();
    eprintln!(
        "clones: db1 re-joined after the isolation: {} {why:?}",
        said.lines().next().unwrap_or_default()
    );
    assert!(
        psql(client, VIP, password, "INSERT INTO clones VALUES (9)")
            .status
            .success()
    );
}

/// A client inserts row after row through the VIP while db2's postmaster
/// is killed; every insert psql acknowledged must be on db1, the new
/// primary (synchronous replication: none lost; asynchronous: counted).
fn acknowledged_commits_survive_a_failover_under_load(lab: &Lab, client: &str, password: &str) {
    assert!(
        psql(
            client,
            VIP,
            password,
            "CREATE TABLE load (id int PRIMARY KEY)"
        )
        .status
        .success()
    );
    let said: serde_json::Value = serde_json::from_str(&clone(lab, "db2").exec_ok(&[
        "/usr/local/sbin/airlock-firstboot",
        "status",
        "--json",
    ]))
    .unwrap();
    eprintln!(
        "clones: before the load, db2 (the primary) says: {}",
        said["synchronous"]
    );
    if synchronous() {
        assert!(
            said["synchronous"].is_null(),
            "protected (no unprotected or waiting line) before the load: {said}"
        );
        // What PostgreSQL itself says: db2 waits for db1's WAL receiver, by
        // name, and nothing else.
        let db2 = clone(lab, "db2");
        let names = local(db2, "SHOW synchronous_standby_names");
        let senders = local(
            db2,
            "SELECT application_name || ' ' || state || ' ' || sync_state FROM pg_stat_replication",
        );
        eprintln!("clones: before the load, db2 waits for {names}; its walsenders: {senders:?}");
        assert_eq!(names, "\"db1\"");
        assert_eq!(senders, "db1 streaming sync");
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acked = std::sync::Mutex::new(Vec::new());
    let (killed_at, back_at) = std::thread::scope(|s| {
        s.spawn(|| {
            let mut id = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                id += 1;
                let sql = format!("INSERT INTO load VALUES ({id})");
                if psql(client, VIP, password, &sql).status.success() {
                    acked.lock().unwrap().push(id);
                }
            }
        });
        std::thread::sleep(Duration::from_secs(3));
        let before = acked.lock().unwrap().len();
        let t = the_postmaster_of(clone(lab, "db2"));
        let killed = Instant::now();
        clone(lab, "db2").exec_ok(&["kill", "-KILL", &t]);
        // Back when acknowledgements resume, then a little more load.
        let mut back = None;
        while killed.elapsed() < Duration::from_secs(60) {
            let n = acked.lock().unwrap().len();
            if n > before + 5 && back.is_none() {
                back = Some(killed.elapsed());
            }
            if back.is_some_and(|b| killed.elapsed() > b + Duration::from_secs(2)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (before, back)
    });
    let back = back_at.unwrap_or_else(|| panic!("no write after the failover\n{}", lab.diagnose()));
    let acked = acked.into_inner().unwrap();
    let present: std::collections::BTreeSet<u32> = local(clone(lab, "db1"), "SELECT id FROM load")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let lost: Vec<u32> = acked
        .iter()
        .copied()
        .filter(|id| !present.contains(id))
        .collect();
    eprintln!(
        "clones: under load ({} acknowledged inserts, {killed_at} before the kill), writes resumed {:.2} s after db2's postmaster was killed; acknowledged commits missing on db1: {} {lost:?} ({} replication)",
        acked.len(),
        back.as_secs_f64(),
        lost.len(),
        if synchronous() {
            "synchronous"
        } else {
            "asynchronous"
        }
    );
    if synchronous() {
        if !lost.is_empty() {
            for name in ["db1", "db2"] {
                let c = clone(lab, name);
                eprintln!(
                    "{}--- {name}'s PostgreSQL log\n{}",
                    c.diagnose(),
                    String::from_utf8_lossy(
                        &c.exec(&[
                            "tail",
                            "-n",
                            "40",
                            &format!("/var/log/postgresql/postgresql-{PG_MAJOR}-main.log"),
                        ])
                        .stdout
                    )
                );
            }
        }
        assert!(lost.is_empty(), "synchronous replication lost {lost:?}");
    }
}

/// The postmaster's pid on `c`.
fn the_postmaster_of(c: &Clone) -> String {
    fs::read_to_string(
        c.merged
            .join(format!("var/lib/postgresql/{PG_MAJOR}/main/postmaster.pid")),
    )
    .unwrap()
    .lines()
    .next()
    .unwrap()
    .to_string()
}

/// The stand's replication: synchronous unless `AIRLOCK_CLONES_ASYNC=1`.
fn synchronous() -> bool {
    std::env::var("AIRLOCK_CLONES_ASYNC").map_or(true, |v| v != "1")
}

/// `airlock-firstboot status --cluster --json` run on `on` (as root, as a
/// person would), and its exit status.
fn cluster_status(lab: &Lab, on: &str) -> (serde_json::Value, i32) {
    let out = clone(lab, on).exec(&[
        "/usr/local/sbin/airlock-firstboot",
        "status",
        "--cluster",
        "--json",
    ]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --cluster on {on}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code().unwrap_or(-1))
}

/// What status --cluster says matches what PostgreSQL, keepalived (the
/// VIP's address) and Docker say, asked directly on each clone.
fn status_tells_the_truth(lab: &Lab, on: &str, primary: &str, standby: Option<&str>, stage: &str) {
    let (v, code) = cluster_status(lab, on);
    let db = &v["db"];
    assert_eq!(
        db["primaries"],
        serde_json::json!([primary]),
        "{stage}: {v:#}"
    );
    assert_eq!(db["split_brain"], false, "{stage}");
    assert!(
        writable(clone(lab, primary)),
        "{stage}: {primary} is the primary"
    );
    let vip_on: Vec<&str> = ["db1", "db2"]
        .into_iter()
        .filter(|h| has_vip(clone(lab, h)))
        .collect();
    assert_eq!(db["vip_on"], serde_json::json!(vip_on), "{stage}: {v:#}");
    if let Some(sb) = standby {
        let receiver = local(clone(lab, sb), "SELECT status FROM pg_stat_wal_receiver");
        let said = db["standbys"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == sb))
            .unwrap_or_else(|| panic!("{stage}: no standby {sb}: {v:#}"));
        assert_eq!(
            said["streaming"],
            receiver == "streaming",
            "{stage}: {said}"
        );
    }
    let docker = clone(lab, "disp1").exec_ok(&[
        "docker",
        "node",
        "ls",
        "--format",
        "{{.Hostname}} {{.ManagerStatus}}",
    ]);
    let reachable = docker
        .lines()
        .filter(|l| l.ends_with(" Leader") || l.ends_with(" Reachable"))
        .count();
    let said = v["swarm"]["managers"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["reachable"] == true).count());
    assert_eq!(said, reachable, "{stage}: swarm {v:#}\n{docker}");
    eprintln!(
        "clones: status --cluster on {on} ({stage}): exit {code}, ready {}, {}",
        v["ready"], v["not_ready"]
    );
    if v["ready"] == true {
        assert_eq!(code, 0);
    } else {
        assert_eq!(code, 1);
    }
}

/// `airlock-firstboot report` on db1, then `airlock report check` against
/// the bundle on the build side. The stand's image comes from Debian's
/// mirror, not from the bundle's discs, so the check must fail naming
/// those packages; the report carries the cluster's status (ready).
fn the_as_built_report(lab: &Lab, bundle: &Path) {
    let db1 = clone(lab, "db1");
    let said = db1.exec_ok(&[
        "/usr/local/sbin/airlock-firstboot",
        "report",
        "--out",
        "/root/db1-as-built.json",
    ]);
    let file = db1.merged.join("root/db1-as-built.json");
    let report: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        report["cluster_status"]["ready"], true,
        "{}",
        report["cluster_status"]
    );
    let packages = report["hosts"][0]["packages"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(packages > 100, "{packages} packages in the report");
    let out = run(Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["report", "check"])
        .arg(&file)
        .arg("--bundle")
        .arg(bundle));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("not-in-bundle") || text.contains("NOT-IN-BUNDLE"),
        "{text}"
    );
    assert!(
        text.contains("the cluster was ready when the report was written"),
        "{text}"
    );
    eprintln!(
        "clones: as-built report of db1 ({packages} packages; {}; cluster ready: {}); report check: {}",
        said.lines().next().unwrap_or_default(),
        report["cluster_status"]["ready"],
        text.lines().last().unwrap_or_default()
    );
}

/// psql as postgres on the clone; None when it fails.
fn local_try(c: &Clone, sql: &str) -> Option<String> {
    let out = c.exec(&[
        "runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-q", "-d", "space", "-c", sql,
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The old master is rebooted: it comes back read-only, says why, and the
/// VIP stays with the new primary.
fn the_old_master_comes_back_read_only(lab: &mut Lab, client: &str, password: &str) {
    let db1 = lab.clone_named("db1");
    db1.poweroff();
    db1.boot();
    wait_until(
        lab,
        "the old master's runner to say it is not a primary",
        BOUND,
        |lab| {
            let db1 = lab.clone_named("db1");
            state(db1) == "failed" && !db1.status()["fenced"].is_null()
        },
    );
    let db1 = clone(lab, "db1");
    assert_eq!(
        local(db1, "SELECT pg_is_in_recovery()"),
        "t",
        "the old master is read-only"
    );
    let refused = psql(client, &db1.ip, password, "INSERT INTO clones VALUES (3)");
    assert!(
        !refused.status.success(),
        "a write on the old master was accepted"
    );
    let text = String::from_utf8_lossy(
        &run(Command::new(env!("CARGO_BIN_EXE_airlock-firstboot"))
            .args(["status", "--root"])
            .arg(&db1.merged))
        .stdout,
    )
    .into_owned();
    assert!(
        text.contains("NOT A PRIMARY") && text.contains("db2"),
        "{text}"
    );
    assert!(
        has_vip(clone(lab, "db2")),
        "the VIP stays with the new primary"
    );
    assert!(
        psql(client, VIP, password, "INSERT INTO clones VALUES (4)")
            .status
            .success()
    );
}

/// `airlock-firstboot rejoin` on the old master: pg_rewind (wal_log_hints is
/// on from the pg-config step), a standby of db2, the rows written through
/// the VIP after the failover, its data kept aside, its runner done again.
fn the_old_master_rejoins_as_a_standby(lab: &mut Lab, client: &str, password: &str) {
    let started = Instant::now();
    let said = clone(lab, "db1").exec_ok(&[
        "/usr/local/sbin/airlock-firstboot",
        "rejoin",
        "--wait",
        "120",
    ]);
    eprintln!(
        "clones: rejoin of the old master took {:.1} s: {said}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        said.contains("streams from db2") && said.contains("rejoined with pg_rewind"),
        "{said}"
    );
    let db1 = clone(lab, "db1");
    assert_eq!(local(db1, "SELECT pg_is_in_recovery()"), "t");
    assert_eq!(
        local(db1, "SELECT status FROM pg_stat_wal_receiver"),
        "streaming"
    );
    assert!(
        psql(client, VIP, password, "INSERT INTO clones VALUES (5)")
            .status
            .success()
    );
    wait_until(
        lab,
        "the row written after the rejoin on db1",
        BOUND,
        |lab| {
            local(
                clone(lab, "db1"),
                "SELECT count(*) FROM clones WHERE n IN (4, 5)",
            ) == "2"
        },
    );
    let db1 = clone(lab, "db1");
    assert!(db1.status()["fenced"].is_null(), "the fence record is gone");
    let kept = db1.exec_ok(&[
        "sh",
        "-c",
        &format!("ls -d /var/lib/postgresql/{PG_MAJOR}/main.airlock-old-*"),
    ]);
    assert_eq!(
        kept.lines().count(),
        1,
        "the old data is kept aside: {kept}"
    );
    db1.exec_ok(&[
        "/usr/local/sbin/airlock-firstboot",
        "run",
        "--wait",
        "60",
        "--quiet",
    ]);
    assert_eq!(state(db1), "done", "{}", db1.status());
    assert!(has_vip(clone(lab, "db2")), "the VIP stays with db2");
}
