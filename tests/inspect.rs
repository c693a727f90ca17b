//! `airlock inspect` and `airlock diff`: what a bundle holds and what a new
//! one changes, read from bundles that verified (a directory, a tar, a
//! bundle in volumes), with secrets never shown.

use std::fs;
use std::path::Path;

use crate::common::discs::{Pkg, index_disc, make_deb};
use crate::common::{Run, demo_site, fingerprints};

// `airlock ARGS` at the delta tests' fixed build time.
use crate::delta::{ok, run};

/// The demo recipe built with the site key, with the runner given.
fn build(dir: &Path, runner: &str, extra: &[&str]) {
    let mut args = vec!["build", "d/recipe.toml", "--key", "keys/signing-key.asc"];
    args.extend(["--runner", runner, "--allow-new-glibc"]);
    args.extend(extra);
    ok(dir, &args);
}

/// The demo site in a fresh directory, built once with `runner` and `args`.
fn site(runner: &str, args: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    demo_site(dir.path());
    build(dir.path(), runner, args);
    dir
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

const RUNNER: &str = env!("CARGO_BIN_EXE_airlock-firstboot");

#[test]
fn inspect_shows_hosts_discs_signers_runner_and_the_verdict() {
    let dir = site(RUNNER, &["--out", "b", "--tar", "b.tar"]);
    let d = dir.path();
    let fpr = fingerprints(&d.join("keys/archive-keyring.gpg"))[0].clone();
    for bundle in ["b", "b.tar"] {
        let r = ok(
            d,
            &[
                "inspect",
                bundle,
                "--keyring",
                "keys/archive-keyring.gpg",
                "--json",
            ],
        );
        let i = json(&r);
        assert_eq!(i["verified"], true);
        assert_eq!(i["own_keyring"], false);
        assert_eq!(i["cluster"], "spacevdi");
        assert_eq!(i["hosts"].as_array().unwrap().len(), 5);
        assert_eq!(i["hosts"][0]["name"], "spdb1");
        assert_eq!(i["hosts"][0]["role"], "db-master");
        let sources = i["sources"].as_array().unwrap();
        assert_eq!(sources[0]["disc"], "main", "{i}");
        assert_eq!(sources[1]["disc"], "devel", "{i}");
        // airlock-demo-shared is on both discs: kept once, from main.
        assert_eq!(sources[0]["packages"], 3, "{i}");
        assert_eq!(sources[1]["packages"], 1, "{i}");
        assert_eq!(i["packages"], 4);
        assert_eq!(i["signers"][0]["fingerprint"], fpr.as_str());
        assert_eq!(
            i["signers"][0]["user_id"],
            "Site archive key (airlock) <airlock@localhost>"
        );
        assert_eq!(i["signers"][0]["signed"], "2027-01-15T08:00:00Z");
        assert_eq!(i["runner"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            i["runner"]["glibc"].as_str().unwrap().starts_with("2."),
            "{i}"
        );
        assert_eq!(i["volumes"].as_array().unwrap().len(), 0);
        let verdict = i["completeness"].as_str().unwrap();
        assert!(verdict.starts_with("complete: "), "{verdict}");
    }
    let text = ok(d, &["inspect", "b"]).stdout;
    for want in [
        "OWN keyring",
        "spdb2",
        "db-replica",
        "main ",
        "devel ",
        "complete: apt can install every role's packages",
        "GLIBC_2.",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    // Nothing is shown of a bundle that does not verify.
    let seed = d.join("b/seeds/spdb1.iso");
    let mut bytes = fs::read(&seed).unwrap();
    bytes[100] ^= 1;
    fs::write(&seed, bytes).unwrap();
    let r = run(d, &["inspect", "b"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("MODIFIED") && r.stdout.contains("NOT VERIFIED"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("spacevdi, 5 hosts"), "{}", r.stdout);
}

#[test]
fn inspect_lists_the_volumes_of_a_bundle_in_volumes() {
    let dir = site("/bin/true", &["--out", "v", "--volume-size", "512K"]);
    let d = dir.path();
    let i = json(&ok(
        d,
        &[
            "inspect",
            "v",
            "--keyring",
            "keys/archive-keyring.gpg",
            "--json",
        ],
    ));
    assert_eq!(i["form"], "volumes");
    let volumes = i["volumes"].as_array().unwrap();
    assert!(volumes.len() >= 2, "{i}");
    assert_eq!(volumes[0]["name"], "01");
    assert_eq!(i["packages"], 4, "{i}");
    assert_eq!(i["hosts"].as_array().unwrap().len(), 5);
    // One volume alone holds only its share: refused, saying what to give.
    let r = run(d, &["inspect", "v/volumes/01"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("one volume"), "{}", r.stderr);
    // One volume missing: not inspected.
    fs::remove_dir_all(d.join("v/volumes/02")).unwrap();
    let r = run(d, &["inspect", "v"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("MISSING"), "{}", r.stdout);
}

/// The site moves on as in the delta tests (on the main disc
/// airlock-demo-base upgraded, one package added and one removed, the VRRP
/// router id changed), and more: on the devel disc airlock-demo-devtools
/// downgraded, and the DB password changed.
fn make_successor(d: &Path) {
    crate::delta::make_successor(d);
    let devel = d.join("d/media/devel");
    fs::remove_dir_all(devel.join("pool/main/a/airlock-demo-devtools")).unwrap();
    make_deb(&devel, &Pkg::new("airlock-demo-devtools", "1.0~rc1-1"));
    index_disc(&devel, &["main", "contrib"]);
    let secrets = d.join("d/recipe.secrets.toml");
    let text = fs::read_to_string(&secrets).unwrap();
    let old = text
        .lines()
        .find(|l| l.starts_with("db_password = "))
        .unwrap();
    fs::write(
        &secrets,
        text.replace(old, "db_password = \"n3w-S3cret-pw\""),
    )
    .unwrap();
}

#[test]
fn diff_names_each_package_change_with_its_disc_and_masks_the_secrets() {
    let dir = site("/bin/true", &["--out", "v1"]);
    let d = dir.path();
    let secrets = fs::read_to_string(d.join("d/recipe.secrets.toml")).unwrap();
    let old_password = secrets
        .lines()
        .find_map(|l| l.strip_prefix("db_password = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    make_successor(d);
    build(d, RUNNER, &["--out", "v2", "--tar", "v2.tar"]);
    let args = [
        "diff",
        "v1",
        "v2.tar",
        "--keyring",
        "keys/archive-keyring.gpg",
    ];
    let text = ok(d, &args).stdout;
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let j = json(&ok(d, &with_json));
    let p = &j["packages"];
    let names = |list: &serde_json::Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&p["added"]), ["airlock-demo-extra"], "{p}");
    assert_eq!(names(&p["removed"]), ["airlock-demo-doc"], "{p}");
    assert_eq!(names(&p["upgraded"]), ["airlock-demo-base"], "{p}");
    assert_eq!(names(&p["downgraded"]), ["airlock-demo-devtools"], "{p}");
    assert_eq!(p["upgraded"][0]["old_version"], "1.0-1");
    assert_eq!(p["upgraded"][0]["new_version"], "1.1-1");
    assert_eq!(p["upgraded"][0]["new_disc"], "main");
    assert_eq!(p["downgraded"][0]["new_version"], "1.0~rc1-1");
    assert_eq!(p["downgraded"][0]["new_disc"], "devel");
    assert_eq!(p["added"][0]["disc"], "main");
    // Which bundles these are: the sha256 of each SHA256SUMS, also of the tar.
    for (side, dir) in [("old", "v1"), ("new", "v2")] {
        let sums = fs::read(d.join(dir).join("SHA256SUMS")).unwrap();
        let want = airlock::shared::volumes::sha256(&sums);
        assert_eq!(j[side]["manifest_sha256"], want.as_str(), "{side}");
        assert!(text.contains(&want), "{want}:\n{text}");
    }
    assert_eq!(j["runner"]["changed"], true);
    assert_eq!(j["runner"]["new_version"], env!("CARGO_PKG_VERSION"));
    assert!(j["runner"]["old_version"].is_null());
    for want in [
        "upgraded    airlock-demo-base amd64: 1.0-1 -> 1.1-1  (disc main -> main)",
        "DOWNGRADED  airlock-demo-devtools amd64: 1.0-1 -> 1.0~rc1-1  (disc devel -> devel)",
        "added       airlock-demo-extra 1.0-1 amd64  (disc main)",
        "removed     airlock-demo-doc 1.0-1 all  (disc main)",
        "virtual_router_id = 51",
        "virtual_router_id = 52",
        "changed payloads/spdb1/rootfs/etc/airlock/db-password (secret: contents not shown)",
        "[secret masked]",
        "changed recipe.toml",
        "changed README.txt\n",
        "(version not recorded) -> 0.1.0",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    // No secret, old or new, in either form.
    let all = format!("{text}{}", serde_json::to_string(&j).unwrap());
    for secret in [old_password.as_str(), "n3w-S3cret-pw", "PRIVATE KEY"] {
        assert!(!all.contains(secret), "{secret} shown:\n{text}");
    }
    // The same bundle twice: identical.
    let same = ok(d, &["diff", "v2", "v2.tar"]).stdout;
    assert!(same.contains("identical"), "{same}");
}

#[test]
fn diff_refuses_a_bundle_that_does_not_verify_and_a_delta() {
    let dir = site("/bin/true", &["--out", "v1"]);
    let d = dir.path();
    build(d, "/bin/true", &["--out", "delta", "--base", "v1"]);
    let r = run(d, &["diff", "v1", "delta"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("airlock apply"), "{}", r.stderr);
    fs::write(d.join("v1/recipe.toml"), "changed").unwrap();
    let r = run(d, &["diff", "v1", "v1"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("recipe.toml") && r.stdout.contains("NOT VERIFIED"),
        "{}",
        r.stdout
    );
}

/// A bundle built with `--allow-incomplete` is named incomplete by inspect,
/// with the role and the package apt could not find.
#[test]
fn inspect_names_what_an_incomplete_bundle_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo_site(d);
    let recipe = d.join("d/recipe.toml");
    let text = fs::read_to_string(&recipe).unwrap().replace(
        "manager = [\"airlock-demo-base\"]",
        "manager = [\"airlock-demo-base\", \"no-such-tool\"]",
    );
    assert!(text.contains("no-such-tool"));
    fs::write(&recipe, text).unwrap();
    build(d, RUNNER, &["--out", "b", "--allow-incomplete"]);
    let i = json(&ok(d, &["inspect", "b", "--json"]));
    let verdict = i["completeness"].as_str().unwrap();
    assert!(verdict.starts_with("INCOMPLETE: manager: "), "{verdict}");
    assert!(verdict.contains("no-such-tool"), "{verdict}");
}

#[test]
fn a_short_tar_whose_manifest_claims_gigabytes_is_truncated_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    // airlock's own header for an entry of 8 GiB, with 2,000 bytes of it.
    use airlock::shared::tarform::{MAX_SIZE, TarWriter};
    let mut w = TarWriter::new(Vec::new(), 0);
    assert!(
        w.file("SHA256SUMS", 0o644, MAX_SIZE, &[b'x'; 2000][..])
            .is_err()
    );
    let bytes = w.finish().unwrap();
    fs::write(dir.path().join("evil.tar"), bytes).unwrap();
    // Under a 3 GB address-space limit, as on a small VM: an allocation
    // sized by the header would abort (exit 134).
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 3000000; exec \"$0\" inspect evil.tar")
        .arg(crate::common::airlock_bin())
        .current_dir(dir.path())
        .output()
        .unwrap();
    let r = Run::from_output(out);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("evil.tar") && r.stderr.contains("truncated"),
        "{}",
        r.stderr
    );
}
