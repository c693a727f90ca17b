//! `airlock keygen` and `airlock repo build`, checked with the real thing:
//! discs made by dpkg-deb, apt-ftparchive and xorriso; the result checked by
//! gpgv and by apt-get in a throwaway root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::discs::{AptRoot, Pkg, index_disc, make_deb, make_disc, make_iso};
use crate::common::{Run, airlock_bin};

const SUITE: &str = "1.7_x86-64";

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
        };
        let run = site.airlock(&["keygen", "--out", "keys"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        site
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn airlock(&self, args: &[&str]) -> Run {
        self.airlock_env(args, &[])
    }

    fn airlock_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(airlock_bin());
        cmd.args(args).current_dir(self.dir.path());
        cmd.env_remove("SOURCE_DATE_EPOCH");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from_output(cmd.output().unwrap())
    }

    /// `airlock repo build --main MAIN [--devel DEVEL] --key keys/… --out OUT EXTRA`
    fn build(&self, main: &str, devel: Option<&str>, out: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "repo",
            "build",
            "--main",
            main,
            "--key",
            "keys/signing-key.asc",
            "--out",
            out,
        ];
        if let Some(d) = devel {
            args.extend(["--devel", d]);
        }
        args.extend_from_slice(extra);
        self.airlock_env(&args, &[("SOURCE_DATE_EPOCH", "1700000000")])
    }

    fn keyring(&self) -> PathBuf {
        self.path("keys/archive-keyring.gpg")
    }
}

fn gpgv(keyring: &Path, args: &[&Path]) -> bool {
    Command::new("gpgv")
        .arg("--keyring")
        .arg(keyring)
        .args(args)
        .output()
        .unwrap()
        .status
        .success()
}

fn json(run: &Run) -> serde_json::Value {
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

fn main_pkgs() -> Vec<Pkg<'static>> {
    vec![
        Pkg::new("hello", "2.10-3"),
        Pkg {
            component: "contrib",
            ..Pkg::new("contrib-tool", "1.0")
        },
        Pkg {
            arch: "all",
            ..Pkg::new("common-data", "5:1.2~rc1+astra3")
        },
        Pkg::new("shared-lib", "1.0-1"),
    ]
}

fn devel_pkgs() -> Vec<Pkg<'static>> {
    vec![
        Pkg::new("gcc-stand-in", "8.3.0-6"),
        Pkg {
            component: "non-free",
            ..Pkg::new("vendor-blob", "0.9")
        },
        // The same package as on the main disc, same bytes: kept once.
        Pkg::new("shared-lib", "1.0-1"),
    ]
}

#[test]
fn keygen_writes_three_files_and_never_overwrites() {
    let site = Site::new();
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(site.path("keys/signing-key.asc"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let secret = fs::read_to_string(site.path("keys/signing-key.asc")).unwrap();
    assert!(secret.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));
    assert!(
        fs::read_to_string(site.path("keys/archive-keyring.asc"))
            .unwrap()
            .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    );
    let again = site.airlock(&["keygen", "--out", "keys"]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    // Nothing secret on the terminal.
    let run = site.airlock(&["keygen", "--out", "keys2"]);
    assert!(!run.stdout.contains("PRIVATE KEY") && !run.stderr.contains("PRIVATE KEY"));
}

#[test]
fn two_isos_make_a_repository_apt_and_gpgv_accept() {
    let site = Site::new();
    make_disc(&site.path("main"), &main_pkgs());
    make_disc(&site.path("devel"), &devel_pkgs());
    make_iso(&site.path("main"), &site.path("main.iso"));
    make_iso(&site.path("devel"), &site.path("devel.iso"));

    let summary = json(&site.build("main.iso", Some("devel.iso"), "repo", &["--json"]));
    assert_eq!(summary["total_packages"], 6, "{summary}");
    assert_eq!(summary["deduplicated"], 1);
    assert_eq!(summary["packages"]["main"], 4);
    assert_eq!(summary["packages"]["contrib"], 1);
    assert_eq!(summary["packages"]["non-free"], 1);
    assert_eq!(summary["discs"][0]["index"], "checked");

    let dists = site.path("repo/dists").join(SUITE);
    assert!(gpgv(&site.keyring(), &[&dists.join("InRelease")]));
    assert!(gpgv(
        &site.keyring(),
        &[&dists.join("Release.gpg"), &dists.join("Release")]
    ));
    // `all` packages are listed under the architecture.
    let packages = fs::read_to_string(dists.join("main/binary-amd64/Packages")).unwrap();
    assert!(
        packages.contains("Package: common-data\nVersion: 5:1.2~rc1+astra3\nArchitecture: all")
    );
    assert!(packages.contains("Filename: pool/main/h/hello/hello_2.10-3_amd64.deb\nSize: "));
    assert!(
        packages.contains(" It has a long description.\n"),
        "description kept whole"
    );

    let apt = AptRoot::new(site.dir.path(), &site.path("repo"), &site.keyring(), SUITE);
    let (ok, out) = apt.apt_get(&["update"]);
    assert!(ok, "apt-get update:\n{out}");
    let (ok, out) = apt.apt_get(&[
        "install",
        "--download-only",
        "-y",
        "hello",
        "vendor-blob",
        "common-data",
        "contrib-tool",
    ]);
    assert!(ok, "apt-get install:\n{out}");
    // The copy: method fetched each file and apt checked its size and SHA256.
    let debs: Vec<_> = fs::read_dir(apt.root.join("var/cache/apt/archives"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "deb"))
        .collect();
    assert_eq!(debs.len(), 4, "{out}");
}

#[test]
fn a_vm_whose_clock_is_a_day_behind_uses_the_repository_with_the_bundles_apt_setting() {
    let site = Site::new();
    make_disc(&site.path("main"), &main_pkgs());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ahead = (now + 86_400).to_string();
    let args = [
        "repo",
        "build",
        "--main",
        "main",
        "--key",
        "keys/signing-key.asc",
        "--out",
        "repo",
    ];
    let run = site.airlock_env(&args, &[("SOURCE_DATE_EPOCH", &ahead)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // apt refuses a Release dated more than 10 s ahead of its clock...
    let apt = AptRoot::new(&site.path("a1"), &site.path("repo"), &site.keyring(), SUITE);
    let (ok, out) = apt.apt_get(&["update"]);
    assert!(!ok && out.contains("not valid yet"), "{out}");
    // ...unless told otherwise for this repository's Label, as every VM is.
    let conf = site.path("50airlock");
    fs::write(&conf, airlock::shared::render::apt_conf()).unwrap();
    let apt = AptRoot::new(&site.path("a2"), &site.path("repo"), &site.keyring(), SUITE);
    let (ok, out) = apt.apt_get_env(&["update"], &[("APT_CONFIG", &conf)]);
    assert!(ok, "apt-get update with the bundle's setting:\n{out}");
    let (ok, out) = apt.apt_get_env(
        &["install", "--download-only", "-y", "hello"],
        &[("APT_CONFIG", &conf)],
    );
    assert!(ok, "{out}");
}

#[test]
fn apt_refuses_a_tampered_index_or_a_foreign_key() {
    let site = Site::new();
    make_disc(&site.path("main"), &main_pkgs());
    assert_eq!(site.build("main", None, "repo", &[]).code, 0);
    let dists = site.path("repo/dists").join(SUITE);

    // A foreign key.
    assert_eq!(site.airlock(&["keygen", "--out", "other"]).code, 0);
    let apt = AptRoot::new(
        &site.path("a1"),
        &site.path("repo"),
        &site.path("other/archive-keyring.gpg"),
        SUITE,
    );
    let (ok, out) = apt.apt_get(&["update"]);
    assert!(
        !ok,
        "apt accepted a repository signed by another key:\n{out}"
    );
    assert!(!gpgv(
        &site.path("other/archive-keyring.gpg"),
        &[&dists.join("InRelease")]
    ));

    // One changed byte in Packages.
    let p = dists.join("main/binary-amd64/Packages");
    let text =
        fs::read_to_string(&p)
            .unwrap()
            .replacen("Priority: optional", "Priority: required", 1);
    fs::write(&p, text).unwrap();
    for f in ["Packages.gz", "Packages.xz"] {
        fs::remove_file(dists.join("main/binary-amd64").join(f)).unwrap();
    }
    let apt = AptRoot::new(&site.path("a2"), &site.path("repo"), &site.keyring(), SUITE);
    let (ok, out) = apt.apt_get(&["update"]);
    assert!(!ok, "apt accepted a tampered Packages:\n{out}");
    assert!(
        out.contains("Hash Sum mismatch") || out.contains("File has unexpected size"),
        "{out}"
    );
}

#[test]
fn a_tampered_release_fails_gpgv() {
    let site = Site::new();
    make_disc(&site.path("main"), &main_pkgs());
    assert_eq!(site.build("main", None, "repo", &[]).code, 0);
    let dists = site.path("repo/dists").join(SUITE);
    let release = dists.join("Release");
    let text = fs::read_to_string(&release)
        .unwrap()
        .replace("Label: airlock", "Label: airlocK");
    fs::write(&release, text).unwrap();
    assert!(!gpgv(
        &site.keyring(),
        &[&dists.join("Release.gpg"), &release]
    ));
}

#[test]
fn the_same_package_with_other_bytes_on_both_discs_is_an_error_naming_both() {
    let site = Site::new();
    make_disc(&site.path("main"), &[Pkg::new("clash", "1.0")]);
    make_disc(
        &site.path("devel"),
        &[Pkg {
            payload: "other bytes",
            component: "contrib",
            ..Pkg::new("clash", "1.0")
        }],
    );
    let run = site.build("main", Some("devel"), "repo", &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("clash 1.0 amd64 is on the main disc as main:pool/main/c/clash/clash_1.0_amd64.deb and on the devel disc as devel:pool/contrib/c/clash/clash_1.0_amd64.deb with different bytes"), "{}", run.stderr);
    assert!(!site.path("repo").exists(), "nothing is written on failure");
}

#[test]
fn same_path_with_other_bytes_is_an_error() {
    let site = Site::new();
    make_disc(&site.path("main"), &[Pkg::new("clash", "1.0")]);
    make_disc(
        &site.path("devel"),
        &[Pkg {
            payload: "other",
            ..Pkg::new("clash", "1.0")
        }],
    );
    let run = site.build("main", Some("devel"), "repo", &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("pool/main/c/clash/clash_1.0_amd64.deb on the main disc (main) and on the devel disc (devel) have the same path but different bytes"), "{}", run.stderr);
}

/// The `.deb` files apt downloaded into its cache, by file name.
fn downloaded(apt: &AptRoot) -> Vec<String> {
    let mut debs: Vec<String> = fs::read_dir(apt.root.join("var/cache/apt/archives"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".deb"))
        .collect();
    debs.sort();
    debs
}

/// Two update discs (an ISO and a directory) with newer versions of a
/// main-disc package: every version is in the merged repository, apt sees
/// them all and installs the newest, and an older one is still there to pin.
#[test]
fn update_discs_with_newer_versions_are_installed_by_apt_from_the_merged_repository() {
    let site = Site::new();
    make_disc(&site.path("main"), &main_pkgs());
    make_disc(&site.path("devel"), &devel_pkgs());
    make_disc(
        &site.path("update1"),
        &[
            Pkg::new("hello", "2.10-3+astra1"),
            Pkg::new("shared-lib", "1.0-2"),
            // Only on an update disc.
            Pkg {
                component: "contrib",
                ..Pkg::new("fresh-tool", "0.1")
            },
        ],
    );
    make_iso(&site.path("update1"), &site.path("1.7.1-update.iso"));
    make_disc(
        &site.path("update2"),
        &[
            Pkg::new("hello", "2.11-1"),
            // The same bytes as on update1: kept once.
            Pkg::new("shared-lib", "1.0-2"),
        ],
    );

    let summary = json(&site.build(
        "main",
        Some("devel"),
        "repo",
        &[
            "--update",
            "1.7.1-update.iso",
            "--update",
            "update2",
            "--json",
        ],
    ));
    let roles: Vec<&str> = summary["discs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["main", "devel", "update1", "update2"], "{summary}");
    assert_eq!(summary["discs"][2]["source"], "1.7.1-update.iso");
    assert_eq!(summary["discs"][2]["index"], "checked");
    // 6 from main and devel, hello twice more, shared-lib and fresh-tool once.
    assert_eq!(summary["total_packages"], 10, "{summary}");
    assert_eq!(summary["deduplicated"], 2, "{summary}");
    let packages = fs::read_to_string(
        site.path("repo/dists")
            .join(SUITE)
            .join("main/binary-amd64/Packages"),
    )
    .unwrap();
    for v in ["2.10-3", "2.10-3+astra1", "2.11-1"] {
        assert!(
            packages.contains(&format!("Package: hello\nVersion: {v}\n")),
            "hello {v} kept:\n{packages}"
        );
    }

    let apt = AptRoot::new(site.dir.path(), &site.path("repo"), &site.keyring(), SUITE);
    let (ok, out) = apt.apt_get(&["update"]);
    assert!(ok, "apt-get update:\n{out}");
    let (ok, madison) = apt.apt_cache(&["madison", "hello"]);
    assert!(ok, "{madison}");
    for v in ["2.10-3", "2.10-3+astra1", "2.11-1"] {
        assert!(
            madison
                .lines()
                .any(|l| l.split('|').nth(1).map(str::trim) == Some(v)),
            "apt-cache madison lists hello {v}:\n{madison}"
        );
    }
    let (ok, policy) = apt.apt_cache(&["policy", "hello", "shared-lib"]);
    assert!(ok, "{policy}");
    assert!(policy.contains("Candidate: 2.11-1"), "{policy}");
    assert!(policy.contains("Candidate: 1.0-2"), "{policy}");
    let (ok, out) = apt.apt_get(&[
        "install",
        "--download-only",
        "-y",
        "hello",
        "shared-lib",
        "fresh-tool",
    ]);
    assert!(ok, "apt-get install:\n{out}");
    assert_eq!(
        downloaded(&apt),
        [
            "fresh-tool_0.1_amd64.deb",
            "hello_2.11-1_amd64.deb",
            "shared-lib_1.0-2_amd64.deb"
        ],
        "{out}"
    );
    // The main disc's version is kept: a site can still pin it.
    let (ok, out) = apt.apt_get(&["install", "--download-only", "-y", "hello=2.10-3"]);
    assert!(ok, "apt-get install hello=2.10-3:\n{out}");
    assert!(downloaded(&apt).contains(&"hello_2.10-3_amd64.deb".to_string()));
}

/// An update disc that reuses a main-disc version with other bytes is
/// refused, under the same pool path or another, naming both files.
#[test]
fn an_update_disc_with_other_bytes_for_a_known_version_is_an_error_naming_both_files() {
    let site = Site::new();
    make_disc(&site.path("main"), &main_pkgs());
    make_disc(
        &site.path("update1"),
        &[Pkg {
            payload: "rebuilt",
            ..Pkg::new("hello", "2.10-3")
        }],
    );
    make_iso(&site.path("update1"), &site.path("1.7.1-update.iso"));
    make_disc(
        &site.path("update2"),
        &[Pkg {
            payload: "rebuilt again",
            component: "non-free",
            ..Pkg::new("shared-lib", "1.0-1")
        }],
    );
    let run = site.build(
        "main",
        None,
        "repo",
        &["--update", "1.7.1-update.iso", "--update", "update2"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("pool/main/h/hello/hello_2.10-3_amd64.deb on the main disc (main) and on the update1 disc (1.7.1-update.iso) have the same path but different bytes"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("shared-lib 1.0-1 amd64 is on the main disc as main:pool/main/s/shared-lib/shared-lib_1.0-1_amd64.deb and on the update2 disc as update2:pool/non-free/s/shared-lib/shared-lib_1.0-1_amd64.deb with different bytes"),
        "{}",
        run.stderr
    );
    assert!(!site.path("repo").exists(), "nothing is written on failure");
    // A missing update disc is named as the option gave it.
    let run = site.build("main", None, "repo", &["--update", "nowhere.iso"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("reading the update1 disc") && run.stderr.contains("nowhere.iso"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_deb_that_does_not_match_its_disc_index_is_refused() {
    let site = Site::new();
    make_disc(&site.path("main"), &main_pkgs());
    // Swap hello for a rebuilt one after the index was written.
    make_deb(
        &site.path("main"),
        &Pkg {
            payload: "swapped",
            ..Pkg::new("hello", "2.10-3")
        },
    );
    let run = site.build("main", None, "repo", &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("chain of custody broken"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("main: pool/main/h/hello/hello_2.10-3_amd64.deb does not match the disc's index dists/1.7_x86-64/main/binary-amd64/Package"), "{}", run.stderr);
}

#[test]
fn an_unlisted_deb_needs_allow_unlisted_and_is_reported() {
    let site = Site::new();
    make_disc(&site.path("main"), &main_pkgs());
    make_deb(&site.path("main"), &Pkg::new("extra", "1"));
    let run = site.build("main", None, "repo", &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("main: pool/main/e/extra/extra_1_amd64.deb is not listed in the disc's Packages index (pass --allow-unlisted"), "{}", run.stderr);
    let summary = json(&site.build("main", None, "repo", &["--allow-unlisted", "--json"]));
    assert_eq!(
        summary["unlisted"][0],
        "main:pool/main/e/extra/extra_1_amd64.deb"
    );
    assert_eq!(summary["total_packages"], 5);
}

#[test]
fn a_disc_whose_index_lists_a_missing_file_is_incomplete() {
    let site = Site::new();
    make_disc(&site.path("main"), &main_pkgs());
    fs::remove_file(
        site.path("main")
            .join(Pkg::new("hello", "2.10-3").pool_path()),
    )
    .unwrap();
    let run = site.build("main", None, "repo", &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("listed in the disc's index are missing from its pool, first pool/main/h/hello/hello_2.10-3_amd64.deb"), "{}", run.stderr);
}

#[test]
fn a_corrupt_deb_names_the_disc_and_path() {
    let site = Site::new();
    let disc = site.path("main");
    fs::create_dir_all(disc.join("pool/main/b/broken")).unwrap();
    fs::write(
        disc.join("pool/main/b/broken/broken_1_amd64.deb"),
        b"!<arch>\ndebian-binary   0           0     0     100644  4         `\n2.0\n",
    )
    .unwrap();
    make_deb(&disc, &Pkg::new("fine", "1"));
    let truncated = make_deb(&disc, &Pkg::new("cut", "1"));
    let bytes = fs::read(&truncated).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let run = site.build("main", None, "repo", &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(
            "main: pool/main/b/broken/broken_1_amd64.deb: corrupt .deb: no data.tar member"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("main: pool/main/c/cut/cut_1_amd64.deb: corrupt .deb: truncated"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("2 problem(s)"),
        "every bad file is reported: {}",
        run.stderr
    );
}

#[test]
fn a_truncated_iso_is_a_clear_error() {
    let site = Site::new();
    make_disc(&site.path("main"), &main_pkgs());
    let iso = make_iso(&site.path("main"), &site.path("main.iso"));
    let bytes = fs::read(&iso).unwrap();
    fs::write(site.path("cut-early.iso"), &bytes[..40_000]).unwrap();
    // Cut in the middle of a package's data (xorriso pads the end, so
    // dropping the last bytes alone would cut only padding).
    let deb = fs::read(
        site.path("main")
            .join(Pkg::new("hello", "2.10-3").pool_path()),
    )
    .unwrap();
    let at = bytes
        .windows(deb.len())
        .position(|w| w == deb.as_slice())
        .unwrap();
    fs::write(site.path("cut-late.iso"), &bytes[..at + deb.len() / 2]).unwrap();
    let run = site.build("cut-early.iso", None, "repo", &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("reading ISO 9660 image cut-early.iso"),
        "{}",
        run.stderr
    );
    let run = site.build("cut-late.iso", None, "repo", &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("cut-late.iso: the image is truncated or corrupt"),
        "{}",
        run.stderr
    );
    let run = site.build("nowhere.iso", None, "repo", &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("opening disc nowhere.iso"),
        "{}",
        run.stderr
    );
}

#[test]
fn long_rock_ridge_names_survive() {
    let site = Site::new();
    let long_name =
        "libreoffice-l10n-very-long-package-name-for-astra-linux-special-edition-smolensk";
    let long_version = "1:7.0.4-4+deb10u1astra1+ci.build.123456789.with.a.really.long.suffix";
    let pkg = Pkg::new(long_name, long_version);
    assert!(pkg.file_name().len() > 150);
    make_disc(&site.path("main"), std::slice::from_ref(&pkg));
    make_iso(&site.path("main"), &site.path("main.iso"));
    let summary = json(&site.build("main.iso", None, "repo", &["--json"]));
    assert_eq!(summary["total_packages"], 1);
    assert!(site.path("repo").join(pkg.pool_path()).is_file());
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn building_twice_gives_identical_bytes() {
    let site = Site::new();
    make_disc(&site.path("main"), &main_pkgs());
    make_disc(&site.path("devel"), &devel_pkgs());
    make_iso(&site.path("main"), &site.path("main.iso"));
    assert_eq!(site.build("main.iso", Some("devel"), "one", &[]).code, 0);
    assert_eq!(site.build("main.iso", Some("devel"), "two", &[]).code, 0);
    // The cache names this machine's inodes and times: not part of the output.
    let strip = |t: Vec<(String, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
        t.into_iter()
            .filter(|(p, _)| p != ".airlock-cache.json")
            .collect()
    };
    let (one, two) = (
        strip(tree(&site.path("one"))),
        strip(tree(&site.path("two"))),
    );
    assert_eq!(one.len(), two.len());
    for (a, b) in one.iter().zip(&two) {
        assert_eq!(a.0, b.0);
        assert!(a.1 == b.1, "{} differs between two builds", a.0);
    }
}

#[test]
fn a_rebuild_reads_only_what_changed() {
    let site = Site::new();
    let disc = site.path("main");
    make_disc(&disc, &main_pkgs());
    make_iso(&disc, &site.path("main.iso"));
    let first = json(&site.build("main.iso", None, "repo", &["--json"]));
    assert_eq!(first["reused"], 0);

    make_deb(&disc, &Pkg::new("newcomer", "1.0"));
    index_disc(&disc, &["main", "contrib"]);
    make_iso(&disc, &site.path("main.iso"));
    let second = json(&site.build("main.iso", None, "repo", &["--json"]));
    assert_eq!(second["total_packages"], 5);
    assert_eq!(second["reused"], 4, "{second}");
    let newcomer = fs::metadata(disc.join(Pkg::new("newcomer", "1.0").pool_path()))
        .unwrap()
        .len();
    assert_eq!(second["hashed_bytes"], newcomer);

    // The rebuilt repository is still whole and valid.
    let apt = AptRoot::new(site.dir.path(), &site.path("repo"), &site.keyring(), SUITE);
    let (ok, out) = apt.apt_get(&["update"]);
    assert!(ok, "{out}");
    let (ok, out) = apt.apt_get(&["install", "--download-only", "-y", "newcomer", "hello"]);
    assert!(ok, "{out}");
}

/// A rebuild moves the previous pool into the new repository instead of
/// linking each file again (a link would move the file's ctime): an
/// unchanged package is the very file the previous build left, a package
/// gone from the disc is gone from the pool, nothing of the move is left
/// beside the output, and the result is what a fresh build gives.
#[test]
fn a_rebuild_takes_over_the_previous_pool() {
    use std::os::unix::fs::MetadataExt;
    let site = Site::new();
    let disc = site.path("main");
    let pkgs = main_pkgs();
    make_disc(&disc, &pkgs);
    make_iso(&disc, &site.path("main.iso"));
    assert_eq!(site.build("main.iso", None, "repo", &[]).code, 0);
    let kept = site.path("repo").join(pkgs[0].pool_path());
    let identity = |m: fs::Metadata| (m.ino(), m.ctime(), m.ctime_nsec());
    let before = identity(fs::metadata(&kept).unwrap());

    let gone = pkgs[1].pool_path();
    fs::remove_file(disc.join(&gone)).unwrap();
    make_deb(&disc, &Pkg::new("newcomer", "1.0"));
    index_disc(&disc, &["main", "contrib"]);
    make_iso(&disc, &site.path("main.iso"));
    let run = site.build("main.iso", None, "repo", &["--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(json(&run)["reused"], 3);
    assert_eq!(identity(fs::metadata(&kept).unwrap()), before);
    assert!(!site.path("repo").join(&gone).exists());
    assert!(!site.path("repo").join(&gone).parent().unwrap().exists());

    // Nothing changed since: the cache goes along as it is, and still
    // vouches for every package the build after takes.
    let cache = site.path("repo/.airlock-cache.json");
    let cache_ino = fs::metadata(&cache).unwrap().ino();
    let run = site.build("main.iso", None, "repo", &["--json"]);
    assert_eq!(json(&run)["reused"], 4, "{}", run.stdout);
    assert_eq!(fs::metadata(&cache).unwrap().ino(), cache_ino);
    let run = site.build("main.iso", None, "repo", &["--json"]);
    assert_eq!(json(&run)["reused"], 4, "{}", run.stdout);

    assert_eq!(site.build("main.iso", None, "fresh", &[]).code, 0);
    let strip = |t: Vec<(String, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
        t.into_iter()
            .filter(|(p, _)| p != ".airlock-cache.json")
            .collect()
    };
    assert!(
        strip(tree(&site.path("repo"))) == strip(tree(&site.path("fresh"))),
        "a rebuild gives what a fresh build gives"
    );
    let beside: Vec<String> = fs::read_dir(site.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".repo."))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
}

/// A rebuild with nothing changed takes the previous compressed indexes
/// (compressing is most of its work) and gives the bytes a fresh build
/// gives; a previous compressed index that is not what the sealed cache
/// says that build wrote is made again, never copied, even when the cache
/// is edited to name it.
#[test]
fn a_rebuild_reuses_compressed_indexes_only_as_its_sealed_cache_recorded_them() {
    let site = Site::new();
    let disc = site.path("main");
    make_disc(&disc, &main_pkgs());
    make_iso(&disc, &site.path("main.iso"));
    let env = [("SOURCE_DATE_EPOCH", "1800000000")];
    let build = |out: &str| {
        let run = site.airlock_env(
            &[
                "repo",
                "build",
                "--main",
                "main.iso",
                "--key",
                "keys/signing-key.asc",
                "--out",
                out,
                "--json",
            ],
            &env,
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        json(&run)
    };
    build("fresh");
    build("repo");
    let index = site
        .path("repo/dists")
        .join(SUITE)
        .join("main/binary-amd64");
    // Another text, compressed for real, in place of the previous xz.
    let other = airlock::build::repo::xz_into(&b"Package: other\n"[..], Vec::new()).unwrap();
    fs::write(index.join("Packages.xz"), &other).unwrap();
    let again = build("repo");
    assert_eq!(again["reused"], 4, "{again}");
    assert_ne!(fs::read(index.join("Packages.xz")).unwrap(), other);
    assert_eq!(
        tree(&site.path("repo/dists")),
        tree(&site.path("fresh/dists")),
        "a rebuild gives what a fresh build gives"
    );

    // The same, with the cache edited to name the other file: its seal no
    // longer holds, so nothing of it is taken.
    fs::write(index.join("Packages.xz"), &other).unwrap();
    let cache = site.path("repo/.airlock-cache.json");
    let mut c: serde_json::Value = serde_json::from_slice(&fs::read(&cache).unwrap()).unwrap();
    let forged = airlock::shared::hex(&<sha2::Sha256 as sha2::Digest>::digest(&other));
    let listed = c["indexes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|i| i["rel"] == "main/binary-amd64/Packages.xz")
        .expect("the cache records the index");
    listed["sha256"] = forged.into();
    listed["size"] = other.len().into();
    fs::write(&cache, serde_json::to_vec(&c).unwrap()).unwrap();
    let forged_run = build("repo");
    assert_eq!(forged_run["reused"], 0, "{forged_run}");
    assert!(
        forged_run["cache"]
            .as_str()
            .unwrap_or_default()
            .contains("seal"),
        "{forged_run}"
    );
    assert_ne!(fs::read(index.join("Packages.xz")).unwrap(), other);
    assert_eq!(
        tree(&site.path("repo/dists")),
        tree(&site.path("fresh/dists"))
    );
}

/// The repository is independent of its discs: a pool file is a copy, so
/// changing a directory disc afterwards changes nothing built from it.
#[test]
fn a_directory_disc_is_copied_not_linked() {
    use std::os::unix::fs::MetadataExt;
    let site = Site::new();
    make_disc(&site.path("main"), &main_pkgs());
    assert_eq!(site.build("main", None, "repo", &[]).code, 0);
    let rel = Pkg::new("hello", "2.10-3").pool_path();
    let (disc, pool) = (site.path("main").join(&rel), site.path("repo").join(&rel));
    assert_ne!(
        fs::metadata(&disc).unwrap().ino(),
        fs::metadata(&pool).unwrap().ino()
    );
    let before = fs::read(&pool).unwrap();
    let mut f = fs::OpenOptions::new().write(true).open(&disc).unwrap();
    std::io::Write::write_all(&mut f, b"XXXX").unwrap();
    assert_eq!(fs::read(&pool).unwrap(), before);
}

#[test]
fn a_disc_without_an_index_is_built_and_said_so() {
    let site = Site::new();
    let disc = site.path("main");
    make_deb(&disc, &Pkg::new("hello", "1"));
    let summary = json(&site.build("main", None, "repo", &["--json"]));
    assert_eq!(summary["discs"][0]["index"], "none");
    assert_eq!(summary["total_packages"], 1);
}

#[test]
fn a_signed_disc_release_is_checked_with_the_vendor_key() {
    let site = Site::new();
    let disc = make_disc(&site.path("main"), &main_pkgs());
    // Sign the disc's Release with a "vendor" key (made by airlock keygen,
    // signed by gpg itself to stand apart from airlock's signer).
    assert_eq!(site.airlock(&["keygen", "--out", "vendor"]).code, 0);
    let gnupg = site.path("gnupg");
    fs::create_dir_all(&gnupg).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&gnupg, fs::Permissions::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        crate::common::discs::sh(
            Command::new("gpg")
                .arg("--homedir")
                .arg(&gnupg)
                .args(["--batch", "--quiet"])
                .args(args),
        )
    };
    gpg(&[
        "--import",
        site.path("vendor/signing-key.asc").to_str().unwrap(),
    ]);
    let release = disc.join("dists/1.7_x86-64/Release");
    gpg(&[
        "--detach-sign",
        "--armor",
        "-o",
        disc.join("dists/1.7_x86-64/Release.gpg").to_str().unwrap(),
        release.to_str().unwrap(),
    ]);

    let ok = json(&site.build(
        "main",
        None,
        "repo",
        &["--disc-keyring", "vendor/archive-keyring.gpg", "--json"],
    ));
    assert_eq!(ok["discs"][0]["release_signature"], "verified");
    let unchecked = json(&site.build("main", None, "repo", &["--json"]));
    assert_eq!(unchecked["discs"][0]["release_signature"], "not checked");

    // Wrong key.
    let run = site.build(
        "main",
        None,
        "repo2",
        &["--disc-keyring", "keys/archive-keyring.gpg"],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(
            "main: the signature dists/1.7_x86-64/Release.gpg does not verify with the disc keyring"
        ),
        "{}",
        run.stderr
    );

    // A Packages index changed after signing.
    let p = disc.join("dists/1.7_x86-64/main/binary-amd64/Packages");
    let text = fs::read_to_string(&p)
        .unwrap()
        .replacen("Priority: optional", "Priority: extra", 1);
    fs::write(&p, text).unwrap();
    let run = site.build(
        "main",
        None,
        "repo3",
        &["--disc-keyring", "vendor/archive-keyring.gpg"],
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("main: dists/1.7_x86-64/main/binary-amd64/Packages does not match its dists/1.7_x86-64/Release entry"), "{}", run.stderr);
}

#[test]
fn a_same_size_deb_with_other_bytes_is_refused() {
    // Only the hash can tell: one byte of debian-binary ("2.0" -> "2.1").
    let site = Site::new();
    make_disc(&site.path("main"), &main_pkgs());
    let deb = site
        .path("main")
        .join(Pkg::new("hello", "2.10-3").pool_path());
    let mut bytes = fs::read(&deb).unwrap();
    assert_eq!(&bytes[68..72], b"2.0\n");
    bytes[70] = b'1';
    fs::write(&deb, bytes).unwrap();
    let run = site.build("main", None, "repo", &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "main: pool/main/h/hello/hello_2.10-3_amd64.deb does not match the disc's index"
        ),
        "{}",
        run.stderr
    );
}

/// A key rollover: the repository signed by the old and the new key is
/// read by apt trusting either key alone, through InRelease and through
/// Release + Release.gpg, and gpgv finds each key's good signature.
#[test]
fn a_repository_signed_by_two_keys_is_read_by_apt_trusting_either_key_alone() {
    let site = Site::new();
    assert_eq!(site.airlock(&["keygen", "--out", "new"]).code, 0);
    make_disc(&site.path("main"), &main_pkgs());
    let run = site.airlock_env(
        &[
            "repo",
            "build",
            "--main",
            "main",
            "--key",
            "keys/signing-key.asc",
            "--key",
            "new/signing-key.asc",
            "--out",
            "repo",
        ],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (old, new) = (site.keyring(), site.path("new/archive-keyring.gpg"));
    let (old_fpr, new_fpr) = (
        crate::common::fingerprints(&old).remove(0),
        crate::common::fingerprints(&new).remove(0),
    );
    let dists = site.path("repo/dists").join(SUITE);
    let (inrelease, release, release_gpg) = (
        dists.join("InRelease"),
        dists.join("Release"),
        dists.join("Release.gpg"),
    );
    // One armored block each, with a signature per key in the order given.
    for f in [&inrelease, &release_gpg] {
        let text = fs::read_to_string(f).unwrap();
        assert_eq!(text.matches("-----BEGIN PGP SIGNATURE-----").count(), 1);
    }
    let (_, status) = crate::common::gpgv_status(&old, &[&release_gpg, &release]);
    let at = |f: &str| status.find(&f[f.len() - 16..]).unwrap();
    assert!(at(&old_fpr) < at(&new_fpr), "{status}");
    for (trusted, good, other) in [(&old, &old_fpr, &new_fpr), (&new, &new_fpr, &old_fpr)] {
        crate::common::assert_gpgv_good_by_one_of_two(trusted, good, other, &[&inrelease]);
        crate::common::assert_gpgv_good_by_one_of_two(
            trusted,
            good,
            other,
            &[&release_gpg, &release],
        );
    }
    // Both keys: gpgv exits 0.
    let both = site.path("both.gpg");
    fs::write(
        &both,
        [fs::read(&old).unwrap(), fs::read(&new).unwrap()].concat(),
    )
    .unwrap();
    assert!(gpgv(&both, &[&inrelease]));
    assert!(gpgv(&both, &[&release_gpg, &release]));

    for (name, trusted) in [("old", &old), ("new", &new)] {
        let apt = AptRoot::new(
            &site.path(&format!("apt-{name}")),
            &site.path("repo"),
            trusted,
            SUITE,
        );
        let (ok, out) = apt.apt_get(&["update"]);
        assert!(ok, "apt-get update trusting the {name} key alone:\n{out}");
        assert!(out.contains(" InRelease") && !out.contains("W:"), "{out}");
        let (ok, out) = apt.apt_get(&["install", "--download-only", "-y", "hello"]);
        assert!(ok, "{out}");
    }
    // Without InRelease apt reads Release and Release.gpg.
    fs::rename(&inrelease, site.path("InRelease.aside")).unwrap();
    for (name, trusted) in [("old", &old), ("new", &new)] {
        let apt = AptRoot::new(
            &site.path(&format!("apt-gpg-{name}")),
            &site.path("repo"),
            trusted,
            SUITE,
        );
        let (ok, out) = apt.apt_get(&["update"]);
        assert!(
            ok,
            "apt-get update (Release.gpg) trusting the {name} key alone:\n{out}"
        );
        // Fetched, no warning about the signature it has no key for.
        assert!(out.contains(" Release.gpg") && !out.contains("W:"), "{out}");
    }
    // A third key: apt refuses.
    assert_eq!(site.airlock(&["keygen", "--out", "third"]).code, 0);
    fs::rename(site.path("InRelease.aside"), &inrelease).unwrap();
    let apt = AptRoot::new(
        &site.path("apt-third"),
        &site.path("repo"),
        &site.path("third/archive-keyring.gpg"),
        SUITE,
    );
    let (ok, out) = apt.apt_get(&["update"]);
    assert!(!ok && out.contains("NO_PUBKEY"), "{out}");
}

#[test]
fn the_same_signing_key_twice_is_refused() {
    let site = Site::new();
    make_disc(&site.path("main"), &main_pkgs());
    fs::copy(site.path("keys/signing-key.asc"), site.path("copy.asc")).unwrap();
    let run = site.build("main", None, "repo", &["--key", "copy.asc"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("--key keys/signing-key.asc and --key copy.asc are the same key"),
        "{}",
        run.stderr
    );
    assert!(!site.path("repo").exists());
}
