//! `airlock-firstboot prepare`: run once on the reference VM, before cloning.
//! Puts the bundle's repository, vendor disc, key and runner in place and
//! seals the image so every clone starts as a new machine.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::role::paths;
use crate::runner::{Cmd, Runner};
use crate::writer::{RootWriter, Writer};

/// Where prepare puts things, absolute on the VM.
const REPO: &str = crate::plan::REPO_ROOT;
const VENDOR: &str = crate::plan::VENDOR_DIR;

fn under(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

/// Copies a tree (replacing what is there), keeping modes.
fn copy_tree(from: &Path, to: &Path) -> Result<u64> {
    if to.exists() {
        fs::remove_dir_all(to).with_context(|| format!("removing the old {}", to.display()))?;
    }
    let mut n = 0;
    for e in walkdir::WalkDir::new(from).follow_links(false) {
        let e = e?;
        let dest = to.join(e.path().strip_prefix(from).expect("under from"));
        if e.file_type().is_dir() {
            fs::create_dir_all(&dest)?;
        } else if e.file_type().is_file() {
            fs::copy(e.path(), &dest)
                .with_context(|| format!("copying {} to {}", e.path().display(), dest.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Prepares and seals the reference VM under `root` from `bundle`.
/// Returns the list of what it changed, for the person running it.
pub fn prepare(root: &Path, bundle: &Path, runner: &Runner) -> Result<Vec<String>> {
    if under(root, paths::ROLE_FILE).exists() || under(root, paths::JOURNAL).exists() {
        bail!(
            "this VM already has a role ({} or {} exists): prepare only the reference VM, before it is cloned and before any seed is attached",
            paths::ROLE_FILE,
            paths::JOURNAL
        );
    }
    // Check the bundle before anything is copied from it.
    let report = crate::bundle::verify_dir(bundle, None, false)?;
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
    let mut done = Vec::new();
    let n = copy_tree(&bundle.join("repo"), &under(root, REPO))?;
    done.push(format!(
        "copied the signed repository to {REPO} ({n} files)"
    ));
    let n = copy_tree(&bundle.join("vendor"), &under(root, VENDOR))?;
    done.push(format!("copied the vendor disc to {VENDOR} ({n} files)"));
    for p in crate::plan::VENDOR_REPO_PATHS {
        let link = under(root, p);
        let target = crate::steps::relative_target(p, REPO);
        if let Ok(m) = fs::symlink_metadata(&link) {
            if m.is_dir() && !m.file_type().is_symlink() {
                bail!(
                    "{p} is a directory; move it away: airlock links {p} to {REPO} for the vendor installer"
                );
            }
            fs::remove_file(&link)?;
        }
        fs::create_dir_all(link.parent().expect("has a parent"))?;
        std::os::unix::fs::symlink(&target, &link)?;
        done.push(format!("linked {p} -> {}", target.display()));
    }
    let mut w = RootWriter::new(root);
    let keyring = fs::read(bundle.join(crate::sign::PUBLIC_GPG_FILE))?;
    w.write(
        crate::plan::TRUSTED_KEYRING.trim_start_matches('/'),
        &keyring,
        0o644,
    )?;
    done.push(format!(
        "trusted the archive key in {}",
        crate::plan::TRUSTED_KEYRING
    ));
    let bin = fs::read(bundle.join("bin/airlock-firstboot"))?;
    w.write(paths::RUNNER.trim_start_matches('/'), &bin, 0o755)?;
    w.write(
        paths::UNIT.trim_start_matches('/'),
        crate::payload::systemd_unit().as_bytes(),
        0o644,
    )?;
    let wants = under(
        root,
        "/etc/systemd/system/multi-user.target.wants/airlock-firstboot.service",
    );
    fs::create_dir_all(wants.parent().expect("has a parent"))?;
    if fs::symlink_metadata(&wants).is_err() {
        std::os::unix::fs::symlink("../airlock-firstboot.service", &wants)?;
    }
    done.push(format!(
        "installed {} and enabled airlock-firstboot.service",
        paths::RUNNER
    ));

    // Seal: every clone must become a new machine.
    w.write("etc/machine-id", b"", 0o444)?;
    done.push("emptied /etc/machine-id (each clone gets its own at first boot)".into());
    let mut removed = 0;
    if let Ok(rd) = fs::read_dir(under(root, "/etc/ssh")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("ssh_host_") {
                fs::remove_file(e.path())?;
                removed += 1;
            }
        }
    }
    done.push(format!(
        "removed {removed} SSH host key file(s) (each clone makes its own)"
    ));
    if root == Path::new("/") {
        if runner.ok(&Cmd::new("sh").args(["-c", "command -v cloud-init >/dev/null"])) {
            runner.run(&Cmd::new("cloud-init").args(["clean", "--logs"]))?;
            done.push("ran cloud-init clean --logs".into());
        }
    } else if under(root, "/var/lib/cloud").exists() {
        fs::remove_dir_all(under(root, "/var/lib/cloud"))?;
        done.push("removed /var/lib/cloud (cloud-init clean)".into());
    }
    done.push("no journal of a previous run: the VM is ready to be shut down and cloned".into());
    Ok(done)
}
