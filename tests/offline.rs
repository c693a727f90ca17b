//! The builder builds at the secure site with no network: the source tarball
//! from `just vendor` (project + vendor/ + .cargo/config.toml) builds with
//! `cargo build --offline --frozen` in a network namespace with no network
//! and an empty cargo home. `airlock build --with-source` ships it.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::common::{airlock_bin, repo_dir};

fn source_tar() -> Option<PathBuf> {
    let p = repo_dir().join("target/airlock-src.tar");
    if p.is_file() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run scripts/vendor before the tests"
    );
    eprintln!("skipping: no target/airlock-src.tar (run `just vendor`)");
    None
}

#[test]
fn the_source_tarball_builds_with_no_network() {
    let Some(tar) = source_tar() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("tar")
        .arg("xf")
        .arg(&tar)
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let src = dir.path().join("airlock");
    assert!(src.join("vendor").is_dir() && src.join(".cargo/config.toml").is_file());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let empty_home = dir.path().join("cargo-home");
    fs::create_dir_all(&empty_home).unwrap();
    let out = Command::new("unshare")
        .args(["-n", "--"])
        .arg(&cargo)
        .args([
            "build",
            "--offline",
            "--frozen",
            "--quiet",
            "--bin",
            "airlock",
        ])
        .current_dir(&src)
        .env("CARGO_HOME", &empty_home)
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "offline build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = dir.path().join("target/debug/airlock");
    let v = Command::new(&built).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("airlock "));
}

#[test]
fn build_with_source_ships_the_tarball() {
    let Some(tar) = source_tar() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(airlock_bin())
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "airlock {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    crate::common::demo_site(dir.path());
    run(&[
        "build",
        "d/recipe.toml",
        "--key",
        "keys/signing-key.asc",
        "--out",
        "b",
        "--allow-new-glibc",
        "--with-source",
        tar.to_str().unwrap(),
    ]);
    let sums = fs::read_to_string(dir.path().join("b/SHA256SUMS")).unwrap();
    assert!(sums.contains("  source/airlock-src.tar\n"));
    assert_eq!(
        fs::read(dir.path().join("b/source/airlock-src.tar")).unwrap(),
        fs::read(&tar).unwrap()
    );
}
