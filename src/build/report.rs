//! `airlock report check`: holds an as-built report (written on the VMs by
//! `airlock-firstboot report`) against the bundle they were built from.
//!
//! The bundle is verified first, exactly as `airlock verify` does; then
//! every `.deb` of its repository is read once (SHA-256, control paragraph,
//! the SHA-256 of its `md5sums` control member), and every installed
//! package of every host is put in one class:
//!
//! - `from-bundle`: the bundle has the same name, version and architecture,
//!   and every hash the report carries that the bundle can be compared with
//!   matches;
//! - `differs`: found, but a hash differs (both are named);
//! - `not-in-bundle`: the bundle has no such package (its nearest versions
//!   are named);
//! - `unverifiable`: found, but the report carries no hash to compare.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::Digest;

use crate::build::repo::deb::DebScanner;
use crate::build::repo::policy::compare_versions;
use crate::shared::hex;
use crate::shared::par;
use crate::shared::report::{ChangedFile, HostReport, Package, Report};

/// A package's identity: name, version, architecture.
type Key = (String, String, String);

/// One `.deb` of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleDeb {
    /// Relative to the bundle (`repo/pool/main/h/hello/hello_2.10-3_amd64.deb`).
    pub path: String,
    pub sha256: String,
    /// The SHA-256 of its `md5sums` control member, if it has one.
    pub md5sums_sha256: Option<String>,
}

/// Every `.deb` of a bundle's repository by name, version, architecture.
#[derive(Debug, Default)]
pub struct BundleIndex {
    pub debs: BTreeMap<Key, BundleDeb>,
}

/// Reads every `.deb` under `BUNDLE/repo/pool` once, on every core.
pub fn index_bundle(bundle: &Path, progress: bool) -> Result<BundleIndex> {
    let pool = bundle.join("repo/pool");
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(&pool).sort_by_file_name() {
        let e = e.with_context(|| format!("listing {}", pool.display()))?;
        if e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "deb") {
            files.push((e.path().to_path_buf(), e.metadata().map_or(0, |m| m.len())));
        }
    }
    let bar = par::progress_bar(
        progress,
        files.iter().map(|f| f.1).sum(),
        "indexing the bundle's packages",
    );
    let scanned = par::map_buffered(&files, par::threads(0), |(path, _), buf| {
        scan_deb(path, buf, &bar)
    });
    bar.finish_and_clear();
    let mut index = BundleIndex::default();
    for ((path, _), r) in files.iter().zip(scanned) {
        let (key, mut deb) = r?;
        deb.path = path
            .strip_prefix(bundle)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        if let Some(other) = index.debs.get(&key)
            && other.sha256 != deb.sha256
        {
            bail!(
                "{}: the bundle holds {} {} {} twice with other bytes ({} and {}); rebuild it",
                bundle.display(),
                key.0,
                key.1,
                key.2,
                other.path,
                deb.path
            );
        }
        index.debs.insert(key, deb);
    }
    Ok(index)
}

/// Hashes one `.deb` and reads its control member.
fn scan_deb(path: &Path, buf: &mut [u8], bar: &indicatif::ProgressBar) -> Result<(Key, BundleDeb)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut sha = sha2::Sha256::new();
    let mut scanner = DebScanner::new();
    loop {
        let n = f
            .read(buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        scanner.feed(&buf[..n]);
        bar.inc(n as u64);
    }
    let (control, md5sums) = scanner
        .finish_with_md5sums()
        .map_err(|e| anyhow::anyhow!("{}: corrupt .deb: {e}", path.display()))?;
    let field = |name: &str| {
        control
            .get(name)
            .map(str::to_string)
            .with_context(|| format!("{}: its control file has no {name} field", path.display()))
    };
    let key = (field("Package")?, field("Version")?, field("Architecture")?);
    Ok((
        key,
        BundleDeb {
            path: String::new(),
            sha256: hex(&sha.finalize()),
            md5sums_sha256: md5sums.map(|m| hex(&sha2::Sha256::digest(&m))),
        },
    ))
}

/// Where an installed package stands against the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    FromBundle,
    Differs,
    NotInBundle,
    Unverifiable,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::FromBundle => "from-bundle",
            Class::Differs => "differs",
            Class::NotInBundle => "not-in-bundle",
            Class::Unverifiable => "unverifiable",
        }
    }
}

/// A hash of the report that the bundle's does not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// `deb` (the `.deb` as apt's index recorded it) or `md5sums` (dpkg's
    /// copy of the control member).
    pub what: &'static str,
    pub report: String,
    pub bundle: String,
}

/// One installed package, classified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageCheck {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub class: Class,
    /// The bundle's `.deb` of the same name, version and architecture.
    pub bundle_path: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<Mismatch>,
    /// For `not-in-bundle`: the bundle's versions nearest to this one
    /// (`VERSION ARCH`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nearest: Vec<String>,
    /// What was found, for people.
    pub detail: String,
}

impl PackageCheck {
    fn new(p: &Package, class: Class, detail: String) -> PackageCheck {
        PackageCheck {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            class,
            bundle_path: None,
            mismatches: Vec::new(),
            nearest: Vec::new(),
            detail,
        }
    }
}

/// Puts one installed package in its class.
pub fn classify(p: &Package, index: &BundleIndex) -> PackageCheck {
    let key = (p.name.clone(), p.version.clone(), p.architecture.clone());
    let Some(deb) = index.debs.get(&key) else {
        let nearest = index.nearest(&p.name, &p.version);
        let detail = if nearest.is_empty() {
            format!("the bundle has no package {}", p.name)
        } else {
            format!("the bundle has {} {} instead", p.name, nearest.join(", "))
        };
        let mut c = PackageCheck::new(p, Class::NotInBundle, detail);
        c.nearest = nearest;
        return c;
    };
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for h in &p.deb_sha256 {
        compared += 1;
        if *h != deb.sha256 {
            mismatches.push(Mismatch {
                what: "deb",
                report: h.clone(),
                bundle: deb.sha256.clone(),
            });
        }
    }
    if let (Some(r), Some(b)) = (&p.md5sums_sha256, &deb.md5sums_sha256) {
        compared += 1;
        if r != b {
            mismatches.push(Mismatch {
                what: "md5sums",
                report: r.clone(),
                bundle: b.clone(),
            });
        }
    }
    let (class, detail) = if !mismatches.is_empty() {
        let said: Vec<String> = mismatches.iter().map(describe_mismatch).collect();
        (Class::Differs, said.join("; "))
    } else if compared == 0 && p.md5sums_sha256.is_some() {
        (
            Class::Unverifiable,
            "the report's only hash is of dpkg's md5sums file, and the bundle's .deb has no md5sums member to compare it with (dpkg wrote its own)".to_string(),
        )
    } else if compared == 0 {
        (
            Class::Unverifiable,
            "the report carries no hash for it (no apt index listed this version, dpkg keeps no md5sums file for it)".to_string(),
        )
    } else {
        (Class::FromBundle, format!("{compared} hash(es) match"))
    };
    let mut c = PackageCheck::new(p, class, detail);
    c.bundle_path = Some(deb.path.clone());
    c.mismatches = mismatches;
    c
}

fn describe_mismatch(m: &Mismatch) -> String {
    let what = match m.what {
        "deb" => "the .deb's SHA-256 in apt's index",
        _ => "the SHA-256 of its md5sums",
    };
    format!(
        "{what} is {} in the report, {} in the bundle",
        m.report, m.bundle
    )
}

impl BundleIndex {
    /// The bundle's versions of `name` nearest to `version`: the next
    /// lower, the same (in another architecture) and the next higher, each
    /// in every architecture the bundle has it (`VERSION ARCH`).
    pub fn nearest(&self, name: &str, version: &str) -> Vec<String> {
        let mut same: Vec<(&str, &str)> = self
            .debs
            .keys()
            .filter(|(n, _, _)| n == name)
            .map(|(_, v, a)| (v.as_str(), a.as_str()))
            .collect();
        same.sort_by(|a, b| compare_versions(a.0, b.0).then(a.1.cmp(b.1)));
        let below = same
            .iter()
            .rev()
            .find(|(v, _)| compare_versions(v, version).is_lt());
        let above = same
            .iter()
            .find(|(v, _)| compare_versions(v, version).is_gt());
        let wanted: Vec<&str> = below
            .into_iter()
            .chain(above)
            .map(|(v, _)| *v)
            .chain([version])
            .collect();
        same.iter()
            .filter(|(v, _)| wanted.iter().any(|w| compare_versions(v, w).is_eq()))
            .map(|(v, a)| format!("{v} {a}"))
            .collect()
    }
}

/// A changed file and the packages it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedCheck {
    /// The packages whose file list names it (none: no package's).
    pub packages: Vec<String>,
    #[serde(flatten)]
    pub file: ChangedFile,
}

/// One host, checked.
#[derive(Debug, Clone, Serialize)]
pub struct HostCheck {
    pub host: String,
    pub role: String,
    pub instance_id: String,
    pub ok: bool,
    /// How many packages fell in each class.
    pub counts: BTreeMap<Class, usize>,
    pub packages: Vec<PackageCheck>,
    pub changed: Vec<ChangedCheck>,
    /// Whether `dpkg --verify` ran on the host.
    pub files_verified: bool,
    /// What the host's report says it could not collect.
    pub notes: Vec<String>,
}

/// The whole check: `airlock report check --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub ok: bool,
    pub report: String,
    pub bundle: String,
    pub cluster: String,
    pub generated: String,
    /// The bundle's `.deb` files read.
    pub bundle_packages: usize,
    pub hosts: Vec<HostCheck>,
    /// What `status --cluster` said when the report was written: ready, or
    /// why not (not part of `ok`: the packages are what is checked).
    pub cluster_ready: Option<bool>,
    pub cluster_not_ready: Vec<String>,
}

/// Checks one host's section against the bundle.
pub fn check_host(h: &HostReport, index: &BundleIndex) -> HostCheck {
    let packages: Vec<PackageCheck> = h.packages.iter().map(|p| classify(p, index)).collect();
    let mut counts = BTreeMap::new();
    for p in &packages {
        *counts.entry(p.class).or_insert(0) += 1;
    }
    let mut by_path: BTreeMap<&str, ChangedCheck> = BTreeMap::new();
    let owned = h
        .packages
        .iter()
        .flat_map(|p| p.changed.iter().map(move |c| (Some(&p.name), c)));
    let unowned = h.changed_unowned.iter().map(|c| (None, c));
    for (pkg, c) in owned.chain(unowned) {
        let e = by_path.entry(&c.path).or_insert_with(|| ChangedCheck {
            packages: Vec::new(),
            file: c.clone(),
        });
        e.packages.extend(pkg.cloned());
    }
    let changed: Vec<ChangedCheck> = by_path.into_values().collect();
    let ok = !packages.is_empty()
        && packages.iter().all(|p| p.class == Class::FromBundle)
        && changed.is_empty()
        && h.files_verified;
    HostCheck {
        host: h.host.clone(),
        role: h.role.as_str().to_string(),
        instance_id: h.instance_id.clone(),
        ok,
        counts,
        packages,
        changed,
        files_verified: h.files_verified,
        notes: h.notes.clone(),
    }
}

/// Checks every host of `report` against `index`.
pub fn check(report: &Report, index: &BundleIndex, report_path: &Path, bundle: &Path) -> Check {
    let hosts: Vec<HostCheck> = report.hosts.iter().map(|h| check_host(h, index)).collect();
    Check {
        ok: !hosts.is_empty() && hosts.iter().all(|h| h.ok),
        report: report_path.display().to_string(),
        bundle: bundle.display().to_string(),
        cluster: report.cluster.clone(),
        generated: report.generated.clone(),
        bundle_packages: index.debs.len(),
        hosts,
        cluster_ready: report.cluster_status.as_ref().map(|c| c.ready),
        cluster_not_ready: report
            .cluster_status
            .as_ref()
            .map(|c| c.not_ready.clone())
            .unwrap_or_default(),
    }
}

/// What a person reads: a summary per host, then its problems.
pub fn to_text(c: &Check) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: as-built report of cluster {} ({}), {} host(s), against {} ({} packages)",
        c.report,
        c.cluster,
        c.generated,
        c.hosts.len(),
        c.bundle,
        c.bundle_packages
    );
    let _ = match c.cluster_ready {
        Some(true) => writeln!(
            s,
            "the cluster was ready when the report was written (status --cluster)"
        ),
        Some(false) => writeln!(
            s,
            "the cluster was NOT ready when the report was written: {}",
            c.cluster_not_ready.join("; ")
        ),
        None => writeln!(
            s,
            "the report holds no cluster status (written on a mounted disk?)"
        ),
    };
    for h in &c.hosts {
        host_text(&mut s, h);
    }
    let bad_hosts = c.hosts.iter().filter(|h| !h.ok).count();
    let total: usize = c.hosts.iter().map(|h| h.packages.len()).sum();
    let _ = if c.ok {
        writeln!(
            s,
            "OK: all {total} packages of {} host(s) are from the bundle, and dpkg finds no file changed",
            c.hosts.len()
        )
    } else if c.hosts.is_empty() {
        writeln!(s, "FAILED: the report holds no host")
    } else {
        writeln!(
            s,
            "FAILED: {bad_hosts} of {} host(s) run something the bundle does not prove (listed above)",
            c.hosts.len()
        )
    };
    s
}

fn host_text(s: &mut String, h: &HostCheck) {
    use std::fmt::Write as _;
    let counts: Vec<String> = h
        .counts
        .iter()
        .map(|(class, n)| format!("{n} {}", class.as_str()))
        .collect();
    let _ = writeln!(
        s,
        "\n{} ({}, instance {}): {} packages: {}; {} changed file(s){}",
        h.host,
        h.role,
        h.instance_id,
        h.packages.len(),
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(", ")
        },
        h.changed.len(),
        if h.ok { " - OK" } else { "" }
    );
    for p in h.packages.iter().filter(|p| p.class != Class::FromBundle) {
        let _ = writeln!(
            s,
            "  {:<14} {} {} {}: {}",
            p.class.as_str().to_uppercase(),
            p.name,
            p.version,
            p.architecture,
            p.detail
        );
    }
    for c in &h.changed {
        let of = if c.packages.is_empty() {
            "no package's".to_string()
        } else {
            format!("of {}", c.packages.join(", "))
        };
        let _ = writeln!(
            s,
            "  {:<14} {} ({of}): {}",
            "CHANGED",
            c.file.path,
            c.file.what()
        );
    }
    if h.packages.is_empty() {
        let _ = writeln!(s, "  {:<14} the report lists no installed package", "EMPTY");
    }
    if !h.files_verified {
        let _ = writeln!(
            s,
            "  {:<14} dpkg --verify did not run on it: changed files are not known",
            "NOT VERIFIED"
        );
    }
    for n in &h.notes {
        let _ = writeln!(s, "  {:<14} {n}", "NOTE");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::repo::control::Paragraph;
    use crate::build::repo::deb::{DataFile, build_deb};
    use crate::shared::report::REPORT_VERSION;

    const DEB: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const SUMS: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const OTHER: &str = "9999999999999999999999999999999999999999999999999999999999999999";

    fn index() -> BundleIndex {
        let mut debs = BTreeMap::new();
        for (n, v, a, sums) in [
            ("hello", "2.10-3", "amd64", Some(SUMS)),
            ("hello", "2.9-1", "amd64", Some(SUMS)),
            ("hello", "2.12-1", "amd64", Some(SUMS)),
            ("hello", "2.12-1", "i386", Some(SUMS)),
            ("hello", "1:0.1", "amd64", Some(SUMS)),
            ("nosums", "1.0", "all", None),
        ] {
            debs.insert(
                (n.into(), v.into(), a.into()),
                BundleDeb {
                    path: format!("repo/pool/main/{n}_{v}_{a}.deb"),
                    sha256: DEB.into(),
                    md5sums_sha256: sums.map(String::from),
                },
            );
        }
        BundleIndex { debs }
    }

    fn pkg(name: &str, version: &str, deb: &[&str], sums: Option<&str>) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            architecture: if name == "nosums" { "all" } else { "amd64" }.into(),
            deb_sha256: deb.iter().map(|s| s.to_string()).collect(),
            md5sums_sha256: sums.map(String::from),
            changed: vec![],
        }
    }

    #[test]
    fn from_bundle_when_every_hash_matches() {
        let c = classify(&pkg("hello", "2.10-3", &[DEB], Some(SUMS)), &index());
        assert_eq!(c.class, Class::FromBundle, "{}", c.detail);
        assert_eq!(c.detail, "2 hash(es) match");
        assert_eq!(
            c.bundle_path.as_deref(),
            Some("repo/pool/main/hello_2.10-3_amd64.deb")
        );
        // One hash is enough when it is the only one.
        let c = classify(&pkg("hello", "2.10-3", &[], Some(SUMS)), &index());
        assert_eq!(c.class, Class::FromBundle);
        let c = classify(&pkg("nosums", "1.0", &[DEB], Some(OTHER)), &index());
        assert_eq!(
            c.class,
            Class::FromBundle,
            "dpkg's own md5sums is not compared"
        );
    }

    #[test]
    fn differs_names_both_hashes() {
        let c = classify(&pkg("hello", "2.10-3", &[OTHER], Some(SUMS)), &index());
        assert_eq!(c.class, Class::Differs);
        assert_eq!(
            c.detail,
            format!(
                "the .deb's SHA-256 in apt's index is {OTHER} in the report, {DEB} in the bundle"
            )
        );
        let c = classify(&pkg("hello", "2.10-3", &[DEB], Some(OTHER)), &index());
        assert_eq!(c.class, Class::Differs);
        assert_eq!(
            c.mismatches,
            [Mismatch {
                what: "md5sums",
                report: OTHER.into(),
                bundle: SUMS.into()
            }]
        );
        assert!(c.detail.contains(&format!(
            "the SHA-256 of its md5sums is {OTHER} in the report, {SUMS} in the bundle"
        )));
        // Two sources disagreeing about the same version: one is not ours.
        let c = classify(&pkg("hello", "2.10-3", &[DEB, OTHER], None), &index());
        assert_eq!((c.class, c.mismatches.len()), (Class::Differs, 1));
    }

    #[test]
    fn not_in_bundle_names_the_nearest_versions() {
        let c = classify(&pkg("hello", "2.11-1", &[DEB], Some(SUMS)), &index());
        assert_eq!(c.class, Class::NotInBundle);
        assert_eq!(c.nearest, ["2.10-3 amd64", "2.12-1 amd64", "2.12-1 i386"]);
        assert_eq!(
            c.detail,
            "the bundle has hello 2.10-3 amd64, 2.12-1 amd64, 2.12-1 i386 instead"
        );
        // The epoch puts 1:0.1 above everything else.
        let c = classify(&pkg("hello", "3.0", &[], None), &index());
        assert_eq!(c.nearest, ["2.12-1 amd64", "2.12-1 i386", "1:0.1 amd64"]);
        let c = classify(&pkg("vim", "9.0", &[DEB], None), &index());
        assert_eq!(
            (c.class, c.detail.as_str()),
            (Class::NotInBundle, "the bundle has no package vim")
        );
    }

    #[test]
    fn unverifiable_without_a_hash_to_compare() {
        let c = classify(&pkg("hello", "2.10-3", &[], None), &index());
        assert_eq!(c.class, Class::Unverifiable);
        assert!(c.detail.contains("carries no hash"), "{}", c.detail);
        let c = classify(&pkg("nosums", "1.0", &[], Some(OTHER)), &index());
        assert_eq!(c.class, Class::Unverifiable);
        assert!(c.detail.contains("no md5sums member"), "{}", c.detail);
    }

    fn host(packages: Vec<Package>) -> HostReport {
        HostReport {
            version: REPORT_VERSION,
            host: "spdb1".into(),
            role: crate::shared::role::Role::DbMaster,
            cluster: "vdi".into(),
            instance_id: "i-1".into(),
            collected: "2026-01-01T00:00:00Z".into(),
            runner_version: "0.1.0".into(),
            kernel: None,
            os_release: BTreeMap::new(),
            journal: None,
            fenced: None,
            promoted: None,
            packages,
            files_verified: true,
            changed_unowned: vec![],
            notes: vec![],
        }
    }

    #[test]
    fn a_host_passes_only_with_every_package_from_the_bundle_and_nothing_changed() {
        let good = pkg("hello", "2.10-3", &[DEB], Some(SUMS));
        let h = check_host(&host(vec![good.clone()]), &index());
        assert!(h.ok);
        let mut changed = good.clone();
        changed.changed.push(ChangedFile {
            path: "/etc/hello.conf".into(),
            checks: "??5??????".into(),
            conffile: true,
            error: None,
        });
        let mut report = host(vec![changed, pkg("vim", "9.0", &[], None)]);
        report.changed_unowned.push(ChangedFile {
            path: "/usr/lib/orphan".into(),
            checks: "missing  ".into(),
            conffile: false,
            error: None,
        });
        let h = check_host(&report, &index());
        assert!(!h.ok);
        assert_eq!(h.counts[&Class::FromBundle], 1);
        assert_eq!(h.counts[&Class::NotInBundle], 1);
        assert_eq!(h.changed[0].packages, ["hello"]);
        assert!(h.changed[1].packages.is_empty());
        let text = to_text(&check(
            &Report::of_host(report, "2026-01-01T00:00:00Z".into()),
            &index(),
            Path::new("r.json"),
            Path::new("bundle"),
        ));
        assert!(
            text.contains("2 packages: 1 from-bundle, 1 not-in-bundle; 2 changed file(s)\n"),
            "{text}"
        );
        assert!(
            text.contains("  NOT-IN-BUNDLE  vim 9.0 amd64: the bundle has no package vim\n"),
            "{text}"
        );
        assert!(text.contains("  CHANGED        /etc/hello.conf (of hello): contents changed, a configuration file\n"), "{text}");
        assert!(
            text.contains("  CHANGED        /usr/lib/orphan (no package's): missing\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "FAILED: 1 of 1 host(s) run something the bundle does not prove (listed above)\n"
            ),
            "{text}"
        );
        // Not knowing which files changed is not "none changed"; nor is an
        // empty package list a pass.
        let mut unverified = host(vec![good]);
        unverified.files_verified = false;
        assert!(!check_host(&unverified, &index()).ok);
        assert!(!check_host(&host(vec![]), &index()).ok);
    }

    #[test]
    fn the_index_reads_every_deb_with_its_md5sums() {
        let dir = tempfile::tempdir().unwrap();
        let control = Paragraph::parse(
            "Package: hello\nVersion: 2.10-3\nArchitecture: amd64\nDescription: greets\n",
        )
        .unwrap();
        let deb = build_deb(
            &control,
            &[DataFile {
                path: "usr/share/doc/hello/README",
                mode: 0o644,
                contents: b"hi\n",
            }],
            0,
        )
        .unwrap();
        let rel = "repo/pool/main/h/hello/hello_2.10-3_amd64.deb";
        std::fs::create_dir_all(dir.path().join(rel).parent().unwrap()).unwrap();
        std::fs::write(dir.path().join(rel), &deb).unwrap();
        let index = index_bundle(dir.path(), false).unwrap();
        let got = &index.debs[&("hello".into(), "2.10-3".into(), "amd64".into())];
        assert_eq!(got.path, rel);
        assert_eq!(got.sha256, hex(&sha2::Sha256::digest(&deb)));
        let sums = b"764efa883dda1e11db47671c4a3bbd9e  usr/share/doc/hello/README\n";
        assert_eq!(
            got.md5sums_sha256.as_deref(),
            Some(hex(&sha2::Sha256::digest(sums)).as_str())
        );
        // A damaged .deb is named.
        std::fs::write(dir.path().join(rel), &deb[..deb.len() / 2]).unwrap();
        let e = format!("{:#}", index_bundle(dir.path(), false).unwrap_err());
        assert!(
            e.contains("hello_2.10-3_amd64.deb: corrupt .deb: truncated"),
            "{e}"
        );
    }
}
