//! `airlock-firstboot` against temporary roots: how a clone finds its role
//! (role file, the seed disc read directly, the bundle's inventory by MAC),
//! the journal, `status`, and clear errors. The roles themselves run in
//! tests/e2e.rs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Run, airlock_bin, repo_dir};

fn firstboot(root: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock-firstboot"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    Run::from_output(out)
}

/// Bakes the stand recipe (spdb1 with a MAC) into `dir/out`.
fn baked(dir: &Path) -> PathBuf {
    let text = fs::read_to_string(repo_dir().join("recipes/space-vdi-5.4-ha.toml"))
        .unwrap()
        .replace(
            "ip = \"10.10.143.176\"",
            "ip = \"10.10.143.176\"\nmac = \"52:54:00:8f:00:b0\"",
        );
    fs::write(dir.join("site.toml"), text).unwrap();
    let out = Command::new(airlock_bin())
        .args(["bake", "site.toml", "--out", "out"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("out")
}

fn status(root: &Path) -> serde_json::Value {
    let run = firstboot(root, &["status", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn without_a_role_it_says_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = firstboot(dir.path(), &["run"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no role file at"), "{}", run.stderr);
    assert!(run.stderr.contains("--bundle"), "{}", run.stderr);
    assert_eq!(status(dir.path())["state"], "not started");
}

#[test]
fn the_seed_disc_is_read_directly_when_cloud_init_is_absent() {
    let dir = tempfile::tempdir().unwrap();
    let out = baked(dir.path());
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("dev/disk/by-label")).unwrap();
    fs::copy(
        out.join("seeds/spdb1.iso"),
        root.join("dev/disk/by-label/cidata"),
    )
    .unwrap();
    let run = firstboot(&root, &["run", "--wait", "1"]);
    // The clone has no repository: the run stops there, saying what to do.
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("reading the seed"), "{}", run.stderr);
    assert!(
        run.stderr.contains("/opt/airlock/repo")
            && run.stderr.contains("airlock-firstboot prepare"),
        "{}",
        run.stderr
    );
    // What cloud-init would have written is in place, secrets 0600.
    use std::os::unix::fs::PermissionsExt;
    let role = fs::read_to_string(root.join("etc/airlock/role.toml")).unwrap();
    assert!(role.contains("name = \"spdb1\""));
    let mode = fs::metadata(root.join("etc/airlock/db-password"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // identity ran: hostname, hosts, and the static address without cloud-init.
    assert_eq!(
        fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "spdb1\n"
    );
    let net = fs::read_to_string(root.join("etc/network/interfaces.d/airlock")).unwrap();
    assert!(
        net.contains("address 10.10.143.176/24") && net.contains("gateway 10.10.143.1"),
        "{net}"
    );
    let s = status(&root);
    assert_eq!(s["state"], "failed");
    assert_eq!(s["journal"]["steps"][0]["name"], "identity");
    assert_eq!(s["journal"]["steps"][0]["state"], "done");
    assert_eq!(s["journal"]["steps"][1]["state"], "failed");
    let text = firstboot(&root, &["status"]).stdout;
    assert!(text.contains("failed   repository"), "{text}");
    assert!(text.contains("last error:"), "{text}");
}

#[test]
fn a_clone_without_seed_finds_itself_in_the_inventory_by_mac() {
    let dir = tempfile::tempdir().unwrap();
    let out = baked(dir.path());
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("sys/class/net/eth0")).unwrap();
    fs::write(
        root.join("sys/class/net/eth0/address"),
        "52:54:00:8F:00:B0\n",
    )
    .unwrap();
    let run = firstboot(
        &root,
        &["run", "--wait", "1", "--bundle", out.to_str().unwrap()],
    );
    assert!(
        run.stderr
            .contains("this VM is spdb1 (db-master) by the inventory"),
        "{}",
        run.stderr
    );
    assert!(root.join("etc/airlock/role.toml").is_file());
    assert!(root.join("etc/airlock/keepalived.conf").is_file());

    // A MAC the inventory does not know is a clear error.
    let other = dir.path().join("other");
    fs::create_dir_all(other.join("sys/class/net/eth0")).unwrap();
    fs::write(
        other.join("sys/class/net/eth0/address"),
        "52:54:00:00:00:01\n",
    )
    .unwrap();
    let run = firstboot(&other, &["run", "--bundle", out.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("has no host with this VM's MAC (52:54:00:00:00:01)"),
        "{}",
        run.stderr
    );
}

#[test]
fn role_shows_who_the_vm_is() {
    let dir = tempfile::tempdir().unwrap();
    let out = baked(dir.path());
    let run = firstboot(
        dir.path(),
        &[
            "role",
            "--role-file",
            out.join("payloads/spdb2/rootfs/etc/airlock/role.toml")
                .to_str()
                .unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with(
            "spdb2.vdi.example.local (db-replica) of cluster spacevdi: 10.10.143.177/24"
        ),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("peer spdb1"));
}

#[test]
fn token_is_refused_until_the_leader_has_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = firstboot(dir.path(), &["token"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no join token yet"));
    fs::create_dir_all(dir.path().join("var/lib/airlock")).unwrap();
    fs::write(
        dir.path().join("var/lib/airlock/swarm-manager-token"),
        "SWMTKN-1-abcdefghijklmnopqrstuvwxyz\n",
    )
    .unwrap();
    let run = firstboot(dir.path(), &["token"]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "SWMTKN-1-abcdefghijklmnopqrstuvwxyz\n")
    );
}

fn demo_bundle(dir: &Path) -> PathBuf {
    let out = Command::new(airlock_bin())
        .args(["demo", "--out", "d"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("d/bundle")
}

#[test]
fn prepare_puts_the_bundle_in_place_and_seals_the_image() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bundle = demo_bundle(dir.path());
    let root = dir.path().join("reference");
    for d in ["etc/ssh", "var/lib/cloud/instance"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(
        root.join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    fs::write(root.join("etc/ssh/ssh_host_ed25519_key"), "old key").unwrap();
    fs::write(root.join("etc/ssh/sshd_config"), "# kept").unwrap();
    let run = firstboot(&root, &["prepare", "--bundle", bundle.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("copied the signed repository to /opt/airlock/repo"),
        "{}",
        run.stdout
    );
    assert!(
        root.join("opt/airlock/repo/dists/1.7_x86-64/InRelease")
            .is_file()
    );
    assert!(root.join("opt/airlock/vendor/install.sh").is_file());
    assert_eq!(
        fs::read_link(root.join("opt/main")).unwrap(),
        Path::new("airlock/repo")
    );
    assert!(
        root.join("opt/devel/dists/1.7_x86-64/Release").is_file(),
        "/opt/devel resolves inside the root"
    );
    assert!(
        root.join("etc/apt/trusted.gpg.d/airlock-archive.gpg")
            .is_file()
    );
    let mode = fs::metadata(root.join("usr/local/sbin/airlock-firstboot"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(
        root.join("etc/systemd/system/multi-user.target.wants/airlock-firstboot.service")
            .exists()
    );
    assert_eq!(fs::read_to_string(root.join("etc/machine-id")).unwrap(), "");
    assert!(!root.join("etc/ssh/ssh_host_ed25519_key").exists());
    assert!(root.join("etc/ssh/sshd_config").exists());
    assert!(!root.join("var/lib/cloud").exists());
    // Again: same result.
    let again = firstboot(&root, &["prepare", "--bundle", bundle.to_str().unwrap()]);
    assert_eq!(again.code, 0, "{}", again.stderr);
}

#[test]
fn prepare_refuses_a_vm_with_a_role_and_a_tampered_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = demo_bundle(dir.path());
    let root = dir.path().join("clone");
    fs::create_dir_all(root.join("etc/airlock")).unwrap();
    fs::write(root.join("etc/airlock/role.toml"), "").unwrap();
    let run = firstboot(&root, &["prepare", "--bundle", bundle.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("this VM already has a role"),
        "{}",
        run.stderr
    );

    let clean = dir.path().join("clean");
    fs::create_dir_all(&clean).unwrap();
    fs::write(
        bundle.join("vendor/install.sh"),
        "#!/bin/sh\necho tampered\n",
    )
    .unwrap();
    let run = firstboot(&clean, &["prepare", "--bundle", bundle.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("does not verify") && run.stderr.contains("vendor/install.sh"),
        "{}",
        run.stderr
    );
    assert!(
        !clean.join("opt").exists(),
        "nothing copied from a tampered bundle"
    );
}
