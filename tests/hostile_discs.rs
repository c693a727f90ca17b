//! Hostile discs and careless output paths: every value a disc puts into a
//! path, an index or a signed file is checked against Debian policy; the
//! disc keyring vouches for every index or the build stops; nothing the
//! cache holds can reach a signed index; `--out` never deletes an input.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::discs::{Pkg, make_disc, make_iso, sh};
use crate::common::{Run, airlock_bin};

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
        };
        assert_eq!(site.airlock(&["keygen", "--out", "keys"]).code, 0);
        site
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn airlock(&self, args: &[&str]) -> Run {
        Run::from_output(
            Command::new(airlock_bin())
                .args(args)
                .current_dir(self.dir.path())
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .output()
                .unwrap(),
        )
    }

    /// `airlock repo build --main DISC --out repo EXTRA`.
    fn repo(&self, disc: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "repo",
            "build",
            "--main",
            disc,
            "--key",
            "keys/signing-key.asc",
            "--out",
            "repo",
        ];
        args.extend_from_slice(extra);
        self.airlock(&args)
    }

    /// Everything under the site but the output and the inputs made here.
    fn listing(&self) -> Vec<String> {
        let mut v: Vec<String> = walkdir::WalkDir::new(self.dir.path())
            .into_iter()
            .filter_map(|e| e.ok())
            .map(|e| {
                e.path()
                    .strip_prefix(self.dir.path())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .filter(|p| !p.starts_with("repo") && !p.starts_with("disc") && !p.starts_with("keys"))
            .collect();
        v.sort();
        v
    }
}

/// The build failed with exit 2 and said `what`.
fn refused(run: &Run, what: &str, case: &str) {
    assert_ne!(run.code, 0, "{case}: built:\n{}", run.stdout);
    assert!(
        run.stderr.contains(what),
        "{case}: refused without saying {what:?}:\n{}",
        run.stderr
    );
}

// --- hand-made .deb files -----------------------------------------------------

fn ar(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            0,
            0,
            0,
            100644,
            data.len()
        );
        assert_eq!(header.len(), 60);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

const CONTROL: &str = "Package: evil\nVersion: 1.0\nArchitecture: amd64\nMaintainer: X <x@example.org>\nDescription: a crafted package\n";

fn deb_with(control: &str) -> Vec<u8> {
    ar(&[
        ("debian-binary", b"2.0\n".to_vec()),
        (
            "control.tar.gz",
            tar_gz(&[("./control", control.as_bytes())]),
        ),
        ("data.tar.gz", tar_gz(&[])),
    ])
}

/// A disc holding one file at `pool_path` with `bytes`, without an index.
fn disc_with(site: &Site, pool_path: &str, bytes: &[u8]) {
    let p = site.path("disc").join(pool_path);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
}

#[test]
fn a_control_field_used_as_a_path_or_a_line_is_refused_and_nothing_is_written_outside() {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "an architecture with ..",
            CONTROL.replace("amd64", "../../../x"),
            "Architecture",
        ),
        (
            "a package name with a space",
            CONTROL.replace("Package: evil", "Package: evil one"),
            "Package",
        ),
        (
            "a version with a newline escape",
            CONTROL.replace("1.0", "1.0 evil"),
            "Version",
        ),
        (
            "a second paragraph",
            format!("{CONTROL}\nPackage: libc6\nVersion: 9\nArchitecture: amd64\n"),
            "paragraphs",
        ),
        (
            "a carriage return",
            CONTROL.replace("Maintainer:", "Depends: x\rPre-Depends: evil\nMaintainer:"),
            "carriage return",
        ),
        ("a field twice", format!("{CONTROL}Version: 2.0\n"), "twice"),
        ("a NUL byte", CONTROL.replace("crafted", "craf\0ted"), "NUL"),
    ];
    for (case, control, what) in cases {
        let site = Site::new();
        disc_with(
            &site,
            "pool/main/e/evil/evil_1.0_amd64.deb",
            &deb_with(&control),
        );
        let before = site.listing();
        let run = site.repo("disc", &[]);
        refused(&run, what, case);
        assert_eq!(
            site.listing(),
            before,
            "{case}: something was written outside --out"
        );
        assert!(!site.path("repo").exists(), "{case}");
    }
}

#[test]
fn a_deb_in_another_shape_than_dpkg_reads_is_refused() {
    let control = tar_gz(&[("./control", CONTROL.as_bytes())]);
    let other = tar_gz(&[("./control", CONTROL.replace("evil", "other").as_bytes())]);
    let data = tar_gz(&[]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "two control members",
            ar(&[
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar.gz", control.clone()),
                ("control.tar.gz", other.clone()),
                ("data.tar.gz", data.clone()),
            ]),
            "nothing else",
        ),
        (
            "data before control",
            ar(&[
                ("debian-binary", b"2.0\n".to_vec()),
                ("data.tar.gz", data.clone()),
                ("control.tar.gz", control.clone()),
            ]),
            "in that order",
        ),
        (
            "./control twice",
            ar(&[
                ("debian-binary", b"2.0\n".to_vec()),
                (
                    "control.tar.gz",
                    tar_gz(&[
                        ("./control", CONTROL.as_bytes()),
                        ("./control", b"Package: x\n"),
                    ]),
                ),
                ("data.tar.gz", data.clone()),
            ]),
            "twice",
        ),
        (
            // Read past, not kept, for an index: still refused.
            "./md5sums twice",
            ar(&[
                ("debian-binary", b"2.0\n".to_vec()),
                (
                    "control.tar.gz",
                    tar_gz(&[
                        ("./control", CONTROL.as_bytes()),
                        ("./md5sums", b"0  a\n"),
                        ("./md5sums", b"1  a\n"),
                    ]),
                ),
                ("data.tar.gz", data.clone()),
            ]),
            "./md5sums twice",
        ),
        (
            "format 3",
            ar(&[
                ("debian-binary", b"3.0\n".to_vec()),
                ("control.tar.gz", control.clone()),
                ("data.tar.gz", data.clone()),
            ]),
            "format 2.x",
        ),
    ];
    for (case, deb, what) in cases {
        let site = Site::new();
        disc_with(&site, "pool/main/e/evil/evil_1.0_amd64.deb", &deb);
        refused(&site.repo("disc", &[]), what, case);
    }
}

#[test]
fn names_that_would_forge_lines_or_leave_the_output_are_refused() {
    // A newline in a pool file name (no index to vouch for it).
    let site = Site::new();
    disc_with(
        &site,
        "pool/main/e/evil/evil_1.0_amd64.deb\nFilename: x",
        &deb_with(CONTROL),
    );
    refused(
        &site.repo("disc", &[]),
        "control characters",
        "a newline in a file name",
    );
    // --suite with .. or a newline.
    let site = Site::new();
    make_disc(&site.path("disc"), &[Pkg::new("hello", "1.0")]);
    for suite in ["../x", "x\nLabel: evil", ".."] {
        refused(&site.repo("disc", &["--suite", suite]), "--suite", suite);
    }
    assert!(!site.path("x").exists() && !site.path("repo").exists());
}

/// Writes `dists/SUITE/Release` over the given index files.
fn release_over(suite_dir: &Path) {
    let release = sh(Command::new("apt-ftparchive")
        .args(["-o", "APT::FTPArchive::Release::Suite=s", "release", "."])
        .current_dir(suite_dir));
    fs::write(suite_dir.join("Release"), release).unwrap();
}

#[test]
fn a_disc_index_that_cannot_vouch_for_its_files_is_refused() {
    let pkg = Pkg::new("hello", "1.0");
    // An entry with no SHA256 (MD5 only).
    let site = Site::new();
    let disc = make_disc(&site.path("disc"), std::slice::from_ref(&pkg));
    let packages = disc.join("dists/1.7_x86-64/main/binary-amd64/Packages");
    let text: String = fs::read_to_string(&packages)
        .unwrap()
        .lines()
        .filter(|l| {
            !l.starts_with("SHA256:") && !l.starts_with("SHA1:") && !l.starts_with("SHA512:")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&packages, &text).unwrap();
    fs::remove_file(disc.join("dists/1.7_x86-64/main/binary-amd64/Packages.gz")).unwrap();
    release_over(&disc.join("dists/1.7_x86-64"));
    refused(
        &site.repo("disc", &[]),
        "without a SHA256",
        "an MD5-only entry",
    );

    // One file listed twice with different hashes.
    let site = Site::new();
    let disc = make_disc(&site.path("disc"), std::slice::from_ref(&pkg));
    let packages = disc.join("dists/1.7_x86-64/main/binary-amd64/Packages");
    let text = fs::read_to_string(&packages).unwrap();
    let sha = text
        .lines()
        .find_map(|l| l.strip_prefix("SHA256: "))
        .unwrap()
        .to_string();
    let twice = format!("{text}\n{}", text.replace(&sha, &"0".repeat(64)));
    fs::write(&packages, twice).unwrap();
    fs::remove_file(disc.join("dists/1.7_x86-64/main/binary-amd64/Packages.gz")).unwrap();
    release_over(&disc.join("dists/1.7_x86-64"));
    refused(
        &site.repo("disc", &[]),
        "listed twice",
        "a file listed twice",
    );
}

#[test]
fn with_a_disc_keyring_every_index_must_be_under_a_verified_release() {
    // A disc with no Release at all.
    let site = Site::new();
    disc_with(
        &site,
        "pool/main/e/evil/evil_1.0_amd64.deb",
        &deb_with(CONTROL),
    );
    let packages = site.path("disc/dists/x/main/binary-amd64");
    fs::create_dir_all(&packages).unwrap();
    fs::write(packages.join("Packages"), "").unwrap();
    refused(
        &site.repo("disc", &["--disc-keyring", "keys/archive-keyring.gpg"]),
        "has no dists/*/Release",
        "no Release",
    );
    // A signed suite, and another suite directory with a Packages but no Release.
    let site = Site::new();
    let disc = make_disc(&site.path("disc"), &[Pkg::new("hello", "1.0")]);
    let suite = disc.join("dists/1.7_x86-64");
    let key = airlock::build::sign::SigningKey::load(&site.path("keys/signing-key.asc")).unwrap();
    let release = fs::read_to_string(suite.join("Release")).unwrap();
    fs::write(
        suite.join("Release.gpg"),
        key.detached_armored(release.as_bytes(), 1_700_000_000)
            .unwrap(),
    )
    .unwrap();
    let ok = site.repo(
        "disc",
        &["--disc-keyring", "keys/archive-keyring.gpg", "--json"],
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(
        ok.stdout.contains("\"release_signature\": \"verified\""),
        "{}",
        ok.stdout
    );
    fs::remove_dir_all(site.path("repo")).unwrap();
    let other = disc.join("dists/unsigned/main/binary-amd64");
    fs::create_dir_all(&other).unwrap();
    fs::copy(
        suite.join("main/binary-amd64/Packages"),
        other.join("Packages"),
    )
    .unwrap();
    refused(
        &site.repo("disc", &["--disc-keyring", "keys/archive-keyring.gpg"]),
        "cannot vouch for it",
        "an unsigned suite beside a signed one",
    );
}

#[test]
fn a_packages_bomb_is_stopped_early() {
    let site = Site::new();
    let disc = make_disc(&site.path("disc"), &[Pkg::new("hello", "1.0")]);
    let dir = disc.join("dists/1.7_x86-64/main/binary-amd64");
    fs::remove_file(dir.join("Packages")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b'\n'; 1 << 20];
    for _ in 0..200 {
        gz.write_all(&zeros).unwrap();
    }
    fs::write(dir.join("Packages.gz"), gz.finish().unwrap()).unwrap();
    release_over(&disc.join("dists/1.7_x86-64"));
    let started = std::time::Instant::now();
    refused(
        &site.repo("disc", &[]),
        "compression bomb",
        "200 MiB of newlines",
    );
    assert!(started.elapsed().as_secs() < 20);
}

#[test]
fn the_cache_cannot_change_what_is_signed_and_in_place_edits_are_read_again() {
    let site = Site::new();
    make_disc(&site.path("disc"), &[Pkg::new("hello", "1.0")]);
    // No index: only the cache and the file itself say what it is.
    fs::remove_dir_all(site.path("disc/dists")).unwrap();
    assert_eq!(site.repo("disc", &[]).code, 0);
    let cache = site.path("repo/.airlock-cache.json");
    let text = fs::read_to_string(&cache).unwrap();
    assert!(text.contains("\"mac\""));
    fs::write(
        &cache,
        text.replace("Package: hello", "Package: hello\\nPre-Depends: evil"),
    )
    .unwrap();
    let run = site.repo("disc", &["--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("does not carry this signing key's seal"),
        "{}",
        run.stdout
    );
    let packages =
        fs::read_to_string(site.path("repo/dists/1.7_x86-64/main/binary-amd64/Packages")).unwrap();
    assert!(!packages.contains("evil"), "{packages}");

    // A .deb changed in place, size and mtime kept: read again.
    let pool = Pkg::new("hello", "1.0").pool_path();
    let disc_file = site.path("disc").join(&pool);
    let mtime = fs::metadata(&disc_file).unwrap().modified().unwrap();
    let fresh = site.repo("disc", &["--json"]);
    assert!(fresh.stdout.contains("\"reused\": 1"), "{}", fresh.stdout);
    let mut bytes = fs::read(&disc_file).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0x01;
    fs::write(&disc_file, &bytes).unwrap();
    fs::File::options()
        .write(true)
        .open(&disc_file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let run = site.repo("disc", &["--json"]);
    assert!(
        run.stdout.contains("\"reused\": 0"),
        "{}{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn an_output_that_holds_or_is_an_input_is_refused_and_nothing_is_lost() {
    let site = Site::new();
    assert_eq!(site.airlock(&["demo", "--out", "d"]).code, 0);
    fs::copy(
        site.path("keys/signing-key.asc"),
        site.path("d/signing-key.asc"),
    )
    .unwrap();
    let before = site.listing();
    // The site's own directory (recipe, key, media, secrets) as --out.
    let run = site.airlock(&[
        "build",
        "d/recipe.toml",
        "--key",
        "d/signing-key.asc",
        "--out",
        "d",
        "--allow-new-glibc",
    ]);
    refused(
        &run,
        "not an earlier airlock bundle",
        "--out the site directory",
    );
    // A bundle directory inside a disc directory.
    let run = site.airlock(&[
        "build",
        "d/recipe.toml",
        "--key",
        "keys/signing-key.asc",
        "--out",
        "d/media/main/bundle",
        "--allow-new-glibc",
    ]);
    refused(&run, "lies inside the main disc", "--out inside a disc");
    // --tar inside --out.
    let run = site.airlock(&[
        "build",
        "d/recipe.toml",
        "--key",
        "keys/signing-key.asc",
        "--out",
        "b",
        "--tar",
        "b/b.tar",
        "--allow-new-glibc",
    ]);
    refused(&run, "is inside --out", "--tar inside --out");
    assert_eq!(site.listing(), before, "something was lost or added");
    // The repository build too.
    make_iso(&site.path("d/media/main"), &site.path("main.iso"));
    let run = site.airlock(&[
        "repo",
        "build",
        "--main",
        "main.iso",
        "--key",
        "keys/signing-key.asc",
        "--out",
        "d",
    ]);
    refused(
        &run,
        "not an earlier airlock repository",
        "repo --out the site",
    );
}

#[test]
fn a_vendor_file_name_with_a_newline_cannot_forge_a_manifest_line() {
    let site = Site::new();
    assert_eq!(site.airlock(&["demo", "--out", "d"]).code, 0);
    let sums = fs::read_to_string(site.path("d/bundle/SHA256SUMS")).unwrap();
    let hash = sums.lines().next().unwrap().split_once("  ").unwrap().0;
    let forged = format!("x\n{hash}  install.sh");
    fs::write(site.path("d/media/vendor").join(&forged), "evil").unwrap();
    let run = site.airlock(&[
        "build",
        "d/recipe.toml",
        "--key",
        "keys/signing-key.asc",
        "--out",
        "b",
        "--allow-new-glibc",
    ]);
    refused(
        &run,
        "control characters",
        "a newline in a vendor file name",
    );
    assert!(!site.path("b").exists());
}
