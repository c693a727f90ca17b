//! `airlock build --volume-size`: each volume verifies alone with
//! sha256sum and gpgv and with `airlock verify`; a missing, foreign or
//! tampered volume is named; `airlock-firstboot prepare` assembles the
//! volumes in any order into the bundle it prepares from.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Run, airlock, demo_site};

/// The demo's recipe built with the site key in `out` at `size`, with a
/// small runner (the debug one is 100 MB, and every volume carries it).
pub(crate) fn build_in_volumes(dir: &Path, out: &str, size: &str, epoch: &str) -> Run {
    let cmd = Command::new(crate::common::airlock_bin())
        .args(["build", "d/recipe.toml", "--key", "keys/signing-key.asc"])
        .args(["--out", out, "--runner", "/bin/true", "--allow-new-glibc"])
        .args(["--volume-size", size])
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", epoch)
        .output()
        .unwrap();
    Run::from_output(cmd)
}

pub(crate) fn volumes_of(bundle: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(bundle.join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn ok(cmd: &mut Command) -> bool {
    cmd.output().unwrap().status.success()
}

#[test]
fn every_volume_verifies_alone_with_the_stock_tools_and_with_airlock() {
    let dir = tempfile::tempdir().unwrap();
    demo_site(dir.path());
    let run = build_in_volumes(dir.path(), "b", "512K", "1800000000");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bundle = dir.path().join("b");
    assert!(
        !bundle.join("SHA256SUMS").exists(),
        "the bundle is its volumes"
    );
    let volumes = volumes_of(&bundle);
    assert!(volumes.len() >= 3, "{volumes:?}\n{}", run.stdout);
    let keyring = dir.path().join("keys/archive-keyring.gpg");
    for v in &volumes {
        let size: u64 = walkdir::WalkDir::new(v)
            .into_iter()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(size <= 512 << 10, "{}: {size} bytes", v.display());
        assert!(
            ok(Command::new("sha256sum")
                .args(["-c", "--strict", "--quiet", "SHA256SUMS"])
                .current_dir(v)),
            "sha256sum -c in {}",
            v.display()
        );
        for (sig, data) in [("SHA256SUMS.gpg", "SHA256SUMS"), ("VOLUMES.gpg", "VOLUMES")] {
            assert!(
                ok(Command::new("gpgv")
                    .arg("--keyring")
                    .arg(&keyring)
                    .args([sig, data])
                    .current_dir(v)),
                "gpgv {sig} in {}",
                v.display()
            );
        }
        // The table names this volume's manifest by its hash.
        let sums = fs::read(v.join("SHA256SUMS")).unwrap();
        let hash = airlock::shared::volumes::sha256(&sums);
        let table = fs::read_to_string(v.join("VOLUMES")).unwrap();
        let name = v.file_name().unwrap().to_str().unwrap();
        assert!(
            table.contains(&format!("volume {name} ")) && table.contains(&hash),
            "{table}"
        );
        for f in ["bin/airlock-firstboot", "README.txt", "whole/SHA256SUMS"] {
            assert!(v.join(f).is_file(), "{f} in every volume");
        }
        let run = airlock(
            dir.path(),
            &[
                "verify",
                v.to_str().unwrap(),
                "--keyring",
                keyring.to_str().unwrap(),
            ],
        );
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        assert!(
            run.stdout
                .contains(&format!("volume {name} of {}", volumes.len())),
            "{}",
            run.stdout
        );
    }
    let run = airlock(dir.path(), &["verify", "b"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

#[test]
fn a_missing_a_tampered_and_a_foreign_volume_are_named() {
    let dir = tempfile::tempdir().unwrap();
    demo_site(dir.path());
    for (out, epoch) in [("b", "1800000000"), ("other", "1800000099")] {
        let run = build_in_volumes(dir.path(), out, "512K", epoch);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let volumes = volumes_of(&dir.path().join("b"));
    // Missing: the site received all but the second.
    fs::remove_dir_all(&volumes[1]).unwrap();
    let run = airlock(dir.path(), &["verify", "b"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("MISSING    volume(s) 02"),
        "{}",
        run.stdout
    );
    // Tampered: one byte of a file of the first volume.
    let sums = fs::read_to_string(volumes[0].join("SHA256SUMS")).unwrap();
    let victim = sums
        .lines()
        .map(|l| l.split_once("  ").unwrap().1)
        .find(|p| p.contains('/') && !p.starts_with("whole/") && !p.starts_with("bin/"))
        .unwrap()
        .to_string();
    let mut bytes = fs::read(volumes[0].join(&victim)).unwrap();
    bytes[0] ^= 1;
    fs::write(volumes[0].join(&victim), bytes).unwrap();
    let run = airlock(dir.path(), &["verify", volumes[0].to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("MODIFIED") && run.stdout.contains(&victim),
        "{}",
        run.stdout
    );
    // Foreign: another build's volume beside this one's table. Its own
    // table names it; it is another bundle's.
    let foreign = volumes_of(&dir.path().join("other"))[2].clone();
    fs::rename(&foreign, &volumes[1]).unwrap();
    let run = airlock(dir.path(), &["verify", "b"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("FOREIGN") && run.stdout.contains("a volume of another bundle"),
        "{}",
        run.stdout
    );
    // A volume whose table is not the one its manifest is in.
    fs::copy(volumes[2].join("VOLUMES"), volumes[1].join("VOLUMES")).unwrap();
    fs::copy(
        volumes[2].join("VOLUMES.gpg"),
        volumes[1].join("VOLUMES.gpg"),
    )
    .unwrap();
    let run = airlock(dir.path(), &["verify", volumes[1].to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("is not in the table of volumes"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_file_larger_than_a_volume_is_refused_naming_it_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    demo_site(dir.path());
    // The vendor disc's installer grows beyond a volume.
    let big = dir.path().join("d/media/vendor/big.bin");
    fs::write(&big, vec![7u8; 600 << 10]).unwrap();
    let run = build_in_volumes(dir.path(), "b", "512K", "1800000000");
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("vendor/big.bin") && run.stderr.contains("never split"),
        "{}",
        run.stderr
    );
    assert!(
        !dir.path().join("b/volumes").exists(),
        "the bundle is left whole: {:?}",
        fs::read_dir(dir.path().join("b")).map(|d| d.count())
    );
    let run = build_in_volumes(dir.path(), "b", "tiny", "1800000000");
    assert_eq!(run.code, 2, "a usage error");
    assert!(
        run.stderr.contains("dvd, dvd-dl, bd25, bd50, fat32"),
        "{}",
        run.stderr
    );
}

/// `airlock-firstboot prepare ARGS --root ROOT`, stdin not a terminal.
fn prepare(root: &Path, bundles: &[PathBuf]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock-firstboot"));
    cmd.arg("prepare").arg("--root").arg(root);
    for b in bundles {
        cmd.arg("--bundle").arg(b);
    }
    Run::from_output(cmd.stdin(std::process::Stdio::null()).output().unwrap())
}

#[test]
fn prepare_takes_the_volumes_in_any_order_and_refuses_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    demo_site(dir.path());
    let run = build_in_volumes(dir.path(), "b", "512K", "1800000000");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let volumes = volumes_of(&dir.path().join("b"));
    let root = dir.path().join("reference");
    fs::create_dir_all(root.join("etc/ssh")).unwrap();
    // One missing: refused before anything is put in place.
    let run = prepare(&root, &volumes[1..]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("volume(s) 01 of 01, 02") && run.stderr.contains("missing"),
        "{}",
        run.stderr
    );
    assert!(crate::common::nothing_prepared(&root));
    // All of them, last first.
    let reversed: Vec<PathBuf> = volumes.iter().rev().cloned().collect();
    let run = prepare(&root, &reversed);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "assembled the bundle from {} volume(s)",
            volumes.len()
        )),
        "{}",
        run.stdout
    );
    assert!(
        root.join("opt/airlock/repo/dists/1.7_x86-64/InRelease")
            .is_file()
    );
    assert!(root.join("opt/airlock/inventory.toml").is_file());
    assert!(
        !root.join("var/tmp/airlock-bundle").exists(),
        "removed after"
    );
}

#[test]
fn with_iso_each_volume_is_an_image_of_at_most_its_size_that_verifies_once_extracted() {
    let dir = tempfile::tempdir().unwrap();
    demo_site(dir.path());
    let cmd = Command::new(crate::common::airlock_bin())
        .args(["build", "d/recipe.toml", "--key", "keys/signing-key.asc"])
        .args(["--out", "b", "--runner", "/bin/true", "--allow-new-glibc"])
        .args(["--volume-size", "512K", "--iso"])
        .current_dir(dir.path())
        .env("SOURCE_DATE_EPOCH", "1800000000")
        .output()
        .unwrap();
    let run = Run::from_output(cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let volumes = volumes_of(&dir.path().join("b"));
    let dirs: Vec<&PathBuf> = volumes.iter().filter(|v| v.is_dir()).collect();
    assert!(dirs.len() >= 3);
    for v in dirs {
        let name = v.file_name().unwrap().to_str().unwrap();
        let image = v.with_extension("iso");
        let size = fs::metadata(&image).unwrap().len();
        assert!(size <= 512 << 10, "{}: {size} bytes", image.display());
        let info = Command::new("xorriso")
            .args(["-indev"])
            .arg(&image)
            .args(["-pvd_info"])
            .output()
            .unwrap();
        let info = String::from_utf8_lossy(&info.stdout);
        assert!(info.contains(&format!("AIRLOCK_SPACEVDI_{name}")), "{info}");
        let out = dir.path().join(format!("extracted-{name}"));
        assert!(ok(Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(&image)
            .args(["-extract", "/"])
            .arg(&out)));
        let run = airlock(dir.path(), &["verify", out.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    }
    let run = airlock(
        dir.path(),
        &[
            "build",
            "d/recipe.toml",
            "--key",
            "keys/signing-key.asc",
            "--out",
            "c",
            "--iso",
        ],
    );
    assert_eq!(run.code, 2, "--iso alone is a usage error: {}", run.stderr);
    assert!(run.stderr.contains("--volume-size"), "{}", run.stderr);
}
