//! `sbom.cdx.json`: every bundle carries a CycloneDX 1.6 SBOM, signed
//! through SHA256SUMS, valid against the official schema (checked into
//! tests/fixtures/cyclonedx/, validated by python3-jsonschema, which
//! scripts/test-all installs), listing every package of the repository
//! with the bytes the bundle holds.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::{airlock, repo_dir};

/// Runs the official schema over `bom`: (exit code, what it said).
fn validate(bom: &Path) -> (i32, String) {
    let fixtures = repo_dir().join("tests/fixtures/cyclonedx");
    // Debian's python3, where python3-jsonschema is installed: a `python3`
    // earlier on PATH (pyenv, a venv) would not see it.
    let out = Command::new("/usr/bin/python3")
        .arg(fixtures.join("validate.py"))
        .arg(&fixtures)
        .arg(bom)
        .output()
        .expect("running /usr/bin/python3 (scripts/test-all installs python3-jsonschema)");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), said)
}

#[test]
fn the_demo_sbom_is_valid_cyclonedx_and_lists_every_package() {
    let dir = tempfile::tempdir().unwrap();
    let run = airlock(dir.path(), &["demo", "--out", "d"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bundle = dir.path().join("d/bundle");
    let sbom = bundle.join("sbom.cdx.json");
    let (code, said) = validate(&sbom);
    assert_eq!(code, 0, "the SBOM does not validate:\n{said}");

    // Signed: listed in SHA256SUMS, and verify accepts the bundle.
    let sums = fs::read_to_string(bundle.join("SHA256SUMS")).unwrap();
    let listed: BTreeMap<&str, &str> = sums
        .lines()
        .map(|l| {
            let (h, p) = l.split_once("  ").unwrap();
            (p, h)
        })
        .collect();
    assert!(listed.contains_key("sbom.cdx.json"));

    // Every .deb of the pool, with its hash, purl and disc.
    let bom: serde_json::Value = serde_json::from_slice(&fs::read(&sbom).unwrap()).unwrap();
    let components = bom["components"].as_array().unwrap();
    let debs: Vec<_> = listed
        .iter()
        .filter(|(p, _)| p.starts_with("repo/pool/") && p.ends_with(".deb"))
        .collect();
    assert!(debs.len() >= 4, "{debs:?}");
    for (path, hash) in debs {
        let c = components
            .iter()
            .find(|c| c["hashes"][0]["content"] == **hash)
            .unwrap_or_else(|| panic!("{path} is not in the SBOM"));
        let purl = c["purl"].as_str().unwrap();
        let name = c["name"].as_str().unwrap();
        assert!(
            purl.starts_with(&format!("pkg:deb/astra/{name}@")),
            "{purl}"
        );
        assert!(
            purl.ends_with("?arch=amd64") || purl.ends_with("?arch=all"),
            "{purl}"
        );
        let props = c["properties"].as_array().unwrap();
        let disc = props.iter().find(|p| p["name"] == "airlock:disc").unwrap();
        assert!(disc["value"] == "main" || disc["value"] == "devel", "{c}");
        assert!(props.iter().any(|p| p["value"] == **path), "{c}");
    }
    // Both programs, the runner with the hash of the one shipped, and
    // their crates.
    let runner = components
        .iter()
        .find(|c| c["bom-ref"] == "airlock-firstboot")
        .unwrap();
    assert_eq!(
        runner["hashes"][0]["content"],
        listed["bin/airlock-firstboot"]
    );
    assert!(components.iter().any(|c| c["bom-ref"] == "airlock"));
    assert!(
        components
            .iter()
            .any(|c| c["purl"].as_str().unwrap().starts_with("pkg:cargo/pgp@"))
    );
    assert_eq!(bom["metadata"]["timestamp"], "2026-01-01T00:00:00Z");
}

#[test]
fn an_invalid_sbom_fails_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    let bad = dir.path().join("bad.json");
    fs::write(
        &good,
        r#"{"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
            "components": [{"type": "library", "name": "x", "hashes": [{"alg": "SHA-256", "content": "0000000000000000000000000000000000000000000000000000000000000000"}]}]}"#,
    )
    .unwrap();
    // A hash algorithm the schema does not know, and a key it does not allow.
    fs::write(
        &bad,
        r#"{"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "serial": 1,
            "components": [{"type": "library", "name": "x", "hashes": [{"alg": "SHA-257", "content": "0000000000000000000000000000000000000000000000000000000000000000"}]}]}"#,
    )
    .unwrap();
    assert_eq!(validate(&good).0, 0, "{}", validate(&good).1);
    let (code, said) = validate(&bad);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("SHA-257") && said.contains("serial"),
        "{said}"
    );
}
