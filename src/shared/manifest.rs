//! The manifest of a bundle and its verification, the same for `airlock
//! verify` at the secure site and `airlock-firstboot prepare` on the VM:
//! `SHA256SUMS` and its detached signature, `MODES`, the directory form and
//! the one tar form ([`crate::shared::tarform`]). Anything another reader
//! (GNU tar, gzip, sha256sum, gpgv) could read differently is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::Digest;

use crate::shared::hex;
use crate::shared::keyring::{self, Keyring};
use crate::shared::par::progress_bar;
use crate::shared::tarform;

/// The manifest.
pub const SUMS: &str = "SHA256SUMS";
/// The mode of every file, signed through the manifest: what the tar must
/// carry and what the directory form must not exceed.
pub const MODES: &str = "MODES";
/// Its signature.
pub const SUMS_SIG: &str = "SHA256SUMS.gpg";
/// The `airlock-firstboot` runner a bundle carries for its VMs.
pub const RUNNER: &str = "bin/airlock-firstboot";

/// SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path, buf: &mut [u8]) -> Result<(String, u64)> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut n = 0u64;
    loop {
        let k = f
            .read(buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex(&h.finalize()), n))
}

/// A file's SHA-256 (hex) and size, or why it could not be read.
pub type HashResult = Result<(String, u64)>;

/// Hashes `files` (absolute paths, with sizes for the progress bar) on all
/// cores; results in the same order.
pub fn hash_parallel(files: &[(PathBuf, u64)], progress: bool, what: &str) -> Vec<HashResult> {
    let total = files.iter().map(|f| f.1).sum();
    let bar = progress_bar(progress, total, what);
    let out = crate::shared::par::map_buffered(
        files,
        crate::shared::par::threads(0),
        |(path, size), buf| {
            let r = sha256_file(path, buf);
            bar.inc(*size);
            r
        },
    );
    bar.finish_and_clear();
    out
}

/// The mode a file gets in a bundle: executables 0755, private files
/// 0600, the rest 0644.
pub fn policy_mode(mode: u32) -> u32 {
    if mode & 0o100 != 0 {
        0o755
    } else if mode & 0o077 == 0 {
        0o600
    } else {
        0o644
    }
}

/// The files a bundle tar starts with, in this order: what verify needs
/// before it can judge the rest.
pub const HEAD: [&str; 5] = [
    SUMS,
    SUMS_SIG,
    keyring::PUBLIC_GPG_FILE,
    keyring::PUBLIC_ASC_FILE,
    MODES,
];

/// The order of a bundle tar's entries for these files: the head, then the
/// rest sorted, each directory once, right before its first entry.
pub fn canonical_order(files: &BTreeSet<String>) -> Vec<(String, tarform::Kind)> {
    let mut out = Vec::new();
    let mut dirs = BTreeSet::new();
    let head = HEAD
        .iter()
        .map(|h| h.to_string())
        .filter(|h| files.contains(h));
    let rest = files
        .iter()
        .filter(|p| !HEAD.contains(&p.as_str()))
        .cloned();
    for path in head.chain(rest) {
        let mut parents = Vec::new();
        let mut p = Path::new(&path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            parents.push(d.to_string_lossy().into_owned());
            p = d.parent();
        }
        for d in parents.into_iter().rev() {
            if dirs.insert(d.clone()) {
                out.push((d, tarform::Kind::Dir));
            }
        }
        out.push((path, tarform::Kind::File));
    }
    out
}

/// One thing wrong with a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub path: String,
    pub detail: String,
}

/// What kind of thing is wrong, as `verify` prints it (lowercase; upper
/// case in its table) and its JSON names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingKind {
    /// A file's bytes are not what the manifest says.
    Modified,
    /// Listed, but not there.
    Missing,
    /// There, but not listed.
    Extra,
    /// There, but it could not be read.
    Unreadable,
    /// A path or a file type a bundle must not hold.
    Unsafe,
    /// A signature that is missing, bad, or by too few trusted keys.
    Signature,
    /// The manifest itself is malformed.
    Manifest,
    /// The tar is not in the one form a bundle has.
    Form,
    /// A mode wider than MODES allows.
    Mode,
    /// A key outside the keyring given signed too (not trusted, shown).
    Foreign,
    /// A volume that does not fit its set (table, order, hashes).
    Volume,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Modified => "modified",
            FindingKind::Missing => "missing",
            FindingKind::Extra => "extra",
            FindingKind::Unreadable => "unreadable",
            FindingKind::Unsafe => "unsafe",
            FindingKind::Signature => "signature",
            FindingKind::Manifest => "manifest",
            FindingKind::Form => "form",
            FindingKind::Mode => "mode",
            FindingKind::Foreign => "foreign",
            FindingKind::Volume => "volume",
        }
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Whose signatures of `SHA256SUMS` verify accepts: the keys of the
/// keyrings given, or the bundle's own, and how many of them must have
/// signed.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The keyrings given, as one; `None`: the bundle's own
    /// `archive-keyring.gpg` (which proves consistency, not origin).
    pub keyring: Option<Keyring>,
    /// How many distinct keys of the keyring must have made a good
    /// signature (at least 1).
    pub require: usize,
}

impl Trust {
    /// The bundle's own keyring, one signer.
    pub fn own() -> Trust {
        Trust {
            keyring: None,
            require: 1,
        }
    }

    /// The keys of `keyring`, one signer.
    pub fn keyring(keyring: Keyring) -> Trust {
        Trust {
            keyring: Some(keyring),
            require: 1,
        }
    }

    /// The keyrings at `paths` (none: the bundle's own), `require` signers
    /// of them; refuses a number the keyrings given can never meet.
    pub fn load(paths: &[PathBuf], require: usize) -> Result<Trust> {
        if require == 0 {
            bail!("--require-signers must be at least 1");
        }
        if paths.is_empty() {
            return Ok(Trust {
                keyring: None,
                require,
            });
        }
        let keyring = Keyring::load_all(paths)?;
        let keys = keyring.keys();
        if require > keys.len() {
            bail!(
                "--require-signers {require}, but the keyring(s) given hold {} distinct key(s): {}",
                keys.len(),
                keys.iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(Trust {
            keyring: Some(keyring),
            require,
        })
    }
}

/// The result of `airlock verify`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    /// `good`, or why not (`missing`, `bad`, `too few signers`).
    pub signature: String,
    /// The first signer's key (the only one's, with one signature).
    pub signer: Option<String>,
    /// When it signed (seconds since the epoch).
    pub signed_at: Option<i64>,
    /// Every distinct key with a good signature, in the signature file's order.
    pub signers: Vec<keyring::Verified>,
    /// How many were required.
    pub required_signers: usize,
    /// The keys of the keyring with no good signature.
    pub not_signed_by: Vec<String>,
    /// Signatures by keys the keyring does not hold (their issuers).
    pub unknown_signers: Vec<String>,
    /// Checked with the bundle's own keyring (proves consistency, not origin).
    pub own_keyring: bool,
    pub files_checked: usize,
    pub bytes: u64,
    pub problems: Vec<Finding>,
}

fn finding(kind: FindingKind, path: &str, detail: impl Into<String>) -> Finding {
    Finding {
        kind,
        path: path.into(),
        detail: detail.into(),
    }
}

/// Checks a manifest path: relative, no `..`, nothing odd (no control
/// characters, which would forge lines in SHA256SUMS).
pub fn safe_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && !p.chars().any(char::is_control)
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Parses `<field>  <path>` lines (SHA256SUMS, MODES); malformed lines,
/// unsafe paths and a path given twice become findings.
fn parse_listing<T>(
    file: &str,
    text: &str,
    problems: &mut Vec<Finding>,
    field: impl Fn(&str) -> Option<T>,
    form: &str,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let parsed = line
            .split_once("  ")
            .and_then(|(f, p)| field(f).map(|v| (v, p)));
        match parsed {
            Some((v, p)) if safe_path(p) => {
                if out.insert(p.to_string(), v).is_some() {
                    problems.push(finding(
                        FindingKind::Manifest,
                        p,
                        format!("{file} lists it twice (line {}): sha256sum -c and airlock would disagree", i + 1),
                    ));
                }
            }
            Some((_, p)) => problems.push(finding(
                FindingKind::Unsafe,
                p,
                format!("{file} line {} names a path outside the bundle", i + 1),
            )),
            None => problems.push(finding(
                FindingKind::Manifest,
                file,
                format!("line {} is not \"{form}\"", i + 1),
            )),
        }
    }
    out
}

/// Parses a `SHA256SUMS` text: the listing and what is wrong with it.
pub fn parse_manifest(text: &str) -> (BTreeMap<String, String>, Vec<Finding>) {
    let mut problems = Vec::new();
    let m = parse_sums(text, &mut problems);
    (m, problems)
}

/// Parses SHA256SUMS.
fn parse_sums(text: &str, problems: &mut Vec<Finding>) -> BTreeMap<String, String> {
    parse_listing(
        SUMS,
        text,
        problems,
        |h| {
            (h.len() == 64
                && h.bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)))
            .then(|| h.to_string())
        },
        "<sha256>  <path>",
    )
}

/// Parses MODES.
pub(crate) fn parse_modes(text: &str, problems: &mut Vec<Finding>) -> BTreeMap<String, u32> {
    parse_listing(
        MODES,
        text,
        problems,
        |m| {
            u32::from_str_radix(m, 8)
                .ok()
                .filter(|m| [0o600, 0o644, 0o755].contains(m))
        },
        "<0600|0644|0755>  <path>",
    )
}

/// What the signature file says of the manifest.
struct Signed {
    /// `good`, `missing`, `bad` or `too few signers`.
    verdict: String,
    signatures: keyring::Signatures,
    /// The keyring's keys without a good signature.
    missing: Vec<String>,
}

/// Checks the signatures of the manifest: `require` distinct keys of
/// `keyring` must have made a good one.
fn check_signature(
    sums: &[u8],
    sig: Option<&[u8]>,
    keyring: &Keyring,
    require: usize,
    problems: &mut Vec<Finding>,
) -> Signed {
    let mut signed = Signed {
        verdict: "good".into(),
        signatures: keyring::Signatures::default(),
        missing: Vec::new(),
    };
    let Some(sig) = sig else {
        problems.push(finding(
            FindingKind::Signature,
            SUMS_SIG,
            "missing: the manifest is not signed",
        ));
        signed.verdict = "missing".into();
        return signed;
    };
    let checked = match keyring.check_detached(sums, sig) {
        Ok(c) => c,
        Err(e) => {
            problems.push(finding(
                FindingKind::Signature,
                SUMS_SIG,
                format!("does not verify: {e:#}"),
            ));
            signed.verdict = "bad".into();
            return signed;
        }
    };
    signed.missing = checked
        .missing(keyring)
        .into_iter()
        .map(|k| k.fingerprint)
        .collect();
    if let Err(e) = checked.require(require, keyring) {
        let (verdict, what) = match checked.signers().len() {
            0 => ("bad", "does not verify"),
            _ => ("too few signers", "too few signers"),
        };
        problems.push(finding(
            FindingKind::Signature,
            SUMS_SIG,
            format!("{what}: {e:#}"),
        ));
        signed.verdict = verdict.into();
    }
    signed.signatures = checked;
    signed
}

/// Compares what was found with the manifest.
fn compare(
    manifest: &BTreeMap<String, String>,
    found: &BTreeMap<String, Result<String, String>>,
    problems: &mut Vec<Finding>,
) {
    for (p, want) in manifest {
        match found.get(p) {
            None => problems.push(finding(
                FindingKind::Missing,
                p,
                "listed in SHA256SUMS, not in the bundle",
            )),
            Some(Err(e)) => problems.push(finding(FindingKind::Unreadable, p, e.clone())),
            Some(Ok(got)) if got != want => problems.push(finding(
                FindingKind::Modified,
                p,
                format!("sha256 {got}, SHA256SUMS says {want}"),
            )),
            Some(Ok(_)) => {}
        }
    }
    for p in found.keys() {
        if !manifest.contains_key(p) && p != SUMS && p != SUMS_SIG {
            problems.push(finding(
                FindingKind::Extra,
                p,
                "in the bundle, not in SHA256SUMS",
            ));
        }
    }
}

/// The manifest, its signature and the modes, checked: what both forms of
/// verify need before they look at the files.
struct Listing {
    manifest: BTreeMap<String, String>,
    modes: BTreeMap<String, u32>,
    signed: Signed,
    required: usize,
}

impl Listing {
    /// Nothing read (the tar stopped before its manifest).
    fn empty() -> Listing {
        Listing {
            manifest: BTreeMap::new(),
            modes: BTreeMap::new(),
            signed: Signed {
                verdict: "not checked".into(),
                signatures: keyring::Signatures::default(),
                missing: Vec::new(),
            },
            required: 0,
        }
    }
}

fn read_listing(
    sums: &[u8],
    sig: Option<&[u8]>,
    modes: Option<&[u8]>,
    keyring: &Keyring,
    require: usize,
    problems: &mut Vec<Finding>,
) -> Listing {
    let signed = check_signature(sums, sig, keyring, require, problems);
    let manifest = parse_sums(&String::from_utf8_lossy(sums), problems);
    let modes = match modes {
        Some(m) => parse_modes(&String::from_utf8_lossy(m), problems),
        None => {
            problems.push(finding(
                FindingKind::Missing,
                MODES,
                "the bundle has no MODES (the modes its files must not exceed); it was made by an older airlock: build it again",
            ));
            BTreeMap::new()
        }
    };
    for p in manifest.keys() {
        if !modes.contains_key(p) && !modes.is_empty() {
            problems.push(finding(
                FindingKind::Manifest,
                p,
                "listed in SHA256SUMS but not in MODES",
            ));
        }
    }
    Listing {
        manifest,
        modes,
        signed,
        required: require,
    }
}

/// The bundle's own keyring (`own`, its bytes), when no keyring was given.
fn own_keyring(own: Option<&[u8]>, label: &str) -> Result<Keyring> {
    match own {
        Some(k) => Keyring::from_bytes(k, label)
            .context("reading the bundle's own keyring (pass --keyring)"),
        None => bail!("{label} is missing: pass --keyring"),
    }
}

fn report(listing: Listing, own: bool, files: usize, bytes: u64, problems: Vec<Finding>) -> Report {
    let signers: Vec<keyring::Verified> = listing
        .signed
        .signatures
        .signers()
        .into_iter()
        .cloned()
        .collect();
    Report {
        ok: problems.is_empty(),
        signature: listing.signed.verdict,
        signer: signers.first().map(|v| v.fingerprint.clone()),
        signed_at: signers.first().map(|v| v.created),
        signers,
        required_signers: listing.required,
        not_signed_by: listing.signed.missing,
        unknown_signers: listing.signed.signatures.unknown,
        own_keyring: own,
        files_checked: files,
        bytes,
        problems,
    }
}

/// The directories a manifest implies (every parent of a listed file).
pub(crate) fn implied_dirs<'a>(paths: impl Iterator<Item = &'a String>) -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    for p in paths {
        let mut d = Path::new(p).parent();
        while let Some(x) = d.filter(|x| !x.as_os_str().is_empty()) {
            dirs.insert(x.to_string_lossy().into_owned());
            d = x.parent();
        }
    }
    dirs
}

/// A file's mode against what MODES allows, in the directory form: no
/// set-id or sticky bit, no write for group or others, and a private file
/// (0600) readable by nobody else.
fn mode_problem(path: &str, mode: u32, allowed: u32) -> Option<Finding> {
    let mode = mode & 0o7777;
    let wider = mode & 0o7000 != 0
        || mode & 0o022 & !allowed != 0
        || (allowed & 0o077 == 0 && mode & 0o077 != 0);
    wider.then(|| {
        finding(
            FindingKind::Mode,
            path,
            format!("mode {mode:04o} is wider than MODES allows ({allowed:04o})"),
        )
    })
}

/// `airlock verify` on a directory.
pub fn verify_dir(dir: &Path, trust: &Trust, progress: bool) -> Result<Report> {
    let sums = fs::read(dir.join(SUMS)).with_context(|| {
        format!(
            "reading {}: is {} a bundle?",
            dir.join(SUMS).display(),
            dir.display()
        )
    })?;
    let sig = fs::read(dir.join(SUMS_SIG)).ok();
    let modes = fs::read(dir.join(MODES)).ok();
    let own = trust.keyring.is_none();
    let own_key;
    let keyring = match &trust.keyring {
        Some(k) => k,
        None => {
            let bytes = fs::read(dir.join(keyring::PUBLIC_GPG_FILE)).ok();
            own_key = own_keyring(bytes.as_deref(), keyring::PUBLIC_GPG_FILE)?;
            &own_key
        }
    };
    let mut problems = Vec::new();
    let listing = read_listing(
        &sums,
        sig.as_deref(),
        modes.as_deref(),
        keyring,
        trust.require,
        &mut problems,
    );
    let present = walk_bundle_dir(dir, &listing, &mut problems);
    let (found, bytes) = hash_present(dir, &present, progress);
    compare(&listing.manifest, &found, &mut problems);
    let files = found.len();
    Ok(report(listing, own, files, bytes, problems))
}

/// Everything present in a bundle directory, in file name order: the
/// regular files with their sizes. Links and oddities are reported, never
/// followed; directories are checked against what the manifest implies.
fn walk_bundle_dir(
    dir: &Path,
    listing: &Listing,
    problems: &mut Vec<Finding>,
) -> Vec<(String, u64)> {
    let dirs = implied_dirs(listing.manifest.keys());
    let mut present: Vec<(String, u64)> = Vec::new();
    for e in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
    {
        let e = match e {
            Ok(e) => e,
            Err(err) => {
                let p = err
                    .path()
                    .and_then(|p| p.strip_prefix(dir).ok())
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                problems.push(finding(FindingKind::Unreadable, &p, err.to_string()));
                continue;
            }
        };
        let rel = e
            .path()
            .strip_prefix(dir)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        let mode = e.metadata().map(|m| m.permissions().mode()).unwrap_or(0);
        if e.file_type().is_dir() {
            check_present_dir(&rel, mode, &dirs, problems);
            continue;
        }
        if check_present_file(&e, &rel, mode, &listing.modes, problems) {
            present.push((rel, e.metadata().map(|m| m.len()).unwrap_or(0)));
        }
    }
    present
}

/// A directory of the directory form (`rel`, empty for the bundle itself):
/// not writable by others, no special bits, and one the manifest implies.
fn check_present_dir(rel: &str, mode: u32, dirs: &BTreeSet<String>, problems: &mut Vec<Finding>) {
    if mode & 0o7022 != 0 {
        let shown = if rel.is_empty() { "." } else { rel };
        problems.push(finding(
            FindingKind::Mode,
            shown,
            format!(
                "directory mode {:04o}: writable by others or with special bits",
                mode & 0o7777
            ),
        ));
    }
    if !rel.is_empty() && !dirs.contains(rel) {
        problems.push(finding(
            FindingKind::Extra,
            rel,
            "a directory no file of SHA256SUMS is in",
        ));
    }
}

/// Anything else in the directory form: true for a regular file (to be
/// hashed), its mode checked against MODES; a link or anything odd is a
/// finding.
fn check_present_file(
    e: &walkdir::DirEntry,
    rel: &str,
    mode: u32,
    modes: &BTreeMap<String, u32>,
    problems: &mut Vec<Finding>,
) -> bool {
    if e.file_type().is_symlink() {
        problems.push(finding(
            FindingKind::Unsafe,
            rel,
            "a symbolic link; bundles hold none (not followed)",
        ));
        return false;
    }
    if !e.file_type().is_file() {
        problems.push(finding(FindingKind::Unsafe, rel, "not a regular file"));
        return false;
    }
    let allowed = match rel {
        SUMS | SUMS_SIG => Some(0o644),
        _ => modes.get(rel).copied(),
    };
    if let Some(allowed) = allowed
        && let Some(f) = mode_problem(rel, mode, allowed)
    {
        problems.push(f);
    }
    true
}

/// Hashes the files present (paths relative to `dir`) on all cores: what
/// each hashed to, or why it could not be read, and the bytes read.
fn hash_present(
    dir: &Path,
    present: &[(String, u64)],
    progress: bool,
) -> (BTreeMap<String, Result<String, String>>, u64) {
    let todo: Vec<(PathBuf, u64)> = present.iter().map(|(p, n)| (dir.join(p), *n)).collect();
    let hashed = hash_parallel(&todo, progress, "verifying");
    let mut found = BTreeMap::new();
    let mut bytes = 0;
    for ((p, _), r) in present.iter().zip(hashed) {
        found.insert(
            p.clone(),
            r.map(|(h, n)| {
                bytes += n;
                h
            })
            .map_err(|e| format!("{e:#}")),
        );
    }
    (found, bytes)
}

/// The most bytes kept of a head file (the manifest, its signature, the
/// keys, the modes; a delta's BASE and its signature).
pub const HEAD_LIMIT: u64 = 64 << 20;

/// `airlock verify` on a tar (or .tar.gz), read as a stream, never
/// extracted, in the one form `airlock build` writes ([`tarform`]).
pub fn verify_tar(file: &Path, trust: &Trust, progress: bool) -> Result<Report> {
    let label = file.display().to_string();
    let f = fs::File::open(file).with_context(|| format!("opening {label}"))?;
    let total = f.metadata()?.len();
    let bar = progress_bar(progress, total, "verifying");
    let buffered = std::io::BufReader::with_capacity(1 << 20, bar.wrap_read(f));
    let report = verify_tar_stream(buffered, trust, &label);
    bar.finish_and_clear();
    report
}

/// [`verify_tar`] on a stream (`label` names it in findings); without a
/// keyring, the tar's own.
pub fn verify_tar_stream<R: std::io::BufRead>(
    input: R,
    trust: &Trust,
    label: &str,
) -> Result<Report> {
    let input = tarform::Unzipped::new(input).with_context(|| format!("reading {label}"))?;
    let mut problems = Vec::new();
    if let Some(why) = input.header_problem() {
        problems.push(finding(FindingKind::Form, label, why));
    }
    // Bytes after a gzip member are a read error at its end: a form finding.
    let mut tr = tarform::TarReader::new(input);
    let result = read_bundle_tar(&mut tr, trust, label, &mut problems);
    let (listing, own, files, bytes) = result?;
    Ok(report(listing, own, files, bytes, problems))
}

/// Reads a bundle tar entry by entry: the head first (manifest, signature,
/// keys, modes), then every other entry in the canonical order, each with
/// the mode MODES gives it.
fn read_bundle_tar<R: Read>(
    tr: &mut tarform::TarReader<R>,
    trust: &Trust,
    label: &str,
    problems: &mut Vec<Finding>,
) -> Result<(Listing, bool, usize, u64)> {
    let mut walk = TarWalk {
        tr,
        label,
        problems,
        found: BTreeMap::new(),
        bytes: 0,
        buf: vec![0u8; 1 << 20],
    };
    let head = match walk.read_head() {
        Ok(head) => head,
        Err(s) => return Ok((Listing::empty(), trust.keyring.is_none(), s.files, s.bytes)),
    };
    let own = trust.keyring.is_none();
    let own_key;
    let keyring = match &trust.keyring {
        Some(k) => k,
        None => {
            own_key = own_keyring(
                head.get(keyring::PUBLIC_GPG_FILE).map(Vec::as_slice),
                &format!("{label}:{}", keyring::PUBLIC_GPG_FILE),
            )?;
            &own_key
        }
    };
    let Some(sums) = head.get(SUMS) else {
        walk.problems.push(finding(
            FindingKind::Missing,
            SUMS,
            "the tar holds no manifest",
        ));
        return Ok((Listing::empty(), own, walk.found.len(), walk.bytes));
    };
    let listing = read_listing(
        sums,
        head.get(SUMS_SIG).map(Vec::as_slice),
        head.get(MODES).map(Vec::as_slice),
        keyring,
        trust.require,
        walk.problems,
    );
    if walk.problems.iter().any(|p| p.kind == FindingKind::Form) {
        return Ok((listing, own, walk.found.len(), walk.bytes));
    }
    if let Err(s) = walk.read_rest(&listing) {
        return Ok((listing, own, s.files, s.bytes));
    }
    walk.check_end();
    compare(&listing.manifest, &walk.found, walk.problems);
    Ok((listing, own, walk.found.len(), walk.bytes))
}

/// A walk through a bundle tar stopped at a finding (nothing after it is
/// read), and what the report counts: the files and bytes read.
struct Stopped {
    files: usize,
    bytes: u64,
}

/// The state of a walk through a bundle tar: what each path read hashed to,
/// and the bytes of file data read.
struct TarWalk<'a, R: Read> {
    tr: &'a mut tarform::TarReader<R>,
    /// Names the tar in findings about the tar as a whole.
    label: &'a str,
    problems: &'a mut Vec<Finding>,
    found: BTreeMap<String, Result<String, String>>,
    bytes: u64,
    buf: Vec<u8>,
}

impl<R: Read> TarWalk<'_, R> {
    /// A finding that the tar is not in the form.
    fn form(&mut self, e: tarform::FormError) {
        self.problems
            .push(finding(FindingKind::Form, self.label, e.to_string()));
    }

    /// Stops here, counting what was read.
    fn stop(&self) -> Stopped {
        Stopped {
            files: self.found.len(),
            bytes: self.bytes,
        }
    }

    /// The head, in order: the files of [`HEAD`], each kept whole. A head
    /// entry out of place, of another mode or too large stops the walk
    /// counting nothing read.
    fn read_head(&mut self) -> Result<BTreeMap<&'static str, Vec<u8>>, Stopped> {
        let mut head = BTreeMap::new();
        for want in HEAD {
            let size = match self.head_entry(want) {
                Ok(size) => size,
                Err(f) => {
                    self.problems.push(f);
                    return Err(Stopped { files: 0, bytes: 0 });
                }
            };
            let data = self.read_whole(size)?;
            self.bytes += data.len() as u64;
            self.found
                .insert(want.to_string(), Ok(hex(&sha2::Sha256::digest(&data))));
            head.insert(want, data);
        }
        Ok(head)
    }

    /// The next entry, which must be the head file `want`, 0644 and at most
    /// [`HEAD_LIMIT`] bytes: its size, or why not.
    fn head_entry(&mut self, want: &str) -> Result<u64, Finding> {
        let entry = match self.tr.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => {
                return Err(finding(
                    FindingKind::Form,
                    self.label,
                    format!("the tar ends before {want}"),
                ));
            }
            Err(e) => return Err(finding(FindingKind::Form, self.label, e.to_string())),
        };
        if entry.path != want || entry.kind != tarform::Kind::File {
            return Err(finding(
                FindingKind::Form,
                &entry.path,
                format!(
                    "at byte {}: a bundle tar starts with {}; this entry is not {want}",
                    entry.offset,
                    HEAD.join(", ")
                ),
            ));
        }
        if entry.mode != 0o644 || entry.size > HEAD_LIMIT {
            return Err(finding(
                FindingKind::Form,
                want,
                format!(
                    "at byte {}: mode {:04o} and {} bytes; the head files are 0644 and small",
                    entry.offset, entry.mode, entry.size
                ),
            ));
        }
        Ok(entry.size)
    }

    /// The current entry's data (`size` bytes), whole.
    fn read_whole(&mut self, size: u64) -> Result<Vec<u8>, Stopped> {
        let mut data = Vec::with_capacity(size as usize);
        loop {
            match self.tr.read_data(&mut self.buf) {
                Ok(0) => return Ok(data),
                Ok(n) => data.extend_from_slice(&self.buf[..n]),
                Err(e) => {
                    self.form(e);
                    return Err(self.stop());
                }
            }
        }
    }

    /// The rest, in the one order the manifest gives: each entry the one
    /// expected there, with the mode MODES gives it, its data hashed.
    fn read_rest(&mut self, listing: &Listing) -> Result<(), Stopped> {
        // The head was read whatever the manifest lists (a manifest that
        // leaves out a head file is reported when the files are compared).
        let mut files: BTreeSet<String> = listing.manifest.keys().cloned().collect();
        files.extend(HEAD.iter().map(|h| h.to_string()));
        let expected = canonical_order(&files);
        for (want, kind) in &expected[HEAD.len()..] {
            let entry = self.rest_entry(want, *kind)?;
            if let Some(f) = tar_mode_problem(&entry, want, *kind, &listing.modes) {
                self.problems.push(f);
            }
            if *kind == tarform::Kind::Dir {
                continue;
            }
            let hash = self.hash_data()?;
            self.found.insert(want.clone(), Ok(hash));
        }
        Ok(())
    }

    /// The next entry, which must be `want`, of kind `kind`.
    fn rest_entry(&mut self, want: &str, kind: tarform::Kind) -> Result<tarform::Entry, Stopped> {
        let entry = match self.tr.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => {
                self.problems.push(finding(
                    FindingKind::Missing,
                    want,
                    "the tar ends before it",
                ));
                return Err(self.stop());
            }
            Err(e) => {
                self.form(e);
                return Err(self.stop());
            }
        };
        if entry.path != want || entry.kind != kind {
            let what = if self.found.contains_key(&entry.path) {
                "a second entry for a path already read"
            } else {
                "not the entry the manifest puts here"
            };
            self.problems.push(finding(
                FindingKind::Form,
                &entry.path,
                format!(
                    "at byte {}: {what} (expected {want}): refused, nothing after it is read",
                    entry.offset
                ),
            ));
            return Err(self.stop());
        }
        Ok(entry)
    }

    /// Hashes the current entry's data, counting its bytes as they are read.
    fn hash_data(&mut self) -> Result<String, Stopped> {
        let mut h = sha2::Sha256::new();
        loop {
            match self.tr.read_data(&mut self.buf) {
                Ok(0) => return Ok(hex(&h.finalize())),
                Ok(n) => {
                    h.update(&self.buf[..n]);
                    self.bytes += n as u64;
                }
                Err(e) => {
                    self.form(e);
                    return Err(self.stop());
                }
            }
        }
    }

    /// After the last file SHA256SUMS lists: the end of the tar, and no
    /// other entry.
    fn check_end(&mut self) {
        match self.tr.next_entry() {
            Ok(None) => {}
            Ok(Some(e)) if self.found.contains_key(&e.path) => self.problems.push(finding(
                FindingKind::Form,
                &e.path,
                format!(
                    "at byte {}: a second entry for a path already read (GNU tar would keep this one)",
                    e.offset
                ),
            )),
            Ok(Some(e)) => self.problems.push(finding(
                FindingKind::Extra,
                &e.path,
                format!(
                    "at byte {}: an entry after the last file SHA256SUMS lists",
                    e.offset
                ),
            )),
            Err(e) => self.form(e),
        }
    }
}

/// A tar entry's mode (the entry at `want`, of kind `kind`) against what
/// MODES gives it; a directory's is 0755.
fn tar_mode_problem(
    entry: &tarform::Entry,
    want: &str,
    kind: tarform::Kind,
    modes: &BTreeMap<String, u32>,
) -> Option<Finding> {
    let allowed = match kind {
        tarform::Kind::Dir => 0o755,
        tarform::Kind::File => modes.get(want).copied().unwrap_or(0o644),
    };
    (entry.mode != allowed).then(|| {
        finding(
            FindingKind::Mode,
            want,
            format!(
                "at byte {}: mode {:04o} in the tar, MODES says {allowed:04o}",
                entry.offset, entry.mode
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_must_stay_inside() {
        assert!(safe_path("repo/pool/main/x.deb"));
        for bad in ["/etc/passwd", "../x", "a/../b", "a//b", "", "a\\b", "./a"] {
            assert!(!safe_path(bad), "{bad}");
        }
    }

    #[test]
    fn sums_parse_and_report_bad_lines() {
        let h = "a".repeat(64);
        let text = format!("{h}  ok/file\n{h}  ../escape\nnonsense\n");
        let mut problems = Vec::new();
        let m = parse_sums(&text, &mut problems);
        assert_eq!(m.len(), 1);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].kind, FindingKind::Unsafe);
        assert_eq!(problems[1].kind, FindingKind::Manifest);
    }

    #[test]
    fn modes_follow_the_policy() {
        assert_eq!(policy_mode(0o100755), 0o755);
        assert_eq!(policy_mode(0o100600), 0o600);
        assert_eq!(policy_mode(0o100664), 0o644);
    }
}
