//! One signed apt repository from the main and devel discs and any number
//! of update discs.
//!
//! Every `.deb` under a disc's `pool/` is read once: the same stream is
//! hashed, scanned for its control member and (for images) copied into the
//! output pool, on all cores. Each file is checked against its disc's own
//! `Packages` index (chain of custody), the discs are merged (identical
//! packages once, every version kept, the same name/version/arch with other
//! bytes is an error naming both files),
//! and `Packages`, `Packages.gz`, `Packages.xz`, `Release`, `InRelease` and
//! `Release.gpg` are written. The output is built in a temporary directory
//! beside the target and renamed into place, so a failure leaves nothing
//! half-written; a rebuild reuses what a cache says did not change.

pub mod control;
pub mod deb;
pub mod policy;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::build::media::{MediaFile, Medium};
use crate::build::sign::{Keyring, Signers};
use crate::shared::staging::Staging;
use crate::shared::timefmt;
use control::Paragraph;
use deb::DebScanner;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The name of the incremental-build cache inside the output directory.
pub const CACHE_FILE: &str = ".airlock-cache.json";
/// The suite (and codename) Astra SE 1.7 discs use and the vendor
/// installer's sources.list names.
pub const ASTRA_SUITE: &str = "1.7_x86-64";
/// Components the vendor installer's sources.list names; always present so
/// `apt-get update` finds an index for each.
pub const ASTRA_COMPONENTS: [&str; 3] = ["main", "contrib", "non-free"];

/// The role of update disc `n` (counted from 0) in messages and summaries:
/// `update1`, `update2`, …
pub fn update_role(n: usize) -> String {
    format!("update{}", n + 1)
}

/// The discs in merge order with their roles: `main`, `devel` when given,
/// then `update1`, `update2`, … in the order given.
pub fn source_discs(
    main: &Path,
    devel: Option<&Path>,
    updates: &[PathBuf],
) -> Vec<(String, PathBuf)> {
    let mut discs = vec![("main".to_string(), main.to_path_buf())];
    if let Some(d) = devel {
        discs.push(("devel".to_string(), d.to_path_buf()));
    }
    for (n, u) in updates.iter().enumerate() {
        discs.push((update_role(n), u.clone()));
    }
    discs
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Options {
    /// (role, path) in merge order: `("main", …)`, `("devel", …)`,
    /// `("update1", …)` (see [`source_discs`]). Earlier discs win a tie.
    pub discs: Vec<(String, PathBuf)>,
    pub out: PathBuf,
    pub suite: String,
    /// Components written even when no package is in them.
    pub components: Vec<String>,
    /// Architectures written even when no package has them (`all` packages
    /// are listed under each).
    pub architectures: Vec<String>,
    /// Accept `.deb` files a disc's own index does not list (reported).
    pub allow_unlisted: bool,
    /// The vendor's public key, to check a disc's signed `Release`.
    pub disc_keyring: Option<PathBuf>,
    /// Seconds since the epoch for `Date` and signature times.
    pub time: i64,
    /// Show a progress bar (only drawn on a terminal).
    pub progress: bool,
    /// Worker threads; 0 = one per core.
    pub jobs: usize,
    /// The previous build's repository, whose pool files a rebuild reuses
    /// when its cache vouches for them.
    pub previous: Option<PathBuf>,
    /// The previous build's cache.
    pub previous_cache: Option<PathBuf>,
    /// Leave the previous pool's unchanged files where they are instead of
    /// linking each into the new pool: the pool directory itself moves
    /// into the new build when it is committed (see `takeover`). A build
    /// into its own previous output does that itself; a bundle, whose
    /// repository is one part of it, does it at its own commit.
    pub adopt: bool,
    /// Write no pool: read only each package's control member and take
    /// its SHA256 from its disc's own index (a package the index does not
    /// list is read whole). For a caller that streams the pool from the
    /// discs itself (`build --no-dir`): it must check every file against
    /// `Summary::pool_origin` as it goes.
    pub peek: bool,
    /// Take only these pool files (`repository.subset = "closure"`); the
    /// discs' other packages are left out of the repository.
    pub only: Option<BTreeSet<String>>,
}

/// What a build did, for people and for `--json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub out: PathBuf,
    pub suite: String,
    /// Packages in the repository, per component.
    pub packages: BTreeMap<String, usize>,
    pub total_packages: usize,
    /// Packages found on more than one disc with the same bytes, kept once.
    pub deduplicated: usize,
    /// Files accepted with `--allow-unlisted` that a disc's index does not list.
    pub unlisted: Vec<String>,
    /// Files that were not `.deb` packages under `pool/` (skipped).
    pub skipped: Vec<String>,
    pub architectures: Vec<String>,
    pub components: Vec<String>,
    /// Bytes of packages in the pool.
    pub bytes: u64,
    /// Bytes read and hashed in this run (less than `bytes` on a rebuild).
    pub hashed_bytes: u64,
    /// Packages taken from the cache without reading them.
    pub reused: usize,
    /// `.deb` files of the discs left out (`repository.subset`).
    #[serde(skip_serializing_if = "is_zero")]
    pub left_out: usize,
    pub discs: Vec<DiscSummary>,
    /// Why the previous build's cache was not used, if it was not.
    pub cache: Option<String>,
    /// What became of an earlier build of `out` that was interrupted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<String>,
    pub seconds: f64,
    /// (path in the repository, SHA256) of every pool file, so a bundle's
    /// SHA256SUMS need not hash them again.
    #[serde(skip)]
    pub pool_hashes: Vec<(String, String)>,
    /// Where each pool file comes from: its path → (the disc, counted in
    /// `Options::discs`' order, and its size).
    #[serde(skip)]
    pub pool_origin: BTreeMap<String, (usize, u64)>,
    /// With `Options::peek`: each pool file's control member digest as it
    /// was read, which its copy must match (see `DebScanner::control_digest`).
    #[serde(skip)]
    pub pool_control: BTreeMap<String, [u8; 32]>,
    /// With `Options::peek`: the pool files an earlier build checked in the
    /// very image they come from (`Medium::image_identity`), and each
    /// disc's image identity as this build opened it.
    #[serde(skip)]
    pub pool_unchanged: BTreeSet<String>,
    /// The pool files of `Options::previous` this build linked into its
    /// own pool when it does not adopt that pool (a delta's base): each
    /// link moved the file's status-change time, which the previous
    /// build's cache checks ([`refresh_linked`]).
    #[serde(skip)]
    pub linked: BTreeSet<String>,
    /// The index files as `Release` lists them, for the cache.
    #[serde(skip)]
    pub index_files: Vec<IndexFile>,
    #[serde(skip)]
    pub disc_images: Vec<Option<String>>,
    /// (disc role, control paragraph) of every package in the repository,
    /// as read from its `.deb`, so the completeness check reads nothing
    /// again.
    #[serde(skip)]
    pub catalog: Vec<(String, Paragraph)>,
    /// Every package of the repository with the disc it was taken from,
    /// in (name, version, architecture) order: the bundle's SBOM lists them.
    #[serde(skip)]
    pub debs: Vec<Deb>,
}

/// One package of the merged repository, as the bundle's SBOM lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Its path in the repository (`pool/…`).
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    /// The role of the disc it was taken from (`main`, `devel`, `update1`…;
    /// the first disc that has it, in merge order).
    pub disc: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiscSummary {
    pub role: String,
    pub source: String,
    pub debs: usize,
    /// `checked` (every .deb matched the disc's Packages), or `none` (the disc
    /// has no index to check against).
    pub index: String,
    pub release_signature: ReleaseSignature,
}

/// What a disc's own index says of one file.
#[derive(Debug, Clone)]
struct Listed {
    size: u64,
    sha256: String,
    component: String,
    index: String,
}

/// Whether a disc's `Release` signatures were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseSignature {
    /// The disc has no signed Release.
    Unsigned,
    /// Signed, but no `--disc-keyring` was given.
    #[serde(rename = "not checked")]
    NotChecked,
    /// Every index used is covered by a Release verified with the keyring.
    Verified,
}

impl std::fmt::Display for ReleaseSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReleaseSignature::Unsigned => "unsigned",
            ReleaseSignature::NotChecked => "not checked",
            ReleaseSignature::Verified => "verified",
        })
    }
}

/// A disc's `dists/` as far as it vouches for its pool.
#[derive(Debug)]
struct DiscIndex {
    files: HashMap<String, Listed>,
    present: bool,
    signature: ReleaseSignature,
}

/// What a pool file of an earlier build was (times in nanoseconds).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct FileIdentity {
    size: u64,
    mtime: i64,
    ctime: i64,
    ino: u64,
}

impl FileIdentity {
    fn of(path: &Path) -> Option<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::symlink_metadata(path).ok().filter(|m| m.is_file())?;
        Some(FileIdentity {
            size: m.len(),
            mtime: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            ino: m.ino(),
        })
    }
}

/// The cached facts about one source file (for incremental rebuilds).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct CacheEntry {
    disc: String,
    path: String,
    size: u64,
    mtime: i64,
    ctime: i64,
    ident: u64,
    /// The pool file this build wrote for it.
    pool: Option<FileIdentity>,
    sha256: String,
    control: String,
    /// The control member's digest (see `DebScanner::control_digest`),
    /// when it was peeked at (`Options::peek`): a `--no-dir` build that
    /// takes the control from the cache compares the copy's with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    control_digest: Option<String>,
    /// The identity of the image (`Medium::image_identity`) whose bytes of
    /// this file a build checked against `sha256`: while the image is the
    /// same, a `--no-dir` build copies it without hashing it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checked_in: Option<String>,
}

/// The cache file: entries sealed with a MAC keyed by the signing key, so
/// nothing written into it can reach a signed index.
#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    mac: String,
    entries: Vec<CacheEntry>,
    #[serde(default)]
    indexes: Vec<IndexFile>,
}

type CacheKey = (String, String, u64, i64, i64, u64);

impl CacheEntry {
    fn key(&self) -> CacheKey {
        (
            self.disc.clone(),
            self.path.clone(),
            self.size,
            self.mtime,
            self.ctime,
            self.ident,
        )
    }
}

/// One `.deb` to account for.
struct Job<'a> {
    disc: usize,
    file: &'a MediaFile,
    /// Where to put the bytes in the new pool (first occurrence of a path).
    dest: Option<PathBuf>,
    /// What the cache knew of it, until it is scanned.
    cached: Option<CacheEntry>,
    /// Whether the cache knew it (and the scan took what it knew).
    reused: bool,
    /// The SHA256 the disc's own index lists for it.
    listed: Option<String>,
}

impl Job<'_> {
    /// Whether this build reads the whole file (not taken from the cache,
    /// not only peeked at).
    fn is_read(&self, opts: &Options) -> bool {
        !(self.reused || opts.peek && self.listed.is_some())
    }
}

/// The result of reading one `.deb`.
#[derive(Debug, Clone)]
struct Scanned {
    sha256: String,
    control: Paragraph,
    /// With `Options::peek`: the control member's digest, for the copy.
    control_digest: Option<[u8; 32]>,
    /// The image identity in which these bytes are (or, with
    /// `Options::peek`, will have been, once copied) checked.
    checked_in: Option<String>,
    /// With `Options::peek`: checked in this very image before, so the
    /// copy need not be hashed again.
    unchanged: bool,
}

pub use crate::shared::hex;

/// HMAC-SHA256 (RFC 2104) fed as a writer, so what it seals need not be
/// held whole.
struct Hmac {
    key: [u8; 32],
    inner: sha2::Sha256,
}

impl Hmac {
    fn pad(key: &[u8; 32], x: u8) -> [u8; 64] {
        let mut k = [0u8; 64];
        k[..32].copy_from_slice(key);
        k.map(|b| b ^ x)
    }

    fn new(key: &[u8; 32]) -> Hmac {
        Hmac {
            key: *key,
            inner: sha2::Sha256::new().chain_update(Hmac::pad(key, 0x36)),
        }
    }

    fn finish(self) -> [u8; 32] {
        sha2::Sha256::new()
            .chain_update(Hmac::pad(&self.key, 0x5c))
            .chain_update(self.inner.finalize())
            .finalize()
            .into()
    }
}

impl std::io::Write for Hmac {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The seal of a cache's entries and index files: the MAC of their compact
/// JSON, computed as it is written out (a cache of 2,500 packages is 6 MB
/// of JSON).
fn entries_mac<E: Serialize>(
    seal: &[u8; 32],
    entries: &[E],
    indexes: &[IndexFile],
) -> Result<String> {
    let mut h = Hmac::new(seal);
    serde_json::to_writer(&mut h, entries)?;
    serde_json::to_writer(&mut h, indexes)?;
    Ok(hex(&h.finish()))
}

/// The key that seals the cache: derived from the signing keys' secrets,
/// so whoever can change the cache but not read the keys cannot forge it.
fn cache_key(signers: &Signers) -> Result<[u8; 32]> {
    let mut h = sha2::Sha256::new().chain_update(b"airlock repository cache seal\0");
    for key in signers.keys() {
        h.update(key.secret_armored()?.as_bytes());
    }
    Ok(h.finalize().into())
}

/// Checks `--suite`, the components and the architectures: each becomes a
/// directory under `dists/` and a word in the signed Release.
fn check_options(opts: &Options) -> Result<()> {
    let mut problems = Vec::new();
    if let Err(e) = policy::archive_name(&opts.suite, "suite") {
        problems.push(format!("--suite: {e}"));
    }
    for c in &opts.components {
        if let Err(e) = policy::component(c) {
            problems.push(format!("component: {e}"));
        }
    }
    for a in &opts.architectures {
        if let Err(e) = policy::architecture(a) {
            problems.push(format!("architecture: {e}"));
        }
    }
    if !problems.is_empty() {
        bail!(report("refusing to build", &problems));
    }
    Ok(())
}

/// Builds the repository described by `opts`, signed with every key of
/// `key`.
pub fn build(opts: &Options, key: &Signers) -> Result<Summary> {
    let started = Instant::now();
    let recovered = crate::build::takeover::recover(&opts.out)?;
    check_options(opts)?;
    let (media, indexes) = open_discs(opts)?;
    let seal = cache_key(key)?;
    let (mut cache, known_indexes, cache_note) = read_cache(opts, &seal);
    let staging = Staging::beside(&opts.out)?;
    let mut summary = Summary {
        out: opts.out.clone(),
        suite: opts.suite.clone(),
        cache: cache_note,
        recovered,
        disc_images: media
            .iter()
            .map(|m| m.image_identity().map(str::to_string))
            .collect(),
        ..Summary::default()
    };
    let mut jobs = plan_jobs(
        opts,
        &media,
        &indexes,
        &mut cache,
        staging.path(),
        &mut summary,
    );
    // Every file as the cache knew it and nothing else: the cache can stay.
    let unchanged = cache.is_empty() && jobs.iter().all(|j| j.reused);
    drop(cache);
    check_index_is_complete(&media, &indexes)?;
    let results = scan_all(&media, &jobs, opts)?;
    // What the cache knew is in the results now (its copy is megabytes).
    for job in &mut jobs {
        job.cached = None;
    }
    summary.hashed_bytes = jobs
        .iter()
        .filter(|j| j.is_read(opts))
        .map(|j| j.file.size)
        .sum();
    summary.reused = jobs.iter().filter(|j| j.reused).count();
    if opts.previous.is_some() && !opts.adopt {
        summary.linked = jobs
            .iter()
            .filter(|j| j.reused && j.dest.is_some())
            .map(|j| j.file.path.clone())
            .collect();
    }
    check_custody(opts, &media, &indexes, &jobs, &results, &mut summary)?;
    let merged = merge(opts, &media, &indexes, &jobs, &results, &mut summary)?;
    remove_duplicate_files(opts, &jobs, &merged)?;
    let written = write_indexes(opts, staging.path(), &jobs, &results, &merged, &mut summary)?;
    sign_indexes(
        opts,
        key,
        staging.path(),
        &written,
        &known_indexes,
        &mut summary,
    )?;
    let mut cache_kept = false;
    if opts.adopt && opts.previous.as_deref() == Some(opts.out.as_path()) {
        // Nothing changed and the pool is taken over as it is: the cache
        // still names every file rightly, so it goes along (a link).
        cache_kept = unchanged
            && fs::hard_link(opts.out.join(CACHE_FILE), staging.path().join(CACHE_FILE)).is_ok();
        let wanted = summary.pool_hashes.iter().map(|(p, _)| p.clone()).collect();
        crate::build::takeover::commit(staging, &opts.out, "pool", wanted)?;
    } else {
        staging.replace(&opts.out)?;
    }
    if !cache_kept {
        // The cache names the pool files as they are now, in place.
        write_cache(opts, &seal, &jobs, &results, &summary.index_files)?;
    }
    // The controls move into the catalog: nothing needs them here any more.
    let mut controls: Vec<Option<Paragraph>> =
        results.into_iter().map(|s| Some(s.control)).collect();
    summary.catalog = merged
        .values()
        .filter_map(|e| {
            let control = controls[e.job].take()?;
            Some((opts.discs[jobs[e.job].disc].0.clone(), control))
        })
        .collect();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Opens every disc and reads what its own index vouches for.
fn open_discs(opts: &Options) -> Result<(Vec<Medium>, Vec<DiscIndex>)> {
    let keyring = opts
        .disc_keyring
        .as_deref()
        .map(Keyring::load)
        .transpose()?;
    let mut media = Vec::new();
    let mut indexes = Vec::new();
    for (role, path) in &opts.discs {
        let medium = Medium::open(path).with_context(|| format!("reading the {role} disc"))?;
        let index = read_disc_index(&medium, keyring.as_ref(), None)?;
        media.push(medium);
        indexes.push(index);
    }
    Ok((media, indexes))
}

/// (disc role, paragraph) of every package the discs' own indexes list,
/// in merge order: what `airlock check` reads instead of every `.deb`
/// (each index checked against its disc's `Release`, as a build checks it;
/// the build then checks every `.deb` against the index).
pub fn disc_catalog(discs: &[(String, PathBuf)]) -> Result<Vec<(String, Paragraph)>> {
    let mut out = Vec::new();
    for (role, path) in discs {
        let medium = Medium::open(path).with_context(|| format!("reading the {role} disc"))?;
        let mut paragraphs = Vec::new();
        let index = read_disc_index(&medium, None, Some(&mut paragraphs))?;
        if !index.present {
            bail!(
                "{}: the {role} disc has no Packages index (dists/*/*/binary-*/Packages): `airlock check` reads the discs' own indexes; `airlock build` reads every package and runs the same check",
                medium.label
            );
        }
        out.extend(paragraphs.into_iter().map(|p| (role.clone(), p)));
    }
    Ok(out)
}

/// One `.deb` job per pool file, with what the cache knows of it.
fn plan_jobs<'a>(
    opts: &Options,
    media: &'a [Medium],
    indexes: &[DiscIndex],
    cache: &mut HashMap<CacheKey, CacheEntry>,
    staging: &Path,
    summary: &mut Summary,
) -> Vec<Job<'a>> {
    let mut jobs = Vec::new();
    let mut claimed: BTreeSet<&str> = BTreeSet::new();
    for (d, medium) in media.iter().enumerate() {
        let role = &opts.discs[d].0;
        let mut debs = 0;
        for f in medium.files() {
            if !f.path.starts_with("pool/") {
                continue;
            }
            if !f.path.ends_with(".deb") {
                summary.skipped.push(format!("{}:{}", medium.label, f.path));
                continue;
            }
            if opts
                .only
                .as_ref()
                .is_some_and(|only| !only.contains(&f.path))
            {
                summary.left_out += 1;
                continue;
            }
            debs += 1;
            let dest =
                (claimed.insert(f.path.as_str()) && !opts.peek).then(|| staging.join(&f.path));
            let listed_sha = indexes[d].files.get(&f.path).map(|l| &l.sha256);
            let key = (
                role.clone(),
                f.path.clone(),
                f.size,
                f.mtime,
                f.ctime,
                f.ident,
            );
            // Taken out of the cache, not copied: each key is one file.
            let cached = cache
                .remove(&key)
                // The disc's index re-checks what the cache remembers.
                .filter(|c| listed_sha.is_none_or(|want| *want == c.sha256))
                .filter(|c| match opts.peek {
                    // Only the control is taken (the copy is checked
                    // against the index's hash and this digest).
                    true => listed_sha.is_some() && c.control_digest.is_some(),
                    // The previous pool file must be as this build left it.
                    false => {
                        c.pool.is_some()
                            && opts
                                .previous
                                .as_ref()
                                .is_some_and(|p| FileIdentity::of(&p.join(&f.path)) == c.pool)
                    }
                });
            jobs.push(Job {
                disc: d,
                file: f,
                dest,
                reused: cached.is_some(),
                cached,
                listed: listed_sha.cloned(),
            });
        }
        summary.discs.push(DiscSummary {
            role: role.clone(),
            source: medium.label.clone(),
            debs,
            index: if indexes[d].present {
                "checked"
            } else {
                "none"
            }
            .into(),
            release_signature: indexes[d].signature,
        });
    }
    jobs
}

/// Every file a disc's index lists is on the disc.
fn check_index_is_complete(media: &[Medium], indexes: &[DiscIndex]) -> Result<()> {
    for (d, index) in indexes.iter().enumerate() {
        let mut missing: Vec<&String> = index
            .files
            .keys()
            .filter(|p| media[d].find(p).is_none())
            .collect();
        missing.sort();
        if let Some(first) = missing.first() {
            bail!(
                "{}: {} file(s) listed in the disc's index are missing from its pool, first {first} (listed in {}); the disc is incomplete",
                media[d].label,
                missing.len(),
                index.files[*first].index
            );
        }
    }
    Ok(())
}

/// Chain of custody: each file as its disc's index lists it (size, SHA256).
fn check_custody(
    opts: &Options,
    media: &[Medium],
    indexes: &[DiscIndex],
    jobs: &[Job<'_>],
    results: &[Scanned],
    summary: &mut Summary,
) -> Result<()> {
    let mut errors = Vec::new();
    for (job, s) in jobs.iter().zip(results) {
        let label = &media[job.disc].label;
        let index = &indexes[job.disc];
        if !index.present {
            continue;
        }
        match index.files.get(&job.file.path) {
            None if opts.allow_unlisted => summary.unlisted.push(format!("{label}:{}", job.file.path)),
            None => errors.push(format!(
                "{label}: {} is not listed in the disc's Packages index (pass --allow-unlisted to accept such files; they are reported)",
                job.file.path
            )),
            Some(l) if l.size != job.file.size || l.sha256 != s.sha256 => errors.push(format!(
                "{label}: {} does not match the disc's index {}: listed {} bytes sha256 {}, found {} bytes sha256 {}",
                job.file.path, l.index, l.size, l.sha256, job.file.size, s.sha256
            )),
            Some(_) => {}
        }
    }
    if !errors.is_empty() {
        bail!(report("chain of custody broken", &errors));
    }
    Ok(())
}

/// A package in the merged repository.
struct Entry {
    job: usize,
    arch: String,
    component: String,
}

/// The fields that name a package, checked against Debian policy.
fn identity_of(
    s: &Scanned,
    label: &str,
    path: &str,
) -> Result<(String, String, String), Vec<String>> {
    let mut errors = Vec::new();
    let mut field = |name: &str, check: fn(&str) -> Result<(), String>| -> String {
        match s.control.get(name).map(str::trim) {
            Some(v) if !v.is_empty() => {
                if let Err(e) = check(v) {
                    errors.push(format!("{label}: {path}: {name}: {e}"));
                }
                v.to_string()
            }
            _ => {
                errors.push(format!(
                    "{label}: {path}: the control file has no {name} field"
                ));
                String::new()
            }
        }
    };
    let name = field("Package", policy::package_name);
    let version = field("Version", policy::version);
    let arch = field("Architecture", policy::architecture);
    if let Err(e) = policy::pool_path(path) {
        errors.push(format!("{label}: {e}"));
    }
    if errors.is_empty() {
        Ok((name, version, arch))
    } else {
        Err(errors)
    }
}

/// Merges the discs: one entry per (name, version, architecture); the same
/// with other bytes is an error naming both files.
fn merge(
    opts: &Options,
    media: &[Medium],
    indexes: &[DiscIndex],
    jobs: &[Job<'_>],
    results: &[Scanned],
    summary: &mut Summary,
) -> Result<BTreeMap<(String, String, String), Entry>> {
    let mut errors = Vec::new();
    let mut merged: BTreeMap<(String, String, String), Entry> = BTreeMap::new();
    let mut by_path: HashMap<&str, usize> = HashMap::new();
    for (i, (job, s)) in jobs.iter().zip(results).enumerate() {
        let label = &media[job.disc].label;
        let (name, version, arch) = match identity_of(s, label, &job.file.path) {
            Ok(id) => id,
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        if let Some(&first) = by_path.get(job.file.path.as_str()) {
            if results[first].sha256 != s.sha256 {
                errors.push(format!(
                    "{} on the {} disc ({}) and on the {} disc ({}) have the same path but different bytes",
                    job.file.path,
                    opts.discs[jobs[first].disc].0,
                    media[jobs[first].disc].label,
                    opts.discs[job.disc].0,
                    label
                ));
                continue;
            }
        } else {
            by_path.insert(&job.file.path, i);
        }
        let component = indexes[job.disc]
            .files
            .get(&job.file.path)
            .map(|l| l.component.clone())
            .unwrap_or_else(|| component_of(&job.file.path));
        if let Err(e) = policy::component(&component) {
            errors.push(format!("{label}: {}: {e}", job.file.path));
            continue;
        }
        let key = (name.clone(), version.clone(), arch.clone());
        match merged.get(&key) {
            Some(e) if results[e.job].sha256 == s.sha256 => summary.deduplicated += 1,
            Some(e) => {
                let first = &jobs[e.job];
                errors.push(format!(
                    "{name} {version} {arch} is on the {} disc as {}:{} and on the {} disc as {}:{} with different bytes (sha256 {} vs {}); remove one of them",
                    opts.discs[first.disc].0,
                    media[first.disc].label,
                    first.file.path,
                    opts.discs[job.disc].0,
                    label,
                    job.file.path,
                    results[e.job].sha256,
                    s.sha256
                ));
            }
            None => {
                merged.insert(
                    key,
                    Entry {
                        job: i,
                        arch,
                        component,
                    },
                );
            }
        }
    }
    if !errors.is_empty() {
        bail!(report("cannot merge the discs", &errors));
    }
    Ok(merged)
}

/// Files of duplicates that were written under their own path go away
/// (an adopted one was never written).
fn remove_duplicate_files(
    opts: &Options,
    jobs: &[Job<'_>],
    merged: &BTreeMap<(String, String, String), Entry>,
) -> Result<()> {
    let kept: BTreeSet<&str> = merged
        .values()
        .map(|e| jobs[e.job].file.path.as_str())
        .collect();
    for job in jobs {
        if let Some(dest) = &job.dest
            && !kept.contains(job.file.path.as_str())
            && !(opts.adopt && job.reused)
        {
            fs::remove_file(dest)
                .with_context(|| format!("removing the duplicate {}", dest.display()))?;
        }
    }
    Ok(())
}

/// `Packages` per component and architecture, as `Release` lists them.
fn write_indexes(
    opts: &Options,
    staging: &Path,
    jobs: &[Job<'_>],
    results: &[Scanned],
    merged: &BTreeMap<(String, String, String), Entry>,
    summary: &mut Summary,
) -> Result<Vec<IndexFile>> {
    let mut components: BTreeSet<String> = opts.components.iter().cloned().collect();
    let mut archs: BTreeSet<String> = opts.architectures.iter().cloned().collect();
    for e in merged.values() {
        components.insert(e.component.clone());
        if e.arch != "all" {
            archs.insert(e.arch.clone());
        }
    }
    if archs.is_empty() {
        archs.insert("amd64".into());
    }
    let dists = staging.join("dists").join(&opts.suite);
    let indexes = write_packages(&dists, &components, &archs, jobs, results, merged, summary)?;
    summary.components = components.iter().cloned().collect();
    summary.architectures = archs.iter().cloned().collect();
    Ok(indexes)
}

/// The `Packages` files `indexes` (as written) also gzip and xz
/// compressed, then `Release`, `InRelease` and `Release.gpg`. A rebuild
/// whose cache was accepted (same airlock, same key) takes the previous
/// build's compressed files where the text is the same (`known`: what the
/// cache says that build's `Release` listed).
fn sign_indexes(
    opts: &Options,
    key: &Signers,
    staging: &Path,
    indexes: &[IndexFile],
    known: &[IndexFile],
    summary: &mut Summary,
) -> Result<()> {
    let dists = staging.join("dists").join(&opts.suite);
    let previous = opts
        .previous
        .as_ref()
        .filter(|_| summary.cache.is_none() && summary.reused > 0)
        .map(|p| p.join("dists").join(&opts.suite));
    let earlier = previous.as_deref().map(|p| (p, known));
    let mut release_files = compress_indexes(&dists, indexes, earlier)?;
    release_files.extend_from_slice(indexes);
    let release = render_release(
        &opts.suite,
        opts.time,
        &summary.architectures,
        &summary.components,
        &release_files,
    );
    write_file(&dists.join("Release"), release.as_bytes())?;
    let inrelease = key
        .clearsign(&release, opts.time)
        .context("signing InRelease")?;
    write_file(&dists.join("InRelease"), inrelease.as_bytes())?;
    let detached = key
        .detached_armored(release.as_bytes(), opts.time)
        .context("signing Release.gpg")?;
    write_file(&dists.join("Release.gpg"), detached.as_bytes())?;
    summary.index_files = release_files;
    Ok(())
}

/// Every `Packages` index, one per component and architecture, written
/// under `dists` a paragraph at a time (an index is megabytes: it is not
/// held) and hashed as it is written.
fn write_packages(
    dists: &Path,
    components: &BTreeSet<String>,
    archs: &BTreeSet<String>,
    jobs: &[Job<'_>],
    results: &[Scanned],
    merged: &BTreeMap<(String, String, String), Entry>,
    summary: &mut Summary,
) -> Result<Vec<IndexFile>> {
    // Each index's file (a paragraph is in it once it has a size).
    let mut packages: BTreeMap<(String, String), Hashing<std::io::BufWriter<fs::File>>> =
        BTreeMap::new();
    for c in components {
        for a in archs {
            let path = dists.join(format!("{c}/binary-{a}/Packages"));
            packages.insert((c.clone(), a.clone()), Hashing::new(create_file(&path)?));
        }
    }
    for ((name, version, _), e) in merged {
        let job = &jobs[e.job];
        let s = &results[e.job];
        summary.debs.push(Deb {
            name: name.clone(),
            version: version.clone(),
            arch: e.arch.clone(),
            filename: job.file.path.clone(),
            size: job.file.size,
            sha256: s.sha256.clone(),
            disc: summary.discs[job.disc].role.clone(),
        });
        let mut p = s.control.clone();
        for f in ["Filename", "Size", "MD5sum", "SHA1", "SHA256", "SHA512"] {
            p.remove(f);
        }
        p.set("Filename", job.file.path.clone());
        p.set("Size", job.file.size.to_string());
        p.set("SHA256", s.sha256.clone());
        let text = p.to_text();
        for a in archs.iter().filter(|a| e.arch == "all" || **a == e.arch) {
            let out = packages
                .get_mut(&(e.component.clone(), a.clone()))
                .expect("every component/arch pair exists");
            let separator: &[u8] = if out.size > 0 { b"\n" } else { b"" };
            out.write_all(separator)
                .and_then(|_| out.write_all(text.as_bytes()))
                .with_context(|| {
                    let rel = format!("{}/binary-{a}/Packages", e.component);
                    format!("writing {}", dists.join(rel).display())
                })?;
        }
        summary
            .pool_hashes
            .push((job.file.path.clone(), s.sha256.clone()));
        summary
            .pool_origin
            .insert(job.file.path.clone(), (job.disc, job.file.size));
        if let Some(d) = s.control_digest {
            summary.pool_control.insert(job.file.path.clone(), d);
        }
        if s.unchanged {
            summary.pool_unchanged.insert(job.file.path.clone());
        }
        *summary.packages.entry(e.component.clone()).or_default() += 1;
        summary.total_packages += 1;
        summary.bytes += job.file.size;
    }
    let mut written = Vec::new();
    for ((c, a), out) in packages {
        let rel = format!("{c}/binary-{a}/Packages");
        let (out, listed) = out.listed(rel);
        out.into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", dists.join(&listed.rel).display()))?;
        written.push(listed);
    }
    Ok(written)
}

/// A writer that hashes and counts what passes through it: an index file
/// as `Release` lists it, without reading it again (or, into a sink, the
/// hash of a rendering never held whole).
pub(crate) struct Hashing<W> {
    inner: W,
    sha: sha2::Sha256,
    size: u64,
}

impl<W: Write> Hashing<W> {
    pub(crate) fn new(inner: W) -> Self {
        Hashing {
            inner,
            sha: sha2::Sha256::new(),
            size: 0,
        }
    }

    /// The inner writer, and the size and SHA-256 of what passed.
    pub(crate) fn finish(self) -> (W, u64, [u8; 32]) {
        (self.inner, self.size, self.sha.finalize().into())
    }

    /// The inner writer, and what passed as the file `rel` lists it.
    fn listed(self, rel: String) -> (W, IndexFile) {
        let (inner, size, sha256) = self.finish();
        let listed = IndexFile {
            rel,
            size,
            sha256: hex(&sha256),
        };
        (inner, listed)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Each `Packages` file of `indexes` (as written under `dists`) also
/// written gzip and xz compressed, streamed from it: the gzip files on one
/// thread while the xz files are made one after the other on this one (an
/// xz encoder's tables are megabytes; one per index at once was most of a
/// build's peak memory). `earlier`: the previous build's dists/SUITE and
/// what its cache says that build's `Release` listed; a compressed file of
/// it is taken when this text hashes as that build's did and the file still
/// hashes as listed (compressing, and then expanding the earlier files to
/// compare them, was most of a rebuild's work when nothing changed).
/// Returns the compressed files as `Release` lists them.
fn compress_indexes(
    dists: &Path,
    indexes: &[IndexFile],
    earlier: Option<(&Path, &[IndexFile])>,
) -> Result<Vec<IndexFile>> {
    let known = |rel: &str| earlier.and_then(|(_, k)| k.iter().find(|f| f.rel == rel));
    // The earlier compressed file `rel` of the text `text`, if it is the
    // one to take.
    let reusable = |text: &IndexFile, rel: &str| -> Option<Vec<u8>> {
        let (dir, _) = earlier?;
        known(&text.rel).filter(|k| k.sha256 == text.sha256)?;
        let want = known(rel)?;
        let bytes = fs::read(dir.join(rel)).ok()?;
        (hex(&sha2::Sha256::digest(&bytes)) == want.sha256).then_some(bytes)
    };
    let packed = |ext: &str, pack: fn(fs::File, &mut dyn Write) -> Result<()>| {
        let mut files = Vec::new();
        for text in indexes {
            let rel = format!("{}.{ext}", text.rel);
            let to = dists.join(&rel);
            let mut out = Hashing::new(create_file(&to)?);
            let written = match reusable(text, &rel) {
                Some(bytes) => out.write_all(&bytes).map_err(anyhow::Error::from),
                None => fs::File::open(dists.join(&text.rel))
                    .with_context(|| format!("reading {}", dists.join(&text.rel).display()))
                    .and_then(|from| pack(from, &mut out)),
            };
            let (out, listed) = out.listed(rel);
            written
                .and_then(|_| out.into_inner().map_err(|e| e.into_error().into()))
                .with_context(|| format!("writing {}", to.display()))?;
            files.push(listed);
        }
        Ok::<_, anyhow::Error>(files)
    };
    let (gz, xz) = std::thread::scope(|scope| {
        let gz = scope.spawn(|| packed("gz", |from, to| gzip_into(from, to).map(drop)));
        let xz = packed("xz", |from, to| xz_into(from, to).map(drop));
        (gz.join().expect("gzip does not panic"), xz)
    });
    let mut files = gz.context("compressing the Packages indexes")?;
    files.extend(xz.context("compressing the Packages indexes")?);
    Ok(files)
}

/// An index file as `Release` lists it: its path under dists/SUITE, size
/// and SHA256 (and as the cache keeps them, for the next build).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexFile {
    pub rel: String,
    pub size: u64,
    pub sha256: String,
}

/// The cache for the next build, sealed, in the output: what each pool
/// file is now. Written from what the build holds, not copied into
/// entries first (every control paragraph is megabytes in all).
fn write_cache(
    opts: &Options,
    seal: &[u8; 32],
    jobs: &[Job<'_>],
    results: &[Scanned],
    indexes: &[IndexFile],
) -> Result<()> {
    let mut entries: Vec<CacheEntryOut<'_>> = jobs
        .iter()
        .zip(results)
        .map(|(job, s)| CacheEntryOut {
            disc: &opts.discs[job.disc].0,
            path: &job.file.path,
            size: job.file.size,
            mtime: job.file.mtime,
            ctime: job.file.ctime,
            ident: job.file.ident,
            pool: FileIdentity::of(&opts.out.join(&job.file.path)),
            sha256: &s.sha256,
            control: &s.control,
            control_digest: s.control_digest.as_ref().map(|d| hex(d)),
            checked_in: s.checked_in.as_deref(),
        })
        .collect();
    entries.sort_by(|a, b| (a.disc, a.path).cmp(&(b.disc, b.path)));
    write_cache_file(&opts.out.join(CACHE_FILE), seal, &entries, indexes)
}

/// A [`CacheEntry`] as a build writes it from what it holds: serialized
/// exactly as one (the seal is over those bytes), borrowing.
#[derive(Serialize)]
struct CacheEntryOut<'a> {
    disc: &'a str,
    path: &'a str,
    size: u64,
    mtime: i64,
    ctime: i64,
    ident: u64,
    pool: Option<FileIdentity>,
    sha256: &'a str,
    #[serde(serialize_with = "paragraph_text")]
    control: &'a Paragraph,
    #[serde(skip_serializing_if = "Option::is_none")]
    control_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checked_in: Option<&'a str>,
}

/// A paragraph as the string [`Paragraph::to_text`] gives, streamed.
fn paragraph_text<S: serde::Serializer>(p: &&Paragraph, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(*p)
}

/// Writes a cache for the repository at `repo`, naming each pool file as it
/// is now, sealed with `seal`; atomically.
fn save_cache(repo: &Path, path: &Path, seal: &[u8; 32], file: CacheFile) -> Result<()> {
    let mut entries = file.entries;
    for e in &mut entries {
        e.pool = FileIdentity::of(&repo.join(&e.path));
    }
    entries.sort_by(|a, b| (&a.disc, &a.path).cmp(&(&b.disc, &b.path)));
    write_cache_file(path, seal, &entries, &file.indexes)
}

/// Writes the cache file at `path` of `entries` (in their order: by disc,
/// then path), sealed with `seal`; atomically.
fn write_cache_file<E: Serialize>(
    path: &Path,
    seal: &[u8; 32],
    entries: &[E],
    indexes: &[IndexFile],
) -> Result<()> {
    /// [`CacheFile`] as written.
    #[derive(Serialize)]
    struct CacheFileOut<'a, E> {
        version: u32,
        mac: String,
        entries: &'a [E],
        indexes: &'a [IndexFile],
    }
    let file = CacheFileOut {
        version: CACHE_VERSION,
        mac: entries_mac(seal, entries, indexes)?,
        entries,
        indexes,
    };
    let tmp = path.with_extension("json.airlock-new");
    let out = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    serde_json::to_writer(&mut out, &file)
        .map_err(anyhow::Error::from)
        .and_then(|_| Ok(out.flush()?))
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(out);
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// After the repository at `repo` moved (a bundle put in place, the old one
/// removed), names its pool files in the cache at `cache` as they are now.
/// A cache without this key's seal is left alone.
pub fn refresh_cache(repo: &Path, cache: &Path, key: &Signers) -> Result<()> {
    let seal = cache_key(key)?;
    let Some(file) = read_cache_file(cache) else {
        return Ok(());
    };
    if entries_mac(&seal, &file.entries, &file.indexes)? != file.mac {
        return Ok(());
    }
    save_cache(repo, cache, &seal, file)
}

/// After a build linked the pool files `linked` of the repository at
/// `repo` (a delta's base, read only) into its own pool and removed them
/// again, names them in that repository's cache at `cache` as they are now:
/// the links moved only their status-change time, so a file whose size,
/// inode and modification time are still what the cache recorded (it was
/// reused as that build left it moments ago) is named anew; every other
/// entry is left as it was, to be read again.
pub fn refresh_linked(
    repo: &Path,
    cache: &Path,
    key: &Signers,
    linked: &BTreeSet<String>,
) -> Result<()> {
    let seal = cache_key(key)?;
    let Some(mut file) = read_cache_file(cache) else {
        return Ok(());
    };
    if linked.is_empty() || entries_mac(&seal, &file.entries, &file.indexes)? != file.mac {
        return Ok(());
    }
    for e in file.entries.iter_mut().filter(|e| linked.contains(&e.path)) {
        let now = FileIdentity::of(&repo.join(&e.path));
        if let (Some(was), Some(now)) = (e.pool, now)
            && (was.size, was.ino, was.mtime) == (now.size, now.ino, now.mtime)
        {
            e.pool = Some(now);
        }
    }
    let mut entries = file.entries;
    entries.sort_by(|a, b| (&a.disc, &a.path).cmp(&(&b.disc, &b.path)));
    write_cache_file(cache, &seal, &entries, &file.indexes)
}

const CACHE_VERSION: u32 = 6;

fn report(what: &str, errors: &[String]) -> String {
    let mut s = format!("{what}: {} problem(s)", errors.len());
    for e in errors.iter().take(20) {
        let _ = write!(s, "\n  {e}");
    }
    if errors.len() > 20 {
        let _ = write!(s, "\n  … and {} more", errors.len() - 20);
    }
    s
}

/// `pool/<component>/…` → component (`main` when the layout says nothing).
fn component_of(path: &str) -> String {
    let mut parts = path.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("pool"), Some(c), Some(_)) => c.to_string(),
        _ => "main".to_string(),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// A new file at `path` (its directory made), buffered for writing.
fn create_file(path: &Path) -> Result<std::io::BufWriter<fs::File>> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(std::io::BufWriter::with_capacity(1 << 16, f))
}

/// gzip with no name and no time in the header (reproducible), from a
/// reader into a writer (returned, all written to it), as the indexes use
/// it. Changing its level (or xz's) changes the bytes a build writes: bump
/// `CACHE_VERSION`, or a rebuild would keep an earlier build's compressed
/// indexes.
pub fn gzip_into<W: Write>(mut from: impl std::io::Read, to: W) -> Result<W> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(to, flate2::Compression::best());
    std::io::copy(&mut from, &mut enc)?;
    let mut to = enc.finish()?;
    to.flush()?;
    Ok(to)
}

/// xz, preset 0, CRC64, from a reader into a writer (returned, all written
/// to it). The repository is read from a disc or a local path, so its
/// index's size hardly matters, while the encoder's tables were the
/// largest thing a build holds at its end. On the 2.9 MB index of corpus
/// C's main component (xz 5.4, whole-process RSS): preset 0 takes 0.12 s
/// and 4.7 MB for 683 kB, preset 1 0.14 s and 10.7 MB for 615 kB; on the
/// 1.5 MB index of 1,351 packages preset 3 took 0.20 s and 18 MB, preset 6
/// (xz's default) twice that time.
pub fn xz_into<W: Write>(mut from: impl std::io::Read, to: W) -> Result<W> {
    let mut enc = liblzma::write::XzEncoder::new(to, 0);
    std::io::copy(&mut from, &mut enc)?;
    let mut to = enc.finish()?;
    to.flush()?;
    Ok(to)
}

/// The `Release` file: fields, then `SHA256:` lines ` <hash> <size> <path>`.
pub fn render_release(
    suite: &str,
    time: i64,
    architectures: &[String],
    components: &[String],
    files: &[IndexFile],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Origin: airlock");
    let _ = writeln!(out, "Label: {}", crate::shared::paths::REPO_LABEL);
    let _ = writeln!(out, "Suite: {suite}");
    let _ = writeln!(out, "Codename: {suite}");
    let _ = writeln!(out, "Date: {}", timefmt::rfc2822_utc(time));
    let _ = writeln!(out, "Architectures: {}", architectures.join(" "));
    let _ = writeln!(out, "Components: {}", components.join(" "));
    let _ = writeln!(
        out,
        "Description: Astra Linux SE 1.7 main and devel discs, merged and signed by airlock"
    );
    let _ = writeln!(out, "SHA256:");
    let width = files
        .iter()
        .map(|f| f.size.to_string().len())
        .max()
        .unwrap_or(1);
    let mut sorted: Vec<&IndexFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.rel.cmp(&b.rel));
    for f in sorted {
        let _ = writeln!(out, " {} {:>width$} {}", f.sha256, f.size, f.rel);
    }
    out
}

/// Reads the cache of a previous build. A missing, unreadable or unsealed
/// cache means a full build (and a note saying so).
fn read_cache(
    opts: &Options,
    seal: &[u8; 32],
) -> (
    HashMap<CacheKey, CacheEntry>,
    Vec<IndexFile>,
    Option<String>,
) {
    let Some(path) = opts.previous_cache.as_ref() else {
        return (HashMap::new(), Vec::new(), None);
    };
    if !path.exists() {
        return (HashMap::new(), Vec::new(), None);
    }
    let Some(file) = read_cache_file(path).filter(|f| f.version == CACHE_VERSION) else {
        return (
            HashMap::new(),
            Vec::new(),
            Some(format!(
                "{} is not a cache of this airlock: everything was read again",
                path.display()
            )),
        );
    };
    if entries_mac(seal, &file.entries, &file.indexes)
        .ok()
        .as_ref()
        != Some(&file.mac)
    {
        return (
            HashMap::new(),
            Vec::new(),
            Some(format!(
                "{} does not carry this signing key's seal (altered, or from another key): everything was read again",
                path.display()
            )),
        );
    }
    let map = file.entries.into_iter().map(|e| (e.key(), e)).collect();
    (map, file.indexes, None)
}

/// A cache file as read (its bytes are gone once it is parsed).
fn read_cache_file(path: &Path) -> Option<CacheFile> {
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The most a compressed index may expand to.
const MAX_INDEX_BYTES: u64 = 128 << 20;

/// A disc's Release: the SHA256 of each index it lists, and whether it was
/// verified.
struct DiscRelease {
    sums: BTreeMap<String, (u64, String)>,
    verified: bool,
}

/// Reads each `dists/SUITE/Release` of a disc, checking its signature with
/// `keyring` when given.
fn read_releases(
    medium: &Medium,
    keyring: Option<&Keyring>,
) -> Result<BTreeMap<String, DiscRelease>> {
    let label = &medium.label;
    let mut releases = BTreeMap::new();
    for f in medium.files() {
        let parts: Vec<&str> = f.path.split('/').collect();
        if parts.len() != 3 || parts[0] != "dists" || parts[2] != "Release" {
            continue;
        }
        let suite_dir = format!("dists/{}", parts[1]);
        if f.size > MAX_INDEX_BYTES {
            bail!(
                "{label}: {} is {} bytes: not a Release file",
                f.path,
                f.size
            );
        }
        let text = String::from_utf8(medium.read(f)?)
            .with_context(|| format!("{label}: {} is not text", f.path))?;
        let verified = match keyring {
            None => false,
            Some(k) => {
                verify_release(medium, k, &suite_dir, &text)?;
                true
            }
        };
        let para =
            Paragraph::parse(&text).map_err(|e| anyhow::anyhow!("{label}: {}: {e}", f.path))?;
        let mut sums = BTreeMap::new();
        for line in para.get("SHA256").unwrap_or("").lines().map(str::trim) {
            let w: Vec<&str> = line.split_whitespace().collect();
            if let [hash, size, path] = w[..] {
                let size: u64 = size.parse().unwrap_or(u64::MAX);
                sums.insert(path.to_string(), (size, hash.to_ascii_lowercase()));
            }
        }
        releases.insert(suite_dir, DiscRelease { sums, verified });
    }
    Ok(releases)
}

/// Checks a disc Release's signature (InRelease or Release.gpg).
fn verify_release(medium: &Medium, k: &Keyring, suite_dir: &str, text: &str) -> Result<()> {
    let label = &medium.label;
    let detached = medium.find(&format!("{suite_dir}/Release.gpg"));
    let inrelease = medium.find(&format!("{suite_dir}/InRelease"));
    if let Some(sig) = detached {
        let sig = medium.read(sig)?;
        k.verify_detached(text.as_bytes(), &sig).with_context(|| {
            format!("{label}: the signature {suite_dir}/Release.gpg does not verify with the disc keyring")
        })?;
    } else if let Some(inr) = inrelease {
        let signed = String::from_utf8(medium.read(inr)?)
            .with_context(|| format!("{label}: {suite_dir}/InRelease is not text"))?;
        let body = k.verify_cleartext(&signed).with_context(|| {
            format!("{label}: {suite_dir}/InRelease does not verify with the disc keyring")
        })?;
        if body.trim_end() != text.trim_end() {
            bail!("{label}: {suite_dir}/InRelease and Release differ");
        }
    } else {
        bail!(
            "{label}: {suite_dir}/Release is not signed (no InRelease or Release.gpg), but a disc keyring was given to check it"
        );
    }
    Ok(())
}

/// Reads `dists/*/…/binary-*/Packages*` of a disc, each checked against its
/// suite's `Release` (and, with `keyring`, only under a verified one);
/// every paragraph goes into `paragraphs` when it is given (a build needs
/// only what each names, and does not keep the rest: a few KiB a package).
fn read_disc_index(
    medium: &Medium,
    keyring: Option<&Keyring>,
    mut paragraphs: Option<&mut Vec<Paragraph>>,
) -> Result<DiscIndex> {
    let label = &medium.label;
    let releases = read_releases(medium, keyring)?;
    if keyring.is_some() && releases.is_empty() {
        bail!(
            "{label}: the disc has no dists/*/Release, but a disc keyring was given to check it: nothing on it is signed"
        );
    }
    let mut index = DiscIndex {
        files: HashMap::new(),
        present: false,
        signature: match (keyring.is_some(), releases.is_empty()) {
            (_, true) => ReleaseSignature::Unsigned,
            (false, false) => ReleaseSignature::NotChecked,
            (true, false) => ReleaseSignature::Verified,
        },
    };
    for (dir, f) in packages_indexes(medium) {
        let parts: Vec<&str> = dir.split('/').collect();
        let suite_dir = format!("dists/{}", parts[1]);
        let rel = f.path[suite_dir.len() + 1..].to_string();
        match releases.get(&suite_dir) {
            Some(r) => check_listed(medium, f, r, &suite_dir, &rel)?,
            None if keyring.is_some() => bail!(
                "{label}: {} has no {suite_dir}/Release above it, so the disc keyring cannot vouch for it",
                f.path
            ),
            None => {}
        }
        let component = parts[2..parts.len() - 1].join("/");
        policy::component(&component).map_err(|e| anyhow::anyhow!("{label}: {}: {e}", f.path))?;
        let text = decompress(&f.path, &medium.read(f)?)
            .with_context(|| format!("{label}: {}", f.path))?;
        let listed =
            control::parse_all(&text).map_err(|e| anyhow::anyhow!("{label}: {}: {e}", f.path))?;
        for p in listed {
            add_listed(&mut index, label, &f.path, &component, &p)?;
            if let Some(all) = paragraphs.as_deref_mut() {
                all.push(p);
            }
        }
        index.present = true;
    }
    Ok(index)
}

/// The Packages index of each `binary-*` directory: one variant (plain,
/// .gz, .xz, in that order of preference).
fn packages_indexes(medium: &Medium) -> BTreeMap<String, &MediaFile> {
    let mut by_dir: BTreeMap<String, &MediaFile> = BTreeMap::new();
    for f in medium.files() {
        let parts: Vec<&str> = f.path.split('/').collect();
        if parts.len() < 5 || parts[0] != "dists" || !parts[parts.len() - 2].starts_with("binary-")
        {
            continue;
        }
        let name = parts[parts.len() - 1];
        if !matches!(name, "Packages" | "Packages.gz" | "Packages.xz") {
            continue;
        }
        let dir = parts[..parts.len() - 1].join("/");
        let better = match by_dir.get(&dir) {
            None => true,
            Some(old) => rank(name) < rank(old.path.rsplit('/').next().unwrap_or("")),
        };
        if better {
            by_dir.insert(dir, f);
        }
    }
    by_dir
}

/// An index must be listed, with its SHA256, in its suite's Release.
fn check_listed(
    medium: &Medium,
    f: &MediaFile,
    release: &DiscRelease,
    suite_dir: &str,
    rel: &str,
) -> Result<()> {
    let label = &medium.label;
    let Some((size, hash)) = release.sums.get(rel) else {
        bail!(
            "{label}: {} is not listed with a SHA256 in {suite_dir}/Release{}",
            f.path,
            if release.verified { " (signed)" } else { "" }
        );
    };
    let raw = medium.read(f)?;
    let got = hex(&sha2::Sha256::digest(&raw));
    if *size != raw.len() as u64 || *hash != got {
        bail!(
            "{label}: {} does not match its {suite_dir}/Release entry (listed {size} bytes {hash}, found {} bytes {got}); the disc is damaged or altered",
            f.path,
            raw.len()
        );
    }
    Ok(())
}

/// One paragraph of a disc's Packages index into `index`.
fn add_listed(
    index: &mut DiscIndex,
    label: &str,
    from: &str,
    component: &str,
    p: &Paragraph,
) -> Result<()> {
    let Some(filename) = p.get("Filename") else {
        return Ok(());
    };
    let filename = filename.trim().trim_start_matches("./").to_string();
    policy::pool_path(&filename).map_err(|e| anyhow::anyhow!("{label}: {from}: Filename {e}"))?;
    let size = p
        .get("Size")
        .and_then(|s| s.trim().parse().ok())
        .with_context(|| format!("{label}: {from}: {filename} has no valid Size"))?;
    let sha256 = p
        .get("SHA256")
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| {
            format!(
                "{label}: {from} lists {filename} without a SHA256: it cannot vouch for its bytes"
            )
        })?;
    let listed = Listed {
        size,
        sha256,
        component: component.to_string(),
        index: from.to_string(),
    };
    if let Some(old) = index.files.get(&filename)
        && (old.size != listed.size || old.sha256 != listed.sha256)
    {
        bail!(
            "{label}: {filename} is listed twice with different sizes or hashes ({} in {}, {} in {from})",
            old.sha256,
            old.index,
            listed.sha256
        );
    }
    index.files.entry(filename).or_insert(listed);
    Ok(())
}

/// One Packages index of a disc as the build reads it: decompressed within
/// bounds (by its name's extension), parsed, each entry checked. Returns
/// the number of files it vouches for. (What the fuzzer drives.)
pub fn parse_disc_packages(name: &str, raw: &[u8]) -> Result<usize> {
    let mut index = DiscIndex {
        files: HashMap::new(),
        present: true,
        signature: ReleaseSignature::Unsigned,
    };
    let text = decompress(name, raw)?;
    let paragraphs = control::parse_all(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    for p in paragraphs {
        add_listed(&mut index, "disc", name, "main", &p)?;
    }
    Ok(index.files.len())
}

fn rank(name: &str) -> u8 {
    match name {
        "Packages" => 0,
        "Packages.gz" => 1,
        _ => 2,
    }
}

/// An index as text, decompressed within [`MAX_INDEX_BYTES`] (a small
/// compressed file must not expand into gigabytes).
fn decompress(path: &str, raw: &[u8]) -> Result<String> {
    use std::io::Read;
    let reader: Box<dyn Read + '_> = if path.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(raw))
    } else if path.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    let mut bytes = Vec::new();
    reader.take(MAX_INDEX_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_INDEX_BYTES {
        bail!(
            "expands to more than {} MiB: not a Packages index (a compression bomb?)",
            MAX_INDEX_BYTES >> 20
        );
    }
    String::from_utf8(bytes).context("not UTF-8 text")
}

/// Reads every job's file once (or takes it from the cache), on all cores.
fn scan_all(media: &[Medium], jobs: &[Job<'_>], opts: &Options) -> Result<Vec<Scanned>> {
    let total_bytes: u64 = jobs
        .iter()
        .filter(|j| j.is_read(opts))
        .map(|j| j.file.size)
        .sum();
    let bar = crate::shared::par::progress_bar(opts.progress, total_bytes, "reading packages");
    let done = AtomicUsize::new(0);
    let results = crate::shared::par::map_buffered(
        jobs,
        crate::shared::par::threads(opts.jobs),
        |job, buf| {
            let res = match (&job.cached, &opts.previous, &job.listed) {
                (Some(c), Some(prev), _) => reuse(&media[job.disc], job, c, prev, !opts.adopt),
                (Some(c), None, Some(_)) if opts.peek => recall(&media[job.disc], c),
                (None, _, Some(sha)) if opts.peek => peek_one(&media[job.disc], job, sha),
                _ => scan_one(&media[job.disc], job, buf, &bar),
            };
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            bar.set_message(format!("{n}/{}", jobs.len()));
            res
        },
    );
    bar.finish_and_clear();
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (job, res) in jobs.iter().zip(results) {
        match res {
            Ok(s) => out.push(s),
            Err(e) => errors.push(format!(
                "{}: {}: {e:#}",
                media[job.disc].label, job.file.path
            )),
        }
    }
    if !errors.is_empty() {
        bail!(report("cannot read", &errors));
    }
    Ok(out)
}

/// A file the cache knows: link the previous build's pool file (checked to
/// be as that build left it) into the new pool, or with `link` false leave
/// it to be adopted; nothing is read.
fn reuse(
    medium: &Medium,
    job: &Job<'_>,
    c: &CacheEntry,
    previous: &Path,
    link: bool,
) -> Result<Scanned> {
    if let Some(dest) = job.dest.as_ref().filter(|_| link) {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        crate::build::link_or_copy(&previous.join(&job.file.path), dest)?;
    }
    Ok(Scanned {
        sha256: c.sha256.clone(),
        control: Paragraph::parse(&c.control)
            .map_err(|e| anyhow::anyhow!("cached control: {e}"))?,
        control_digest: None,
        // The disc's bytes were not read again: checked only if the image
        // is the one they were checked in.
        checked_in: c
            .checked_in
            .clone()
            .filter(|was| Some(was.as_str()) == medium.image_identity()),
        unchanged: false,
    })
}

/// A file the cache knows, for a build that only peeks (`Options::peek`):
/// its control and control member digest as an earlier peek found them.
fn recall(medium: &Medium, c: &CacheEntry) -> Result<Scanned> {
    let digest = c.control_digest.as_deref().unwrap_or_default();
    let mut control_digest = [0u8; 32];
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("cached control digest {digest:?} is not a SHA256");
    }
    for (i, byte) in control_digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&digest[2 * i..2 * i + 2], 16).expect("hex digits");
    }
    Ok(Scanned {
        sha256: c.sha256.clone(),
        control: Paragraph::parse(&c.control)
            .map_err(|e| anyhow::anyhow!("cached control: {e}"))?,
        control_digest: Some(control_digest),
        // Checked again as it is copied unless this very image was.
        checked_in: medium.image_identity().map(str::to_string),
        unchanged: c.checked_in.is_some() && c.checked_in.as_deref() == medium.image_identity(),
    })
}

/// Reads one `.deb` only as far as its control member; its hash is the one
/// its disc's index lists (whoever copies it checks that, see
/// `Options::peek`).
fn peek_one(medium: &Medium, job: &Job<'_>, listed: &str) -> Result<Scanned> {
    use std::io::Read as _;
    let mut reader = medium.reader(job.file)?;
    let mut deb = DebScanner::new();
    let mut buf = [0u8; 1 << 16];
    while !deb.has_control() {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        deb.feed(&buf[..n]);
    }
    let control = deb
        .control()
        .map_err(|e| anyhow::anyhow!("corrupt .deb: {e}"))?;
    Ok(Scanned {
        sha256: listed.to_string(),
        control,
        control_digest: deb.control_digest(),
        checked_in: medium.image_identity().map(str::to_string),
        unchanged: false,
    })
}

/// Hashes, scans and (for the first occurrence of a path) copies one
/// `.deb` in a single pass. The pool gets its own copy, never a link to a
/// disc's file: the output must not change when the disc does.
fn scan_one(
    medium: &Medium,
    job: &Job<'_>,
    buf: &mut [u8],
    bar: &indicatif::ProgressBar,
) -> Result<Scanned> {
    let mut out = None;
    if let Some(dest) = &job.dest {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        // 0644 exactly, whatever the umask: what a bundle keeps, so it
        // never has to change it (a change would move its ctime).
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(dest)
            .with_context(|| format!("creating {}", dest.display()))?;
        f.set_permissions(fs::Permissions::from_mode(0o644))
            .with_context(|| format!("setting the mode of {}", dest.display()))?;
        out = Some(std::io::BufWriter::with_capacity(1 << 20, f));
    }
    let mut sha = sha2::Sha256::new();
    let mut deb = DebScanner::new();
    medium.stream(job.file, buf, |chunk| {
        sha.update(chunk);
        deb.feed(chunk);
        if let Some(f) = &mut out {
            f.write_all(chunk)
                .with_context(|| format!("writing {}", job.file.path))?;
        }
        bar.inc(chunk.len() as u64);
        Ok(())
    })?;
    if let Some(f) = out {
        f.into_inner()
            .map_err(|e| anyhow::anyhow!("writing {}: {}", job.file.path, e.error()))?;
    }
    let control = deb
        .finish()
        .map_err(|e| anyhow::anyhow!("corrupt .deb: {e}"))?;
    Ok(Scanned {
        sha256: hex(&sha.finalize()),
        control,
        control_digest: None,
        checked_in: medium.image_identity().map(str::to_string),
        unchanged: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_seal_is_hmac_sha256() {
        use std::io::Write as _;
        // RFC 4231, test case 2 (a short key is zero-padded, as here).
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mut h = Hmac::new(&key);
        h.write_all(b"what do ya want ").unwrap();
        h.write_all(b"for nothing?").unwrap();
        assert_eq!(
            hex(&h.finish()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn release_lists_hash_size_path_in_that_order() {
        let listed = |rel: &str, bytes: &[u8]| IndexFile {
            rel: rel.to_string(),
            size: bytes.len() as u64,
            sha256: hex(&sha2::Sha256::digest(bytes)),
        };
        let files = vec![
            listed("main/binary-amd64/Packages", b"abc"),
            listed("main/binary-amd64/Packages.gz", &[0u8; 1234]),
        ];
        let r = render_release("1.7_x86-64", 0, &["amd64".into()], &["main".into()], &files);
        assert!(r.contains("Date: Thu, 01 Jan 1970 00:00:00 UTC\n"));
        assert!(r.contains(
            "SHA256:\n ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad    3 main/binary-amd64/Packages\n"
        ));
        assert!(r.ends_with(" 1234 main/binary-amd64/Packages.gz\n"));
    }

    #[test]
    fn component_comes_from_the_pool_path() {
        assert_eq!(
            component_of("pool/non-free/f/foo/foo_1_amd64.deb"),
            "non-free"
        );
        assert_eq!(component_of("pool/foo_1_amd64.deb"), "main");
    }

    /// A previous build's compressed index is taken only when the new
    /// text hashes as the one the cache says it was made from and the file
    /// still hashes as that build wrote it; otherwise it is made anew. What
    /// it returns is what `Release` must list of the files written.
    #[test]
    fn an_earlier_compressed_index_is_taken_only_as_the_cache_recorded_it() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        let rel = "main/binary-amd64/Packages";
        // A file as Release lists it, read from the disk.
        let listed = |d: &Path, rel: &str| {
            let bytes = fs::read(d.join(rel)).unwrap();
            IndexFile {
                rel: rel.to_string(),
                size: bytes.len() as u64,
                sha256: hex(&sha2::Sha256::digest(&bytes)),
            }
        };
        write_file(&old.join(rel), b"Package: a\n").unwrap();
        write_file(&new.join(rel), b"Package: a\n").unwrap();
        let text = listed(&old, rel);
        let mut sums = compress_indexes(&old, std::slice::from_ref(&text), None).unwrap();
        sums.push(text.clone());
        let on_disk = |d: &Path| {
            vec![
                listed(d, &format!("{rel}.gz")),
                listed(d, &format!("{rel}.xz")),
            ]
        };
        assert_eq!(sums[..2], on_disk(&old)[..], "it lists what it wrote");
        // Marked (still valid gzip and xz of the text, other bytes): taken
        // only if the cache recorded these very bytes.
        let marked = |ext: &str| {
            let f = old.join(format!("{rel}.{ext}"));
            let mut b = fs::read(&f).unwrap();
            if ext == "gz" {
                b[4] ^= 1; // the gzip header's mtime: it still expands
            } else {
                b.extend_from_slice(&[0u8; 4]); // xz stream padding
            }
            fs::write(&f, &b).unwrap();
            b
        };
        let built = |earlier: Option<(&Path, &[IndexFile])>| {
            let text = listed(&new, rel);
            let files = compress_indexes(&new, std::slice::from_ref(&text), earlier).unwrap();
            assert_eq!(files, on_disk(&new), "it lists what it wrote");
            let read = |ext: &str| fs::read(new.join(format!("{rel}.{ext}"))).unwrap();
            (read("gz"), read("xz"))
        };
        let (gz, xz) = (marked("gz"), marked("xz"));
        let mut recorded = on_disk(&old);
        recorded.push(text);
        assert_eq!(
            built(Some((old.as_path(), recorded.as_slice()))),
            (gz.clone(), xz.clone())
        );
        // The files changed since the cache was written: made anew.
        let fresh = built(None);
        assert_ne!(fresh, (gz.clone(), xz.clone()));
        assert_eq!(built(Some((old.as_path(), sums.as_slice()))), fresh);
        // Another text: made anew, whatever the cache says.
        write_file(&new.join(rel), b"Package: b\n").unwrap();
        let (g, x) = built(Some((old.as_path(), recorded.as_slice())));
        assert_ne!((g, x), (gz, xz));
    }

    #[test]
    fn compressed_indexes_are_reproducible_and_valid() {
        let data = b"Package: x\n".repeat(100);
        let gzip = |d: &[u8]| gzip_into(d, Vec::new()).unwrap();
        assert_eq!(gzip(&data), gzip(&data));
        assert_eq!(
            decompress("P.gz", &gzip(&data)).unwrap().as_bytes(),
            &data[..]
        );
        assert_eq!(
            decompress("P.xz", &xz_into(&data[..], Vec::new()).unwrap())
                .unwrap()
                .as_bytes(),
            &data[..]
        );
    }
}
