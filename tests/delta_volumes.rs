//! A delta written in volumes (`airlock build --base OLD --volume-size`):
//! each volume verifies alone with sha256sum, gpgv and `airlock verify`
//! and names its base; `airlock apply` and `airlock-firstboot prepare
//! --base` / `update` take the volumes (in any order) as they take the
//! delta's directory, and refuse a missing or foreign volume, the volumes
//! of a whole bundle, and a wrong base, with nothing written.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::Run;
use crate::delta::{
    build, files, gpgv_ok, kept_state, ok, prepare, prepared, run, sh_ok, sha256_of,
    site_with_delta, tree, update,
};

/// The volume directories under `out/volumes` (not the images), sorted.
fn volume_dirs(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(out.join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

fn refs(paths: &[PathBuf]) -> Vec<&Path> {
    paths.iter().map(PathBuf::as_path).collect()
}

fn strs(paths: &[PathBuf]) -> Vec<&str> {
    paths.iter().map(|p| p.to_str().unwrap()).collect()
}

/// `airlock apply VOLUMES… --to TO --out OUT` in `d`.
fn apply(d: &Path, volumes: &[PathBuf], to: &str, out: &str) -> Run {
    let mut args = vec!["apply"];
    args.extend(strs(volumes));
    args.extend(["--to", to, "--out", out]);
    run(d, &args)
}

/// What the volumes hold of the delta, put together: every file but each
/// volume's own manifest, modes and table, `whole/` at the root.
fn union_of(volumes: &[PathBuf]) -> Vec<String> {
    let own = [
        "SHA256SUMS",
        "SHA256SUMS.gpg",
        "MODES",
        "VOLUMES",
        "VOLUMES.gpg",
    ];
    let mut all: Vec<String> = volumes
        .iter()
        .flat_map(|v| files(v))
        .filter(|f| !own.contains(&f.as_str()))
        .map(|f| f.strip_prefix("whole/").map_or(f.clone(), str::to_string))
        .collect();
    all.sort();
    all.dedup();
    all
}

/// Nothing but `want` in `d`: no staging directory or half-written output
/// left beside.
fn only(d: &Path, want: &[&str]) {
    let mut names: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".airlock-repo-cache.json"))
        .collect();
    names.sort();
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want);
}

#[test]
fn a_delta_in_volumes_verifies_volume_by_volume_and_applies_as_its_directory_does() {
    let dir = site_with_delta();
    let d = dir.path();
    let r = build(
        d,
        &[
            "--out",
            "dv",
            "--base",
            "v1",
            "--volume-size",
            "512K",
            "--iso",
        ],
    );
    assert!(
        r.stdout.contains("delta for cluster") && r.stdout.contains("airlock apply dv/volumes/01"),
        "{}",
        r.stdout
    );
    assert!(
        !d.join("dv/SHA256SUMS").exists(),
        "the delta is its volumes"
    );
    let volumes = volume_dirs(&d.join("dv"));
    assert!(volumes.len() >= 2, "{volumes:?}\n{}", r.stdout);
    eprintln!(
        "the demo successor's delta ({} bytes) in {} volumes of 512K",
        crate::delta::bytes(&d.join("delta")),
        volumes.len()
    );
    // Exactly the files of the delta directory, no file split.
    assert_eq!(union_of(&volumes), files(&d.join("delta")));

    let keyring = d.join("keys/archive-keyring.gpg");
    let base = sha256_of(&d.join("v1/SHA256SUMS"));
    for v in &volumes {
        let name = v.file_name().unwrap().to_str().unwrap();
        let size: u64 = tree(v).values().map(|(_, b)| b.len() as u64).sum();
        assert!(size <= 512 << 10, "{name}: {size} bytes");
        let image = fs::metadata(v.with_extension("iso")).unwrap().len();
        assert!(image <= 512 << 10, "{name}.iso: {image} bytes");
        // Alone, with the stock tools: every file, both signatures, the
        // table, and BASE, which names v1 (and not the whole v2).
        assert!(
            sh_ok(
                Command::new("sha256sum")
                    .args(["-c", "--strict", "--quiet", "SHA256SUMS"])
                    .current_dir(v)
            ),
            "sha256sum -c in {name}"
        );
        for (sig, data) in [
            ("SHA256SUMS.gpg", "SHA256SUMS"),
            ("VOLUMES.gpg", "VOLUMES"),
            ("BASE.gpg", "BASE"),
        ] {
            assert!(gpgv_ok(&keyring, v, sig, data), "gpgv {sig} in {name}");
        }
        for f in ["BASE", "BASE.gpg"] {
            assert_eq!(
                fs::read(v.join(f)).unwrap(),
                fs::read(d.join("delta").join(f)).unwrap(),
                "{f} in {name}"
            );
        }
        let base_line = v.join("BASE");
        for (bundle, names_it) in [("v1", true), ("v2full", false)] {
            assert_eq!(
                sh_ok(
                    Command::new("sha256sum")
                        .arg("-c")
                        .arg(&base_line)
                        .current_dir(d.join(bundle))
                ),
                names_it,
                "sha256sum -c {name}/BASE in {bundle}"
            );
        }
        // And with airlock: a volume of a delta, and for which base.
        let r = ok(
            d,
            &[
                "verify",
                v.to_str().unwrap(),
                "--keyring",
                keyring.to_str().unwrap(),
            ],
        );
        for says in [
            format!("volume {name} of {}", volumes.len()),
            format!("a delta for the base whose SHA256SUMS has sha256 {base}"),
        ] {
            assert!(r.stdout.contains(&says), "{says}:\n{}", r.stdout);
        }
    }
    ok(d, &["verify", "dv"]);
    // One volume as the base of the next delta names the whole manifest
    // (whole/), not the volume's own.
    build(
        d,
        &["--out", "next", "--base", volumes[1].to_str().unwrap()],
    );
    assert_eq!(
        fs::read_to_string(d.join("next/BASE")).unwrap(),
        format!("{}  SHA256SUMS\n", sha256_of(&d.join("delta/SHA256SUMS")))
    );
    let r = run(d, &["inspect", volumes[0].to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("one volume of a delta"), "{}", r.stderr);

    // Applied from its volumes, last first, it is what the delta directory
    // makes: the whole build, byte for byte and mode for mode.
    ok(d, &["apply", "delta", "--to", "v1", "--out", "v2"]);
    let reversed: Vec<PathBuf> = volumes.iter().rev().cloned().collect();
    let r = apply(d, &reversed, "v1", "v2v");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("v2v: OK"), "{}", r.stdout);
    assert_eq!(tree(&d.join("v2v")), tree(&d.join("v2")));
    assert_eq!(tree(&d.join("v2v")), tree(&d.join("v2full")));
    ok(
        d,
        &["verify", "v2v", "--keyring", "keys/archive-keyring.gpg"],
    );
    // The directory holding them all, twice: the same bundle again.
    for _ in 0..2 {
        ok(d, &["apply", "dv", "--to", "v1", "--out", "v2dir"]);
        assert_eq!(tree(&d.join("v2dir")), tree(&d.join("v2full")));
    }
    // In place, twice: the second run finds the new bundle and only checks.
    fs::create_dir(d.join("site")).unwrap();
    for (path, (mode, bytes)) in tree(&d.join("v1")) {
        let to = d.join("site").join(&path);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::write(&to, bytes).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&to, fs::Permissions::from_mode(mode)).unwrap();
    }
    ok(d, &["apply", "dv", "--to", "site", "--out", "site"]);
    let r = ok(d, &["apply", "dv", "--to", "site", "--out", "site"]);
    assert!(r.stdout.contains("already the bundle"), "{}", r.stdout);
    assert_eq!(tree(&d.join("site")), tree(&d.join("v2full")));
}

#[test]
fn a_missing_or_foreign_volume_a_whole_bundles_volumes_and_a_wrong_base_are_refused() {
    let dir = site_with_delta();
    let d = dir.path();
    build(d, &["--out", "dv", "--base", "v1", "--volume-size", "512K"]);
    // Another delta against the same base: another build time, so another
    // new manifest.
    let r = Command::new(crate::common::airlock_bin())
        .args(["build", "d/recipe.toml", "--key", "keys/signing-key.asc"])
        .args(["--runner", "/bin/true", "--allow-new-glibc"])
        .args(["--out", "other", "--base", "v1", "--volume-size", "512K"])
        .current_dir(d)
        .env("SOURCE_DATE_EPOCH", "1800000099")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // The whole successor in volumes.
    build(d, &["--out", "whole", "--volume-size", "512K"]);
    let volumes = volume_dirs(&d.join("dv"));
    let other = volume_dirs(&d.join("other"));
    let whole = volume_dirs(&d.join("whole"));
    assert!(volumes.len() >= 2 && other.len() >= 2 && whole.len() >= 2);
    let leave = [
        "d", "keys", "v1", "v1.tar", "delta", "v2full", "dv", "other", "whole", "stranger",
        "forged",
    ];

    // One missing: named, and what to do.
    let mut given = volumes.clone();
    given.remove(1);
    let r = apply(d, &given, "v1", "new");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("volume(s) 02 of") && r.stderr.contains("give every volume"),
        "{}",
        r.stderr
    );
    // The first given twice in place of the second: counted once, the
    // second still missing.
    let mut given = volumes.clone();
    given[1] = volumes[0].clone();
    let r = apply(d, &given, "v1", "new");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("volume(s) 02 of"), "{}", r.stderr);
    // One of another delta in its place: that volume named.
    let mut given = volumes.clone();
    given[1] = other[1].clone();
    let r = apply(d, &given, "v1", "new");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "the volume {} belongs to another delta",
            other[1].display()
        )),
        "{}",
        r.stderr
    );
    // A whole bundle's volume among them, and a whole bundle's volumes alone.
    let mut given = volumes.clone();
    given[0] = whole[0].clone();
    let r = apply(d, &given, "v1", "new");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("belongs to another"), "{}", r.stderr);
    let r = apply(d, &whole, "v1", "new");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("hold a whole bundle, not a delta"),
        "{}",
        r.stderr
    );
    // …and by update on a VM (outside the site), which changes nothing.
    let vms = tempfile::tempdir().unwrap();
    let vm = prepared(vms.path(), "vm", &d.join("v1"));
    let before = tree(&vm);
    let given: Vec<String> = whole
        .iter()
        .flat_map(|p| ["--bundle".to_string(), p.display().to_string()])
        .collect();
    let r = update(&vm, &given.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("hold a whole bundle, not a delta"),
        "{}",
        r.stderr
    );
    assert_eq!(tree(&vm), before);
    // A volume and something that is not one.
    let r = apply(d, &[volumes[0].clone(), d.join("delta")], "v1", "new");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("delta is not a volume"), "{}", r.stderr);
    // The wrong base: both hashes named.
    let r = apply(d, &volumes, "d/bundle", "new");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let (want, have) = (
        sha256_of(&d.join("v1/SHA256SUMS")),
        sha256_of(&d.join("d/bundle/SHA256SUMS")),
    );
    assert!(
        r.stderr.contains("wrong base") && r.stderr.contains(&want) && r.stderr.contains(&have),
        "{}",
        r.stderr
    );
    // Known from the first volume's table: said before the missing ones.
    let r = apply(d, &volumes[..1], "d/bundle", "new");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("wrong base") && !r.stderr.contains("missing"),
        "{}",
        r.stderr
    );
    // A damaged volume: named, with how to check it.
    let victim = tree(&volumes[1])
        .into_keys()
        .find(|p| p.starts_with("repo/") || p.starts_with("seeds/"))
        .unwrap();
    fs::write(volumes[1].join(&victim), b"damaged").unwrap();
    let r = apply(d, &volumes, "v1", "new");
    assert_eq!(r.code, 1, "a check failed: {}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "REFUSED: the volume {} does not verify",
            volumes[1].display()
        )) && r.stdout.contains(&victim),
        "{}",
        r.stdout
    );
    // Volumes signed by a key the base does not trust: refused at the
    // first one, checked with the base's keys as it comes.
    let r = run(d, &["keygen", "--out", "stranger"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(
        d,
        &[
            "build",
            "d/recipe.toml",
            "--key",
            "stranger/signing-key.asc",
            "--runner",
            "/bin/true",
            "--allow-new-glibc",
            "--out",
            "forged",
            "--base",
            "v1",
            "--volume-size",
            "512K",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let forged = volume_dirs(&d.join("forged"));
    let r = apply(d, &forged, "v1", "new");
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "REFUSED: the volume {} does not verify",
            forged[0].display()
        )) && r.stdout.contains("signature"),
        "{}",
        r.stdout
    );
    // Nothing was written, nothing left beside.
    only(d, &leave);
}

#[test]
fn update_and_prepare_take_the_volumes_of_a_delta() {
    let dir = site_with_delta();
    let d = dir.path();
    build(d, &["--out", "dv", "--base", "v1", "--volume-size", "512K"]);
    let volumes = volume_dirs(&d.join("dv"));
    assert!(volumes.len() >= 2);
    let root = prepared(d, "vm", &d.join("v1"));
    let old = sha256_of(&d.join("v1/SHA256SUMS"));
    let new = sha256_of(&d.join("delta/SHA256SUMS"));
    let args = |v: &[PathBuf]| -> Vec<String> {
        v.iter()
            .flat_map(|p| ["--bundle".to_string(), p.display().to_string()])
            .collect()
    };

    // One missing: refused, nothing changed.
    let before = tree(&root);
    let given = args(&volumes[1..]);
    let r = update(&root, &given.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("volume(s) 01 of") && r.stderr.contains("missing"),
        "{}",
        r.stderr
    );
    assert_eq!(tree(&root), before);
    assert_eq!(kept_state(&root).1, vec![old.clone()]);

    // One damaged: refused as a delta that does not verify, exit 1,
    // nothing changed.
    let damaged = d.join("damaged");
    assert!(sh_ok(
        Command::new("cp").arg("-a").arg(d.join("dv")).arg(&damaged)
    ));
    let last = damaged
        .join("volumes")
        .join(volumes.last().unwrap().file_name().unwrap());
    fs::write(last.join("BASE"), "0".repeat(64) + "  SHA256SUMS\n").unwrap();
    let given: Vec<PathBuf> = volume_dirs(&damaged);
    let given = args(&given);
    let r = update(&root, &given.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("REFUSED")
            && r.stderr
                .contains(&format!("the volume {} does not verify", last.display())),
        "{}",
        r.stderr
    );
    assert_eq!(tree(&root), before);

    // A VM that holds another bundle (the demo's, signed by another key):
    // the wrong base named with both hashes, not a volume's signature.
    let elsewhere = prepared(d, "elsewhere", &d.join("d/bundle"));
    let before_elsewhere = tree(&elsewhere);
    let all = args(&volumes);
    let r = update(
        &elsewhere,
        &all.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let have = sha256_of(&d.join("d/bundle/SHA256SUMS"));
    assert!(
        r.stderr.contains("wrong base") && r.stderr.contains(&old) && r.stderr.contains(&have),
        "{}",
        r.stderr
    );
    assert_eq!(tree(&elsewhere), before_elsewhere);

    // All of them, last first: the VM moves on to the whole build.
    let reversed: Vec<PathBuf> = volumes.iter().rev().cloned().collect();
    let given = args(&reversed);
    let given: Vec<&str> = given.iter().map(String::as_str).collect();
    let r = update(&root, &given);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for says in [
        new.as_str(),
        old.as_str(),
        "airlock-demo-base 1.0-1 -> 1.1-1",
    ] {
        assert!(r.stdout.contains(says), "{says}:\n{}", r.stdout);
    }
    crate::delta::assert_at_successor(&root, d, &new);
    // Again: already there, nothing changes.
    let before = tree(&root);
    let r = update(&root, &given);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("already at the bundle"), "{}", r.stdout);
    assert_eq!(tree(&root), before);
    // The first disc alone says so too: no other disc is asked for.
    let first = args(&volumes[..1]);
    let r = update(&root, &first.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("already at the bundle"), "{}", r.stdout);
    assert_eq!(tree(&root), before);

    // A reference VM prepared from the delta's volumes and its base; not
    // without the base.
    let fresh = d.join("reference");
    fs::create_dir_all(fresh.join("etc/ssh")).unwrap();
    let flag = |s: &'static str| PathBuf::from(s);
    let mut without: Vec<PathBuf> = Vec::new();
    for v in &volumes {
        without.extend([flag("--bundle"), v.clone()]);
    }
    let r = prepare(&fresh, &refs(&without));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--base OLD"), "{}", r.stderr);
    assert!(crate::common::nothing_prepared(&fresh));
    let mut with = without.clone();
    with.extend([flag("--base"), d.join("v1")]);
    let r = prepare(&fresh, &refs(&with));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains(&format!("from the delta {} volume(s)", volumes.len())),
        "{}",
        r.stdout
    );
    assert_eq!(
        fs::read(fresh.join("opt/airlock/repo/dists/1.7_x86-64/InRelease")).unwrap(),
        fs::read(d.join("v2full/repo/dists/1.7_x86-64/InRelease")).unwrap()
    );
    assert!(!fresh.join("var/tmp/airlock-bundle").exists());
}
