//! `airlock diff OLD NEW`: what a new bundle changes against the one the
//! site has, for the person who signs the transfer: packages added,
//! removed, upgraded and downgraded (Debian version order) with the disc
//! each came from; per host, each file of its payload that changes, line
//! by line, with every secret masked; the runner's version; and the other
//! files that differ.
//!
//! Both bundles are verified first ([`crate::build::inspect::open`]).
//! Packages are read from the repository's own `Packages` indexes (what
//! apt installs), their disc from `sbom.cdx.json` (by SHA-256; `?` for a
//! bundle built before SBOMs).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::build::inspect::{self, Opened};
use crate::build::repo::control;
use crate::build::repo::policy::compare_versions;
use crate::build::sbom;

/// What masks a secret in the diff's lines.
pub const MASK: &str = "[secret masked]";

/// The payload files that hold secrets (the DB password and private SSH
/// keys), relative to a host's `rootfs/`: their contents are never shown,
/// and any line of another file that holds one of their lines is masked.
pub const SECRET_FILES: [&str; 4] = [
    "etc/airlock/db-password",
    "etc/airlock/ssh/peer_client_key",
    "etc/airlock/ssh/token_client_key",
    "etc/ssh/ssh_host_ed25519_key",
];

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub old: Side,
    pub new: Side,
    pub packages: Packages,
    pub hosts: Vec<HostDiff>,
    pub runner: RunnerDiff,
    /// Every other file that is added, removed or changed (the repository's
    /// pool and indexes aside: the packages say what changed there).
    pub other_files: Vec<FileChange>,
    /// Nothing differs at all (the same SHA256SUMS).
    pub identical: bool,
}

/// One of the two bundles.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub bundle: String,
    pub cluster: String,
    /// The sha256 of its SHA256SUMS: which bundle this is.
    pub manifest_sha256: String,
    pub signers: Vec<inspect::Signer>,
    pub own_keyring: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Packages {
    pub added: Vec<Package>,
    pub removed: Vec<Package>,
    pub upgraded: Vec<Change>,
    pub downgraded: Vec<Change>,
    /// Same name, version and architecture, other bytes.
    pub rebuilt: Vec<Change>,
    pub unchanged: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The disc it came from (`main`, `devel`, `update1`…), `?` unknown.
    pub disc: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub name: String,
    pub arch: String,
    pub old_version: String,
    pub new_version: String,
    pub old_disc: String,
    pub new_disc: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostDiff {
    pub name: String,
    /// `added`, `removed`, `changed` or `unchanged`.
    pub status: String,
    pub files: Vec<FileChange>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub change: String,
    /// A secret file: its contents are not shown.
    pub secret: bool,
    /// The lines removed (`-`) and added (`+`), secrets masked; empty for
    /// a secret or binary file.
    pub lines: Vec<String>,
    /// Why no lines are shown, when none are.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunnerDiff {
    pub old_version: Option<String>,
    pub new_version: Option<String>,
    pub old_sha256: String,
    pub new_sha256: String,
    pub changed: bool,
}

/// The files `diff` reads of each bundle.
pub fn diff_wants(p: &str) -> bool {
    inspect::inspect_wants(p)
        || p.starts_with("payloads/")
        || ["recipe.toml", "README.txt"].contains(&p)
        || (p.starts_with("vendor/") && p.ends_with(".sh"))
        || (p.starts_with("repo/dists/") && p.ends_with("/Packages"))
}

/// Compares two verified bundles.
pub fn diff(old: &Opened, new: &Opened) -> Result<Diff> {
    let (old_pkgs, new_pkgs) = (packages_of(old)?, packages_of(new)?);
    let secrets: BTreeSet<String> = secret_lines(old)
        .into_iter()
        .chain(secret_lines(new))
        .collect();
    let runner = RunnerDiff {
        old_version: old.runner.as_ref().and_then(|r| r.version.clone()),
        new_version: new.runner.as_ref().and_then(|r| r.version.clone()),
        old_sha256: old
            .sums
            .get(crate::shared::manifest::RUNNER)
            .cloned()
            .unwrap_or_default(),
        new_sha256: new
            .sums
            .get(crate::shared::manifest::RUNNER)
            .cloned()
            .unwrap_or_default(),
        changed: old.sums.get(crate::shared::manifest::RUNNER)
            != new.sums.get(crate::shared::manifest::RUNNER),
    };
    Ok(Diff {
        old: side(old)?,
        new: side(new)?,
        packages: compare_packages(&old_pkgs, &new_pkgs),
        hosts: host_diffs(old, new, &secrets),
        runner,
        other_files: other_files(old, new, &secrets),
        identical: old.sums == new.sums,
    })
}

fn side(b: &Opened) -> Result<Side> {
    let inventory =
        crate::shared::inventory::Inventory::parse(&b.text("inventory.toml").unwrap_or_default())
            .with_context(|| format!("reading inventory.toml of {}", b.path.display()))?;
    let sums = b.files.get(crate::shared::manifest::SUMS);
    Ok(Side {
        bundle: b.path.display().to_string(),
        cluster: inventory.cluster,
        manifest_sha256: sums
            .map(|s| crate::shared::volumes::sha256(s))
            .or_else(|| b.table.as_ref().map(|t| t.whole.clone()))
            .unwrap_or_default(),
        signers: inspect::signers(b, None),
        own_keyring: b.report.own_keyring,
    })
}

/// The packages of a bundle's repository, by (name, architecture), each
/// with every version it holds.
fn packages_of(b: &Opened) -> Result<BTreeMap<(String, String), Vec<Package>>> {
    let discs: BTreeMap<String, String> = match b.sbom()? {
        Some(bom) => bom
            .components
            .iter()
            .filter_map(|c| {
                Some((
                    c.sha256()?.to_string(),
                    c.property(sbom::DISC_PROPERTY)?.to_string(),
                ))
            })
            .collect(),
        None => BTreeMap::new(),
    };
    let mut seen = BTreeSet::new();
    let mut out: BTreeMap<(String, String), Vec<Package>> = BTreeMap::new();
    for (path, bytes) in b.files.iter().filter(|(p, _)| p.starts_with("repo/dists/")) {
        let text = String::from_utf8_lossy(bytes);
        let paragraphs = control::parse_all(&text)
            .map_err(|e| anyhow::anyhow!("{}: {path}: {e}", b.path.display()))?;
        for p in paragraphs {
            let field = |f: &str| p.get(f).unwrap_or_default().trim().to_string();
            let pkg = Package {
                name: field("Package"),
                version: field("Version"),
                arch: field("Architecture"),
                sha256: field("SHA256"),
                disc: String::new(),
            };
            if !seen.insert((pkg.name.clone(), pkg.version.clone(), pkg.arch.clone())) {
                continue;
            }
            let disc = discs
                .get(&pkg.sha256)
                .cloned()
                .unwrap_or_else(|| "?".into());
            out.entry((pkg.name.clone(), pkg.arch.clone()))
                .or_default()
                .push(Package { disc, ..pkg });
        }
    }
    for versions in out.values_mut() {
        versions.sort_by(|a, b| compare_versions(&a.version, &b.version));
    }
    Ok(out)
}

/// Added, removed, upgraded, downgraded: a name and architecture on one
/// side only is added or removed; on both, the newest versions compared.
/// Other versions kept beside the newest are added or removed as they are.
fn compare_packages(
    old: &BTreeMap<(String, String), Vec<Package>>,
    new: &BTreeMap<(String, String), Vec<Package>>,
) -> Packages {
    let mut out = Packages::default();
    let keys: BTreeSet<&(String, String)> = old.keys().chain(new.keys()).collect();
    for k in keys {
        let (o, n) = (
            old.get(k).map(Vec::as_slice).unwrap_or_default(),
            new.get(k).map(Vec::as_slice).unwrap_or_default(),
        );
        let (Some(on), Some(nn)) = (o.last(), n.last()) else {
            out.added.extend(n.iter().cloned());
            out.removed.extend(o.iter().cloned());
            continue;
        };
        let change = Change {
            name: k.0.clone(),
            arch: k.1.clone(),
            old_version: on.version.clone(),
            new_version: nn.version.clone(),
            old_disc: on.disc.clone(),
            new_disc: nn.disc.clone(),
        };
        match compare_versions(&on.version, &nn.version) {
            std::cmp::Ordering::Less => out.upgraded.push(change),
            std::cmp::Ordering::Greater => out.downgraded.push(change),
            std::cmp::Ordering::Equal if on.sha256 != nn.sha256 => out.rebuilt.push(change),
            std::cmp::Ordering::Equal => out.unchanged += 1,
        }
        let (o_rest, n_rest) = (&o[..o.len() - 1], &n[..n.len() - 1]);
        let has = |list: &[Package], p: &Package| list.iter().any(|q| q.version == p.version);
        out.added
            .extend(n_rest.iter().filter(|p| !has(o, p)).cloned());
        out.removed
            .extend(o_rest.iter().filter(|p| !has(n, p)).cloned());
    }
    out
}

/// Every non-empty line of every secret file of every host, trimmed: a
/// line of any file shown that holds one is masked.
fn secret_lines(b: &Opened) -> Vec<String> {
    b.files
        .iter()
        .filter(|(p, _)| is_secret(p))
        .flat_map(|(_, bytes)| {
            String::from_utf8_lossy(bytes)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A payload's secret file (`payloads/HOST/rootfs/…`).
fn is_secret(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("payloads/") else {
        return false;
    };
    rest.split_once("/rootfs/")
        .is_some_and(|(_, f)| SECRET_FILES.contains(&f))
}

fn host_diffs(old: &Opened, new: &Opened, secrets: &BTreeSet<String>) -> Vec<HostDiff> {
    let hosts = |b: &Opened| -> BTreeSet<String> {
        b.sums
            .keys()
            .filter_map(|p| {
                p.strip_prefix("payloads/")?
                    .split_once('/')
                    .map(|(h, _)| h.to_string())
            })
            .collect()
    };
    let (oh, nh) = (hosts(old), hosts(new));
    oh.union(&nh)
        .map(|h| {
            let prefix = format!("payloads/{h}/");
            let seed = format!("seeds/{h}.iso");
            let files = changed_files(old, new, secrets, &|p| p.starts_with(&prefix) || p == seed);
            let status = match (oh.contains(h), nh.contains(h)) {
                (true, false) => "removed",
                (false, true) => "added",
                _ if files.is_empty() => "unchanged",
                _ => "changed",
            };
            HostDiff {
                name: h.clone(),
                status: status.into(),
                files,
            }
        })
        .collect()
}

/// Every other file that differs, outside the payloads, seeds and the
/// repository (whose packages are compared as packages).
fn other_files(old: &Opened, new: &Opened, secrets: &BTreeSet<String>) -> Vec<FileChange> {
    changed_files(old, new, secrets, &|p| {
        !p.starts_with("payloads/") && !p.starts_with("seeds/") && !p.starts_with("repo/")
    })
}

/// The files `select` picks that are added, removed or changed, with
/// their changed lines when both sides were read as text.
fn changed_files(
    old: &Opened,
    new: &Opened,
    secrets: &BTreeSet<String>,
    select: &dyn Fn(&str) -> bool,
) -> Vec<FileChange> {
    let paths: BTreeSet<&String> = old
        .sums
        .keys()
        .chain(new.sums.keys())
        .filter(|p| select(p))
        .collect();
    let mut out = Vec::new();
    for p in paths {
        let (o, n) = (old.sums.get(p), new.sums.get(p));
        if o == n {
            continue;
        }
        let change = match (o, n) {
            (None, _) => "added",
            (_, None) => "removed",
            _ => "changed",
        };
        let secret = is_secret(p);
        let (lines, note) = if secret {
            (Vec::new(), Some("secret: contents not shown"))
        } else if p.starts_with("seeds/") {
            (
                Vec::new(),
                Some("seed image: it holds the payload files above"),
            )
        } else if p == sbom::SBOM_FILE {
            (
                Vec::new(),
                Some("the SBOM: PACKAGES above says what changed"),
            )
        } else {
            let text = |b: &Opened| {
                b.files
                    .get(p.as_str())
                    .and_then(|t| std::str::from_utf8(t).ok().map(String::from))
            };
            match (text(old), text(new)) {
                (a, b) if a.is_some() || b.is_some() => {
                    let lines = line_diff(
                        a.as_deref().unwrap_or_default(),
                        b.as_deref().unwrap_or_default(),
                    );
                    (lines.into_iter().map(|l| mask(&l, secrets)).collect(), None)
                }
                _ => (
                    Vec::new(),
                    Some("not shown: binary, or not read; compare the sha256 in SHA256SUMS"),
                ),
            }
        };
        out.push(FileChange {
            path: p.clone(),
            change: change.into(),
            secret,
            lines,
            note: note.map(String::from),
        });
    }
    out
}

/// `line` with every secret it holds masked: the whole line goes.
fn mask(line: &str, secrets: &BTreeSet<String>) -> String {
    // "-   12  text": the sign and the line number stay.
    let cut = line.char_indices().nth(8).map_or(line.len(), |(i, _)| i);
    if secrets.iter().any(|s| line[cut..].contains(s.as_str())) {
        format!("{}{MASK}", &line[..cut])
    } else {
        line.to_string()
    }
}

/// The lines only in `a` (`-`, with their line number in `a`) and only in
/// `b` (`+`, numbered in `b`), in order, from a longest common
/// subsequence. Files too large for it are summed up.
pub fn line_diff(a: &str, b: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        return vec![format!(
            "~{} lines -> {} lines (too large to compare line by line)",
            a.len(),
            b.len()
        )];
    }
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("-{:>5}  {}", i + 1, a[i]));
            i += 1;
        } else {
            out.push(format!("+{:>5}  {}", j + 1, b[j]));
            j += 1;
        }
    }
    out
}

/// The diff for people: the document a security officer signs.
pub fn to_text(d: &Diff) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "airlock diff: what the transfer changes at the site\n");
    for (what, side) in [("OLD", &d.old), ("NEW", &d.new)] {
        let _ = writeln!(s, "{what}  {} (cluster {})", side.bundle, side.cluster);
        let _ = writeln!(s, "     SHA256SUMS sha256 {}", side.manifest_sha256);
        for g in &side.signers {
            let uid = g
                .user_id
                .as_deref()
                .map(|u| format!(" \"{u}\""))
                .unwrap_or_default();
            let _ = writeln!(s, "     signed by {}{uid}, {}", g.fingerprint, g.signed);
        }
        if side.own_keyring {
            let _ = writeln!(
                s,
                "     (checked with its OWN keyring: consistent, origin NOT proven; pass --keyring)"
            );
        }
    }
    if d.identical {
        let _ = writeln!(s, "\nThe two bundles are identical (the same SHA256SUMS).");
        return s;
    }
    packages_text(&mut s, &d.packages);
    hosts_text(&mut s, &d.hosts);
    let r = &d.runner;
    let v = |v: &Option<String>| v.clone().unwrap_or_else(|| "(version not recorded)".into());
    let _ = writeln!(s, "\nRUNNER (bin/airlock-firstboot)");
    if r.changed {
        let _ = writeln!(
            s,
            "  changed: {} -> {}",
            v(&r.old_version),
            v(&r.new_version)
        );
        let _ = writeln!(s, "  sha256 {} -> {}", r.old_sha256, r.new_sha256);
    } else {
        let _ = writeln!(
            s,
            "  unchanged: {}, sha256 {}",
            v(&r.new_version),
            r.new_sha256
        );
    }
    let _ = writeln!(s, "\nOTHER FILES");
    if d.other_files.is_empty() {
        let _ = writeln!(s, "  none changed");
    }
    for f in &d.other_files {
        file_text(&mut s, f, "  ");
    }
    s
}

fn packages_text(s: &mut String, p: &Packages) {
    let _ = writeln!(
        s,
        "\nPACKAGES: {} added, {} removed, {} upgraded, {} downgraded, {} rebuilt, {} unchanged",
        p.added.len(),
        p.removed.len(),
        p.upgraded.len(),
        p.downgraded.len(),
        p.rebuilt.len(),
        p.unchanged
    );
    for a in &p.added {
        let _ = writeln!(
            s,
            "  added       {} {} {}  (disc {})",
            a.name, a.version, a.arch, a.disc
        );
    }
    for r in &p.removed {
        let _ = writeln!(
            s,
            "  removed     {} {} {}  (disc {})",
            r.name, r.version, r.arch, r.disc
        );
    }
    for (what, list) in [
        ("upgraded", &p.upgraded),
        ("DOWNGRADED", &p.downgraded),
        ("rebuilt", &p.rebuilt),
    ] {
        for c in list {
            let _ = writeln!(
                s,
                "  {what:<11} {} {}: {} -> {}  (disc {} -> {})",
                c.name, c.arch, c.old_version, c.new_version, c.old_disc, c.new_disc
            );
        }
    }
}

fn hosts_text(s: &mut String, hosts: &[HostDiff]) {
    let _ = writeln!(s, "\nHOSTS (payloads and seeds; secrets masked)");
    for h in hosts {
        let _ = writeln!(s, "  {} {}", h.name, h.status);
        for f in &h.files {
            file_text(s, f, "    ");
        }
    }
}

fn file_text(s: &mut String, f: &FileChange, indent: &str) {
    let note = f
        .note
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let _ = writeln!(s, "{indent}{} {}{note}", f.change, f.path);
    for l in &f.lines {
        let _ = writeln!(s, "{indent}  | {l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diff_shows_what_went_and_what_came() {
        assert_eq!(
            line_diff("a\nb\nc\n", "a\nx\nc\nd\n"),
            ["-    2  b", "+    2  x", "+    4  d"]
        );
        assert!(line_diff("same\n", "same\n").is_empty());
    }

    #[test]
    fn a_line_holding_a_secret_is_masked() {
        let secrets: BTreeSet<String> = ["hunter2".to_string()].into();
        assert_eq!(
            mask("+   12        hunter2", &secrets),
            format!("+   12  {MASK}")
        );
        assert_eq!(mask("-    3  vip = 1", &secrets), "-    3  vip = 1");
        assert!(is_secret("payloads/db1/rootfs/etc/airlock/db-password"));
        assert!(!is_secret("payloads/db1/rootfs/etc/airlock/role.toml"));
    }

    fn pkg(name: &str, version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            disc: "main".into(),
            sha256: format!("{name}{version}"),
        }
    }

    fn index(pkgs: &[Package]) -> BTreeMap<(String, String), Vec<Package>> {
        let mut m: BTreeMap<(String, String), Vec<Package>> = BTreeMap::new();
        for p in pkgs {
            m.entry((p.name.clone(), p.arch.clone()))
                .or_default()
                .push(p.clone());
        }
        m
    }

    /// A bundle made by hand: its Packages index and, maybe, its SBOM.
    fn opened(packages: &str, sbom: Option<&str>) -> Opened {
        let mut files = BTreeMap::new();
        files.insert(
            "repo/dists/s/main/binary-amd64/Packages".to_string(),
            packages.as_bytes().to_vec(),
        );
        if let Some(s) = sbom {
            files.insert(sbom::SBOM_FILE.to_string(), s.as_bytes().to_vec());
        }
        Opened {
            path: "b".into(),
            form: "directory",
            report: crate::build::inspect::tests::report(),
            sums: BTreeMap::new(),
            modes: BTreeMap::new(),
            files,
            table: None,
            runner: None,
        }
    }

    #[test]
    fn a_bundle_without_an_sbom_names_no_disc_and_an_arch_all_package_counts_once() {
        let all = "Package: doc\nVersion: 1\nArchitecture: all\nSHA256: aa\n";
        let text =
            format!("{all}\nPackage: a\nVersion: 1:2\nArchitecture: amd64\nSHA256: bb\n\n{all}");
        let pkgs = packages_of(&opened(&text, None)).unwrap();
        assert_eq!(pkgs.len(), 2, "{pkgs:?}");
        let a = &pkgs[&("a".to_string(), "amd64".to_string())][0];
        assert_eq!((a.version.as_str(), a.disc.as_str()), ("1:2", "?"));
        let deb = crate::build::repo::Deb {
            name: "a".into(),
            version: "1:2".into(),
            arch: "amd64".into(),
            filename: "pool/a.deb".into(),
            size: 1,
            sha256: "bb".into(),
            disc: "update1".into(),
        };
        let bom = sbom::render(&sbom::Inputs {
            cluster: "c",
            discs: &[],
            debs: &[deb],
            runner_sha256: "cc",
            time: 0,
        })
        .unwrap();
        let pkgs = packages_of(&opened(&text, Some(&bom))).unwrap();
        assert_eq!(
            pkgs[&("a".to_string(), "amd64".to_string())][0].disc,
            "update1"
        );
        assert_eq!(pkgs[&("doc".to_string(), "all".to_string())][0].disc, "?");
    }

    #[test]
    fn versions_compare_in_debian_order() {
        let old = index(&[
            pkg("a", "1.0~rc1"),
            pkg("b", "1:0.9"),
            pkg("gone", "1"),
            pkg("same", "2"),
        ]);
        let new = index(&[
            pkg("a", "1.0"),
            pkg("b", "2.0"),
            pkg("new", "1"),
            pkg("same", "2"),
        ]);
        let d = compare_packages(&old, &new);
        assert_eq!(d.upgraded.len(), 1, "{d:?}");
        assert_eq!(d.upgraded[0].name, "a");
        assert_eq!(d.downgraded[0].name, "b", "an epoch outweighs the version");
        assert_eq!(d.added, [pkg("new", "1")]);
        assert_eq!(d.removed, [pkg("gone", "1")]);
        assert_eq!(d.unchanged, 1);
    }
}
