//! What every clone does first: take its identity (hostname, hosts and,
//! when cloud-init did not, its address), use the cluster's repository, and
//! make sure it is a machine of its own (machine id, SSH host keys).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::step;
use crate::shared::paths;
use crate::shared::render;
use crate::vm::discovery;
use crate::vm::engine::{Ctx, Step};
use crate::vm::exec::Cmd;
use crate::vm::prepare::{self, ImageIdentity};

pub fn steps() -> Vec<Step> {
    vec![
        step("identity", identity_check, identity_apply),
        step("repository", repository_check, repository_apply),
        step("clone-hygiene", hygiene_check, hygiene_apply),
        step("peer-user", peer_user_check, peer_user_apply),
    ]
}

// --- forced-command users -------------------------------------------------------

fn home_keys(user: &str) -> String {
    format!("/home/{user}/.ssh/authorized_keys")
}

/// Does `user` exist with the authorized_keys the payload gives (`src`)?
pub fn forced_command_user_check(c: &Ctx, user: &str, src: &str) -> Result<bool> {
    let want = c.read(src);
    Ok(
        !want.is_empty()
            && want == c.read(&home_keys(user))
            && c.exec.ok(&Cmd::new("id").arg(user)),
    )
}

/// A system user whose only SSH login is the key in `src`, whose
/// `command=` the key line forces.
pub fn forced_command_user(c: &Ctx, user: &str, comment: &str, src: &str) -> Result<()> {
    if !c.exec.ok(&Cmd::new("id").arg(user)) {
        // useradd refuses a colon in the comment (it separates passwd fields).
        c.exec.run(&Cmd::new("useradd").args([
            "--system",
            "--create-home",
            "--shell",
            "/bin/sh",
            "--comment",
            comment,
            user,
        ]))?;
        // No password, but not "locked" ('!'): sshd refuses locked accounts
        // even for keys when PAM is off.
        c.exec.run(&Cmd::new("usermod").args(["-p", "*", user]))?;
    }
    let want = fs::read_to_string(c.path(src)).with_context(|| format!("reading {src}"))?;
    // Public keys only: readable, as sshd reads it with the user's rights.
    c.write(&home_keys(user), &want, 0o644)?;
    let ssh_dir = c.path(&format!("/home/{user}/.ssh"));
    c.exec.run(&Cmd::new("chown").args([
        "-R",
        &format!("{user}:{user}"),
        &ssh_dir.display().to_string(),
    ]))?;
    Ok(())
}

// --- peer-user ------------------------------------------------------------------

/// The peer user answers the other hosts' questions (`airlock-firstboot
/// answer`). It reads the role file (no secret in it) through its group and
/// the journal (0644, in a 0755 directory; the journal holds no secret).
/// On a dispatcher where sudo is installed, it may run one read-only
/// command as root, `docker node ls` ([`render::peer_sudoers`]); where sudo
/// is not installed, `status --cluster` learns the swarm only when it runs
/// on a dispatcher (as root) and says so otherwise. It lingers: without
/// that, a question after a quiet spell starts (and later stops) the
/// user's whole systemd instance through pam_systemd, hundreds of
/// milliseconds of a failover's vote.
fn peer_user_check(c: &Ctx) -> Result<bool> {
    let peer_reads = |p: &str| {
        c.exec.ok(&Cmd::new("runuser").args([
            "-u",
            paths::PEER_USER,
            "--",
            "test",
            "-r",
            &c.path(p).display().to_string(),
        ]))
    };
    let lingers = !c.path("/usr/bin/loginctl").exists() || c.path(&linger_file()).exists();
    Ok(lingers
        && forced_command_user_check(c, paths::PEER_USER, paths::PEER_AUTHORIZED_KEYS)?
        && peer_reads(paths::ROLE_FILE)
        && peer_reads(paths::JOURNAL)
        && (!wants_sudoers(c) || sudo_rule_holds(c)))
}

/// The peer user's sudo rule is in place, and sudo itself says it is in
/// force (an /etc/sudoers that does not include sudoers.d would leave it
/// without effect).
fn sudo_rule_holds(c: &Ctx) -> bool {
    c.read(paths::PEER_SUDOERS) == render::peer_sudoers()
        && crate::shared::writer::mode_of(&c.path(paths::PEER_SUDOERS)) == Some(0o440)
        && c.exec.ok(&Cmd::new("sudo")
            .args(["-n", "-l", "-U", paths::PEER_USER])
            .args(paths::PEER_SWARM_COMMAND))
}

/// A dispatcher with sudo installed gets the peer user's one sudo rule.
fn wants_sudoers(c: &Ctx) -> bool {
    c.role.host.role.is_dispatcher() && c.path(VISUDO).is_file()
}

/// sudo's checker, installed with sudo.
const VISUDO: &str = "/usr/sbin/visudo";

/// logind's marker that a user's systemd instance stays up between logins.
fn linger_file() -> String {
    format!("/var/lib/systemd/linger/{}", paths::PEER_USER)
}

fn peer_user_apply(c: &Ctx) -> Result<()> {
    forced_command_user(
        c,
        paths::PEER_USER,
        "airlock answers for the other cluster hosts",
        paths::PEER_AUTHORIZED_KEYS,
    )?;
    if c.path("/usr/bin/loginctl").exists()
        && let Err(e) = c
            .exec
            .run(&Cmd::new("loginctl").args(["enable-linger", paths::PEER_USER]))
    {
        // logind not running (yet): its marker file does the same at its
        // next start.
        eprintln!(
            "airlock-firstboot: {e:#}; writing {} instead",
            linger_file()
        );
        c.write(&linger_file(), "", 0o644)?;
    }
    let role = c.path(paths::ROLE_FILE).display().to_string();
    c.exec
        .run(&Cmd::new("chgrp").args([paths::PEER_USER, &role]))?;
    c.exec.run(&Cmd::new("chmod").args(["0640", &role]))?;
    // The journal is written 0644; one from an older runner may not be.
    let journal = c.path(paths::JOURNAL);
    for (mode, p) in [
        ("0755", journal.parent()),
        ("0644", Some(journal.as_path())),
    ] {
        if let Some(p) = p.filter(|p| p.exists()) {
            c.exec
                .run(&Cmd::new("chmod").args([mode, &p.display().to_string()]))?;
        }
    }
    if wants_sudoers(c) {
        peer_sudo_rule(c)?;
    }
    Ok(())
}

/// Writes the sudo rule where sudo does not read it, has visudo check it,
/// then puts it in /etc/sudoers.d (a broken file there would break sudo for
/// everyone).
fn peer_sudo_rule(c: &Ctx) -> Result<()> {
    let staged = "/etc/airlock/peer-sudoers";
    c.write(staged, &render::peer_sudoers(), 0o440)?;
    c.exec.run(&Cmd::new("visudo").args([
        "-c",
        "-q",
        "-f",
        &c.path(staged).display().to_string(),
    ]))?;
    c.write(paths::PEER_SUDOERS, &render::peer_sudoers(), 0o440)?;
    Ok(())
}

// --- identity -----------------------------------------------------------------

/// cloud-init configured this very instance (its network config included).
fn cloud_init_configured(c: &Ctx) -> bool {
    c.read(paths::CLOUD_INSTANCE_ID).trim() == c.role.instance_id
}

/// The NIC to configure: the one with the recipe's MAC, else by name.
fn interface(c: &Ctx) -> String {
    let h = &c.role.host;
    h.mac
        .as_ref()
        .and_then(|mac| {
            discovery::interfaces(c.root)
                .into_iter()
                .find(|(_, m)| m == mac)
                .map(|(name, _)| name)
        })
        .unwrap_or_else(|| h.interface.clone())
}

fn identity_check(c: &Ctx) -> Result<bool> {
    let h = &c.role.host;
    let network_ok = cloud_init_configured(c)
        || c.read(paths::IFUPDOWN_FILE) == render::ifupdown_config(h, &interface(c));
    Ok(c.read("/etc/hostname").trim() == h.name
        && c.read("/etc/hosts") == render::etc_hosts(c.role)
        && network_ok)
}

fn identity_apply(c: &Ctx) -> Result<()> {
    let h = &c.role.host;
    c.write("/etc/hostname", &format!("{}\n", h.name), 0o644)?;
    c.write("/etc/hosts", &render::etc_hosts(c.role), 0o644)?;
    c.exec.run(&Cmd::new("hostname").arg(&h.name))?;
    if cloud_init_configured(c) {
        return Ok(());
    }
    // cloud-init applies the seed's network-config; without it (no
    // cloud-init, or a clone found in the inventory) the runner sets the
    // static address itself: a file for the next boots, and now.
    let nic = interface(c);
    c.write(
        paths::IFUPDOWN_FILE,
        &render::ifupdown_config(h, &nic),
        0o644,
    )?;
    let addr = format!("{}/{}", h.ip, h.prefix);
    let ip = |args: &[&str]| c.exec.run(&Cmd::new("ip").args(args.iter().copied()));
    ip(&["addr", "replace", &addr, "dev", &nic])?;
    ip(&["link", "set", &nic, "up"])?;
    ip(&[
        "route",
        "replace",
        "default",
        "via",
        &h.gateway.to_string(),
        "dev",
        &nic,
    ])?;
    Ok(())
}

// --- repository ------------------------------------------------------------------

/// The name apt gives the local copy of `path` from a `file:` source in
/// /var/lib/apt/lists (its URItoFileName: special characters quoted, then
/// `/` made `_`).
fn apt_list_name(path: &str) -> String {
    let mut s = String::new();
    for ch in path.chars() {
        if "\\|{}[]<>\"^~_=!@#$%&*".contains(ch) || ch.is_ascii_control() {
            s.push_str(&format!("%{:02x}", ch as u32));
        } else {
            s.push(ch);
        }
    }
    s.replace('/', "_")
}

/// apt has read the repository's signed index (`apt-get update` passed).
fn apt_has_the_index(c: &Ctx) -> bool {
    let r = &c.role.repository;
    let name = apt_list_name(&format!("{}/dists/{}/InRelease", r.root, r.suite));
    c.path("/var/lib/apt/lists").join(name).is_file()
}

fn repository_check(c: &Ctx) -> Result<bool> {
    let r = &c.role.repository;
    Ok(prepare::vendor_links_hold(c.root, &r.vendor_paths, &r.root)
        && c.path(&r.trusted_keyring).is_file()
        && c.read(paths::APT_SOURCES) == render::apt_sources(c.role)
        && c.read(paths::APT_CONF) == render::apt_conf()
        && apt_has_the_index(c))
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
    prepare::link_vendor_paths(c.root, &r.vendor_paths, &r.root)?;
    c.write(paths::APT_SOURCES, &render::apt_sources(c.role), 0o644)?;
    c.write(paths::APT_CONF, &render::apt_conf(), 0o644)?;
    // This source alone: whatever else sources.list holds (a cdrom line,
    // an unreachable mirror) would only fail or wait here; the vendor
    // installer writes its own sources.list later.
    c.exec.run(&Cmd::new("apt-get").args([
        "-q",
        "update",
        "-o",
        &format!("Dir::Etc::SourceList={}", paths::APT_SOURCES),
        "-o",
        "Dir::Etc::SourceParts=-",
        "-o",
        "APT::Get::List-Cleanup=0",
    ]))?;
    Ok(())
}

// --- clone hygiene ---------------------------------------------------------------

fn is_machine_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The D-Bus machine id, when it is a file of its own (a link to
/// /etc/machine-id is always right).
fn dbus_id(c: &Ctx) -> Option<String> {
    let p = c.path(DBUS_MACHINE_ID);
    let meta = fs::symlink_metadata(&p).ok()?;
    meta.is_file().then(|| {
        fs::read_to_string(&p)
            .unwrap_or_default()
            .trim()
            .to_string()
    })
}

const DBUS_MACHINE_ID: &str = "/var/lib/dbus/machine-id";

fn has_sshd(c: &Ctx) -> bool {
    c.path("/usr/sbin/sshd").exists()
}

/// sshd serves: the other hosts ask this one questions over SSH.
fn sshd_active(c: &Ctx) -> bool {
    c.exec
        .ok(&Cmd::new("systemctl").args(["is-active", "--quiet", "ssh.service"]))
}

fn hygiene_check(c: &Ctx) -> Result<bool> {
    let image = ImageIdentity::load(c.root);
    let id = c.read("/etc/machine-id").trim().to_string();
    let id_ok = is_machine_id(&id) && !image.machine_ids.contains(&id);
    let dbus_ok = dbus_id(c).is_none_or(|d| d == id);
    let keys = prepare::ssh_host_keys(c.root);
    let keys_ok = !has_sshd(c)
        || (!keys.is_empty()
            && keys.iter().all(|k| !image.ssh_host_keys.contains(k))
            && sshd_active(c));
    Ok(id_ok && dbus_ok && keys_ok)
}

fn hygiene_apply(c: &Ctx) -> Result<()> {
    let image = ImageIdentity::load(c.root);
    let mut id = c.read("/etc/machine-id").trim().to_string();
    if !is_machine_id(&id) || image.machine_ids.contains(&id) {
        // A copy of the image's id (or none): this clone gets its own. It
        // takes full effect at the next boot (journald keeps its directory).
        eprintln!(
            "airlock-firstboot: this clone had the prepared image's machine id {id:?}: giving it its own"
        );
        id = new_machine_id()?;
        c.write("/etc/machine-id", &format!("{id}\n"), 0o444)?;
    }
    if dbus_id(c).is_some_and(|d| d != id) {
        c.write(DBUS_MACHINE_ID, &format!("{id}\n"), 0o444)?;
    }
    if has_sshd(c) {
        let before = prepare::ssh_host_keys(c.root);
        let copies = remove_copied_host_keys(c.root, &image)?;
        c.exec
            .run(&Cmd::new("ssh-keygen").args(["-A", "-f", &c.root.display().to_string()]))?;
        if copies > 0 {
            eprintln!(
                "airlock-firstboot: replaced {copies} SSH host key(s) copied from the prepared image"
            );
        }
        // sshd did not start without host keys (a clone whose payload the
        // runner put in place after sshd's start at boot), or serves the
        // copies: start it again with this clone's own. (systemd stops
        // retrying a unit that failed fast a few times at boot: forget
        // that first.)
        if prepare::ssh_host_keys(c.root) != before || !sshd_active(c) {
            let _ = c
                .exec
                .output(&Cmd::new("systemctl").args(["reset-failed", "ssh.service"]));
            c.exec
                .run(&Cmd::new("systemctl").args(["restart", "ssh.service"]))?;
        }
    }
    Ok(())
}

/// 128 random bits from the kernel, as systemd-machine-id-setup makes them.
fn new_machine_id() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| anyhow::anyhow!("reading /dev/urandom for a machine id: {e}"))?;
    Ok(crate::shared::hex(&bytes))
}

/// Removes the host key pairs whose public half the image had; returns how
/// many.
fn remove_copied_host_keys(root: &Path, image: &ImageIdentity) -> Result<usize> {
    let mut removed = 0;
    for (pub_path, blob) in prepare::ssh_host_key_files(root) {
        if image.ssh_host_keys.contains(&blob) {
            let private = pub_path.with_extension("");
            for p in [&pub_path, &private] {
                match fs::remove_file(p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::engine::run_steps;
    use crate::vm::exec::Recording;
    use crate::vm::testing::{fixture_role, journal_for, put};

    fn ctx<'a>(
        root: &'a Path,
        role: &'a crate::shared::role::RoleFile,
        fake: &'a Recording,
    ) -> Ctx<'a> {
        Ctx::new(root, role, fake, 0, None, journal_for(role))
    }

    #[test]
    fn without_cloud_init_the_address_is_set_with_ip_on_the_nic_with_the_mac() {
        let dir = tempfile::tempdir().unwrap();
        let role = fixture_role("disp3");
        put(
            dir.path(),
            "/sys/class/net/ens3/address",
            "52:54:00:00:02:23\n",
        );
        let fake = Recording::new();
        let c = ctx(dir.path(), &role, &fake);
        run_steps(&c, &steps()[..1]).unwrap();
        assert_eq!(
            fake.commands(),
            [
                "hostname disp3",
                "ip addr replace 192.0.2.23/24 dev ens3",
                "ip link set ens3 up",
                "ip route replace default via 192.0.2.1 dev ens3"
            ]
        );
        let net = c.read(paths::IFUPDOWN_FILE);
        assert!(net.contains("iface ens3 inet static") && net.contains("gateway 192.0.2.1"));
        assert!(!net.contains("route add"), "{net}");
        // Again: the effect holds, nothing runs.
        let again = Recording::new();
        run_steps(&ctx(dir.path(), &role, &again), &steps()[..1]).unwrap();
        assert!(again.commands().is_empty(), "{:?}", again.commands());
    }

    #[test]
    fn the_peer_user_reads_the_role_file_and_journal_and_on_a_dispatcher_may_list_the_swarm() {
        for (host, sudo_rule) in [("disp1", true), ("db1", false)] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            let role = fixture_role(host);
            put(root, paths::ROLE_FILE, &role.to_toml().unwrap());
            put(
                root,
                paths::PEER_AUTHORIZED_KEYS,
                "restrict,command=\"x\" ssh-ed25519 AAAA\n",
            );
            put(root, VISUDO, "");
            let fake = Recording::new();
            run_steps(&ctx(root, &role, &fake), &steps()[3..4]).unwrap();
            let r = root.display();
            let mut want = vec![
                "id airlock-peer".to_string(),
                format!("chown -R airlock-peer:airlock-peer {r}/home/airlock-peer/.ssh"),
                format!("chgrp airlock-peer {r}/etc/airlock/role.toml"),
                format!("chmod 0640 {r}/etc/airlock/role.toml"),
                format!("chmod 0755 {r}/var/lib/airlock"),
                format!("chmod 0644 {r}/var/lib/airlock/journal"),
            ];
            if sudo_rule {
                want.push(format!("visudo -c -q -f {r}/etc/airlock/peer-sudoers"));
            }
            want.extend([
                "id airlock-peer".to_string(),
                format!("runuser -u airlock-peer -- test -r {r}/etc/airlock/role.toml"),
                format!("runuser -u airlock-peer -- test -r {r}/var/lib/airlock/journal"),
            ]);
            if sudo_rule {
                want.push(
                    "sudo -n -l -U airlock-peer /usr/bin/docker node ls --format '{{json .}}'"
                        .into(),
                );
            }
            assert_eq!(fake.commands(), want, "{host}");
            let rule = root.join("etc/sudoers.d/airlock-peer");
            assert_eq!(rule.exists(), sudo_rule, "{host}");
            if sudo_rule {
                assert_eq!(crate::shared::writer::mode_of(&rule), Some(0o440));
                assert!(
                    fs::read_to_string(&rule).unwrap().ends_with(
                        "\nairlock-peer ALL=(root) NOPASSWD: /usr/bin/docker node ls --format {{json .}}\n"
                    )
                );
            }
        }
    }

    #[test]
    fn with_logind_the_peer_user_lingers_so_a_question_starts_no_user_manager() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("db2");
        put(root, paths::ROLE_FILE, &role.to_toml().unwrap());
        put(
            root,
            paths::PEER_AUTHORIZED_KEYS,
            "restrict ssh-ed25519 AAAA\n",
        );
        put(root, "/usr/bin/loginctl", "");
        put(
            root,
            "/home/airlock-peer/.ssh/authorized_keys",
            "restrict ssh-ed25519 AAAA\n",
        );
        let fake = Recording::new();
        let c = ctx(root, &role, &fake);
        assert!(!peer_user_check(&c).unwrap(), "no linger yet");
        peer_user_apply(&c).unwrap();
        assert!(fake.ran("loginctl enable-linger airlock-peer"));
        put(root, "/var/lib/systemd/linger/airlock-peer", "");
        assert!(peer_user_check(&c).unwrap());
    }

    #[test]
    fn when_cloud_init_configured_this_instance_the_network_is_left_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let role = fixture_role("db1");
        put(dir.path(), paths::CLOUD_INSTANCE_ID, "iid-db1\n");
        let fake = Recording::new();
        run_steps(&ctx(dir.path(), &role, &fake), &steps()[..1]).unwrap();
        assert_eq!(fake.commands(), ["hostname db1"]);
        assert!(!dir.path().join("etc/network/interfaces.d/airlock").exists());
    }

    #[test]
    fn the_repository_step_links_the_vendor_paths_and_lets_a_slow_clock_use_it() {
        let dir = tempfile::tempdir().unwrap();
        let role = fixture_role("db1");
        let fake = Recording::new();
        let c = ctx(dir.path(), &role, &fake);
        let e = format!("{:#}", repository_apply(&c).unwrap_err());
        assert!(e.contains("airlock-firstboot prepare"), "{e}");
        put(
            dir.path(),
            "/opt/airlock/repo/dists/1.7_x86-64/InRelease",
            "x",
        );
        put(
            dir.path(),
            "/etc/apt/trusted.gpg.d/airlock-archive.gpg",
            "k",
        );
        repository_apply(&c).unwrap();
        assert_eq!(
            fake.commands(),
            [
                "apt-get -q update -o Dir::Etc::SourceList=/etc/apt/sources.list.d/airlock.list -o Dir::Etc::SourceParts=- -o APT::Get::List-Cleanup=0"
            ]
        );
        assert!(!repository_check(&c).unwrap(), "apt has no index yet");
        put(
            dir.path(),
            "/var/lib/apt/lists/_opt_airlock_repo_dists_1.7%5fx86-64_InRelease",
            "x",
        );
        assert!(repository_check(&c).unwrap());
        assert_eq!(
            fs::read_link(dir.path().join("opt/devel")).unwrap(),
            Path::new("airlock/repo")
        );
        assert!(
            c.read(paths::APT_CONF)
                .contains("Acquire::Max-FutureTime::airlock \"316224000\";")
        );
    }

    #[test]
    fn a_clone_with_the_images_machine_id_and_host_keys_gets_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let image_id = "0123456789abcdef0123456789abcdef";
        put(root, "/etc/machine-id", &format!("{image_id}\n"));
        put(root, DBUS_MACHINE_ID, &format!("{image_id}\n"));
        put(root, "/usr/sbin/sshd", "");
        put(root, "/etc/ssh/ssh_host_ed25519_key", "private");
        put(
            root,
            "/etc/ssh/ssh_host_ed25519_key.pub",
            "ssh-ed25519 AAAAimage root@reference\n",
        );
        ImageIdentity {
            machine_ids: vec![image_id.into()],
            ssh_host_keys: vec!["AAAAimage".into()],
        }
        .save(root)
        .unwrap();
        let role = fixture_role("db2");
        let fake = Recording::new();
        let c = ctx(root, &role, &fake);
        assert!(!hygiene_check(&c).unwrap());
        hygiene_apply(&c).unwrap();
        let id = c.read("/etc/machine-id").trim().to_string();
        assert!(is_machine_id(&id) && id != image_id, "{id}");
        assert_eq!(c.read(DBUS_MACHINE_ID).trim(), id);
        assert!(!root.join("etc/ssh/ssh_host_ed25519_key").exists());
        assert_eq!(
            fake.commands(),
            [
                format!("ssh-keygen -A -f {}", root.display()),
                "systemctl reset-failed ssh.service".into(),
                "systemctl restart ssh.service".into()
            ]
        );
        // A length-only check would have accepted the copy; this one holds
        // only once the keys are new (here the fake made none).
        assert!(!hygiene_check(&c).unwrap());
        put(
            root,
            "/etc/ssh/ssh_host_ed25519_key.pub",
            "ssh-ed25519 AAAAnew root@db2\n",
        );
        assert!(hygiene_check(&c).unwrap());
    }

    #[test]
    fn an_sshd_that_failed_at_boot_before_the_payload_gave_it_a_key_is_started() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(
            root,
            "/etc/machine-id",
            "0123456789abcdef0123456789abcdef\n",
        );
        put(root, "/usr/sbin/sshd", "");
        put(root, "/etc/ssh/ssh_host_ed25519_key", "private");
        put(
            root,
            "/etc/ssh/ssh_host_ed25519_key.pub",
            "ssh-ed25519 AAAApayload disp3\n",
        );
        let role = fixture_role("disp3");
        let fake = Recording::new();
        fake.on("systemctl is-active --quiet ssh.service", 3, "");
        let c = ctx(root, &role, &fake);
        assert!(
            !hygiene_check(&c).unwrap(),
            "the keys are its own, but sshd is down"
        );
        hygiene_apply(&c).unwrap();
        assert!(fake.ran("systemctl restart ssh.service"));
    }
}
