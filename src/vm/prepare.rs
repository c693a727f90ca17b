//! `airlock-firstboot prepare`: run once on the reference VM, before
//! cloning. Puts the bundle's repository, vendor disc, inventory, key and
//! runner in place and seals the image so every clone starts as a new
//! machine. File operations only (no command is run), every mode set
//! explicitly whatever the umask, so it also prepares an image directory
//! from outside (`--root`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::shared::paths;
use crate::shared::staging::Staging;
use crate::shared::writer::{RootWriter, Writer, create_dirs};
use crate::vm::engine::under;

/// Where prepare puts the repository, absolute on the VM.
const REPO: &str = crate::shared::paths::REPO_ROOT;

/// The prepared image's own identity: whatever a clone must not keep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageIdentity {
    /// /etc/machine-id and /var/lib/dbus/machine-id values.
    pub machine_ids: Vec<String>,
    /// SSH host public keys (the base64 field).
    pub ssh_host_keys: Vec<String>,
}

impl ImageIdentity {
    /// The recorded identity (none when the image was not prepared).
    pub fn load(root: &Path) -> ImageIdentity {
        fs::read_to_string(under(root, paths::IMAGE_IDENTITY))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// This machine's identity as it is now.
    pub fn current(root: &Path) -> ImageIdentity {
        let mut machine_ids = Vec::new();
        for p in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
            let path = under(root, p);
            let is_file = fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
            let id = fs::read_to_string(&path).unwrap_or_default();
            let id = id.trim();
            if is_file && !id.is_empty() {
                machine_ids.push(id.to_string());
            }
        }
        ImageIdentity {
            machine_ids,
            ssh_host_keys: ssh_host_keys(root),
        }
    }

    /// Adds `other`'s ids; returns whether anything was new.
    pub fn merge(&mut self, other: ImageIdentity) -> bool {
        let before = self.clone();
        self.machine_ids.extend(other.machine_ids);
        self.ssh_host_keys.extend(other.ssh_host_keys);
        for v in [&mut self.machine_ids, &mut self.ssh_host_keys] {
            v.sort();
            v.dedup();
        }
        *self != before
    }

    pub fn save(&self, root: &Path) -> Result<()> {
        RootWriter::new(root).write(
            paths::IMAGE_IDENTITY.trim_start_matches('/'),
            serde_json::to_string_pretty(self)?.as_bytes(),
            0o644,
        )?;
        Ok(())
    }
}

/// The SSH host public key files and their key (base64) fields.
pub fn ssh_host_key_files(root: &Path) -> Vec<(PathBuf, String)> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(under(root, "/etc/ssh")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("ssh_host_") && name.ends_with("_key.pub") {
                let text = fs::read_to_string(e.path()).unwrap_or_default();
                if let Some(blob) = text.split_whitespace().nth(1) {
                    v.push((e.path(), blob.to_string()));
                }
            }
        }
    }
    v.sort();
    v
}

pub fn ssh_host_keys(root: &Path) -> Vec<String> {
    ssh_host_key_files(root)
        .into_iter()
        .map(|(_, k)| k)
        .collect()
}

/// `target` relative to the directory holding `link` (both absolute on the
/// VM): `/opt/main` → `airlock/repo`. Relative links also resolve inside an
/// image directory.
pub fn relative_target(link: &str, target: &str) -> PathBuf {
    let parts = |p: &Path| -> Vec<String> {
        p.iter()
            .filter_map(|c| c.to_str())
            .filter(|c| *c != "/")
            .map(str::to_string)
            .collect()
    };
    let from = Path::new(link).parent().map(parts).unwrap_or_default();
    let to = parts(Path::new(target));
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

/// Every vendor path is airlock's link to the repository.
pub fn vendor_links_hold(root: &Path, links: &[String], target: &str) -> bool {
    links
        .iter()
        .all(|p| fs::read_link(under(root, p)).is_ok_and(|t| t == relative_target(p, target)))
}

/// Links each vendor path (`/opt/main`, `/opt/devel`) to the repository;
/// returns the links it made. A real directory there is refused: it is
/// somebody's copy of a disc.
pub fn link_vendor_paths(root: &Path, links: &[String], target: &str) -> Result<Vec<String>> {
    let mut made = Vec::new();
    for p in links {
        let link = under(root, p);
        let want = relative_target(p, target);
        if fs::read_link(&link).is_ok_and(|t| t == want) {
            continue;
        }
        if fs::symlink_metadata(&link).is_ok_and(|m| m.is_dir()) {
            bail!(
                "{p} is a directory, not airlock's link to {target}: move it away (the vendor installer reads {p})"
            );
        }
        create_dirs(link.parent().expect("an absolute path has a parent"))?;
        replace_with_symlink(&link, &want).with_context(|| format!("linking {p} to {target}"))?;
        made.push(format!("{p} -> {}", want.display()));
    }
    Ok(made)
}

/// Makes `link` a symbolic link to `want`, replacing a file or link there
/// in one rename, so a power cut leaves the old one or the new one.
pub(crate) fn replace_with_symlink(link: &Path, want: &Path) -> Result<()> {
    let name = link.file_name().unwrap_or_default().to_string_lossy();
    let tmp = link.with_file_name(format!(".{name}.airlock-new"));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(want, &tmp)?;
    fs::rename(&tmp, link)?;
    Ok(())
}

/// How copied files get their modes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Modes {
    /// 0644, or 0755 when the source is executable (the repository, the
    /// vendor disc: readable by apt's `_apt` user and the installer).
    Public,
    /// The source's permission bits without set-id bits (the payloads,
    /// whose secrets are 0600), under a 0700 top directory.
    Kept,
}

/// Copies a tree to `to`, replacing what is there only once the copy is
/// complete. Returns the number of files.
pub(crate) fn copy_tree(from: &Path, to: &Path, modes: Modes) -> Result<u64> {
    create_dirs(to.parent().expect("an absolute path has a parent"))?;
    let stage = Staging::beside(to)?;
    let staging = stage.path().to_path_buf();
    let mut n = 0;
    for e in walkdir::WalkDir::new(from).follow_links(false) {
        let e = e.with_context(|| format!("reading {}", from.display()))?;
        let rel = e.path().strip_prefix(from).expect("under from");
        let dest = staging.join(rel);
        let src_mode = e.metadata()?.permissions().mode();
        if e.file_type().is_dir() {
            if !rel.as_os_str().is_empty() {
                fs::create_dir(&dest).with_context(|| format!("creating {}", dest.display()))?;
            }
            let mode = if modes == Modes::Kept && rel.as_os_str().is_empty() {
                0o700
            } else {
                0o755
            };
            crate::shared::writer::set_mode(&dest, mode)?;
        } else if e.file_type().is_file() {
            fs::copy(e.path(), &dest)
                .with_context(|| format!("copying {} to {}", e.path().display(), dest.display()))?;
            let mode = match modes {
                Modes::Public if src_mode & 0o111 != 0 => 0o755,
                Modes::Public => 0o644,
                Modes::Kept => src_mode & 0o777,
            };
            crate::shared::writer::set_mode(&dest, mode)?;
            n += 1;
        } else {
            bail!(
                "{} is neither a file nor a directory: a bundle holds only those",
                e.path().display()
            );
        }
    }
    stage.replace(to)?;
    Ok(n)
}

/// Prepares and seals the reference VM under `root` from `bundle`.
/// Returns the list of what it changed, for the person running it.
pub fn prepare(root: &Path, bundle: &Path) -> Result<Vec<String>> {
    refuse_a_vm_with_a_role(root)?;
    verify_bundle(bundle)?;
    let mut done = copy_bundle(root, bundle)?;
    done.extend(install_runner(root, bundle)?);
    done.extend(seal(root)?);
    done.push("the VM is ready to be shut down and cloned".into());
    Ok(done)
}

fn refuse_a_vm_with_a_role(root: &Path) -> Result<()> {
    if under(root, paths::ROLE_FILE).exists() || under(root, paths::JOURNAL).exists() {
        bail!(
            "this VM already has a role ({} or {} exists): prepare only the reference VM, before it is cloned and before any seed is attached",
            paths::ROLE_FILE,
            paths::JOURNAL
        );
    }
    Ok(())
}

/// Checks the bundle before anything is copied from it.
fn verify_bundle(bundle: &Path) -> Result<()> {
    let report =
        crate::shared::manifest::verify_dir(bundle, &crate::shared::manifest::Trust::own(), false)?;
    if !report.ok {
        let first: Vec<String> = report
            .problems
            .iter()
            .take(5)
            .map(|p| format!("{} {}: {}", p.kind, p.path, p.detail))
            .collect();
        bail!(
            "the bundle {} does not verify ({} problem(s)): {}; run `airlock verify` on it",
            bundle.display(),
            report.problems.len(),
            first.join("; ")
        );
    }
    Ok(())
}

/// The repository, the vendor disc, the inventory with the payloads (for
/// clones without a seed), the vendor links, the key and apt's settings.
fn copy_bundle(root: &Path, bundle: &Path) -> Result<Vec<String>> {
    let mut done = crate::vm::update::keep_bundle(root, bundle)?;
    let n = copy_tree(
        &bundle.join("payloads"),
        &under(root, paths::PREPARED_PAYLOADS),
        Modes::Kept,
    )?;
    let mut w = RootWriter::new(root);
    let inventory = fs::read(bundle.join("inventory.toml"))?;
    w.write(rel(paths::PREPARED_INVENTORY), &inventory, 0o644)?;
    done.push(format!(
        "copied inventory.toml and the payloads ({n} files, {} is 0700) for clones without a seed",
        paths::PREPARED_PAYLOADS
    ));
    let links: Vec<String> = crate::shared::paths::VENDOR_REPO_PATHS
        .iter()
        .map(|s| s.to_string())
        .collect();
    for l in link_vendor_paths(root, &links, REPO)? {
        done.push(format!("linked {l}"));
    }
    let keyring = fs::read(bundle.join(crate::shared::keyring::PUBLIC_GPG_FILE))?;
    w.write(rel(crate::shared::paths::TRUSTED_KEYRING), &keyring, 0o644)?;
    w.write(
        rel(paths::APT_CONF),
        crate::shared::render::apt_conf().as_bytes(),
        0o644,
    )?;
    done.push(format!(
        "trusted the archive key in {} ({} lets a VM whose clock is behind use the repository)",
        crate::shared::paths::TRUSTED_KEYRING,
        paths::APT_CONF
    ));
    Ok(done)
}

fn rel(p: &str) -> &str {
    p.trim_start_matches('/')
}

/// The runner and its unit, started at every boot.
fn install_runner(root: &Path, bundle: &Path) -> Result<Vec<String>> {
    let mut w = RootWriter::new(root);
    let bin = fs::read(bundle.join(crate::shared::manifest::RUNNER))?;
    w.write(rel(paths::RUNNER), &bin, 0o755)?;
    w.write(
        rel(paths::UNIT),
        crate::shared::render::systemd_unit().as_bytes(),
        0o644,
    )?;
    let wants = under(root, paths::UNIT_WANTS);
    create_dirs(wants.parent().expect("has a parent"))?;
    if fs::symlink_metadata(&wants).is_err() {
        // Relative, as it also resolves inside an image directory.
        std::os::unix::fs::symlink("../airlock-firstboot.service", &wants)?;
    }
    Ok(vec![format!(
        "installed {} and enabled airlock-firstboot.service",
        paths::RUNNER
    )])
}

/// Seals the image: every clone must become a new machine. The image's
/// identity is recorded first, so a clone that still carries it (say, the
/// reference VM was booted again before cloning) replaces it.
fn seal(root: &Path) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let mut identity = ImageIdentity::load(root);
    identity.merge(ImageIdentity::current(root));
    identity.save(root)?;
    done.push(format!(
        "recorded this image's machine id(s) and SSH host key(s) in {}: no clone keeps them",
        paths::IMAGE_IDENTITY
    ));
    RootWriter::new(root).write("etc/machine-id", b"", 0o444)?;
    // systemd takes a new machine's id from the D-Bus id when that is a file
    // of its own: every clone would get the same one.
    let dbus = under(root, "/var/lib/dbus/machine-id");
    if fs::symlink_metadata(&dbus).is_ok_and(|m| m.is_file()) {
        fs::remove_file(&dbus)?;
    }
    done.push("emptied /etc/machine-id and removed /var/lib/dbus/machine-id (each clone gets its own id at first boot)".into());
    let mut removed = 0;
    for (public, _) in ssh_host_key_files(root) {
        for p in [public.with_extension(""), public] {
            if p.exists() {
                fs::remove_file(&p)?;
            }
        }
        removed += 1;
    }
    done.push(format!(
        "removed {removed} SSH host key pair(s) (each clone makes its own)"
    ));
    done.push(clean_cloud_init(root)?);
    Ok(done)
}

/// What `cloud-init clean --logs` does: forget every instance, keep the
/// seed directory.
fn clean_cloud_init(root: &Path) -> Result<String> {
    let cloud = under(root, "/var/lib/cloud");
    let mut n = 0;
    if let Ok(rd) = fs::read_dir(&cloud) {
        for e in rd.flatten() {
            if e.file_name() == "seed" {
                continue;
            }
            let p = e.path();
            if e.file_type()?.is_dir() {
                fs::remove_dir_all(&p)?;
            } else {
                fs::remove_file(&p)?;
            }
            n += 1;
        }
    }
    for log in ["/var/log/cloud-init.log", "/var/log/cloud-init-output.log"] {
        let _ = fs::remove_file(under(root, log));
    }
    Ok(format!(
        "cleaned cloud-init's state ({n} entr{} of /var/lib/cloud, logs): each clone is a new instance",
        if n == 1 { "y" } else { "ies" }
    ))
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

    #[test]
    fn the_image_identity_is_recorded_and_merged() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        crate::vm::testing::put(root, "/etc/machine-id", "aaaa\n");
        crate::vm::testing::put(
            root,
            "/etc/ssh/ssh_host_ed25519_key.pub",
            "ssh-ed25519 AAAAone root@ref\n",
        );
        let mut id = ImageIdentity::load(root);
        assert!(id.merge(ImageIdentity::current(root)));
        assert!(!id.merge(ImageIdentity::current(root)));
        id.save(root).unwrap();
        assert_eq!(
            ImageIdentity::load(root),
            ImageIdentity {
                machine_ids: vec!["aaaa".into()],
                ssh_host_keys: vec!["AAAAone".into()]
            }
        );
    }

    #[test]
    fn vendor_paths_become_links_replacing_old_ones_but_never_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::os::unix::fs::symlink("elsewhere", root.join("main")).unwrap();
        fs::write(root.join("devel"), "a stray file").unwrap();
        let links = ["/main".to_string(), "/devel".to_string()];
        let made = link_vendor_paths(root, &links, "/opt/airlock/repo").unwrap();
        assert_eq!(made.len(), 2);
        for l in ["main", "devel"] {
            assert_eq!(
                fs::read_link(root.join(l)).unwrap(),
                PathBuf::from("opt/airlock/repo")
            );
        }
        assert!(
            link_vendor_paths(root, &links, "/opt/airlock/repo")
                .unwrap()
                .is_empty()
        );
        let names: Vec<_> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary link left: {names:?}");

        fs::create_dir(root.join("copy")).unwrap();
        let e = link_vendor_paths(root, &["/copy".to_string()], "/opt/airlock/repo")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/copy is a directory"), "{e}");
        assert!(root.join("copy").is_dir());
    }
}
