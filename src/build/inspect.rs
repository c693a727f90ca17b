//! `airlock inspect BUNDLE`: what a bundle holds, read from the bundle
//! itself after it verified: cluster and hosts, the discs the packages
//! came from, who signed it and when, the runner's version and the glibc
//! it needs, its volumes, and the completeness verdict.
//!
//! Also the reader `airlock diff` shares: [`Opened`] is a bundle (a
//! directory, a tar or a directory of volumes) verified as `airlock verify`
//! would, with the files asked for read and checked against the manifest
//! that verified.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::build::sbom::{self, Bom};
use crate::shared::inventory::Inventory;
use crate::shared::keyring::{self, Keyring};
use crate::shared::manifest::{self, FindingKind, MODES, RUNNER, Report, SUMS, Trust};
use crate::shared::{tarform, timefmt, volumes};

/// What `completeness` says when the bundle cannot be checked (why follows).
pub const NOT_CHECKED: &str = "not checked";

/// A bundle that verified, with the files asked for.
pub struct Opened {
    pub path: PathBuf,
    /// `directory`, `tar` or `volumes`.
    pub form: &'static str,
    pub report: Report,
    /// The verified manifest: path → sha256.
    pub sums: BTreeMap<String, String>,
    /// Every file's mode, from the verified MODES.
    pub modes: BTreeMap<String, u32>,
    /// The files read, each matching its line of `sums`.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The volumes' table, for a bundle in volumes.
    pub table: Option<volumes::Table>,
    /// What the runner is, when it was read (its bytes are not kept).
    pub runner: Option<Runner>,
}

/// A bundle that did not verify: the report says why.
pub struct Unverified {
    pub path: PathBuf,
    pub reports: Vec<Report>,
}

impl Opened {
    /// A file read, as text.
    pub fn text(&self, path: &str) -> Option<String> {
        self.files
            .get(path)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// The bundle's SBOM, when it has one (bundles built before it was
    /// added have none).
    pub fn sbom(&self) -> Result<Option<Bom>> {
        match self.text(sbom::SBOM_FILE) {
            Some(t) => sbom::parse(&t).map(Some),
            None => Ok(None),
        }
    }
}

/// Verifies the bundle at `path` as `airlock verify` does and reads the
/// files `wanted` selects (and the head files). Refuses a delta. Each file
/// read is checked against the manifest that verified, so a bundle changed
/// between the two reads is refused too.
pub fn open(
    path: &Path,
    trust: &Trust,
    progress: bool,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Result<Opened, Unverified>> {
    let meta = fs::metadata(path).with_context(|| {
        format!(
            "reading the bundle {}: give a bundle directory or tar",
            path.display()
        )
    })?;
    let delta_volumes = meta.is_dir()
        && volumes::volume_dirs(path).is_some_and(|v| crate::shared::delta::is_delta(&v[0]));
    if crate::shared::delta::is_delta(path) || delta_volumes {
        let given = match volumes::is_volume(path) {
            true => "EVERY-VOLUME…".to_string(),
            false => path.display().to_string(),
        };
        bail!(
            "{} is {}: it holds only what its base lacks; `airlock apply {given} --to OLD --out NEW` makes the whole bundle, then inspect NEW",
            path.display(),
            if volumes::is_volume(path) {
                "one volume of a delta"
            } else {
                "a delta"
            }
        );
    }
    let want = |p: &str| wanted(p) || [SUMS, MODES, keyring::PUBLIC_GPG_FILE].contains(&p);
    if meta.is_dir() {
        if volumes::is_volume(path) {
            bail!(
                "{} is one volume: what it holds is spread over all of them; copy every volume into DIR/volumes/NN/ and give DIR (`airlock verify {}` checks this one alone)",
                path.display(),
                path.display()
            );
        }
        let dirs = if !path.join(SUMS).exists() {
            volumes::volume_dirs(path)
        } else {
            None
        };
        if let Some(dirs) = dirs {
            return open_volumes(path, &dirs, trust, progress, &want);
        }
    }
    let before = read_sums(path, meta.is_dir())?;
    let report = if meta.is_dir() {
        manifest::verify_dir(path, trust, progress)?
    } else {
        manifest::verify_tar(path, trust, progress)?
    };
    if !report.ok {
        return Ok(Err(Unverified {
            path: path.to_path_buf(),
            reports: vec![report],
        }));
    }
    let files = if meta.is_dir() {
        read_dir_files(path, &before, &want)?
    } else {
        read_tar_files(path, &want)?
    };
    let form = if meta.is_dir() { "directory" } else { "tar" };
    finish(path, form, report, &before, files, None).map(Ok)
}

/// The manifest's bytes: the directory's file or the tar's first entry.
fn read_sums(path: &Path, dir: bool) -> Result<Vec<u8>> {
    if dir {
        return fs::read(path.join(SUMS)).with_context(|| {
            format!(
                "reading {}: is {} a bundle?",
                path.join(SUMS).display(),
                path.display()
            )
        });
    }
    let files = read_tar_files(path, &|p| p == SUMS)?;
    files
        .get(SUMS)
        .cloned()
        .with_context(|| format!("{}: no {SUMS} in the tar", path.display()))
}

/// Checks what was read against the manifest that verified.
fn finish(
    path: &Path,
    form: &'static str,
    report: Report,
    verified_sums: &[u8],
    files: BTreeMap<String, Vec<u8>>,
    table: Option<volumes::Table>,
) -> Result<Opened> {
    let changed = || {
        format!(
            "{}: the bundle changed while it was read (SHA256SUMS or a file is not what verified); read it again from an intact copy",
            path.display()
        )
    };
    if form != "volumes" && files.get(SUMS).map(Vec::as_slice) != Some(verified_sums) {
        bail!(changed());
    }
    let (sums, _) = manifest::parse_manifest(&String::from_utf8_lossy(verified_sums));
    for (p, bytes) in &files {
        if p == SUMS || p == manifest::SUMS_SIG {
            continue;
        }
        let have = crate::shared::hex(&Sha256::digest(bytes));
        if sums.get(p) != Some(&have) {
            bail!("{}: {p}", changed());
        }
    }
    let mut files = files;
    let runner = match files.remove(RUNNER) {
        Some(bytes) => Some(runner_facts(&sums, &bytes)?),
        None => None,
    };
    let mut problems = Vec::new();
    let modes = files
        .get(MODES)
        .map(|m| manifest::parse_modes(&String::from_utf8_lossy(m), &mut problems))
        .unwrap_or_default();
    Ok(Opened {
        path: path.to_path_buf(),
        form,
        report,
        sums,
        modes,
        files,
        table,
        runner,
    })
}

fn read_dir_files(
    dir: &Path,
    sums: &[u8],
    want: &dyn Fn(&str) -> bool,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let (listed, _) = manifest::parse_manifest(&String::from_utf8_lossy(sums));
    let mut files = BTreeMap::new();
    for p in listed.keys().map(String::as_str).chain([SUMS]) {
        if p == SUMS || want(p) {
            let bytes = fs::read(dir.join(p))
                .with_context(|| format!("reading {}", dir.join(p).display()))?;
            files.insert(p.to_string(), bytes);
        }
    }
    Ok(files)
}

/// The entries of a bundle tar (or .tar.gz) that `want` selects.
fn read_tar_files(file: &Path, want: &dyn Fn(&str) -> bool) -> Result<BTreeMap<String, Vec<u8>>> {
    let label = file.display().to_string();
    let mut tr = tarform::open_file(file)?;
    let mut files = BTreeMap::new();
    while let Some(e) = tr
        .next_entry()
        .map_err(|e| anyhow::anyhow!("{label}: {e}"))?
    {
        if e.kind != tarform::Kind::File || !want(&e.path) {
            continue;
        }
        let data = tr
            .read_whole()
            .map_err(|err| anyhow::anyhow!("{label}: {}: {err}", e.path))?;
        files.insert(e.path, data);
    }
    Ok(files)
}

/// A bundle in volumes: each volume verified alone, none missing or
/// foreign; the files read from whichever volume holds them and checked
/// against the whole bundle's manifest (`whole/SHA256SUMS`).
fn open_volumes(
    path: &Path,
    dirs: &[PathBuf],
    trust: &Trust,
    progress: bool,
    want: &dyn Fn(&str) -> bool,
) -> Result<Result<Opened, Unverified>> {
    let reports = dirs
        .iter()
        .map(|d| volumes::verify_volume(d, trust, progress))
        .collect::<Result<Vec<_>>>()?;
    let missing = volumes::missing_from(&reports);
    let foreign = volumes::foreign(&reports);
    if reports.iter().any(|r| !r.report.ok) || !missing.is_empty() || !foreign.is_empty() {
        let mut out: Vec<Report> = reports.into_iter().map(|r| r.report).collect();
        if let Some(r) = out.first_mut() {
            r.ok = false;
            for m in &missing {
                r.problems.push(volume_finding(
                    FindingKind::Missing,
                    m,
                    "the table lists it; it is not here",
                ));
            }
            for (i, why) in &foreign {
                r.problems.push(volume_finding(
                    FindingKind::Foreign,
                    &dirs[*i].display().to_string(),
                    why,
                ));
            }
        }
        return Ok(Err(Unverified {
            path: path.to_path_buf(),
            reports: out,
        }));
    }
    let whole = fs::read(dirs[0].join("whole").join(SUMS))
        .with_context(|| format!("reading {}/whole/{SUMS}", dirs[0].display()))?;
    let table = reports[0].table.clone();
    if table.as_ref().map(|t| t.whole.as_str()) != Some(volumes::sha256(&whole).as_str()) {
        bail!(
            "{}: whole/{SUMS} is not the manifest the signed table names (changed while it was read?); read it again from an intact copy",
            dirs[0].display()
        );
    }
    let mut files = BTreeMap::new();
    for d in dirs {
        files.extend(read_dir_files(d, &fs::read(d.join(SUMS))?, want)?);
    }
    files.remove(SUMS);
    if let Ok(m) = fs::read(dirs[0].join("whole").join(MODES)) {
        files.insert(MODES.to_string(), m);
    }
    let mut report = reports[0].report.clone();
    report.files_checked = reports.iter().map(|r| r.report.files_checked).sum();
    report.bytes = reports.iter().map(|r| r.report.bytes).sum();
    finish(path, "volumes", report, &whole, files, table).map(Ok)
}

fn volume_finding(kind: FindingKind, path: &str, detail: &str) -> manifest::Finding {
    manifest::Finding {
        kind,
        path: path.into(),
        detail: detail.into(),
    }
}

/// What `airlock inspect` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub bundle: PathBuf,
    /// `directory`, `tar` or `volumes`.
    pub form: String,
    /// Always true here: a bundle that does not verify is not inspected.
    pub verified: bool,
    /// Checked with the bundle's own keyring: consistent, origin not proven.
    pub own_keyring: bool,
    pub files: usize,
    pub bytes: u64,
    pub signers: Vec<Signer>,
    pub cluster: String,
    pub hosts: Vec<Host>,
    /// The discs the repository was merged from, in merge order.
    pub sources: Vec<Source>,
    pub packages: usize,
    pub package_bytes: u64,
    /// `sbom.cdx.json`, or None for a bundle built before SBOMs.
    pub sbom: Option<String>,
    pub runner: Runner,
    pub volumes: Vec<Volume>,
    /// Whether every role's packages can be installed from the bundle:
    /// `complete: …`, `INCOMPLETE: role: chain; …`, or `not checked: why`.
    pub completeness: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Signer {
    pub fingerprint: String,
    pub user_id: Option<String>,
    /// RFC 3339, UTC.
    pub signed: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    pub role: String,
    pub ip: String,
    pub mac: Option<String>,
    pub uuid: Option<String>,
    pub seed: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// `main`, `devel`, `update1`…
    pub disc: String,
    /// The disc's file name as the build was given it.
    pub file: Option<String>,
    pub packages: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Runner {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    /// It is an ELF file (a runner at all).
    pub elf: bool,
    /// The version the binary carries, when it carries one.
    pub version: Option<String>,
    /// The newest `GLIBC_x.y` it needs, or None (static).
    pub glibc: Option<String>,
    /// It runs on Astra SE 1.7 (glibc 2.28).
    pub runs_on_astra: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    pub name: String,
    pub files: usize,
    pub bytes: u64,
}

/// The files `inspect` reads.
pub fn inspect_wants(p: &str) -> bool {
    [sbom::SBOM_FILE, "inventory.toml", "recipe.toml", RUNNER].contains(&p)
        || (p.starts_with("repo/dists/") && p.ends_with("/Packages"))
}

/// The completeness verdict over the bundle's own recipe and repository
/// indexes. A bundle does not carry the reference VM's dpkg status, so the
/// main disc's required and important packages stand for the installed
/// base, as in `airlock check` without `media.base_status`.
fn completeness(b: &Opened, bom: Option<&Bom>) -> String {
    match check_bundle(b, bom) {
        Ok(r) if r.ok => format!(
            "complete: apt can install every role's packages ({} role(s); base: {})",
            r.roles.len(),
            r.base.source
        ),
        Ok(r) => {
            let problems: Vec<String> = r
                .roles
                .iter()
                .flat_map(|role| {
                    role.problems
                        .iter()
                        .map(move |p| format!("{}: {p}", role.role))
                })
                .collect();
            format!("INCOMPLETE: {}", problems.join("; "))
        }
        Err(e) => format!("{NOT_CHECKED}: {e:#}"),
    }
}

fn check_bundle(b: &Opened, bom: Option<&Bom>) -> Result<crate::build::check::Report> {
    use crate::build::{check, plan, recipe};
    let text = b
        .text("recipe.toml")
        .context("the bundle has no recipe.toml")?;
    let source = recipe::Source {
        path: b.path.join("recipe.toml"),
        text,
    };
    let recipe = recipe::parse(&source)?;
    if recipe.repository.subset == recipe::Subset::Closure {
        bail!(
            "repository.subset = \"closure\": the bundle leaves out the installed base its build resolved against (media.base_status, or the main disc's required and important packages), so the verdict cannot be made again from it; the build checked it (`airlock check RECIPE` with the discs does again)"
        );
    }
    let plan = plan::resolve(&recipe, &source, plan::MediaCheck::Ignore)
        .plan
        .context("the bundle's recipe.toml does not plan")?;
    // The disc each package came from, as the SBOM records it.
    let disc_of: BTreeMap<&str, &str> = bom
        .map(|bom| {
            bom.components
                .iter()
                .filter_map(|c| {
                    Some((
                        c.property("airlock:filename")?,
                        c.property(sbom::DISC_PROPERTY)?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut catalog = Vec::new();
    for (path, bytes) in b
        .files
        .iter()
        .filter(|(p, _)| inspect_wants(p) && p.ends_with("/Packages"))
    {
        let text = String::from_utf8_lossy(bytes);
        for para in crate::build::repo::control::parse_all(&text)
            .map_err(|e| anyhow::anyhow!("{path}: {e}"))?
        {
            let file = format!("repo/{}", para.get("Filename").unwrap_or_default());
            let disc = disc_of.get(file.as_str()).copied().unwrap_or("main");
            catalog.push((disc.to_string(), para));
        }
    }
    let packages = check::catalog_packages(&catalog)?;
    let installed = check::installed_base(&catalog, &packages, None)?;
    check::evaluate(&recipe, &plan, packages, &installed)
}

/// The inspection of a bundle that verified.
pub fn inspect(b: &Opened, trust_keyring: Option<&Keyring>) -> Result<Inspection> {
    let inventory = Inventory::parse(&b.text("inventory.toml").unwrap_or_default())
        .context("reading the bundle's inventory.toml")?;
    let hosts = inventory
        .hosts
        .iter()
        .map(|h| Host {
            name: h.name.clone(),
            role: h.role.to_string(),
            ip: h.ip.to_string(),
            mac: h.mac.clone(),
            uuid: h.uuid.clone(),
            seed: h.seed.clone(),
        })
        .collect();
    let bom = b.sbom()?;
    let (sources, packages, package_bytes) = sources(b, bom.as_ref());
    Ok(Inspection {
        bundle: b.path.clone(),
        form: b.form.into(),
        verified: b.report.ok,
        own_keyring: b.report.own_keyring,
        files: b.report.files_checked,
        bytes: b.report.bytes,
        signers: signers(b, trust_keyring),
        cluster: inventory.cluster.clone(),
        hosts,
        sources,
        packages,
        package_bytes,
        sbom: bom.is_some().then(|| sbom::SBOM_FILE.to_string()),
        runner: b
            .runner
            .clone()
            .with_context(|| format!("{}: the bundle has no {RUNNER}", b.path.display()))?,
        volumes: b
            .table
            .iter()
            .flat_map(|t| &t.volumes)
            .map(|v| Volume {
                name: v.name.clone(),
                files: v.files,
                bytes: v.bytes,
            })
            .collect(),
        completeness: completeness(b, bom.as_ref()),
    })
}

/// Who signed, with the user ids of the keyrings at hand (the one given,
/// and the bundle's own).
pub(crate) fn signers(b: &Opened, trust: Option<&Keyring>) -> Vec<Signer> {
    let own = b
        .files
        .get(keyring::PUBLIC_GPG_FILE)
        .and_then(|k| Keyring::from_bytes(k, keyring::PUBLIC_GPG_FILE).ok());
    let keys: Vec<keyring::KeyInfo> = trust
        .into_iter()
        .chain(own.as_ref())
        .flat_map(|k| k.keys())
        .collect();
    b.report
        .signers
        .iter()
        .map(|v| Signer {
            fingerprint: v.key.clone(),
            user_id: keys
                .iter()
                .find(|k| k.fingerprint == v.key)
                .and_then(|k| k.user_id.clone()),
            signed: timefmt::rfc3339_utc(v.created),
        })
        .collect()
}

/// The discs, from the SBOM; without one, the pool's packages under one
/// unknown source.
fn sources(b: &Opened, bom: Option<&Bom>) -> (Vec<Source>, usize, u64) {
    let Some(bom) = bom else {
        let n = b
            .sums
            .keys()
            .filter(|p| p.starts_with("repo/pool/") && p.ends_with(".deb"))
            .count();
        let s = Source {
            disc: "unknown (no sbom.cdx.json: built before airlock wrote one)".into(),
            file: None,
            packages: n,
            bytes: 0,
        };
        return (vec![s], n, 0);
    };
    let prefix = format!("{}:", sbom::DISC_PROPERTY);
    let mut out: Vec<Source> = bom
        .metadata
        .properties
        .iter()
        .filter_map(|p| {
            Some(Source {
                disc: p.name.strip_prefix(&prefix)?.to_string(),
                file: Some(p.value.clone()),
                packages: 0,
                bytes: 0,
            })
        })
        .collect();
    let (mut total, mut bytes) = (0, 0);
    for c in bom
        .components
        .iter()
        .filter(|c| c.property(sbom::DISC_PROPERTY).is_some())
    {
        let disc = c.property(sbom::DISC_PROPERTY).unwrap_or_default();
        let size: u64 = c
            .property("airlock:size")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let i = match out.iter().position(|s| s.disc == disc) {
            Some(i) => i,
            None => {
                out.push(Source {
                    disc: disc.to_string(),
                    file: None,
                    packages: 0,
                    bytes: 0,
                });
                out.len() - 1
            }
        };
        out[i].packages += 1;
        out[i].bytes += size;
        total += 1;
        bytes += size;
    }
    (out, total, bytes)
}

/// The shipped runner: its hash, the version it carries, the glibc it
/// needs (None for a static binary, or one that is not ELF).
fn runner_facts(sums: &BTreeMap<String, String>, bytes: &[u8]) -> Result<Runner> {
    let elf = crate::build::elfcheck::max_glibc(bytes);
    let glibc = elf.as_ref().ok().copied().flatten();
    Ok(Runner {
        elf: elf.is_ok(),
        path: RUNNER.into(),
        sha256: sums.get(RUNNER).cloned().unwrap_or_default(),
        bytes: bytes.len() as u64,
        version: crate::shared::version_in(bytes),
        glibc: glibc.map(|(a, m)| format!("{a}.{m}")),
        runs_on_astra: elf.is_ok()
            && glibc.is_none_or(|v| v <= crate::build::elfcheck::ASTRA_GLIBC),
    })
}

/// The inspection for people.
pub fn to_text(i: &Inspection) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let mb = |b: u64| match b {
        0..1_000_000 => format!("{:.1} kB", b as f64 / 1e3),
        _ => format!("{:.1} MB", b as f64 / 1e6),
    };
    let _ = writeln!(s, "bundle      {} ({})", i.bundle.display(), i.form);
    let _ = writeln!(
        s,
        "verified    OK, {} files, {}{}",
        i.files,
        mb(i.bytes),
        if i.own_keyring {
            " -- with the bundle's OWN keyring: consistent, origin NOT proven (pass --keyring)"
        } else {
            ""
        }
    );
    for g in &i.signers {
        let uid = g
            .user_id
            .as_deref()
            .map(|u| format!(" \"{u}\""))
            .unwrap_or_default();
        let _ = writeln!(s, "signed by   {}{uid}, {}", g.fingerprint, g.signed);
    }
    let _ = writeln!(s, "cluster     {}, {} hosts", i.cluster, i.hosts.len());
    for h in &i.hosts {
        let id = [h.mac.as_deref(), h.uuid.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(
            s,
            "  {:<14} {:<11} {:<16} {:<20} {id}",
            h.name, h.role, h.ip, h.seed
        );
    }
    let _ = writeln!(s, "packages    {} ({})", i.packages, mb(i.package_bytes));
    for src in &i.sources {
        let file = src.file.as_deref().unwrap_or("");
        let _ = writeln!(
            s,
            "  {:<8} {:<28} {:>6} packages  {:>10}",
            src.disc,
            file,
            src.packages,
            mb(src.bytes)
        );
    }
    let r = &i.runner;
    let glibc = match (&r.glibc, r.elf) {
        (_, false) => "NOT AN ELF FILE".into(),
        (Some(v), _) => format!("needs GLIBC_{v}"),
        (None, _) => "static (no glibc needed)".into(),
    };
    let _ = writeln!(
        s,
        "runner      {} {}, {}, {} ({}), sha256 {}",
        r.path,
        r.version.as_deref().unwrap_or("(version not recorded)"),
        mb(r.bytes),
        glibc,
        if r.runs_on_astra {
            "runs on Astra SE 1.7, glibc 2.28"
        } else {
            "DOES NOT RUN on Astra SE 1.7, glibc 2.28"
        },
        r.sha256
    );
    if i.volumes.is_empty() {
        let _ = writeln!(s, "volumes     none (one directory)");
    } else {
        let _ = writeln!(s, "volumes     {}", i.volumes.len());
        for v in &i.volumes {
            let _ = writeln!(s, "  {}  {} files, {}", v.name, v.files, mb(v.bytes));
        }
    }
    let _ = writeln!(
        s,
        "sbom        {}",
        i.sbom
            .as_deref()
            .unwrap_or("none (built before airlock wrote one)")
    );
    let _ = writeln!(
        s,
        "complete    {} (airlock check gives the verdict)",
        i.completeness
    );
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A report of a bundle that verified, for opened bundles made by hand.
    pub(crate) fn report() -> Report {
        Report {
            ok: true,
            signature: "good".into(),
            signer: None,
            signed_at: None,
            signers: Vec::new(),
            required_signers: 1,
            not_signed_by: Vec::new(),
            unknown_signers: Vec::new(),
            own_keyring: false,
            files_checked: 1,
            bytes: 4,
            problems: Vec::new(),
        }
    }

    #[test]
    fn a_bundle_changed_between_verifying_and_reading_is_refused() {
        let data = b"data".to_vec();
        let sums = format!("{}  a\n", crate::shared::hex(&Sha256::digest(&data)));
        let files = |s: &str, a: &[u8]| -> BTreeMap<String, Vec<u8>> {
            [
                (SUMS.to_string(), s.as_bytes().to_vec()),
                ("a".to_string(), a.to_vec()),
            ]
            .into()
        };
        let p = Path::new("b");
        assert!(
            finish(
                p,
                "directory",
                report(),
                sums.as_bytes(),
                files(&sums, &data),
                None
            )
            .is_ok()
        );
        // Another manifest read than the one that verified.
        let e = finish(p, "tar", report(), b"other", files(&sums, &data), None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("changed while it was read"), "{e}");
        // A file that is not what the manifest says.
        let e = finish(
            p,
            "tar",
            report(),
            sums.as_bytes(),
            files(&sums, b"evil"),
            None,
        )
        .err()
        .unwrap();
        assert!(e.to_string().ends_with(": a"), "{e}");
    }
}
