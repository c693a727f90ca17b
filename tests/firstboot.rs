//! `airlock-firstboot` without a VM: how a clone finds who it is (the seed
//! disc read directly, the inventory by MAC, the inventory `prepare` left
//! on the image), `prepare` on an image directory (under a narrow umask
//! too), `status`, `role`, `token`. The roles' steps have unit tests with the
//! recording command runner; the booted clones (tests/clones.rs) run them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use airlock::vm::discovery::find_role;

use crate::common::{Run, airlock_bin, repo_dir};

fn firstboot(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock-firstboot"))
        .args(args)
        .output()
        .unwrap();
    Run::from_output(out)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
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
    let run = firstboot(&["status", "--json", "--root", root.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

fn nic(root: &Path, name: &str, mac: &str) {
    fs::create_dir_all(root.join(format!("sys/class/net/{name}"))).unwrap();
    fs::write(root.join(format!("sys/class/net/{name}/address")), mac).unwrap();
}

#[test]
fn without_an_identity_it_says_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let e = format!("{:#}", find_role(dir.path(), None, None).unwrap_err());
    assert!(
        e.contains("no role file at") && e.contains("seed") && e.contains("MAC"),
        "{e}"
    );
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
    let role = find_role(&root, None, None).unwrap();
    assert_eq!(role, root.join("etc/airlock/role.toml"));
    // What cloud-init would have written is in place, secrets 0600.
    let text = fs::read_to_string(&role).unwrap();
    assert!(text.contains("name = \"spdb1\""));
    assert_eq!(mode(&root.join("etc/airlock/db-password")), 0o600);
    assert!(root.join("etc/apt/apt.conf.d/50airlock").is_file());
}

#[test]
fn a_clone_without_seed_finds_itself_in_a_bundles_inventory_by_mac() {
    let dir = tempfile::tempdir().unwrap();
    let out = baked(dir.path());
    let root = dir.path().join("root");
    nic(&root, "eth0", "52:54:00:8F:00:B0\n");
    find_role(&root, None, Some(&out)).unwrap();
    assert!(root.join("etc/airlock/role.toml").is_file());
    assert_eq!(mode(&root.join("etc/airlock/db-password")), 0o600);

    // A MAC the inventory does not know is a clear error.
    let other = dir.path().join("other");
    nic(&other, "eth0", "52:54:00:00:00:01\n");
    let e = format!("{:#}", find_role(&other, None, Some(&out)).unwrap_err());
    assert!(
        e.contains("has no host with this VM's MAC (52:54:00:00:00:01)"),
        "{e}"
    );
    assert!(!other.join("etc/airlock/role.toml").exists());
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

/// A reference VM's root with the ids a real one has.
fn reference_root(dir: &Path) -> PathBuf {
    let root = dir.join("reference");
    for d in [
        "etc/ssh",
        "var/lib/cloud/instance",
        "var/lib/cloud/seed",
        "var/lib/dbus",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(
        root.join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    fs::write(
        root.join("var/lib/dbus/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    fs::write(root.join("etc/ssh/ssh_host_ed25519_key"), "old key").unwrap();
    fs::write(
        root.join("etc/ssh/ssh_host_ed25519_key.pub"),
        "ssh-ed25519 AAAAreference root@ref\n",
    )
    .unwrap();
    fs::write(root.join("etc/ssh/sshd_config"), "# kept").unwrap();
    root
}

/// `prepare --root` as a person with `umask` would run it.
fn prepare_with_umask(root: &Path, bundle: &Path, umask: &str) -> Run {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask {umask}; exec \"$0\" prepare --root \"$1\" --bundle \"$2\""
        ))
        .arg(env!("CARGO_BIN_EXE_airlock-firstboot"))
        .arg(root)
        .arg(bundle)
        .output()
        .unwrap();
    Run::from_output(out)
}

#[test]
fn prepare_puts_the_bundle_in_place_and_seals_the_image_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = demo_bundle(dir.path());
    let root = reference_root(dir.path());
    let run = prepare_with_umask(&root, &bundle, "077");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("copied the signed repository to /opt/airlock/repo"),
        "{}",
        run.stdout
    );
    // The repository is kept with the bundle's manifest; /opt/airlock/repo
    // links to it through the one link `update` switches.
    assert_eq!(
        fs::read_link(root.join("opt/airlock/repo")).unwrap(),
        Path::new("current/repo")
    );
    assert!(root.join("opt/airlock/current/SHA256SUMS").is_file());
    // apt's _apt user reads the repository: every directory 0755, files 0644.
    let repo = root.join("opt/airlock/current/repo");
    for e in walkdir::WalkDir::new(&repo) {
        let e = e.unwrap();
        let want = if e.file_type().is_dir() { 0o755 } else { 0o644 };
        assert_eq!(mode(e.path()), want, "{}", e.path().display());
    }
    for d in ["opt", "opt/airlock", "etc/apt/apt.conf.d", "usr/local/sbin"] {
        assert_eq!(mode(&root.join(d)), 0o755, "{d}");
    }
    assert_eq!(mode(&root.join("opt/airlock/vendor/install.sh")), 0o755);
    assert_eq!(mode(&root.join("opt/airlock/payloads")), 0o700);
    assert_eq!(
        mode(&root.join("opt/airlock/payloads/spdb1/rootfs/etc/airlock/db-password")),
        0o600
    );
    assert!(root.join("opt/airlock/inventory.toml").is_file());
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
    assert_eq!(mode(&root.join("usr/local/sbin/airlock-firstboot")), 0o755);
    let unit =
        fs::read_to_string(root.join("etc/systemd/system/airlock-firstboot.service")).unwrap();
    assert!(
        !unit.contains("cloud-final") && !unit.contains("ConditionPathExists"),
        "{unit}"
    );
    assert!(
        root.join("etc/systemd/system/multi-user.target.wants/airlock-firstboot.service")
            .exists()
    );
    // Sealed: no id a clone could inherit, and the image's ids recorded.
    assert_eq!(fs::read_to_string(root.join("etc/machine-id")).unwrap(), "");
    assert!(!root.join("var/lib/dbus/machine-id").exists());
    assert!(!root.join("etc/ssh/ssh_host_ed25519_key").exists());
    assert!(!root.join("etc/ssh/ssh_host_ed25519_key.pub").exists());
    assert!(root.join("etc/ssh/sshd_config").exists());
    assert!(!root.join("var/lib/cloud/instance").exists());
    assert!(
        root.join("var/lib/cloud/seed").exists(),
        "the seed directory stays"
    );
    let identity = fs::read_to_string(root.join("var/lib/airlock/image-identity.json")).unwrap();
    assert!(
        identity.contains("0123456789abcdef0123456789abcdef") && identity.contains("AAAAreference"),
        "{identity}"
    );
    // Again: same result.
    let again = prepare_with_umask(&root, &bundle, "027");
    assert_eq!(again.code, 0, "{}", again.stderr);
}

/// Update discs named in the recipe reach the VM: the bundle's repository
/// merges them (its recipe and README name them by file), and after
/// `prepare`, apt reading `/opt/main` as the vendor installer's sources.list
/// does sees every version of a package and installs the newest.
#[test]
fn update_discs_in_the_recipe_reach_the_prepared_image_and_apt_installs_the_newest() {
    use crate::common::discs::{AptRoot, Pkg, make_disc, make_iso};
    let dir = tempfile::tempdir().unwrap();
    demo_bundle(dir.path());
    let d = dir.path().join("d");
    make_disc(
        &d.join("media/u1"),
        &[
            Pkg::new("airlock-demo-base", "1.0-2"),
            Pkg::new("airlock-demo-fix", "1.0"),
        ],
    );
    make_iso(&d.join("media/u1"), &d.join("media/1.7.1-update.iso"));
    make_disc(
        &d.join("media/1.7.2-update"),
        &[Pkg::new("airlock-demo-base", "1.1-1")],
    );
    let recipe = fs::read_to_string(d.join("recipe.toml")).unwrap().replacen(
        "devel = \"media/devel\"\n",
        "devel = \"media/devel\"\nupdates = [\"media/1.7.1-update.iso\", \"media/1.7.2-update\"]\n",
        1,
    );
    assert!(recipe.contains("updates = "));
    fs::write(d.join("site.toml"), recipe).unwrap();
    for args in [
        &["keygen", "--out", "keys"][..],
        &[
            "build",
            "site.toml",
            "--key",
            "keys/signing-key.asc",
            "--out",
            "site-bundle",
            "--allow-new-glibc",
        ][..],
    ] {
        let out = Command::new(airlock_bin())
            .args(args)
            .current_dir(&d)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bundle = d.join("site-bundle");
    let kept = fs::read_to_string(bundle.join("recipe.toml")).unwrap();
    assert!(
        kept.contains("updates = [\"1.7.1-update.iso\", \"1.7.2-update\"]"),
        "{kept}"
    );
    let readme = fs::read_to_string(bundle.join("README.txt")).unwrap();
    assert!(
        readme.contains("    main     main\n    devel    devel\n    update1  1.7.1-update.iso\n    update2  1.7.2-update\n"),
        "{readme}"
    );

    let root = reference_root(dir.path());
    let run = prepare_with_umask(&root, &bundle, "022");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let apt = AptRoot::new(
        dir.path(),
        &root.join("opt/main"),
        &bundle.join("archive-keyring.gpg"),
        "1.7_x86-64",
    );
    let (ok, out) = apt.apt_get(&["update"]);
    assert!(ok, "apt-get update:\n{out}");
    let (ok, policy) = apt.apt_cache(&["policy", "airlock-demo-base"]);
    assert!(ok, "{policy}");
    assert!(policy.contains("Candidate: 1.1-1"), "{policy}");
    for v in ["1.0-1", "1.0-2", "1.1-1"] {
        assert!(
            policy.lines().any(|l| l
                .trim_start_matches([' ', '*'])
                .starts_with(&format!("{v} "))),
            "apt-cache policy lists {v}:\n{policy}"
        );
    }
    let (ok, out) = apt.apt_get(&[
        "install",
        "--simulate",
        "airlock-demo-base",
        "airlock-demo-fix",
        "airlock-demo-devtools",
    ]);
    assert!(ok, "{out}");
    for inst in [
        "Inst airlock-demo-base (1.1-1 ",
        "Inst airlock-demo-fix (1.0 ",
        "Inst airlock-demo-devtools (1.0-1 ",
    ] {
        assert!(out.contains(inst), "{inst}:\n{out}");
    }
}

/// A bundle from the demo media whose recipe gives spmanager2 a MAC.
fn bundle_with_a_mac(dir: &Path, mac: &str) -> PathBuf {
    demo_bundle(dir);
    let recipe = fs::read_to_string(dir.join("d/recipe.toml"))
        .unwrap()
        .replace(
            "ip = \"10.10.143.180\"",
            &format!("ip = \"10.10.143.180\"\nmac = \"{mac}\""),
        );
    fs::write(dir.join("d/site.toml"), recipe).unwrap();
    for args in [
        &["keygen", "--out", "keys"][..],
        &[
            "build",
            "site.toml",
            "--key",
            "keys/signing-key.asc",
            "--out",
            "site-bundle",
            "--allow-new-glibc",
        ][..],
    ] {
        let out = Command::new(airlock_bin())
            .args(args)
            .current_dir(dir.join("d"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir.join("d/site-bundle")
}

#[test]
fn a_clone_of_the_prepared_image_without_seed_finds_itself_and_drops_the_others_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let mac = "52:54:00:12:34:80";
    let bundle = bundle_with_a_mac(dir.path(), mac);
    let root = reference_root(dir.path());
    let run = prepare_with_umask(&root, &bundle, "022");
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The sealed reference VM itself, booted again: no identity, and its new
    // ids are recorded so its clones replace them.
    nic(&root, "eth0", "52:54:00:99:99:99\n");
    fs::write(
        root.join("etc/machine-id"),
        "fedcba9876543210fedcba9876543210\n",
    )
    .unwrap();
    assert!(find_role(&root, None, None).is_err());
    let identity = fs::read_to_string(root.join("var/lib/airlock/image-identity.json")).unwrap();
    assert!(
        identity.contains("fedcba9876543210fedcba9876543210"),
        "{identity}"
    );

    nic(&root, "eth0", &format!("{mac}\n"));
    let role = find_role(&root, None, None).unwrap();
    let text = fs::read_to_string(role).unwrap();
    assert!(text.contains(&format!("mac = \"{mac}\"")), "{text}");
    assert!(
        !root.join("opt/airlock/payloads").exists(),
        "the other hosts' secrets are gone from this clone"
    );
}

#[test]
fn role_shows_who_the_vm_is() {
    let dir = tempfile::tempdir().unwrap();
    let out = baked(dir.path());
    let run = firstboot(&[
        "role",
        "--role-file",
        out.join("payloads/spdb2/rootfs/etc/airlock/role.toml")
            .to_str()
            .unwrap(),
    ]);
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
    let root = dir.path().to_str().unwrap();
    let run = firstboot(&["token", "--root", root]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no join token yet"));
    fs::create_dir_all(dir.path().join("var/lib/airlock")).unwrap();
    fs::write(
        dir.path().join("var/lib/airlock/swarm-manager-token"),
        "SWMTKN-1-abcdefghijklmnopqrstuvwxyz\n",
    )
    .unwrap();
    let run = firstboot(&["token", "--root", root]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "SWMTKN-1-abcdefghijklmnopqrstuvwxyz\n")
    );
}

#[test]
fn status_says_what_a_step_waits_for_and_when_a_server_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("var/lib/airlock")).unwrap();
    let journal = serde_json::json!({
        "version": 1, "host": "disp2", "role": "manager", "instance_id": "i",
        "steps": [
            {"name": "identity", "state": "done", "started": 1, "finished": 2, "note": null},
            {"name": "join", "state": "running", "started": 3, "finished": null, "note": null}
        ],
        "waiting_for": "the join token from the leader disp1",
        "waiting_since": 1_800_000_000,
        "last_attempt": format!("ssh: Permission denied (publickey) {}", "x".repeat(300)),
        "last_error": null, "updated": 1_800_000_000
    });
    fs::write(root.join("var/lib/airlock/journal"), journal.to_string()).unwrap();
    let s = status(root);
    assert_eq!(s["state"], "waiting");
    assert_eq!(
        s["journal"]["waiting_for"],
        "the join token from the leader disp1"
    );
    let text = firstboot(&["status", "--root", root.to_str().unwrap()]).stdout;
    assert!(
        text.contains("waiting for: the join token from the leader disp1 (since"),
        "{text}"
    );
    assert!(text.contains(&"x".repeat(300)), "the cause is not cut");

    fs::write(
        root.join("var/lib/airlock/fenced.json"),
        r#"{"since": 1800000000, "peer": "db2", "peer_ip": "192.0.2.12", "reason": "it answered as a primary"}"#,
    )
    .unwrap();
    let text = firstboot(&["status", "--root", root.to_str().unwrap()]).stdout;
    assert!(text.starts_with("*** NOT A PRIMARY"), "{text}");
    assert_eq!(status(root)["fenced"]["peer"], "db2");
}

#[test]
fn prepare_refuses_a_vm_with_a_role_and_a_tampered_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = demo_bundle(dir.path());
    let root = dir.path().join("clone");
    fs::create_dir_all(root.join("etc/airlock")).unwrap();
    fs::write(root.join("etc/airlock/role.toml"), "").unwrap();
    let run = prepare_with_umask(&root, &bundle, "022");
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
    let run = prepare_with_umask(&clean, &bundle, "022");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("does not verify") && run.stderr.contains("vendor/install.sh"),
        "{}",
        run.stderr
    );
    assert!(
        crate::common::nothing_prepared(&clean),
        "nothing copied from a tampered bundle"
    );
}
