//! Delta bundles: `airlock build --base OLD` writes only what OLD lacks,
//! `airlock apply DELTA --to OLD --out NEW` makes the whole new bundle
//! again, byte for byte what a whole build gives, and verifies it; twice
//! is harmless; a wrong or missing base and a tampered delta are refused
//! with nothing written.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::discs::{Pkg, index_disc, make_deb};
use crate::common::{Run, airlock_bin, demo_site};

const EPOCH: &str = "1800000000";

/// `airlock ARGS` in `dir` at the fixed build time.
pub(crate) fn run(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(airlock_bin())
        .args(args)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    Run::from_output(out)
}

/// `airlock apply delta --to TO --out new` in `d` exits with `code`, and
/// writes nothing.
fn apply_fails(d: &Path, to: &str, code: i32) -> Run {
    let r = run(d, &["apply", "delta", "--to", to, "--out", "new"]);
    assert_eq!(r.code, code, "--to {to}: {}\n{}", r.stdout, r.stderr);
    assert!(!d.join("new").exists(), "--to {to}: new written");
    r
}

pub(crate) fn ok(dir: &Path, args: &[&str]) -> Run {
    let r = run(dir, args);
    assert_eq!(r.code, 0, "airlock {args:?}:\n{}\n{}", r.stdout, r.stderr);
    r
}

/// `airlock build` of the demo recipe with the site key (a small runner:
/// the debug one is 100 MB).
pub(crate) fn build(dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["build", "d/recipe.toml", "--key", "keys/signing-key.asc"];
    args.extend(["--runner", "/bin/true", "--allow-new-glibc"]);
    args.extend(extra);
    ok(dir, &args)
}

/// The successor of the demo site: on the main disc one package upgraded
/// (airlock-demo-base 1.0-1 -> 1.1-1), one added (airlock-demo-extra), one
/// removed (airlock-demo-doc); in the recipe the VRRP router id changed.
pub(crate) fn make_successor(dir: &Path) {
    let main = dir.join("d/media/main");
    fs::remove_file(main.join("pool/main/a/airlock-demo-base/airlock-demo-base_1.0-1_amd64.deb"))
        .unwrap();
    fs::remove_dir_all(main.join("pool/main/a/airlock-demo-doc")).unwrap();
    make_deb(&main, &Pkg::new("airlock-demo-base", "1.1-1"));
    make_deb(&main, &Pkg::new("airlock-demo-extra", "1.0-1"));
    index_disc(&main, &["main", "contrib"]);
    let recipe = dir.join("d/recipe.toml");
    let text = fs::read_to_string(&recipe).unwrap();
    assert!(text.contains("virtual_router_id = 51"));
    fs::write(
        &recipe,
        text.replace("virtual_router_id = 51", "virtual_router_id = 52"),
    )
    .unwrap();
}

/// Every file under `dir`: its mode and bytes.
pub(crate) fn tree(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            let mode = e.metadata().unwrap().permissions().mode() & 0o7777;
            (rel, (mode, fs::read(e.path()).unwrap()))
        })
        .collect()
}

pub(crate) fn files(dir: &Path) -> Vec<String> {
    tree(dir).into_keys().collect()
}

pub(crate) fn bytes(dir: &Path) -> u64 {
    tree(dir).values().map(|(_, b)| b.len() as u64).sum()
}

pub(crate) fn sh_ok(cmd: &mut Command) -> bool {
    cmd.output().unwrap().status.success()
}

/// `sha256sum -c --strict --quiet --ignore-missing SHA256SUMS` in `dir`
/// passes: every file there is the one the manifest lists.
pub(crate) fn sums_check(dir: &Path) -> bool {
    sh_ok(
        Command::new("sha256sum")
            .args([
                "-c",
                "--strict",
                "--quiet",
                "--ignore-missing",
                "SHA256SUMS",
            ])
            .current_dir(dir),
    )
}

/// `gpgv --keyring KEYRING SIG DATA` in `dir` passes.
pub(crate) fn gpgv_ok(keyring: &Path, dir: &Path, sig: &str, data: &str) -> bool {
    sh_ok(
        Command::new("gpgv")
            .arg("--keyring")
            .arg(keyring)
            .args([sig, data])
            .current_dir(dir),
    )
}

/// In a temporary directory: the demo site, `v1` (and `v1.tar`) built, the
/// site moved on to its successor, `delta` against v1 and `v2full`, the
/// successor built whole.
pub(crate) fn site_with_delta() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo_site(d);
    build(d, &["--out", "v1", "--tar", "v1.tar"]);
    make_successor(d);
    let r = build(d, &["--out", "delta", "--base", "v1"]);
    assert!(r.stdout.contains("delta for cluster"), "{}", r.stdout);
    build(d, &["--out", "v2full"]);
    dir
}

#[test]
fn a_delta_to_the_successor_carries_only_what_changed_and_applies_to_the_whole_build() {
    let dir = site_with_delta();
    let d = dir.path();
    let delta = d.join("delta");
    let carried = files(&delta);
    let has = |p: &str| carried.iter().any(|c| c.ends_with(p));
    assert!(has("airlock-demo-base_1.1-1_amd64.deb"), "{carried:?}");
    assert!(has("airlock-demo-extra_1.0-1_amd64.deb"), "{carried:?}");
    for unchanged in [
        "airlock-demo-shared_1.0-1_amd64.deb",
        "airlock-demo-devtools_1.0-1_amd64.deb",
        "bin/airlock-firstboot",
        "vendor/install.sh",
    ] {
        assert!(!has(unchanged), "{unchanged} carried: {carried:?}");
    }
    assert!(!has("airlock-demo-doc_1.0-1_all.deb"));
    let sums = fs::read_to_string(delta.join("SHA256SUMS")).unwrap();
    assert!(!sums.contains("airlock-demo-doc"), "the removed package");
    assert!(sums.contains("airlock-demo-base_1.1-1") && !sums.contains("airlock-demo-base_1.0-1"));
    assert!(has("recipe.toml") && has("seeds/spdb1.iso"), "{carried:?}");

    // The same delta from the base's tar and from its SHA256SUMS alone.
    for (base, out) in [("v1.tar", "delta-tar"), ("v1/SHA256SUMS", "delta-sums")] {
        build(d, &["--out", out, "--base", base]);
        assert_eq!(tree(&d.join(out)), tree(&delta), "--base {base}");
    }

    // The stock tools read it: both signatures, every file it carries, and
    // BASE checked in the base's directory.
    let keyring = d.join("keys/archive-keyring.gpg");
    for (sig, data) in [("SHA256SUMS.gpg", "SHA256SUMS"), ("BASE.gpg", "BASE")] {
        assert!(gpgv_ok(&keyring, &delta, sig, data), "gpgv {sig}");
    }
    assert!(sums_check(&delta));
    assert!(sh_ok(
        Command::new("sha256sum")
            .args(["-c", "--strict", "../delta/BASE"])
            .current_dir(d.join("v1"))
    ));
    assert!(!sh_ok(
        Command::new("sha256sum")
            .args(["-c", "--strict", "../delta/BASE"])
            .current_dir(d.join("v2full"))
    ));

    // Applied, it is the whole build, byte for byte and mode for mode.
    let r = ok(d, &["apply", "delta", "--to", "v1", "--out", "v2"]);
    assert!(r.stdout.contains("v2: OK"), "{}", r.stdout);
    assert_eq!(tree(&d.join("v2")), tree(&d.join("v2full")));
    ok(
        d,
        &["verify", "v2", "--keyring", "keys/archive-keyring.gpg"],
    );
    // With the key delivered separately too.
    ok(
        d,
        &[
            "apply",
            "delta",
            "--to",
            "v1",
            "--out",
            "v2k",
            "--keyring",
            "keys/archive-keyring.gpg",
        ],
    );
    assert_eq!(tree(&d.join("v2k")), tree(&d.join("v2full")));

    // `verify` on a delta says what to do with it.
    let r = run(d, &["verify", "delta"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("airlock apply delta"), "{}", r.stderr);

    eprintln!(
        "delta of the demo successor: {} files, {} bytes (the whole bundle: {} files, {} bytes; the base tar {} bytes)",
        carried.len(),
        bytes(&delta),
        files(&d.join("v2full")).len(),
        bytes(&d.join("v2full")),
        fs::metadata(d.join("v1.tar")).unwrap().len()
    );
}

#[test]
fn a_second_delta_against_the_same_base_reuses_its_pool_as_the_first_did() {
    let dir = site_with_delta();
    let d = dir.path();
    // site_with_delta built one delta against v1 already; each of these
    // reads only the two packages v1 does not have.
    for out in ["delta2", "delta3"] {
        let r = build(d, &["--out", out, "--base", "v1", "--json"]);
        let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let repo = &json["repository"];
        let files: u64 = repo["discs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|disc| disc["debs"].as_u64().unwrap())
            .sum();
        assert_eq!(repo["reused"].as_u64(), Some(files - 2), "{out}: {repo}");
        assert_eq!(tree(&d.join(out)), tree(&d.join("delta")), "{out}");
    }
}

#[test]
fn applying_a_delta_twice_is_harmless() {
    let dir = site_with_delta();
    let d = dir.path();
    let whole = tree(&d.join("v2full"));
    ok(d, &["apply", "delta", "--to", "v1", "--out", "v2"]);
    ok(d, &["apply", "delta", "--to", "v1", "--out", "v2"]);
    assert_eq!(tree(&d.join("v2")), whole);
    // In place: the second time the base is already the new bundle.
    ok(d, &["apply", "delta", "--to", "v1", "--out", "v1"]);
    assert_eq!(tree(&d.join("v1")), whole);
    let r = ok(d, &["apply", "delta", "--to", "v1", "--out", "v1"]);
    assert!(r.stdout.contains("already the bundle"), "{}", r.stdout);
    assert_eq!(tree(&d.join("v1")), whole);
    // Nothing left beside them.
    let mut names: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("airlock-tmp") || n.contains("airlock-old"))
        .collect();
    names.sort();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn a_wrong_or_missing_base_is_refused_naming_both_hashes() {
    let dir = site_with_delta();
    let d = dir.path();
    let want = fs::read_to_string(d.join("delta/BASE")).unwrap()[..64].to_string();
    // The demo's own bundle: the same cluster, another build.
    let have = airlock::shared::volumes::sha256(&fs::read(d.join("d/bundle/SHA256SUMS")).unwrap());
    let r = apply_fails(d, "d/bundle", 2);
    assert!(r.stderr.contains("wrong base"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&want) && r.stderr.contains(&have),
        "{}",
        r.stderr
    );
    fs::create_dir(d.join("empty")).unwrap();
    let r = run(d, &["apply", "delta", "--to", "empty", "--out", "new"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("missing base") && r.stderr.contains(&want),
        "{}",
        r.stderr
    );
    let r = run(d, &["apply", "delta", "--to", "nowhere", "--out", "new"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("nowhere"), "{}", r.stderr);
    // A delta given as the base: said so (before, a missing runner).
    let r = run(d, &["apply", "delta", "--to", "delta", "--out", "new"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("delta: a delta, not a whole bundle"),
        "{}",
        r.stderr
    );
    assert!(!d.join("new").exists());
}

/// A copy of the delta at `name`, changed by `f`.
fn altered(d: &Path, name: &str, f: impl Fn(&Path)) -> String {
    let to = d.join(name);
    let out = Command::new("cp")
        .arg("-a")
        .arg(d.join("delta"))
        .arg(&to)
        .output()
        .unwrap();
    assert!(out.status.success());
    f(&to);
    name.to_string()
}

/// A file the delta carries under `under`.
fn carried_file(delta: &Path, under: &str) -> String {
    files(delta)
        .into_iter()
        .find(|p| p.starts_with(under))
        .unwrap()
}

/// The delta's manifest replaced by `sums`, signed by the key in `key`.
fn resign(delta: &Path, sums: &str, key: &Path) {
    let k = airlock::build::sign::SigningKey::load(key).unwrap();
    fs::write(delta.join("SHA256SUMS"), sums).unwrap();
    fs::write(
        delta.join("SHA256SUMS.gpg"),
        k.detached_armored(sums.as_bytes(), 1_800_000_000).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_tampered_delta_is_refused_with_nothing_written() {
    let dir = site_with_delta();
    let d = dir.path();
    ok(d, &["keygen", "--out", "other"]);
    let site_key = d.join("keys/signing-key.asc");
    let deb = carried_file(&d.join("delta"), "repo/pool/");
    let sums = fs::read_to_string(d.join("delta/SHA256SUMS")).unwrap();
    let cases: Vec<(String, &str, &str)> = vec![
        (
            altered(d, "flipped", |t| {
                let p = t.join(&deb);
                let mut b = fs::read(&p).unwrap();
                b[100] ^= 1;
                fs::write(&p, b).unwrap();
            }),
            "MODIFIED",
            "taken from the delta",
        ),
        (
            altered(d, "extra", |t| {
                fs::write(t.join("repo/evil.sh"), "x").unwrap()
            }),
            "EXTRA",
            "repo/evil.sh",
        ),
        (
            altered(d, "link", |t| {
                std::os::unix::fs::symlink("/etc/passwd", t.join("vendor")).unwrap()
            }),
            "UNSAFE",
            "symbolic link",
        ),
        (
            altered(d, "foreign", |t| {
                resign(t, &sums, &d.join("other/signing-key.asc"))
            }),
            "SIGNATURE",
            "SHA256SUMS.gpg",
        ),
        (
            altered(d, "unsigned-base", |t| {
                fs::remove_file(t.join("BASE.gpg")).unwrap()
            }),
            "SIGNATURE",
            "BASE.gpg",
        ),
        (
            // Signed by the site's own key: the paths are still checked.
            altered(d, "escaping", |t| {
                let line = sums.lines().find(|l| l.ends_with("recipe.toml")).unwrap();
                let evil = line.replace("recipe.toml", "../escape");
                resign(t, &format!("{sums}{evil}\n"), &site_key)
            }),
            "UNSAFE",
            "../escape",
        ),
        (
            altered(d, "file-and-dir", |t| {
                let line = sums.lines().find(|l| l.ends_with("recipe.toml")).unwrap();
                let evil = line.replace("recipe.toml", "recipe.toml/inner");
                resign(t, &format!("{sums}{evil}\n"), &site_key)
            }),
            "UNSAFE",
            "listed as a file and as a directory",
        ),
    ];
    for (name, kind, says) in &cases {
        let out = format!("new-{name}");
        let r = run(d, &["apply", name, "--to", "v1", "--out", &out]);
        assert_eq!(r.code, 1, "{name}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains(kind) && r.stdout.contains(says),
            "{name}: {}",
            r.stdout
        );
        assert!(r.stdout.contains("REFUSED"), "{name}: {}", r.stdout);
        assert!(!d.join(&out).exists(), "{name}: {out} written");
    }
    assert!(!d.join("escape").exists() && !d.parent().unwrap().join("escape").exists());

    // A base file the delta relies on, damaged: named with where it came from.
    let runner = d.join("v1/bin/airlock-firstboot");
    let mut b = fs::read(&runner).unwrap();
    b[0] ^= 1;
    fs::write(&runner, b).unwrap();
    let r = apply_fails(d, "v1", 1);
    assert!(
        r.stdout.contains("MODIFIED") && r.stdout.contains("taken from the base"),
        "{}",
        r.stdout
    );
    assert!(!d.join("new").exists());
    let leftovers: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.contains("airlock-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `airlock-firstboot prepare ARGS --root ROOT`, stdin not a terminal.
pub(crate) fn prepare(root: &Path, args: &[&Path]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock-firstboot"));
    cmd.arg("prepare").arg("--root").arg(root).args(args);
    Run::from_output(cmd.stdin(std::process::Stdio::null()).output().unwrap())
}

#[test]
fn prepare_takes_a_delta_with_its_base_and_refuses_a_wrong_one() {
    let dir = site_with_delta();
    let d = dir.path();
    let root = d.join("reference");
    fs::create_dir_all(root.join("etc/ssh")).unwrap();
    let (delta, v1) = (d.join("delta"), d.join("v1"));
    let bundle = Path::new("--bundle");
    let base = Path::new("--base");

    let r = prepare(&root, &[bundle, &delta]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--base OLD"), "{}", r.stderr);
    let r = prepare(&root, &[bundle, &delta, base, &d.join("d/bundle")]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("wrong base"), "{}", r.stderr);
    assert!(crate::common::nothing_prepared(&root));

    let r = prepare(&root, &[bundle, &delta, base, &v1]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("made the new bundle"), "{}", r.stdout);
    // The new repository is in place: the upgraded and the added package,
    // not the removed one.
    let pool = tree(&root.join("opt/airlock/repo/pool"));
    let names: Vec<&String> = pool.keys().collect();
    assert!(
        names
            .iter()
            .any(|p| p.ends_with("airlock-demo-base_1.1-1_amd64.deb"))
            && names
                .iter()
                .any(|p| p.ends_with("airlock-demo-extra_1.0-1_amd64.deb"))
            && !names.iter().any(|p| p.contains("airlock-demo-doc")),
        "{names:?}"
    );
    assert_eq!(
        fs::read(root.join("opt/airlock/repo/dists/1.7_x86-64/InRelease")).unwrap(),
        fs::read(d.join("v2full/repo/dists/1.7_x86-64/InRelease")).unwrap()
    );
    assert!(
        !root.join("var/tmp/airlock-bundle").exists(),
        "removed after"
    );
}

/// `airlock-firstboot update --root ROOT ARGS`, as a person with umask 077
/// would run it.
pub(crate) fn update(root: &Path, args: &[&str]) -> Run {
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 077; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_airlock-firstboot"))
        .arg("update")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    Run::from_output(out)
}

/// A reference VM's root prepared from the bundle `bundle`.
pub(crate) fn prepared(d: &Path, name: &str, bundle: &Path) -> std::path::PathBuf {
    let root = d.join(name);
    fs::create_dir_all(root.join("etc/ssh")).unwrap();
    let r = prepare(&root, &[Path::new("--bundle"), bundle]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    root
}

/// Only the bundle `new` is kept under `root`, `current` points at it, and
/// its repository and vendor disc are the whole successor's (`v2full` in
/// `d`), byte for byte and mode for mode.
pub(crate) fn assert_at_successor(root: &Path, d: &Path, new: &str) {
    assert_eq!(
        kept_state(root),
        (format!("bundles/{new}").into(), vec![new.to_string()])
    );
    let current = root.join("opt/airlock/current");
    for part in ["repo", "vendor"] {
        assert_eq!(
            tree(&current.join(part)),
            tree(&d.join("v2full").join(part)),
            "{part}"
        );
    }
}

pub(crate) fn sha256_of(path: &Path) -> String {
    airlock::shared::volumes::sha256(&fs::read(path).unwrap())
}

/// Where `current` points, and what `bundles/` holds, under `root`.
pub(crate) fn kept_state(root: &Path) -> (std::path::PathBuf, Vec<String>) {
    let link = fs::read_link(root.join("opt/airlock/current")).unwrap();
    let mut names: Vec<String> = fs::read_dir(root.join("opt/airlock/bundles"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    (link, names)
}

/// The VM's apt setting that accepts the repository though the VM's clock
/// is behind the build (the tests' builds are dated ahead).
fn apt_conf(root: &Path) -> std::path::PathBuf {
    root.join("etc/apt/apt.conf.d/50airlock")
}

/// An apt root reading the VM's /opt/main with the key and the setting the
/// VM has; after `apt-get update`, the candidate version of `package`
/// (None: apt does not know it).
fn candidate(apt: &crate::common::discs::AptRoot, root: &Path, package: &str) -> Option<String> {
    let (ok, out) = apt.apt_get_env(&["update"], &[("APT_CONFIG", &apt_conf(root))]);
    assert!(ok, "apt-get update:\n{out}");
    let (_, policy) = apt.apt_cache(&["policy", package]);
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate: "))
        .filter(|c| *c != "(none)")
        .map(str::to_string)
}

fn apt_for(d: &Path, root: &Path) -> crate::common::discs::AptRoot {
    crate::common::discs::AptRoot::new(
        d,
        &root.join("opt/main"),
        &root.join("etc/apt/trusted.gpg.d/airlock-archive.gpg"),
        "1.7_x86-64",
    )
}

#[test]
fn update_moves_a_prepared_vm_to_the_successor_apt_sees_it_and_twice_is_harmless() {
    let dir = site_with_delta();
    let d = dir.path();
    let root = prepared(d, "vm", &d.join("v1"));
    let old = sha256_of(&d.join("v1/SHA256SUMS"));
    let new = sha256_of(&d.join("delta/SHA256SUMS"));
    assert_eq!(
        kept_state(&root),
        (format!("bundles/{old}").into(), vec![old.clone()])
    );
    let apt = apt_for(d, &root);
    assert_eq!(
        candidate(&apt, &root, "airlock-demo-base").as_deref(),
        Some("1.0-1")
    );
    assert_eq!(
        candidate(&apt, &root, "airlock-demo-doc").as_deref(),
        Some("1.0-1")
    );

    // The vendor disc's installer, which the delta does not carry: its inode.
    let installer = "vendor/install.sh";
    assert!(!d.join("delta").join(installer).exists());
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
    let kept_ino = ino(&root.join("opt/airlock/current").join(installer));

    let r = update(&root, &["--bundle", d.join("delta").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // What the kept bundle held was linked into the new one, not copied.
    assert_eq!(
        ino(&root.join("opt/airlock/current").join(installer)),
        kept_ino
    );
    for says in [
        new.as_str(),
        old.as_str(),
        "airlock-demo-base 1.0-1 -> 1.1-1",
        "+ airlock-demo-extra 1.0-1",
        "- airlock-demo-doc 1.0-1",
        "recipe.toml",
        "apt-get update",
    ] {
        assert!(r.stdout.contains(says), "{says}:\n{}", r.stdout);
    }
    assert_at_successor(&root, d, &new);
    let current = root.join("opt/airlock/current");
    // apt's _apt user reads it: every directory 0755 (the umask was 077).
    for e in walkdir::WalkDir::new(root.join("opt/airlock/bundles")) {
        let e = e.unwrap();
        if e.file_type().is_dir() {
            let mode = e.metadata().unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o755, "{}", e.path().display());
        }
    }
    // The stock tools agree, with the key the VM trusts.
    let trusted = root.join("etc/apt/trusted.gpg.d/airlock-archive.gpg");
    assert!(gpgv_ok(&trusted, &current, "SHA256SUMS.gpg", "SHA256SUMS"));
    assert!(sums_check(&current));
    // apt, through /opt/main, sees the upgraded and the added package and
    // no longer the removed one.
    assert_eq!(
        candidate(&apt, &root, "airlock-demo-base").as_deref(),
        Some("1.1-1")
    );
    assert_eq!(
        candidate(&apt, &root, "airlock-demo-extra").as_deref(),
        Some("1.0-1")
    );
    assert_eq!(candidate(&apt, &root, "airlock-demo-doc"), None);
    let (ok, out) = apt.apt_get_env(
        &["install", "--download-only", "-y", "airlock-demo-base"],
        &[("APT_CONFIG", &apt_conf(&root))],
    );
    assert!(ok, "apt-get install --download-only:\n{out}");

    // The same delta again: said, and nothing changes.
    let before = tree(&root);
    let r = update(&root, &["--bundle", d.join("delta").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "already at the bundle whose SHA256SUMS has sha256 {new}"
        )),
        "{}",
        r.stdout
    );
    assert_eq!(tree(&root), before);
    assert_eq!(kept_state(&root).1, vec![new.clone()]);
    // A run stopped after its switch, before apt's paths were linked and
    // the old bundle removed: the same update again finishes both.
    let repo = root.join("opt/airlock/repo");
    let target = fs::read_link(&repo).unwrap();
    fs::remove_file(&repo).unwrap();
    fs::create_dir_all(root.join("opt/airlock/bundles/left-by-a-cut")).unwrap();
    let r = update(&root, &["--bundle", d.join("delta").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("already at"), "{}", r.stdout);
    assert_eq!(fs::read_link(&repo).unwrap(), target);
    assert_eq!(tree(&root), before);
    assert_eq!(kept_state(&root).1, vec![new]);
}

#[test]
fn update_refuses_a_delta_for_another_base_or_a_damaged_one_and_changes_nothing() {
    let dir = site_with_delta();
    let d = dir.path();
    // The demo's own bundle: the same cluster, another build.
    let other = prepared(d, "other", &d.join("d/bundle"));
    let have = sha256_of(&d.join("d/bundle/SHA256SUMS"));
    let want = sha256_of(&d.join("v1/SHA256SUMS"));
    let before = (tree(&other), kept_state(&other));
    let r = update(&other, &["--bundle", d.join("delta").to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("wrong base"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&want) && r.stderr.contains(&have),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was changed"), "{}", r.stderr);
    assert_eq!((tree(&other), kept_state(&other)), before);

    // The right base, a damaged delta: refused, exit 1, nothing changed.
    let root = prepared(d, "vm", &d.join("v1"));
    ok(d, &["keygen", "--out", "other-key"]);
    let deb = carried_file(&d.join("delta"), "repo/pool/");
    let sums = fs::read_to_string(d.join("delta/SHA256SUMS")).unwrap();
    let cases = [
        (
            altered(d, "truncated", |t| {
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(t.join(&deb))
                    .unwrap();
                f.set_len(100).unwrap();
            }),
            "MODIFIED",
        ),
        (
            altered(d, "foreign", |t| {
                resign(t, &sums, &d.join("other-key/signing-key.asc"))
            }),
            "SIGNATURE",
        ),
        (
            // Signed by the site key, but shipping a keyring that holds
            // only another key: trusting it would lock apt out.
            altered(d, "keyring", |t| {
                let other = fs::read(d.join("other-key/archive-keyring.gpg")).unwrap();
                let path = t.join("archive-keyring.gpg");
                let old = sha256_of(&path);
                fs::write(&path, &other).unwrap();
                let new = sums.replace(&old, &sha256_of(&path));
                assert_ne!(new, sums);
                resign(t, &new, &d.join("keys/signing-key.asc"))
            }),
            "does not verify its own SHA256SUMS",
        ),
    ];
    let before = (tree(&root), kept_state(&root));
    for (name, kind) in cases {
        let r = update(&root, &["--bundle", d.join(&name).to_str().unwrap()]);
        assert_eq!(r.code, 1, "{name}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("REFUSED") && r.stderr.contains(kind),
            "{name}: {}",
            r.stderr
        );
        assert_eq!((tree(&root), kept_state(&root)), before, "{name}");
    }
    // What a killed run left beside the kept bundle goes first, even when
    // this run is then refused: a retry needs that room.
    let left = root.join("opt/airlock/bundles/.x.airlock-tmp-1");
    fs::create_dir_all(left.join("repo")).unwrap();
    let r = update(&root, &["--bundle", d.join("truncated").to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(!left.exists());
    // A whole bundle is not a delta, as a directory or as its tar.
    for whole in ["v2full", "v1.tar"] {
        let r = update(&root, &["--bundle", d.join(whole).to_str().unwrap()]);
        assert_eq!(r.code, 2, "{whole}");
        assert!(
            r.stderr.contains(&format!("{whole}: not a delta"))
                && r.stderr.contains("airlock-firstboot prepare"),
            "{whole}: {}",
            r.stderr
        );
    }
}

/// A copy of the delta that also carries a large file for the vendor disc,
/// listed in its manifest and MODES and signed by the site key: an update
/// long enough to be killed in the middle.
fn delta_with_a_large_file(d: &Path) -> String {
    let big = 400 << 20;
    altered(d, "large", |t| {
        let path = t.join("vendor/large.img");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = fs::File::create(&path).unwrap();
        f.set_len(big).unwrap();
        drop(f);
        let modes_path = t.join("MODES");
        let modes = format!(
            "{}0644  vendor/large.img\n",
            fs::read_to_string(&modes_path).unwrap()
        );
        fs::write(&modes_path, &modes).unwrap();
        let mut sums = String::new();
        for line in fs::read_to_string(t.join("SHA256SUMS")).unwrap().lines() {
            if line.ends_with("  MODES") {
                sums.push_str(&format!("{}  MODES\n", sha256_of(&modes_path)));
            } else {
                sums.push_str(line);
                sums.push('\n');
            }
        }
        sums.push_str(&format!("{}  vendor/large.img\n", sha256_of(&path)));
        resign(t, &sums, &d.join("keys/signing-key.asc"));
    })
}

/// `airlock-firstboot update --root ROOT --bundle DELTA` in the
/// background, its output dropped.
fn spawn_update(root: &Path, delta: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_airlock-firstboot"))
        .arg("update")
        .arg("--root")
        .arg(root)
        .arg("--bundle")
        .arg(delta)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn an_update_killed_in_the_middle_leaves_the_old_bundle_usable_and_runs_again() {
    let dir = site_with_delta();
    let d = dir.path();
    let root = prepared(d, "vm", &d.join("v1"));
    let old = sha256_of(&d.join("v1/SHA256SUMS"));
    let large = delta_with_a_large_file(d);
    let apt = apt_for(d, &root);

    // Killed while the new bundle is being made beside the old one.
    let mut child = spawn_update(&root, &d.join(&large));
    let bundles = root.join("opt/airlock/bundles");
    let started = std::time::Instant::now();
    let staging = loop {
        // In the middle of copying the large file.
        let found = fs::read_dir(&bundles)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|n| n.contains("airlock-tmp"));
        if let Some(n) = found
            && bundles.join(&n).join("vendor/large.img").exists()
        {
            break n;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "update ended before it could be killed"
        );
        assert!(started.elapsed().as_secs() < 60);
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // The old bundle is current, whole, and apt uses it.
    let (link, names) = kept_state(&root);
    assert_eq!(link, Path::new(&format!("bundles/{old}")));
    assert!(
        names.contains(&staging) && names.contains(&old),
        "{names:?}"
    );
    assert!(sums_check(&root.join("opt/airlock/current")));
    assert_eq!(
        candidate(&apt, &root, "airlock-demo-base").as_deref(),
        Some("1.0-1")
    );

    // Run again: it completes, and what the killed run left is gone.
    let r = update(&root, &["--bundle", d.join(&large).to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let new = sha256_of(&d.join(&large).join("SHA256SUMS"));
    assert_eq!(
        kept_state(&root),
        (format!("bundles/{new}").into(), vec![new])
    );
    assert_eq!(
        fs::metadata(root.join("opt/airlock/vendor/large.img"))
            .unwrap()
            .len(),
        400 << 20
    );
    assert_eq!(
        candidate(&apt, &root, "airlock-demo-base").as_deref(),
        Some("1.1-1")
    );
}

/// `airlock build` of the demo recipe signed by `keys`, with `runner`.
fn build_signed(dir: &Path, keys: &[&str], runner: &str, extra: &[&str]) -> Run {
    let mut args = vec!["build", "d/recipe.toml"];
    for k in keys {
        args.extend(["--key", k]);
    }
    args.extend(["--runner", runner, "--allow-new-glibc"]);
    args.extend(extra);
    ok(dir, &args)
}

/// In a temporary directory, a site rolling its signing key over: `v1`
/// signed by the site key K1; `v2` (its successor) by K1 and K2 (`k2/`),
/// `delta12` from v1 to it; the site moved on again (a package added, the
/// runner changed) and signed by K2 only: `delta23` from v2, `delta13`
/// from v1.
fn site_rolling_its_key() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo_site(d);
    // Made now, as demo_site makes K1: gpgv refuses a key made after the
    // signature (the builds are dated ahead).
    let r = crate::common::airlock(d, &["keygen", "--out", "k2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (k1, k2) = ("keys/signing-key.asc", "k2/signing-key.asc");
    build_signed(d, &[k1], "/bin/true", &["--out", "v1"]);
    make_successor(d);
    build_signed(d, &[k1, k2], "/bin/true", &["--out", "v2"]);
    build_signed(
        d,
        &[k1, k2],
        "/bin/true",
        &["--out", "delta12", "--base", "v1"],
    );
    let main = d.join("d/media/main");
    make_deb(&main, &Pkg::new("airlock-demo-third", "1.0-1"));
    index_disc(&main, &["main", "contrib"]);
    build_signed(
        d,
        &[k2],
        "/bin/false",
        &["--out", "delta23", "--base", "v2"],
    );
    build_signed(
        d,
        &[k2],
        "/bin/false",
        &["--out", "delta13", "--base", "v1"],
    );
    dir
}

#[test]
fn update_follows_a_key_rollover_through_a_bundle_both_keys_sign_and_apt_accepts_it() {
    use std::os::unix::fs::MetadataExt;
    let dir = site_rolling_its_key();
    let d = dir.path();
    let fpr = |p: &str| crate::common::fingerprints(&d.join(p)).remove(0);
    let (k1, k2) = (
        fpr("keys/archive-keyring.gpg"),
        fpr("k2/archive-keyring.gpg"),
    );
    let root = prepared(d, "vm", &d.join("v1"));
    let trusted = root.join("etc/apt/trusted.gpg.d/airlock-archive.gpg");
    let runner = root.join("usr/local/sbin/airlock-firstboot");
    let inode = |p: &Path| fs::metadata(p).unwrap().ino();
    assert_eq!(crate::common::fingerprints(&trusted), vec![k1.clone()]);
    let first_runner = inode(&runner);
    let trusting = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("now trusting keys: "))
            .map(str::to_string)
    };

    // v2, signed by both: verified with K1, and both trusted after it.
    let r = update(&root, &["--bundle", d.join("delta12").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let said = trusting(&r.stdout);
    assert!(
        said.is_some_and(|l| l.contains(&k1) && l.contains(&k2)),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("installed the new bundle's runner"));
    assert_eq!(
        crate::common::fingerprints(&trusted),
        [k1.clone(), k2.clone()]
    );
    assert_eq!(fs::read(&runner).unwrap(), fs::read("/bin/true").unwrap());
    assert_eq!(
        inode(&runner),
        first_runner,
        "the same runner is left alone"
    );

    // v3, signed by K2 alone: verified with the keys v2 brought; apt
    // (reading the VM's keyring) accepts its repository.
    let r = update(&root, &["--bundle", d.join("delta23").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let said = trusting(&r.stdout);
    assert!(
        said.is_some_and(|l| l.contains(&k2) && !l.contains(&k1)),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("installed the new bundle's runner as /usr/local/sbin/airlock-firstboot"),
        "{}",
        r.stdout
    );
    assert_eq!(crate::common::fingerprints(&trusted), vec![k2.clone()]);
    assert_eq!(fs::read(&runner).unwrap(), fs::read("/bin/false").unwrap());
    assert_ne!(inode(&runner), first_runner, "replaced by a rename");
    assert_eq!(
        fs::metadata(&runner).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    let current = root.join("opt/airlock/current");
    assert!(gpgv_ok(&trusted, &current, "SHA256SUMS.gpg", "SHA256SUMS"));
    let k1_only = d.join("keys/archive-keyring.gpg");
    assert!(!gpgv_ok(&k1_only, &current, "SHA256SUMS.gpg", "SHA256SUMS"));
    let apt = apt_for(d, &root);
    assert_eq!(
        candidate(&apt, &root, "airlock-demo-third").as_deref(),
        Some("1.0-1")
    );
    let (ok, out) = apt.apt_get_env(
        &["install", "--download-only", "-y", "airlock-demo-third"],
        &[("APT_CONFIG", &apt_conf(&root))],
    );
    assert!(ok, "apt-get install --download-only:\n{out}");

    // From v1 straight to v3: no key the VM trusts signed it. Refused,
    // both sides named, nothing changed.
    let root = prepared(d, "vm-v1", &d.join("v1"));
    let before = (tree(&root), kept_state(&root));
    let r = update(&root, &["--bundle", d.join("delta13").to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    for says in [
        "REFUSED",
        &format!("signed by {k2} only"),
        &format!("this VM trusts {k1}"),
        "/etc/apt/trusted.gpg.d/airlock-archive.gpg",
        "nothing was changed",
        "--key OLD --key NEW",
    ] {
        assert!(r.stderr.contains(says), "{says}:\n{}", r.stderr);
    }
    assert_eq!((tree(&root), kept_state(&root)), before);
}

#[test]
fn a_second_update_or_prepare_is_refused_at_once_while_one_runs() {
    let dir = site_with_delta();
    let d = dir.path();
    let root = prepared(d, "vm", &d.join("v1"));
    let large = delta_with_a_large_file(d);
    let mut child = spawn_update(&root, &d.join(&large));
    let pid = child.id().to_string();
    let lock = root.join("opt/airlock/lock");
    let started = std::time::Instant::now();
    while !fs::read_to_string(&lock).is_ok_and(|t| t.starts_with(&format!("{pid} "))) {
        assert!(child.try_wait().unwrap().is_none(), "update ended first");
        assert!(started.elapsed().as_secs() < 60);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // Stopped while it holds the lock: it cannot finish before the others ask.
    let signal = |sig: &str| assert!(sh_ok(Command::new("kill").args([sig, &pid])));
    signal("-STOP");
    let asked = std::time::Instant::now();
    let second = update(&root, &["--bundle", d.join("delta").to_str().unwrap()]);
    let waited = asked.elapsed();
    let third = prepare(&root, &[Path::new("--bundle"), &d.join("v1")]);
    signal("-CONT");
    let first = child.wait().unwrap();

    assert!(first.success(), "the first update, let go on");
    for (what, r) in [("update", &second), ("prepare", &third)] {
        assert_eq!(r.code, 2, "{what}: {}{}", r.stdout, r.stderr);
        for says in [
            lock.display().to_string(),
            format!("locked by pid {pid} (airlock-firstboot update)"),
            "nothing was changed".to_string(),
        ] {
            assert!(r.stderr.contains(&says), "{what}: {says}:\n{}", r.stderr);
        }
    }
    assert!(
        waited.as_secs() < 5,
        "refused at once, not after {waited:?}"
    );
    // The first one's bundle is in place, and the lock is free again.
    let new = sha256_of(&d.join(&large).join("SHA256SUMS"));
    assert_eq!(
        kept_state(&root),
        (format!("bundles/{new}").into(), vec![new.clone()])
    );
    assert_eq!(fs::read_to_string(&lock).unwrap(), "");
    let r = update(&root, &["--bundle", d.join(&large).to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("already at"), "{}", r.stdout);
}

#[test]
fn a_delta_written_as_a_tar_applies_and_updates_a_vm_as_its_directory_does() {
    let dir = site_with_delta();
    let d = dir.path();
    let whole = tree(&d.join("v2full"));
    let r = build(
        d,
        &["--out", "delta-t", "--base", "v1", "--tar", "delta.tar"],
    );
    assert!(r.stdout.contains("tar: delta.tar"), "{}", r.stdout);
    assert!(r.stdout.contains("airlock apply delta.tar"), "{}", r.stdout);
    build(
        d,
        &["--out", "delta-g", "--base", "v1", "--tar", "delta.tar.gz"],
    );
    // `.tgz` is gzip too, as for a bundle's tar.
    build(
        d,
        &["--out", "delta-z", "--base", "v1", "--tar", "delta.tgz"],
    );
    assert_eq!(&fs::read(d.join("delta.tgz")).unwrap()[..2], [0x1f, 0x8b]);
    assert_eq!(tree(&d.join("delta-t")), tree(&d.join("delta")));
    // The bundle tar's form: the head first, then BASE and its signature.
    let out = Command::new("tar")
        .args(["-tf", "delta.tar"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let first: Vec<&str> = listed.lines().take(7).collect();
    assert_eq!(
        first,
        [
            "SHA256SUMS",
            "SHA256SUMS.gpg",
            "archive-keyring.gpg",
            "archive-keyring.asc",
            "MODES",
            "BASE",
            "BASE.gpg"
        ]
    );
    for t in ["delta.tar", "delta.tar.gz"] {
        let new = format!("v2-{t}");
        ok(d, &["apply", t, "--to", "v1", "--out", &new]);
        assert_eq!(tree(&d.join(&new)), whole, "{t}");
    }
    // A byte of a carried package flipped in the tar: refused, nothing written.
    let deb = carried_file(&d.join("delta"), "repo/pool/");
    let deb = fs::read(d.join("delta").join(deb)).unwrap();
    let mut bytes = fs::read(d.join("delta.tar")).unwrap();
    let at = bytes.windows(deb.len()).position(|w| w == deb).unwrap();
    bytes[at + 100] ^= 1;
    fs::write(d.join("flipped.tar"), bytes).unwrap();
    let r = run(
        d,
        &["apply", "flipped.tar", "--to", "v1", "--out", "v2-flipped"],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("MODIFIED"), "{}", r.stdout);
    assert!(!d.join("v2-flipped").exists());
    let left: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("airlock-tmp") || n.contains("airlock-delta"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // A whole bundle's tar given as the delta: named as given, not as
    // the directory it was unpacked into.
    let r = run(d, &["apply", "v1.tar", "--to", "v1", "--out", "v2-whole"]);
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("v1.tar: no BASE file"), "{}", r.stderr);
    assert!(!r.stderr.contains("airlock-delta"), "{}", r.stderr);

    // On a prepared VM: update takes the tar, and leaves nothing of it.
    let root = prepared(d, "vm", &d.join("v1"));
    let r = update(&root, &["--bundle", d.join("delta.tar").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let new = sha256_of(&d.join("delta/SHA256SUMS"));
    assert_eq!(
        kept_state(&root),
        (format!("bundles/{new}").into(), vec![new])
    );
}

#[test]
fn a_delta_tar_is_known_as_a_delta_checked_against_its_base_first_and_read_as_verify_reads_it() {
    let dir = site_with_delta();
    let d = dir.path();
    build(
        d,
        &["--out", "delta-t", "--base", "v1", "--tar", "delta.tar.gz"],
    );
    build(
        d,
        &["--out", "delta-p", "--base", "v1", "--tar", "delta.tar"],
    );
    // verify, inspect and prepare without --base know a delta tar for one.
    let r = run(d, &["verify", "delta.tar.gz"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("delta.tar.gz is a delta"), "{}", r.stderr);
    let r = run(d, &["inspect", "delta.tar"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("delta.tar is a delta"), "{}", r.stderr);
    let root = d.join("reference");
    fs::create_dir_all(root.join("etc/ssh")).unwrap();
    let r = prepare(&root, &[Path::new("--bundle"), &d.join("delta.tar")]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("is a delta") && r.stderr.contains("--base OLD"),
        "{}",
        r.stderr
    );
    assert!(crate::common::nothing_prepared(&root));

    // Bytes after the gzip member: verify refuses such a tar, and so do
    // apply and update (before, they read the first member and stopped).
    let mut bytes = fs::read(d.join("delta.tar.gz")).unwrap();
    bytes.extend_from_slice(b"x");
    fs::write(d.join("trailing.tar.gz"), bytes).unwrap();
    let r = run(
        d,
        &[
            "apply",
            "trailing.tar.gz",
            "--to",
            "v1",
            "--out",
            "v2-trailing",
        ],
    );
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("trailing.tar.gz") && r.stderr.contains("after the gzip member"),
        "{}",
        r.stderr
    );
    assert!(!d.join("v2-trailing").exists());
    let vm = prepared(d, "vm", &d.join("v1"));
    let before = kept_state(&vm);
    let r = update(
        &vm,
        &["--bundle", d.join("trailing.tar.gz").to_str().unwrap()],
    );
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("after the gzip member"), "{}", r.stderr);
    assert_eq!(kept_state(&vm), before);

    // A wrong base is refused from the tar's head, before the rest is
    // read: a tar damaged after its head says "wrong base", not the damage.
    let mut bytes = fs::read(d.join("delta.tar")).unwrap();
    let deb = carried_file(&d.join("delta"), "repo/pool/");
    // Its name in its tar header (NUL-ended), not in the manifest's text.
    let name = [deb.as_bytes(), b"\0"].concat();
    let name_at = bytes.windows(name.len()).position(|w| w == name).unwrap();
    bytes[name_at] ^= 0x20;
    fs::write(d.join("damaged.tar"), bytes).unwrap();
    let r = run(
        d,
        &["apply", "damaged.tar", "--to", "d/bundle", "--out", "n"],
    );
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("wrong base"), "{}", r.stderr);
    let r = update(
        &prepared(d, "vm2", &d.join("d/bundle")),
        &["--bundle", d.join("damaged.tar").to_str().unwrap()],
    );
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // Worded as for a delta directory: the VM's bundle, nothing changed.
    assert!(
        r.stderr.contains("wrong base")
            && r.stderr.contains("but this VM's bundle")
            && r.stderr.contains("nothing was changed"),
        "{}",
        r.stderr
    );
    // A VM the delta already updated says so from the head of the same
    // damaged tar: nothing is unpacked, nothing changes.
    let r = update(&vm, &["--bundle", d.join("delta.tar").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let (state, files) = (kept_state(&vm), tree(&vm));
    let r = update(&vm, &["--bundle", d.join("damaged.tar").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("already at"), "{}", r.stdout);
    assert_eq!((kept_state(&vm), tree(&vm)), (state, files));
    // With its own base, the damage is what is refused.
    let r = run(d, &["apply", "damaged.tar", "--to", "v1", "--out", "n"]);
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("damaged.tar: at byte"), "{}", r.stderr);
    assert!(!d.join("n").exists());
}

#[test]
fn apply_reads_the_base_from_its_tar_plain_or_gzip_and_refuses_a_wrong_or_damaged_one() {
    let dir = site_with_delta();
    let d = dir.path();
    let whole = tree(&d.join("v2full"));
    assert!(sh_ok(
        Command::new("gzip").args(["-k", "v1.tar"]).current_dir(d)
    ));
    for (base, out) in [("v1.tar", "v2t"), ("v1.tar.gz", "v2z")] {
        let r = ok(d, &["apply", "delta", "--to", base, "--out", out]);
        assert!(r.stdout.contains(&format!("{out}: OK")), "{}", r.stdout);
        assert_eq!(tree(&d.join(out)), whole, "--to {base}");
    }

    // Another bundle's tar: both hashes named, nothing written.
    let want = fs::read_to_string(d.join("delta/BASE")).unwrap()[..64].to_string();
    let have = sha256_of(&d.join("d/bundle/SHA256SUMS"));
    let r = apply_fails(d, "d/bundle.tar", 2);
    assert!(
        r.stderr.contains("wrong base") && r.stderr.contains(&want) && r.stderr.contains(&have),
        "{}",
        r.stderr
    );
    // A byte changed in a file NEW takes from the tar: named, with where it
    // came from; a truncated tar: an error naming it. Nothing written.
    let runner_at = {
        let bytes = fs::read(d.join("v1.tar")).unwrap();
        let runner = fs::read(d.join("v1/bin/airlock-firstboot")).unwrap();
        bytes
            .windows(runner.len())
            .position(|w| w == runner.as_slice())
            .unwrap()
    };
    let mut bytes = fs::read(d.join("v1.tar")).unwrap();
    bytes[runner_at] ^= 1;
    fs::write(d.join("flipped.tar"), &bytes).unwrap();
    let r = apply_fails(d, "flipped.tar", 1);
    assert!(
        r.stdout.contains("MODIFIED") && r.stdout.contains("in the tar flipped.tar"),
        "{}",
        r.stdout
    );
    fs::write(d.join("short.tar"), &bytes[..runner_at]).unwrap();
    let r = apply_fails(d, "short.tar", 2);
    assert!(
        r.stderr.contains("short.tar") && r.stderr.contains("truncated"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_delta_without_its_directory_or_as_one_tar_in_volumes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo_site(d);
    let build = ["build", "d/recipe.toml", "--key", "keys/signing-key.asc"];
    for (extra, says) in [
        (&["--no-dir", "--tar", "delta.tar"][..], "--no-dir"),
        (
            &[
                "--out",
                "delta",
                "--tar",
                "delta.tar",
                "--volume-size",
                "dvd",
            ][..],
            "--tar and --volume-size together",
        ),
    ] {
        let mut args = build.to_vec();
        args.extend(["--base", "d/bundle"]);
        args.extend(extra);
        let r = run(d, &args);
        assert_eq!(r.code, 2, "{extra:?}: {}\n{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(says), "{extra:?}: {}", r.stderr);
    }
    assert!(!d.join("delta").exists() && !d.join("delta.tar").exists());
}
