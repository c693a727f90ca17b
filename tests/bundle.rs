//! `airlock build`, `airlock verify` and `airlock demo`: the bundle, checked
//! by airlock and by the stock tools (`sha256sum -c`, `gpgv`), and a tamper
//! matrix where every case must fail naming the file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Run, airlock_bin};

fn airlock_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(airlock_bin());
    cmd.args(args)
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from_output(cmd.output().unwrap())
}

/// A demo bundle in a fresh directory.
fn demo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let run = airlock_in(dir.path(), &["demo", "--out", "demo"], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let bundle = dir.path().join("demo/bundle");
    (dir, bundle)
}

fn verify(path: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["verify", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    airlock_in(path.parent().unwrap(), &args, &[])
}

fn stock_tools_accept(bundle: &Path) -> (bool, bool) {
    let sums = Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(bundle)
        .output()
        .unwrap();
    let gpgv = Command::new("gpgv")
        .args([
            "--keyring",
            "./archive-keyring.gpg",
            "SHA256SUMS.gpg",
            "SHA256SUMS",
        ])
        .current_dir(bundle)
        .output()
        .unwrap();
    (sums.status.success(), gpgv.status.success())
}

fn first_file(bundle: &Path, under: &str, ext: &str) -> String {
    let base = bundle.join(under);
    walkdir::WalkDir::new(&base)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .find(|e| e.file_type().is_file() && e.path().to_string_lossy().ends_with(ext))
        .map(|e| e.path().strip_prefix(bundle).unwrap().display().to_string())
        .unwrap_or_else(|| panic!("no {ext} under {under}"))
}

/// `airlock build RECIPE --key keys/signing-key.asc --allow-new-glibc
/// EXTRA…` in `dir` at a fixed `SOURCE_DATE_EPOCH`.
fn build_demo(dir: &Path, recipe: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "build",
        recipe,
        "--key",
        "keys/signing-key.asc",
        "--allow-new-glibc",
    ];
    args.extend(extra);
    airlock_in(dir, &args, &[("SOURCE_DATE_EPOCH", "1800000000")])
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0x20;
    fs::write(path, b).unwrap();
}

#[test]
fn the_demo_bundle_verifies_with_airlock_and_stock_tools() {
    let (_dir, bundle) = demo();
    for f in [
        "SHA256SUMS",
        "SHA256SUMS.gpg",
        "archive-keyring.gpg",
        "archive-keyring.asc",
        "README.txt",
        "recipe.toml",
        "inventory.toml",
        "bin/airlock-firstboot",
        "vendor/install.sh",
        "seeds/spdb1.iso",
        "repo/dists/1.7_x86-64/InRelease",
    ] {
        assert!(bundle.join(f).is_file(), "{f} missing");
    }
    assert_eq!(stock_tools_accept(&bundle), (true, true));
    let run = verify(&bundle, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("OWN keyring"),
        "a loud note about the bundle's own key: {}",
        run.stderr
    );
    let readme = fs::read_to_string(bundle.join("README.txt")).unwrap();
    assert!(readme.contains("sha256sum -c --quiet SHA256SUMS"));
    assert!(readme.contains("seeds/spdb1.iso  ->  spdb1"));
    // Every file but the two manifest files is listed, sorted.
    let sums = fs::read_to_string(bundle.join("SHA256SUMS")).unwrap();
    let paths: Vec<&str> = sums
        .lines()
        .map(|l| l.split_once("  ").unwrap().1)
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert!(!paths.contains(&"SHA256SUMS") && !paths.contains(&"SHA256SUMS.gpg"));
    assert!(paths.contains(&"bin/airlock-firstboot"));
}

#[test]
fn two_demo_runs_give_identical_tars() {
    let (a, _) = demo();
    let (b, _) = demo();
    let ta = fs::read(a.path().join("demo/bundle.tar")).unwrap();
    let tb = fs::read(b.path().join("demo/bundle.tar")).unwrap();
    assert!(ta == tb, "the demo tar differs between two runs");
}

/// Each tamper case: a change, and the path the report must name.
#[test]
fn every_tampering_is_reported_with_its_file() {
    let (_dir, pristine) = demo();
    type Tamper = Box<dyn Fn(&Path) -> String>;
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "byte in a .deb",
            Box::new(|b| {
                let f = first_file(b, "repo/pool", ".deb");
                flip_byte(&b.join(&f), 300);
                f
            }),
        ),
        (
            "byte in InRelease",
            Box::new(|b| {
                let f = "repo/dists/1.7_x86-64/InRelease".to_string();
                flip_byte(&b.join(&f), 60);
                f
            }),
        ),
        (
            "byte in a seed",
            Box::new(|b| {
                let f = "seeds/spdb2.iso".to_string();
                flip_byte(&b.join(&f), 40_000);
                f
            }),
        ),
        (
            "truncated file",
            Box::new(|b| {
                let f = "vendor/install.sh".to_string();
                let bytes = fs::read(b.join(&f)).unwrap();
                fs::write(b.join(&f), &bytes[..bytes.len() / 2]).unwrap();
                f
            }),
        ),
        (
            "deleted file",
            Box::new(|b| {
                let f = "payloads/spleader/meta-data".to_string();
                fs::remove_file(b.join(&f)).unwrap();
                f
            }),
        ),
        (
            "added file",
            Box::new(|b| {
                let f = "seeds/intruder.iso".to_string();
                fs::write(b.join(&f), b"not ours").unwrap();
                f
            }),
        ),
        (
            "renamed file",
            Box::new(|b| {
                fs::rename(b.join("README.txt"), b.join("README.old")).unwrap();
                "README.txt".to_string()
            }),
        ),
        (
            "byte in SHA256SUMS",
            Box::new(|b| {
                let f = "SHA256SUMS".to_string();
                flip_byte(&b.join(&f), 10);
                "SHA256SUMS.gpg".to_string()
            }),
        ),
        (
            "signature removed",
            Box::new(|b| {
                fs::remove_file(b.join("SHA256SUMS.gpg")).unwrap();
                "SHA256SUMS.gpg".to_string()
            }),
        ),
        (
            "a symlink added",
            Box::new(|b| {
                std::os::unix::fs::symlink("/", b.join("root-link")).unwrap();
                "root-link".to_string()
            }),
        ),
    ];
    for (name, tamper) in cases {
        let work = tempfile::tempdir().unwrap();
        let bundle = work.path().join("bundle");
        copy_tree(&pristine, &bundle);
        let named = tamper(&bundle);
        let run = verify(&bundle, &[]);
        assert_eq!(
            run.code, 1,
            "{name}: expected exit 1\n{}{}",
            run.stdout, run.stderr
        );
        assert!(
            run.stdout.contains(&format!(" {named}: ")),
            "{name}: the report does not name {named}:\n{}",
            run.stdout
        );
        assert!(run.stdout.contains("FAILED"), "{name}");
    }
}

#[test]
fn a_foreign_signature_fails_airlock_and_gpgv() {
    let (dir, bundle) = demo();
    assert_eq!(
        airlock_in(dir.path(), &["keygen", "--out", "foreign"], &[]).code,
        0
    );
    // Re-sign SHA256SUMS with another key, as an attacker would.
    let gnupg = dir.path().join("gnupg");
    fs::create_dir_all(&gnupg).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&gnupg, fs::Permissions::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        Command::new("gpg")
            .arg("--homedir")
            .arg(&gnupg)
            .args(["--batch", "--quiet", "--yes"])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        gpg(&[
            "--import",
            dir.path().join("foreign/signing-key.asc").to_str().unwrap()
        ])
        .status
        .success()
    );
    assert!(
        gpg(&[
            "--detach-sign",
            "--armor",
            "-o",
            bundle.join("SHA256SUMS.gpg").to_str().unwrap(),
            bundle.join("SHA256SUMS").to_str().unwrap()
        ])
        .status
        .success()
    );
    let run = verify(&bundle, &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("SIGNATURE  SHA256SUMS.gpg: does not verify"),
        "{}",
        run.stdout
    );
    assert_eq!(
        stock_tools_accept(&bundle),
        (true, false),
        "gpgv must refuse the foreign signature"
    );
    // With the attacker's key in hand, the bundle's own keyring would pass:
    // only an independently delivered keyring proves origin.
    let run = verify(
        &bundle,
        &[
            "--keyring",
            dir.path()
                .join("foreign/archive-keyring.gpg")
                .to_str()
                .unwrap(),
        ],
    );
    assert_eq!(run.code, 0);
}

#[test]
fn stock_tools_reject_a_tampered_manifest() {
    let (_dir, bundle) = demo();
    let sums = bundle.join("SHA256SUMS");
    let text = fs::read_to_string(&sums).unwrap();
    // Point one line at other bytes: sha256sum -c fails for it, gpgv for the whole.
    let tampered = text.replacen(&text[..1], if &text[..1] == "0" { "1" } else { "0" }, 1);
    fs::write(&sums, tampered).unwrap();
    assert_eq!(stock_tools_accept(&bundle), (false, false));
}

#[test]
fn the_tar_verifies() {
    let (dir, _) = demo();
    let tar_path = dir.path().join("demo/bundle.tar");
    let run = verify(&tar_path, &["--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["signature"], "good");
    assert!(report["signed_at"].is_i64());
    // Crafted tars: tests/hostile.rs.
}

#[test]
fn build_from_a_recipe_with_a_site_key_and_a_gz_tar() {
    let dir = tempfile::tempdir().unwrap();
    // Demo media and recipe, but the site's own key.
    crate::common::demo_site(dir.path());
    let run = build_demo(
        dir.path(),
        "d/recipe.toml",
        &["--out", "b", "--tar", "b.tar.gz", "--json"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["hosts"], 5);
    assert_eq!(summary["secrets_created"], true);
    assert!(
        dir.path().join("d/recipe.secrets.toml").is_file(),
        "secrets kept beside the recipe, outside the bundle"
    );
    assert!(
        !fs::read_to_string(dir.path().join("b/SHA256SUMS"))
            .unwrap()
            .contains("secrets.toml")
    );
    let run = verify(
        &dir.path().join("b.tar.gz"),
        &[
            "--keyring",
            dir.path()
                .join("keys/archive-keyring.gpg")
                .to_str()
                .unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("signature: good"));
    // A second build re-reads no package, and takes the pool over: a pool
    // file is the very one the first build left (a link would move its
    // ctime).
    let identity = |m: fs::Metadata| {
        use std::os::unix::fs::MetadataExt;
        (m.ino(), m.ctime(), m.ctime_nsec())
    };
    let pool_file =
        dir.path()
            .join("b")
            .join(first_file(&dir.path().join("b"), "repo/pool", ".deb"));
    let before = identity(fs::metadata(&pool_file).unwrap());
    let run = build_demo(dir.path(), "d/recipe.toml", &["--out", "b", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let again: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(again["repository"]["reused"], 5, "{again}");
    assert_eq!(again["repository"]["hashed_bytes"], 0, "{again}");
    assert_eq!(again["secrets_created"], false);
    assert_eq!(identity(fs::metadata(&pool_file).unwrap()), before);
    assert_eq!(verify(&dir.path().join("b"), &[]).code, 0);
    assert_eq!(stock_tools_accept(&dir.path().join("b")), (true, true));
    // A package more on the main disc: the next build reads only it, and
    // moves it into the pool it takes over; the build after reads none
    // (its cache names that file as the move left it).
    let main = dir.path().join("d/media/main");
    crate::common::discs::make_deb(
        &main,
        &crate::common::discs::Pkg::new("airlock-test-extra", "1.0-1"),
    );
    crate::common::discs::index_disc(&main, &["main", "contrib"]);
    for (reused, hashed) in [(5, true), (6, false)] {
        let run = build_demo(dir.path(), "d/recipe.toml", &["--out", "b", "--json"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let again: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(again["repository"]["reused"], reused, "{again}");
        assert_eq!(again["repository"]["hashed_bytes"] != 0, hashed, "{again}");
    }
    // …and it is the bundle a fresh build gives.
    let run = build_demo(dir.path(), "d/recipe.toml", &["--out", "c"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sums = |d: &str| fs::read(dir.path().join(d).join("SHA256SUMS")).unwrap();
    assert!(
        sums("b") == sums("c"),
        "a rebuild gives the fresh build's manifest"
    );
    // The bundle's recipe has no build-machine paths.
    let recipe = fs::read_to_string(dir.path().join("b/recipe.toml")).unwrap();
    assert!(recipe.contains("main = \"main\""), "{recipe}");
}

#[test]
fn a_recipe_without_its_media_builds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        airlock_in(dir.path(), &["keygen", "--out", "keys"], &[]).code,
        0
    );
    let recipe = crate::common::repo_dir().join("recipes/space-vdi-5.4-ha.toml");
    let run = airlock_in(
        dir.path(),
        &[
            "build",
            recipe.to_str().unwrap(),
            "--key",
            "keys/signing-key.asc",
            "--out",
            "b",
        ],
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("error: media.main:"), "{}", run.stderr);
    assert!(!dir.path().join("b").exists());
}

#[test]
fn verify_of_nothing_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = airlock_in(dir.path(), &["verify", "nowhere"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("nowhere"));
}

fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            fs::create_dir_all(&dest).unwrap();
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[test]
fn a_runner_that_needs_a_newer_glibc_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::demo_site(dir.path());
    // The runner cargo built for the tests links this machine's glibc (2.36).
    let run = airlock_in(
        dir.path(),
        &[
            "build",
            "d/recipe.toml",
            "--key",
            "keys/signing-key.asc",
            "--out",
            "b",
            "--runner",
            env!("CARGO_BIN_EXE_airlock-firstboot"),
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("needs GLIBC_2.")
            && run.stderr.contains("Astra Linux SE 1.7 has glibc 2.28"),
        "{}",
        run.stderr
    );
    assert!(!dir.path().join("b").exists());
}

#[test]
fn the_runner_for_astra_needs_at_most_glibc_2_28() {
    // Built by `just runner` (scripts/test-all builds it before the tests).
    let runner =
        crate::common::repo_dir().join("target/x86_64-unknown-linux-gnu/runner/airlock-firstboot");
    let Ok(bytes) = fs::read(&runner) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must build the runner with `just runner` first"
        );
        eprintln!("skipping: {} not built (just runner)", runner.display());
        return;
    };
    let v = airlock::build::elfcheck::max_glibc(&bytes).unwrap();
    assert!(
        v.is_none_or(|v| v <= (2, 28)),
        "the runner needs GLIBC_{v:?}"
    );
    // Stripped and linked with LTO, it still carries the version inspect reads.
    assert_eq!(
        airlock::shared::version_in(&bytes).as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    // And airlock build ships it by default.
    let dir = tempfile::tempdir().unwrap();
    crate::common::demo_site(dir.path());
    let run = Command::new(crate::common::repo_dir().join("target/debug/airlock"))
        .args([
            "build",
            "d/recipe.toml",
            "--key",
            "keys/signing-key.asc",
            "--out",
            "b",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let shipped = fs::read(dir.path().join("b/bin/airlock-firstboot")).unwrap();
    assert!(
        airlock::build::elfcheck::max_glibc(&shipped)
            .unwrap()
            .is_none_or(|v| v <= (2, 28))
    );
}

/// Builds `d/recipe.toml` in `dir` into `out` (and `out.tar`) signed with
/// the keys at `keys`.
fn build_signed_by(dir: &Path, keys: &[&str], out: &str) {
    let mut args = vec!["build", "d/recipe.toml", "--out", out, "--allow-new-glibc"];
    let tar = format!("{out}.tar");
    args.extend(["--tar", tar.as_str()]);
    for k in keys {
        args.extend(["--key", k]);
    }
    let run = airlock_in(dir, &args, &[("SOURCE_DATE_EPOCH", "1800000000")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// A key rollover and a two-person rule: a bundle signed by two keys is
/// accepted by gpgv and `airlock verify` trusting either key, and by
/// `--require-signers 2` with both; a bundle one key signed is not.
#[test]
fn a_bundle_signed_by_two_keys() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::demo_site(dir.path());
    let d = dir.path();
    assert_eq!(airlock_in(d, &["keygen", "--out", "k2"], &[]).code, 0);
    build_signed_by(d, &["keys/signing-key.asc", "k2/signing-key.asc"], "b");
    let (k1, k2) = (
        d.join("keys/archive-keyring.gpg"),
        d.join("k2/archive-keyring.gpg"),
    );
    let (f1, f2) = (
        crate::common::fingerprints(&k1).remove(0),
        crate::common::fingerprints(&k2).remove(0),
    );
    let b = d.join("b");
    // The bundle's keyring holds both keys, in the order given; gpgv with
    // it accepts (exit 0), and with each key alone finds that key's good
    // signature and exits 2 for the other.
    assert_eq!(
        crate::common::fingerprints(&b.join("archive-keyring.gpg")),
        [f1.clone(), f2.clone()]
    );
    assert_eq!(
        crate::common::fingerprints(&b.join("archive-keyring.asc")),
        [f1.clone(), f2.clone()]
    );
    assert_eq!(stock_tools_accept(&b), (true, true));
    let (sums, sig) = (b.join("SHA256SUMS"), b.join("SHA256SUMS.gpg"));
    crate::common::assert_gpgv_good_by_one_of_two(&k1, &f1, &f2, &[&sig, &sums]);
    crate::common::assert_gpgv_good_by_one_of_two(&k2, &f2, &f1, &[&sig, &sums]);
    let readme = fs::read_to_string(b.join("README.txt")).unwrap();
    assert!(
        readme.contains(&format!("    {f1}\n    {f2}\n")),
        "{readme}"
    );

    let (k1s, k2s) = (k1.to_str().unwrap(), k2.to_str().unwrap());
    for path in [&b, &d.join("b.tar")] {
        // Either key alone, one signer required (a site during a rollover).
        for k in [k1s, k2s] {
            let run = verify(path, &["--keyring", k]);
            assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
            assert!(run.stdout.contains("signature: good, by"), "{}", run.stdout);
            assert!(
                run.stdout
                    .contains("a key the keyring does not hold (not counted)"),
                "{}",
                run.stdout
            );
        }
        // The two-person rule.
        let run = verify(
            path,
            &["--keyring", k1s, "--keyring", k2s, "--require-signers", "2"],
        );
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        assert!(
            run.stdout
                .contains("signature: good, by 2 keys (2 required):"),
            "{}",
            run.stdout
        );
        let json = verify(
            path,
            &[
                "--keyring",
                k1s,
                "--keyring",
                k2s,
                "--require-signers",
                "2",
                "--json",
            ],
        );
        let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(report["signers"].as_array().unwrap().len(), 2, "{report}");
        assert_eq!(report["signers"][0]["key"], f1.as_str());
        // The bundle's own keyring holds both, and says it is its own.
        let run = verify(path, &["--require-signers", "2"]);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains("OWN keyring"), "{}", run.stderr);
    }
    // Two signers asked of one key's keyring (or of one key given twice):
    // no bundle can meet it, a usage error.
    for args in [
        &["--keyring", k1s, "--require-signers", "2"][..],
        &["--keyring", k1s, "--keyring", k1s, "--require-signers", "2"][..],
    ] {
        let run = verify(&b, args);
        assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
        assert!(
            run.stderr
                .contains("--require-signers 2, but the keyring(s) given hold 1 distinct key(s)"),
            "{}",
            run.stderr
        );
    }

    // A bundle one key signed: refused with two required, naming who
    // signed and who did not.
    build_signed_by(d, &["keys/signing-key.asc"], "one");
    let run = verify(
        &d.join("one"),
        &["--keyring", k1s, "--keyring", k2s, "--require-signers", "2"],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("SIGNATURE"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(
        line.contains("too few signers: 1 of the 2 signers required made a good signature"),
        "{line}"
    );
    assert!(
        line.contains(&format!(
            "{f1} \"Site archive key (airlock) <airlock@localhost>\""
        )),
        "{line}"
    );
    assert!(
        line.contains(&format!("no good signature by {f2}")),
        "{line}"
    );
    assert!(!run.stdout.contains("signature: good"), "{}", run.stdout);
    // gpgv counts nothing: with both keyrings it accepts the one signature.
    let one = d.join("one");
    let (code, _) = crate::common::gpgv_status(
        &k1,
        &[
            Path::new("--keyring"),
            &k2,
            &one.join("SHA256SUMS.gpg"),
            &one.join("SHA256SUMS"),
        ],
    );
    assert_eq!(code, 0);
    // One required: it passes with the key that signed, not with the other.
    assert_eq!(
        verify(&d.join("one"), &["--keyring", k1s, "--keyring", k2s]).code,
        0
    );
    let run = verify(&d.join("one"), &["--keyring", k2s]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("does not verify: no key of"),
        "{}",
        run.stdout
    );
    // Its own keyring holds one key: two required fails.
    let run = verify(&d.join("one"), &["--require-signers", "2"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
}

/// `--tar FILE --no-dir` writes the very tar that `--out DIR --tar FILE`
/// writes, with no directory beside it; a package that does not match its
/// disc's index stops it with the file named, and nothing is left.
#[test]
fn a_tar_without_a_directory_is_the_same_tar_and_checks_every_package() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::demo_site(dir.path());
    let build = |extra: &[&str]| build_demo(dir.path(), "d/recipe.toml", extra);
    let run = build(&["--out", "b", "--tar", "b.tar"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = build(&["--tar", "n.tar", "--no-dir"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let read = |f: &str| fs::read(dir.path().join(f)).unwrap();
    assert!(read("b.tar") == read("n.tar"), "the same bytes");
    let names = || -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    let expected = [
        ".b.airlock-repo-cache.json",
        ".n.tar.airlock-repo-cache.json",
        "b",
        "b.tar",
        "d",
        "keys",
        "n.tar",
    ];
    assert_eq!(names(), expected);
    assert_eq!(verify(&dir.path().join("n.tar"), &[]).code, 0);

    // --no-dir needs --tar and takes no --out.
    assert_eq!(build(&["--no-dir"]).code, 2);
    assert_eq!(build(&["--no-dir", "--tar", "x.tar", "--out", "x"]).code, 2);
    let run = build(&["--tar", "d/media/main", "--no-dir"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("is a directory"), "{}", run.stderr);
    let run = build(&["--tar", "d/media/main/x.tar", "--no-dir"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("main disc"), "{}", run.stderr);

    // From ISO images (the kernel copies each package out of the image),
    // plain and gzip compressed: the same bytes as from the finished
    // directory.
    crate::common::discs::make_iso(
        &dir.path().join("d/media/main"),
        &dir.path().join("d/main.iso"),
    );
    crate::common::discs::make_iso(
        &dir.path().join("d/media/devel"),
        &dir.path().join("d/devel.iso"),
    );
    let recipe = fs::read_to_string(dir.path().join("d/recipe.toml")).unwrap();
    let recipe = recipe
        .replace("main = \"media/main\"", "main = \"main.iso\"")
        .replace("devel = \"media/devel\"", "devel = \"devel.iso\"");
    fs::write(dir.path().join("d/iso.toml"), recipe).unwrap();
    let build_iso = |extra: &[&str]| build_demo(dir.path(), "d/iso.toml", extra);
    for (full, streamed) in [("i.tar", "ni.tar"), ("i.tar.gz", "ni.tar.gz")] {
        let run = build_iso(&["--out", "i", "--tar", full]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let run = build_iso(&["--tar", streamed, "--no-dir"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            read(full) == read(streamed),
            "{streamed}: the same bytes as {full}"
        );
        assert_eq!(verify(&dir.path().join(streamed), &[]).code, 0);
    }
    // Again: each control comes from the cache beside the tar (nothing is
    // peeked at), and the tar is the same.
    let run = build_iso(&["--tar", "ni.tar", "--no-dir"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("read 0.0 MB, reused 5 unchanged"),
        "{}",
        run.stdout
    );
    // The images are as that build checked them: no package is hashed again.
    assert!(
        run.stdout
            .contains("4 package(s) copied without hashing them again"),
        "{}",
        run.stdout
    );
    assert!(
        read("i.tar") == read("ni.tar"),
        "the same bytes from the cache"
    );
    // A package changed inside the image (its listing, so its cache key,
    // the same; the image file's times move): the copy is hashed again,
    // its hash is not its index's, the build stops naming it, and the
    // earlier tar and cache are as they were.
    let before = names();
    let (tar_was, cache_was) = (read("ni.tar"), read(".ni.tar.airlock-repo-cache.json"));
    let iso = dir.path().join("d/main.iso");
    let image = fs::read(&iso).unwrap();
    let last_deb = image
        .windows(8)
        .rposition(|w| w == b"!<arch>\n")
        .expect("a package in the image");
    let data = last_deb
        + image[last_deb..]
            .windows(8)
            .position(|w| w == b"data.tar")
            .expect("its data member");
    flip_byte(&iso, data + 60 + 40);
    let run = build_iso(&["--tar", "ni.tar", "--no-dir"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("does not match its disc's index"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(".deb"), "{}", run.stderr);
    // It names the package that failed, and only that one.
    assert_eq!(
        run.stderr.matches("adding repo/pool/").count(),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(names(), before, "nothing left");
    assert!(read("ni.tar") == tar_was && read(".ni.tar.airlock-repo-cache.json") == cache_was);
    flip_byte(&iso, data + 60 + 40);

    // A truncated image stops it, naming the image; nothing is left.
    let f = fs::OpenOptions::new().write(true).open(&iso).unwrap();
    f.set_len(last_deb as u64 + 100).unwrap();
    let run = build_iso(&["--tar", "t.tar", "--no-dir"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("main.iso"), "{}", run.stderr);
    assert_eq!(names(), before, "nothing left");
    for f in [
        ".ni.tar.airlock-repo-cache.json",
        ".ni.tar.gz.airlock-repo-cache.json",
        "i",
        "i.tar",
        "i.tar.gz",
        "ni.tar",
        "ni.tar.gz",
        ".i.airlock-repo-cache.json",
    ] {
        let p = dir.path().join(f);
        if p.is_dir() {
            fs::remove_dir_all(p).unwrap();
        } else {
            fs::remove_file(p).unwrap();
        }
    }

    // A package whose bytes are not what its disc's index says.
    let deb = first_file(&dir.path().join("d"), "media/main/pool", ".deb");
    let path = dir.path().join("d").join(&deb);
    let len = fs::metadata(&path).unwrap().len() as usize;
    flip_byte(&path, len - 10);
    let run = build(&["--tar", "m.tar", "--no-dir"]);
    assert_ne!(run.code, 0);
    let name = deb.rsplit('/').next().unwrap();
    assert!(run.stderr.contains(name), "{}", run.stderr);
    assert_eq!(names(), expected, "nothing left");
}
