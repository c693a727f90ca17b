//! `airlock check` against apt itself: small discs of crafted `.deb` files
//! (one case per package), a signed repository made from them, a dpkg
//! status file as the reference VM's base; for every case
//! `apt-get --simulate install CASE` in an isolated apt root over that
//! repository and base must agree with airlock's verdict. Then `build`
//! refuses the incomplete bundle, writing nothing, unless
//! `--allow-incomplete`.

use std::fs;
use std::path::Path;

use crate::common::discs::{AptRoot, Pkg, make_disc};
use crate::common::{Run, airlock};

/// (name, version, control fields) of the main disc.
const MAIN: &[(&str, &str, &str)] = &[
    (
        "good",
        "1.0",
        "Pre-Depends: base-pkg (>= 1)\nDepends: lib-ok (>= 1.0), virt-ok, nowhere | lib-ok\n",
    ),
    ("lib-ok", "1.0", ""),
    ("prov", "1.0", "Provides: virt-ok\n"),
    ("needs-missing", "1", "Depends: lib-ok, nowhere\n"),
    ("needs-newer", "1", "Depends: lib-old (>= 2.0)\n"),
    ("lib-old", "1.5", ""),
    ("needs-older", "1", "Depends: lib-two (<< 2)\n"),
    ("lib-two", "1", ""),
    ("conflicting", "1", "Depends: dep-a, dep-b\n"),
    ("dep-a", "1", "Conflicts: dep-b\n"),
    ("dep-b", "1", ""),
    ("breaking", "1", "Depends: dep-c\nBreaks: dep-c (<< 5)\n"),
    ("dep-c", "1.0", ""),
    ("virtual-versioned", "1", "Depends: abi (>= 2)\n"),
    ("abi-impl", "2.1", "Provides: abi (= 2.1)\n"),
    ("virtual-unversioned", "1", "Depends: abi-old (>= 1)\n"),
    ("impl-old", "1", "Provides: abi-old\n"),
    ("alt-none", "1", "Depends: nowhere | nothere\n"),
    ("base-upgrade", "1", "Depends: base-pkg (>= 2)\n"),
    ("base-too-old", "1", "Depends: base-lib (>= 3)\n"),
    ("op-le", "1", "Depends: lib-ok (<= 1.0)\n"),
    ("op-eq", "1", "Depends: lib-ok (= 1.0)\n"),
    ("op-gt", "1", "Depends: lib-ok (>> 1.0)\n"),
    ("op-lt", "1", "Depends: lib-ok (<< 1.0)\n"),
    ("deep", "1", "Depends: good, needs-newer\n"),
    ("uses-required", "1", "Depends: req-lib\n"),
    ("req-lib", "1", ""),
];

/// Packages of the discs with `Priority: required` (the others are
/// optional): without `media.base_status` they stand for the base.
const REQUIRED: &[&str] = &["req-lib"];

/// The devel disc: a newer lib-two and base-pkg.
const DEVEL: &[(&str, &str, &str)] = &[("lib-two", "2", ""), ("base-pkg", "2", "")];

/// What is installed on the reference VM.
const BASE: &str = "Package: base-pkg\nStatus: install ok installed\nPriority: required\nSection: misc\nMaintainer: Test <test@example.org>\nArchitecture: amd64\nVersion: 1\nDescription: base\n\nPackage: base-lib\nStatus: install ok installed\nPriority: required\nSection: misc\nMaintainer: Test <test@example.org>\nArchitecture: amd64\nVersion: 1\nDescription: base\n\nPackage: gone\nStatus: deinstall ok config-files\nPriority: optional\nSection: misc\nMaintainer: Test <test@example.org>\nArchitecture: amd64\nVersion: 1\nDescription: removed\n";

/// Each case and airlock's expected verdict (None: installable).
const CASES: &[(&str, Option<&str>)] = &[
    ("good", None),
    ("needs-missing", Some("missing")),
    ("needs-newer", Some("version")),
    ("needs-older", Some("version")),
    ("conflicting", Some("conflict")),
    ("breaking", Some("conflict")),
    ("virtual-versioned", None),
    ("virtual-unversioned", Some("version")),
    ("virt-ok", None),
    ("alt-none", Some("missing")),
    ("base-upgrade", None),
    ("base-too-old", Some("version")),
    ("op-le", None),
    ("op-eq", None),
    ("op-gt", Some("version")),
    ("op-lt", Some("version")),
    ("deep", Some("version")),
    ("nowhere", Some("missing")),
];

fn disc(dir: &Path, pkgs: &[(&str, &str, &str)]) {
    let pkgs: Vec<Pkg> = pkgs
        .iter()
        .map(|(name, version, control)| Pkg {
            control,
            priority: if REQUIRED.contains(name) {
                "required"
            } else {
                "optional"
            },
            ..Pkg::new(name, version)
        })
        .collect();
    make_disc(dir, &pkgs);
}

/// The site: discs, vendor directory, base status, key.
fn site(dir: &Path) {
    disc(&dir.join("main"), MAIN);
    disc(&dir.join("devel"), DEVEL);
    fs::create_dir_all(dir.join("vendor")).unwrap();
    fs::write(dir.join("vendor/install.sh"), "#!/bin/sh\n").unwrap();
    fs::write(dir.join("base-status"), BASE).unwrap();
    let run = airlock(dir, &["keygen", "--out", "keys"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// A recipe whose two roles install `wanted`.
fn recipe(dir: &Path, wanted: &str) {
    fs::write(
        dir.join("site.toml"),
        format!(
            r#"version = 1
[cluster]
name = "lab"
domain = "lab.example"
[network]
cidr = "192.0.2.0/24"
gateway = "192.0.2.1"
[media]
main = "main"
devel = "devel"
vendor = "vendor"
base_status = "base-status"
[packages]
db-master = ["{wanted}"]
leader = ["{wanted}"]
[database]
user = "dbuser"
[[host]]
name = "db1"
role = "db-master"
ip = "192.0.2.10"
[[host]]
name = "disp1"
role = "leader"
ip = "192.0.2.20"
"#
        ),
    )
    .unwrap();
}

/// apt's root over the signed repository of both discs, with the base.
fn apt_root(dir: &Path) -> AptRoot {
    let run = airlock(
        dir,
        &[
            "repo",
            "build",
            "--main",
            "main",
            "--devel",
            "devel",
            "--key",
            "keys/signing-key.asc",
            "--out",
            "repo",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    apt_over(dir, &dir.join("repo"))
}

/// apt's root over the signed repository at `repo`, with the base.
fn apt_over(dir: &Path, repo: &Path) -> AptRoot {
    let apt = AptRoot::new(
        dir,
        repo,
        &dir.join("keys/archive-keyring.gpg"),
        "1.7_x86-64",
    );
    fs::write(apt.root.join("var/lib/dpkg/status"), BASE).unwrap();
    let (ok, out) = apt.apt_get(&["update"]);
    assert!(ok, "apt-get update:\n{out}");
    apt
}

fn check_json(dir: &Path) -> (Run, serde_json::Value) {
    let run = airlock(dir, &["check", "site.toml", "--json"]);
    let json = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr));
    (run, json)
}

#[test]
fn apt_and_airlock_check_agree_on_every_case() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    site(dir);
    let apt = apt_root(dir);
    let mut disagreements = Vec::new();
    for (case, want) in CASES {
        recipe(dir, case);
        let (run, json) = check_json(dir);
        let problems = json["roles"][0]["problems"].as_array().unwrap().clone();
        let kind = problems
            .first()
            .map(|p| p["kind"].as_str().unwrap().to_string());
        let (apt_ok, apt_says) = apt.apt_get(&["--simulate", "install", case]);
        if apt_ok != kind.is_none() || kind.as_deref() != *want {
            disagreements.push(format!(
                "{case}: apt {}, airlock {kind:?} (expected {want:?}), exit {}\napt: {apt_says}\nairlock: {problems:?}",
                if apt_ok { "installs it" } else { "refuses it" },
                run.code
            ));
        }
        assert_eq!(
            run.code,
            if want.is_none() { 0 } else { 1 },
            "{case}: {}",
            run.stderr
        );
        assert_eq!(json["ok"], want.is_none(), "{case}");
        assert_eq!(json["roles"][1]["role"], "leader", "{case}");
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n\n"));
}

#[test]
fn problems_name_the_chain_and_what_is_there_instead() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    site(dir);
    recipe(dir, "deep");
    let run = airlock(dir, &["check", "site.toml"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout.contains(
            "db-master: deep → needs-newer → lib-old (>= 2.0) → not on any disc (there is lib-old 1.5 on main)"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("base: 2 package(s) installed (base-status)"),
        "{}",
        run.stdout
    );
    recipe(dir, "base-upgrade");
    let (run, json) = check_json(dir);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        json["roles"][0]["installs"],
        serde_json::json!(["base-pkg 2 on devel", "base-upgrade 1 on main"])
    );
    // Without a base status, the main disc's required packages are the base.
    let text = fs::read_to_string(dir.join("site.toml")).unwrap();
    fs::write(
        dir.join("site.toml"),
        text.replace("base_status = \"base-status\"\n", ""),
    )
    .unwrap();
    let (_, json) = check_json(dir);
    assert_eq!(json["base"]["source"], "main disc priorities");
}

#[test]
fn build_refuses_an_incomplete_bundle_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    site(dir);
    recipe(dir, "needs-missing");
    let before: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let build = |extra: &[&str]| build_site(dir, "bundle", extra);
    let run = build(&[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the bundle would be incomplete; nothing was written"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("db-master: needs-missing → nowhere → not on any disc"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--allow-incomplete"), "{}", run.stderr);
    let mut after: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    // The secrets file is made before the build starts, as for any build.
    after.retain(|n| n != "site.secrets.toml");
    assert_eq!(after.len(), before.len(), "{after:?}");
    let run = build(&["--allow-incomplete"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("WARNING: built with --allow-incomplete"),
        "{}",
        run.stderr
    );
    assert!(dir.join("bundle/SHA256SUMS").is_file());
}

/// `repository.subset = "closure"`: the bundle's repository holds only what
/// the roles install (here `good` with its Pre-Depends and Depends), and
/// apt, with the reference VM's base, installs every role's packages from
/// it; a closure that is not complete is refused before a package is read.
#[test]
fn a_closure_subset_ships_only_what_the_roles_need_and_apt_installs_from_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    site(dir);
    closure_recipe(dir, "good");
    let build = |out: &str| build_site(dir, out, &["--json"]);
    let run = build("bundle");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let total = MAIN.len() + DEVEL.len();
    let kept = summary["repository"]["total_packages"].as_u64().unwrap() as usize;
    assert_eq!(summary["repository"]["left_out"], total - kept, "{summary}");
    assert!(kept < total / 2, "{kept} of {total}");
    assert_eq!(summary["completeness"]["ok"], true, "{summary}");

    let apt = apt_over(dir, &dir.join("bundle/repo"));
    let (ok, out) = apt.apt_get(&["install", "--download-only", "-y", "good"]);
    assert!(ok, "apt-get install good from the subset:\n{out}");
    // What the subset left out is not there for apt either.
    let (ok, _) = apt.apt_get(&["install", "--simulate", "needs-newer"]);
    assert!(!ok, "needs-newer should not be in the subset");

    // A closure with a hole: refused, nothing written.
    closure_recipe(dir, "needs-missing");
    let run = build("hole");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("needs-missing → nowhere"),
        "{}",
        run.stderr
    );
    assert!(!dir.join("hole").exists());
}

/// A closure subset without `media.base_status`: the main disc's required
/// packages are the base, so the subset leaves them out, and the build's
/// own check (over the subset) still counts them as installed; `inspect`
/// says it cannot make the verdict again rather than calling it
/// incomplete.
#[test]
fn a_closure_subset_keeps_the_disc_base_it_was_resolved_against() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    site(dir);
    closure_recipe(dir, "uses-required");
    let text = fs::read_to_string(dir.join("site.toml")).unwrap();
    fs::write(
        dir.join("site.toml"),
        text.replace("base_status = \"base-status\"\n", ""),
    )
    .unwrap();
    let run = build_site(dir, "bundle", &["--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["completeness"]["ok"], true, "{summary}");
    assert_eq!(
        summary["completeness"]["base"]["source"], "main disc priorities",
        "{summary}"
    );
    assert_eq!(summary["repository"]["total_packages"], 1, "{summary}");
    let run = airlock(dir, &["inspect", "bundle"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("INCOMPLETE"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("installed base its build resolved against"),
        "{}",
        run.stdout
    );
}

/// `airlock build site.toml --key keys/signing-key.asc --out OUT
/// --allow-new-glibc EXTRA…` in `dir`.
fn build_site(dir: &Path, out: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "build",
        "site.toml",
        "--key",
        "keys/signing-key.asc",
        "--out",
        out,
        "--allow-new-glibc",
    ];
    args.extend_from_slice(extra);
    airlock(dir, &args)
}

/// [`recipe`] with `repository.subset = "closure"`.
fn closure_recipe(dir: &Path, wanted: &str) {
    recipe(dir, wanted);
    let text = fs::read_to_string(dir.join("site.toml")).unwrap();
    let text = text.replace(
        "[database]",
        "[repository]\nsubset = \"closure\"\n[database]",
    );
    fs::write(dir.join("site.toml"), text).unwrap();
}
