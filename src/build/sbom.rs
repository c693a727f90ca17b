//! `sbom.cdx.json`: the bundle's software bill of materials, CycloneDX 1.6
//! JSON. Every `.deb` of the repository is a component (purl
//! `pkg:deb/astra/NAME@VERSION?arch=ARCH`, SHA-256, the disc it came from as
//! the property `airlock:disc`), and so are the two airlock programs with
//! their crate dependencies, read from the `Cargo.lock` airlock was built
//! from (compiled in with `include_str!`).
//!
//! Rendering is pure and reproducible: the same packages, runner, lock and
//! build time give the same bytes. The serial number is derived from the
//! rest of the document, and the timestamp is the build's fixed time.
//!
//! The structs below are the part of the CycloneDX schema airlock writes;
//! `tests/sbom.rs` validates the output against the official schema.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::build::repo::{Deb, Hashing};
use crate::shared::timefmt;

/// The SBOM's path in a bundle (listed in `SHA256SUMS`, so it is signed).
pub const SBOM_FILE: &str = "sbom.cdx.json";

/// The property naming the disc a package was taken from.
pub const DISC_PROPERTY: &str = "airlock:disc";

/// The lock file airlock was built from: the crates both programs are made
/// of. `include_str!` rather than a build script: the lock is already a
/// file of the package, cargo rebuilds when it changes, and it is parsed
/// only when a bundle is built.
const CARGO_LOCK: &str = include_str!("../../Cargo.lock");
/// The manifest, for which crates are dev-only and which only the builder
/// (`airlock`, the `builder` feature) uses.
const CARGO_TOML: &str = include_str!("../../Cargo.toml");

/// What the SBOM describes besides the packages.
pub struct Inputs<'a> {
    pub cluster: &'a str,
    /// The source discs in merge order: (role, file name).
    pub discs: &'a [(String, String)],
    pub debs: &'a [Deb],
    /// The SHA-256 of the shipped `bin/airlock-firstboot`.
    pub runner_sha256: &'a str,
    pub time: i64,
}

/// A CycloneDX BOM, as much of it as airlock writes and reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bom {
    pub bom_format: String,
    pub spec_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    pub version: u32,
    pub metadata: Metadata,
    #[serde(default)]
    pub components: Vec<Component>,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub timestamp: String,
    pub tools: Tools,
    pub component: Component,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tools {
    pub components: Vec<Component>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "bom-ref", default, skip_serializing_if = "Option::is_none")]
    pub bom_ref: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hash {
    pub alg: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Property {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    #[serde(rename = "ref")]
    pub reference: String,
    pub depends_on: Vec<String>,
}

impl Component {
    /// The value of property `name`, if it has it.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// Its SHA-256, if it lists one.
    pub fn sha256(&self) -> Option<&str> {
        self.hashes
            .iter()
            .find(|h| h.alg == "SHA-256")
            .map(|h| h.content.as_str())
    }
}

fn property(name: &str, value: impl Into<String>) -> Property {
    Property {
        name: name.into(),
        value: value.into(),
    }
}

fn sha256(hex: &str) -> Vec<Hash> {
    vec![Hash {
        alg: "SHA-256".into(),
        content: hex.into(),
    }]
}

/// The purl of a package of the repository (`pkg:deb/astra/…`). Debian
/// version characters outside the URI's unreserved set (`:` of an epoch,
/// `+`) are percent-encoded; `~` is unreserved and stays.
pub fn deb_purl(name: &str, version: &str, arch: &str) -> String {
    let mut v = String::new();
    for c in version.chars() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '-' | '_' | '~' => v.push(c),
            _ => v.push_str(&format!("%{:02X}", c as u32)),
        }
    }
    format!("pkg:deb/astra/{name}@{v}?arch={arch}")
}

fn deb_component(d: &Deb) -> Component {
    Component {
        kind: "library".into(),
        bom_ref: Some(format!("deb:{}_{}_{}", d.name, d.version, d.arch)),
        name: d.name.clone(),
        version: Some(d.version.clone()),
        purl: Some(deb_purl(&d.name, &d.version, &d.arch)),
        hashes: sha256(&d.sha256),
        properties: vec![
            property(DISC_PROPERTY, d.disc.clone()),
            property("airlock:architecture", d.arch.clone()),
            property("airlock:filename", format!("repo/{}", d.filename)),
            property("airlock:size", d.size.to_string()),
        ],
    }
}

/// The SBOM of a bundle, rendered: pretty JSON with a final newline.
pub fn render(inputs: &Inputs<'_>) -> Result<String> {
    let crates = Crates::from_lock(CARGO_LOCK, CARGO_TOML)?;
    let version = env!("CARGO_PKG_VERSION");
    let mut components: Vec<Component> = inputs.debs.iter().map(deb_component).collect();
    components.push(program("airlock", version, None));
    components.push(program(
        "airlock-firstboot",
        version,
        Some(inputs.runner_sha256),
    ));
    components.extend(crates.components());
    let mut properties = vec![property("airlock:cluster", inputs.cluster)];
    for (role, file) in inputs.discs {
        properties.push(property(&format!("{DISC_PROPERTY}:{role}"), file.clone()));
    }
    let mut bom = Bom {
        bom_format: "CycloneDX".into(),
        spec_version: "1.6".into(),
        serial_number: None,
        version: 1,
        metadata: Metadata {
            timestamp: timefmt::rfc3339_utc(inputs.time),
            tools: Tools {
                components: vec![Component {
                    bom_ref: None,
                    ..program("airlock", version, None)
                }],
            },
            component: Component {
                kind: "application".into(),
                bom_ref: Some("bundle".into()),
                name: format!("airlock bundle of cluster {}", inputs.cluster),
                version: None,
                purl: None,
                hashes: Vec::new(),
                properties: Vec::new(),
            },
            properties,
        },
        components,
        dependencies: crates.dependencies(inputs.debs),
    };
    // The serial is of the compact text, hashed as it is rendered: the
    // document is held once (it grows with the pool).
    let mut unnumbered = Hashing::new(std::io::sink());
    serde_json::to_writer(&mut unnumbered, &bom).context("rendering the SBOM")?;
    bom.serial_number = Some(serial_from(&unnumbered.finish().2));
    let mut text = serde_json::to_string_pretty(&bom).context("rendering the SBOM")?;
    text.push('\n');
    Ok(text)
}

/// A serial number derived from the content's SHA-256 (RFC 9562 version
/// 8, the variant bits set), so that the same bundle gets the same one.
fn serial_from(digest: &[u8]) -> String {
    let mut b: [u8; 16] = digest[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::shared::hex(&b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn program(name: &str, version: &str, sha: Option<&str>) -> Component {
    Component {
        kind: "application".into(),
        bom_ref: Some(name.into()),
        name: name.into(),
        version: Some(version.into()),
        purl: Some(format!("pkg:cargo/{name}@{version}")),
        hashes: sha.map(sha256).unwrap_or_default(),
        properties: Vec::new(),
    }
}

/// A crate of the lock: (name, version).
type CrateId = (String, String);

/// The crates of `Cargo.lock` that the two programs are made of.
struct Crates {
    /// (name, version) → (checksum, dependencies).
    packages: BTreeMap<CrateId, (Option<String>, Vec<CrateId>)>,
    /// The direct dependencies of `airlock` and of `airlock-firstboot`.
    builder: Vec<(String, String)>,
    runner: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct Lock {
    package: Vec<LockPackage>,
}

#[derive(Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    checksum: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

impl Crates {
    /// Reads the lock. Dev-only dependencies (in `[dev-dependencies]` and
    /// not in `[dependencies]`) are left out; the runner is built without
    /// the `builder` feature, so its optional dependencies are the
    /// builder's only. The lock does not say which crates are for other
    /// platforms: a Windows-only crate of the graph is listed too (an upper
    /// bound, never less than what is linked).
    fn from_lock(lock: &str, manifest: &str) -> Result<Crates> {
        let lock: Lock = toml::from_str(lock).context("reading the embedded Cargo.lock")?;
        let manifest: toml::Table =
            toml::from_str(manifest).context("reading the embedded Cargo.toml")?;
        let table_keys = |name: &str| -> BTreeSet<String> {
            manifest
                .get(name)
                .and_then(|t| t.as_table())
                .map(|t| t.keys().cloned().collect())
                .unwrap_or_default()
        };
        let normal = table_keys("dependencies");
        let builder_only: BTreeSet<String> = manifest
            .get("features")
            .and_then(|f| f.get("builder"))
            .and_then(|b| b.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str()?.strip_prefix("dep:").map(String::from))
            .collect();
        let versions: BTreeMap<&str, Vec<&str>> =
            lock.package.iter().fold(BTreeMap::new(), |mut m, p| {
                m.entry(p.name.as_str()).or_default().push(&p.version);
                m
            });
        let resolve = |dep: &str| -> (String, String) {
            let mut parts = dep.split(' ');
            let name = parts.next().unwrap_or_default().to_string();
            let version = match parts.next() {
                Some(v) => v.to_string(),
                None => versions
                    .get(name.as_str())
                    .and_then(|v| v.first())
                    .map_or_else(String::new, |v| v.to_string()),
            };
            (name, version)
        };
        let mut packages = BTreeMap::new();
        let mut root = Vec::new();
        for p in &lock.package {
            let deps: Vec<(String, String)> = p.dependencies.iter().map(|d| resolve(d)).collect();
            if p.name == "airlock" && p.checksum.is_none() {
                root = deps
                    .into_iter()
                    .filter(|(n, _)| normal.contains(n))
                    .collect();
                continue;
            }
            packages.insert(
                (p.name.clone(), p.version.clone()),
                (p.checksum.clone(), deps),
            );
        }
        let runner = root
            .iter()
            .filter(|(n, _)| !builder_only.contains(n))
            .cloned()
            .collect();
        Ok(Crates {
            packages,
            builder: root,
            runner,
        })
    }

    /// Every crate reachable from either program's direct dependencies.
    fn reachable(&self) -> BTreeSet<(String, String)> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<(String, String)> = self.builder.clone();
        while let Some(c) = todo.pop() {
            if let Some((_, deps)) = self.packages.get(&c)
                && seen.insert(c)
            {
                todo.extend(deps.iter().cloned());
            }
        }
        seen
    }

    fn components(&self) -> Vec<Component> {
        self.reachable()
            .into_iter()
            .map(|(name, version)| {
                let checksum = &self.packages[&(name.clone(), version.clone())].0;
                Component {
                    kind: "library".into(),
                    bom_ref: Some(crate_ref(&name, &version)),
                    purl: Some(format!("pkg:cargo/{name}@{version}")),
                    hashes: checksum.as_deref().map(sha256).unwrap_or_default(),
                    name,
                    version: Some(version),
                    properties: Vec::new(),
                }
            })
            .collect()
    }

    /// The dependency graph: the bundle holds every package and both
    /// programs; each program depends on its direct crates, each crate on
    /// its own.
    fn dependencies(&self, debs: &[Deb]) -> Vec<Dependency> {
        let refs = |list: &[(String, String)]| -> Vec<String> {
            list.iter().map(|(n, v)| crate_ref(n, v)).collect()
        };
        let mut bundle: Vec<String> = debs
            .iter()
            .map(|d| format!("deb:{}_{}_{}", d.name, d.version, d.arch))
            .collect();
        bundle.push("airlock".into());
        bundle.push("airlock-firstboot".into());
        let mut out = vec![
            Dependency {
                reference: "bundle".into(),
                depends_on: bundle,
            },
            Dependency {
                reference: "airlock".into(),
                depends_on: refs(&self.builder),
            },
            Dependency {
                reference: "airlock-firstboot".into(),
                depends_on: refs(&self.runner),
            },
        ];
        for c in self.reachable() {
            let deps = &self.packages[&c].1;
            out.push(Dependency {
                reference: crate_ref(&c.0, &c.1),
                depends_on: refs(deps),
            });
        }
        out
    }
}

fn crate_ref(name: &str, version: &str) -> String {
    format!("crate:{name}@{version}")
}

/// Reads an SBOM written by [`render`].
pub fn parse(text: &str) -> Result<Bom> {
    serde_json::from_str(text)
        .with_context(|| format!("reading {SBOM_FILE}: not a CycloneDX BOM airlock reads"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deb(name: &str, version: &str) -> Deb {
        Deb {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            filename: format!("pool/main/{name}_{version}_amd64.deb"),
            size: 1000,
            sha256: "ab".repeat(32),
            disc: "main".into(),
        }
    }

    fn render_two() -> String {
        let debs = [
            deb("keepalived", "1:2.0.10-1"),
            deb("libc6", "2.28-10+deb10u1"),
        ];
        render(&Inputs {
            cluster: "c",
            discs: &[("main".into(), "main.iso".into())],
            debs: &debs,
            runner_sha256: &"cd".repeat(32),
            time: 1_795_680_000,
        })
        .unwrap()
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        assert_eq!(render_two(), render_two());
        let bom = parse(&render_two()).unwrap();
        assert_eq!(bom.metadata.timestamp, "2026-11-26T08:00:00Z");
        assert!(bom.serial_number.unwrap().starts_with("urn:uuid:"));
    }

    #[test]
    fn purls_encode_epochs_and_pluses() {
        assert_eq!(
            deb_purl("libc6", "1:2.28-10+deb10u1~bpo", "amd64"),
            "pkg:deb/astra/libc6@1%3A2.28-10%2Bdeb10u1~bpo?arch=amd64"
        );
    }

    #[test]
    fn the_runner_leaves_out_the_builders_crates_and_dev_crates() {
        let c = Crates::from_lock(CARGO_LOCK, CARGO_TOML).unwrap();
        let names = |l: &[(String, String)]| l.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
        let (b, r) = (names(&c.builder), names(&c.runner));
        assert!(b.contains(&"ssh-key".to_string()) && !r.contains(&"ssh-key".to_string()));
        assert!(r.contains(&"pgp".to_string()));
        assert!(!b.contains(&"tempfile".to_string()), "{b:?}");
        assert!(c.reachable().iter().any(|(n, _)| n == "sha2"));
    }
}
