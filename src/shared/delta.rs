//! Delta bundles: what a new bundle adds to an earlier one (its base), and
//! the new bundle made whole again from the base and the delta. The layout
//! and its checks are shared by `airlock apply` at the site and by
//! `airlock-firstboot prepare --base` on the reference VM.
//!
//! ```text
//! SHA256SUMS, SHA256SUMS.gpg        the new bundle's manifest and signature, whole
//! BASE, BASE.gpg                    "<sha256>  SHA256SUMS": the base's manifest, signed
//! archive-keyring.gpg, .asc, MODES  always (small, and they make the delta readable alone)
//! <path>                            every other file of the new manifest whose content
//!                                   (its sha256) is nowhere in the base's manifest
//! ```
//!
//! A delta is hostile input until the new bundle it makes has verified:
//! its signatures are checked with the base's keyring (or the keyrings
//! given), its manifest's paths as `verify` checks them, its tree for links,
//! odd files and files the manifest does not list, all before anything is
//! written; the new bundle is put together in a staging directory beside
//! the output, verified there exactly as `airlock verify` does, and only
//! then renamed into place.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::shared::basetar::TarBase;
use crate::shared::keyring::{Keyring, PUBLIC_ASC_FILE, PUBLIC_GPG_FILE, Signatures};
use crate::shared::manifest::{
    self, Finding, FindingKind, MODES, Report, SUMS, SUMS_SIG, Trust, parse_manifest, verify_dir,
};
use crate::shared::staging::Staging;
use crate::shared::volumes::{Assembly, WHOLE, given_volumes, sha256};
use crate::shared::writer::{create_dirs, set_mode};

/// Names the base: `<sha256 of the base's SHA256SUMS>  SHA256SUMS`, one
/// line, so `sha256sum -c DELTA/BASE` in the base's directory checks it.
pub const BASE: &str = "BASE";
/// BASE's detached signature, by the keys that signed the new manifest.
pub const BASE_SIG: &str = "BASE.gpg";

/// The files of the new bundle a delta always carries, whatever the base
/// holds.
pub const ALWAYS: [&str; 3] = [PUBLIC_GPG_FILE, PUBLIC_ASC_FILE, MODES];

/// The files of a delta that are not files of the new bundle.
const OWN: [&str; 4] = [SUMS, SUMS_SIG, BASE, BASE_SIG];

/// What a delta tar starts with: a bundle's head, then BASE and its
/// signature ([`manifest::canonical_order`]).
const TAR_HEAD: [&str; 7] = [
    SUMS,
    SUMS_SIG,
    PUBLIC_GPG_FILE,
    PUBLIC_ASC_FILE,
    MODES,
    BASE,
    BASE_SIG,
];

/// The text of BASE for a base whose SHA256SUMS hashes to `hash`.
pub fn render_base(hash: &str) -> String {
    format!("{hash}  {SUMS}\n")
}

/// The base's manifest hash from BASE's text; None unless it is exactly
/// what [`render_base`] writes.
pub fn parse_base(text: &str) -> Option<String> {
    let hash = text.strip_suffix(&format!("  {SUMS}\n"))?;
    (hash.len() == 64
        && hash
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)))
    .then(|| hash.to_string())
}

/// `path` is a delta, not a whole bundle: a directory with a BASE file,
/// or a tar whose head holds one (a tar that does not read is not a delta
/// here; [`has_base`] says why).
pub fn is_delta(path: &Path) -> bool {
    has_base(path).unwrap_or(false)
}

/// Whether `path` (a directory, or a tar of which only the head is read)
/// holds a BASE file; an error when it cannot be read.
pub fn has_base(path: &Path) -> Result<bool> {
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(match meta.is_dir() {
        true => fs::symlink_metadata(path.join(BASE)).is_ok_and(|m| m.is_file()),
        false => tar_head(path)?.contains_key(BASE),
    })
}

/// The head files of a delta tar, read without unpacking it.
fn tar_head(path: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut tr = crate::shared::tarform::open_file(path)?;
    crate::shared::tarform::read_leading(
        &mut tr,
        &TAR_HEAD,
        manifest::HEAD_LIMIT,
        &path.display().to_string(),
    )
}

/// A delta given as the one tar `airlock build --base --tar` wrote (plain
/// or gzip), unpacked into a staging directory beside `beside`, removed
/// when dropped; None when `delta` is not a file (a directory is used as
/// it is). Read as [`crate::shared::tarform`] reads a bundle tar; an entry
/// that would leave the directory, or a path given twice, is refused. What
/// it holds is then checked as a delta directory is.
pub fn unpack_tar(delta: &Path, beside: &Path) -> Result<Option<Staging>> {
    if !fs::metadata(delta).is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let label = delta.display().to_string();
    let staging = Staging::beside_tagged(beside, "airlock-delta-tar")?;
    let mut tr = crate::shared::tarform::open_file(delta)?;
    let mut buf = vec![0u8; 1 << 20];
    let form = |e: crate::shared::tarform::FormError| anyhow::anyhow!("{label}: {e}");
    while let Some(e) = tr.next_entry().map_err(form)? {
        let rel = e.path.trim_end_matches('/');
        if !manifest::safe_path(rel) {
            bail!(
                "{label}: the entry {:?} would leave the delta: refused",
                e.path
            );
        }
        let to = staging.path().join(rel);
        if e.kind == crate::shared::tarform::Kind::Dir {
            create_dirs(&to)?;
            continue;
        }
        create_dirs(to.parent().expect("under the staging directory"))?;
        let mode = if e.mode & 0o111 != 0 { 0o755 } else { 0o644 };
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&to)
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    anyhow::anyhow!("{label}: {} is given twice: refused", e.path)
                }
                _ => anyhow::Error::new(err).context(format!("writing {}", to.display())),
            })?;
        loop {
            let k = tr.read_data(&mut buf).map_err(form)?;
            if k == 0 {
                break;
            }
            f.write_all(&buf[..k])
                .with_context(|| format!("writing {}", to.display()))?;
        }
    }
    Ok(Some(staging))
}

/// A delta as it was given, opened for reading: its directory as it is,
/// its tar unpacked, or its volumes put together (a staging directory,
/// removed when dropped).
pub struct Given {
    dir: PathBuf,
    /// How messages name it: the path given (for volumes, the first one:
    /// each volume holds the delta's BASE).
    pub name: PathBuf,
    /// How many volumes it was put together from (0: not in volumes).
    pub volumes: usize,
    /// The tar's or the volumes' copy, ours to take files from (moved into
    /// the new bundle rather than copied a second time); None for a
    /// directory given as it is.
    staged: Option<Staging>,
}

impl Given {
    /// The delta's directory, to read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Opens the delta `given`: one path, its directory or its tar
/// ([`unpack_tar`]); or its volumes (`build --base --volume-size`), each a
/// volume or a directory holding `volumes/NN/`, in any order: each is
/// checked alone (with `trust`; None: with the volume's own keyring, the
/// delta they make being checked with the base's when applied) and copied
/// into a staging directory beside `beside` ([`Assembly`]); `more` may add
/// the missing ones (on a terminal, the next disc). A missing volume, one
/// of another delta or bundle, or the volumes of a whole bundle are
/// refused, naming them. A tar whose head, or a first volume whose table,
/// names another base than `base` (a bundle directory or tar) is refused
/// before the rest is unpacked or copied.
pub fn open(
    given: &[PathBuf],
    beside: &Path,
    trust: Option<&Trust>,
    base: Option<&Path>,
    progress: bool,
    more: &mut dyn FnMut(&mut Assembly) -> Result<()>,
) -> Result<Given> {
    let Some(dirs) = given_volumes(given)? else {
        let [one] = given else {
            bail!(
                "{} deltas given, but none is a volume (a directory with VOLUMES): give one delta (its directory or tar), or each of its volumes",
                given.len()
            );
        };
        if let Some(base) = base.filter(|_| fs::metadata(one).is_ok_and(|m| m.is_file())) {
            // A wrong base is refused from the tar's head, before the tar
            // is unpacked.
            let head = Head::read(one, one)?;
            BaseBundle::read(base, one, &head.want, &sha256(&head.sums))?;
        }
        let staged = unpack_tar(one, beside)?;
        return Ok(Given {
            dir: staged
                .as_ref()
                .map_or(one.clone(), |s| s.path().to_path_buf()),
            name: one.clone(),
            volumes: 0,
            staged,
        });
    };
    let trust = trust.cloned().unwrap_or_else(Trust::own);
    let mut a = Assembly::tagged(beside, "airlock-delta-volumes", trust, progress)?;
    for (i, d) in dirs.iter().enumerate() {
        a.add(d)?;
        // The first volume's signed table names the base: another base is
        // refused before the other volumes are copied (or asked for).
        if let (0, Some(base), Some(t)) = (i, base, a.table())
            && let Some(want) = &t.base
        {
            BaseBundle::read(base, d, want, &t.whole)?;
        }
    }
    more(&mut a)?;
    let volumes = a.table().map_or(0, |t| t.volumes.len());
    let staged = a.finish_delta()?;
    Ok(Given {
        dir: staged.path().to_path_buf(),
        name: dirs[0].clone(),
        volumes,
        staged: Some(staged),
    })
}

/// The keys of the base at `base` (a bundle directory or tar), when its
/// `archive-keyring.gpg` is the one its manifest lists and it is the base
/// the volumes `given` name: what a delta's volumes are checked with as
/// they come, so a volume signed by a key the base does not trust is
/// refused at once, not after the last disc. None otherwise: [`apply`]
/// then names what is wrong (a wrong base with both hashes).
pub fn base_trust(base: &Path, given: &[PathBuf]) -> Option<Trust> {
    given_volumes(given).ok()??;
    let (tar, sums) = BaseBundle::open(base).ok()?;
    let sums = sums?;
    let bundle = BaseBundle {
        dir: base.to_path_buf(),
        tar,
        hash: sha256(&sums),
        listing: parse_manifest(&String::from_utf8_lossy(&sums)).0,
    };
    if !volumes_name(given, &bundle.hash) {
        return None;
    }
    bundle.keyring().ok().map(Trust::keyring)
}

/// Whether the volumes `given` are of a delta for the bundle whose
/// `SHA256SUMS` hashes to `hash` (their BASE names it), or that makes it:
/// read from the first volume, unchecked, only to choose the keys the
/// volumes are checked with.
pub fn volumes_name(given: &[PathBuf], hash: &str) -> bool {
    volumes_base_and_new(given).is_some_and(|(base, new)| base == hash || new == hash)
}

/// The base a delta's volumes apply to and the bundle they make, as the
/// first volume names them (BASE, and the whole new manifest it
/// carries), unchecked: None when `given` are not a delta's volumes.
pub fn volumes_base_and_new(given: &[PathBuf]) -> Option<(String, String)> {
    let dirs = given_volumes(given).ok()??;
    let read = |p: &Path| read_head(&dirs[0], &p.to_string_lossy()).ok().flatten();
    let base = read(Path::new(BASE)).and_then(|b| parse_base(&String::from_utf8_lossy(&b)))?;
    let whole = read(&Path::new(WHOLE).join(SUMS)).map(|b| sha256(&b))?;
    Some((base, whole))
}

/// Where a file of the new bundle comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// The delta carries it.
    Delta,
    /// The base holds the same bytes at this path.
    Base(String),
}

/// What `apply` did, or why it refused (`ok` false, `problems` say why).
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub ok: bool,
    /// The sha256 of the base's SHA256SUMS (what BASE names).
    pub base: String,
    /// The sha256 of the new SHA256SUMS.
    pub new: String,
    /// The base given was already the new bundle.
    pub already: bool,
    /// The trust came from the base's own archive-keyring.gpg.
    pub base_keyring: bool,
    /// Files (and their bytes) taken from the delta and from the base.
    pub from_delta: usize,
    pub bytes_from_delta: u64,
    pub from_base: usize,
    pub bytes_from_base: u64,
    /// What is wrong with the delta or the bundle it makes.
    pub problems: Vec<Finding>,
    /// The new bundle's verification, when it got that far.
    pub report: Option<Report>,
    /// The signatures of the new SHA256SUMS as checked, when they could
    /// be (who signed: a VM names keys it does not trust).
    #[serde(skip)]
    pub signed: Option<Signatures>,
}

fn finding(kind: FindingKind, path: &str, detail: impl Into<String>) -> Finding {
    Finding {
        kind,
        path: path.into(),
        detail: detail.into(),
    }
}

/// How a delta given the wrong base is refused, for a delta directory, tar
/// or volumes alike: `holder` has `have` where the delta wants `want`.
pub fn wrong_base(delta: &Path, want: &str, holder: &str, have: &str) -> String {
    format!(
        "wrong base: the delta {} applies to the bundle whose {SUMS} has sha256 {want}, but {holder} has sha256 {have}",
        delta.display()
    )
}

/// Reads a small regular file of `dir` (no link followed); None when it is
/// not there.
pub(crate) fn read_head(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if !meta.is_file() {
        bail!(
            "{}: not a regular file (a link or something odd): refused",
            path.display()
        );
    }
    if meta.len() > manifest::HEAD_LIMIT {
        bail!(
            "{}: {} bytes, too large for a manifest or signature",
            path.display(),
            meta.len()
        );
    }
    fs::read(&path)
        .map(Some)
        .with_context(|| format!("reading {}", path.display()))
}

/// The delta's head: the new manifest, BASE and their signatures.
struct Head {
    sums: Vec<u8>,
    sums_sig: Option<Vec<u8>>,
    base_sig: Option<Vec<u8>>,
    /// What BASE names.
    want: String,
}

impl Head {
    /// Reads the head of the delta at `delta`: its directory, or its tar
    /// (only the head is read); messages name it `name` (what the user
    /// gave: the directory itself, or the tar it came from).
    fn read(delta: &Path, name: &Path) -> Result<Head> {
        let mut files = BTreeMap::new();
        if fs::metadata(delta).is_ok_and(|m| m.is_file()) {
            files = tar_head(delta)?;
        } else if delta.is_dir() {
            for f in [SUMS, SUMS_SIG, BASE, BASE_SIG] {
                if let Some(bytes) = read_head(delta, f)? {
                    files.insert(f.to_string(), bytes);
                }
            }
        } else {
            bail!(
                "{}: not a directory or a tar; a delta is the directory (or tar) `airlock build --base` wrote",
                name.display()
            );
        }
        Head::of(files, name)
    }

    /// The head from its files.
    fn of(mut files: BTreeMap<String, Vec<u8>>, name: &Path) -> Result<Head> {
        let Some(base) = files.remove(BASE) else {
            bail!(
                "{}: no {BASE} file, so it is not a delta (a whole bundle needs no apply: check it with `airlock verify {}`)",
                name.display(),
                name.display()
            );
        };
        let want = parse_base(&String::from_utf8_lossy(&base)).with_context(|| {
            format!(
                "{}: not one line \"<sha256>  {SUMS}\": not a delta airlock wrote",
                name.join(BASE).display()
            )
        })?;
        let sums = files.remove(SUMS).with_context(|| {
            format!(
                "{}: the delta holds no {SUMS} (the new bundle's manifest); copy the whole delta again",
                name.display()
            )
        })?;
        Ok(Head {
            sums,
            sums_sig: files.remove(SUMS_SIG),
            base_sig: files.remove(BASE_SIG),
            want,
        })
    }
}

/// The base: its manifest, parsed, and where its files are.
struct BaseBundle {
    /// Its directory, or the tar file.
    dir: PathBuf,
    /// When it is a bundle tar: its head, read.
    tar: Option<TarBase>,
    hash: String,
    listing: BTreeMap<String, String>,
}

impl BaseBundle {
    /// `dir` (a bundle directory or tar) as a base, unchecked: its tar's
    /// head when it is a tar, and its `SHA256SUMS` when it has one.
    fn open(dir: &Path) -> Result<(Option<TarBase>, Option<Vec<u8>>)> {
        let tar = match fs::metadata(dir) {
            Ok(m) if m.is_dir() => None,
            Ok(m) if m.is_file() => Some(TarBase::read_head(dir)?),
            _ => bail!(
                "{}: cannot read it; the base is the earlier bundle's directory or its tar (`airlock build --tar`)",
                dir.display()
            ),
        };
        let sums = match &tar {
            Some(t) => t.head.get(SUMS).cloned(),
            None => read_head(dir, SUMS)?,
        };
        Ok((tar, sums))
    }

    /// Reads the base at `dir` (a bundle directory or tar), which must be
    /// the bundle `want` names (or already the new bundle, `new`): refused
    /// with both hashes named otherwise.
    fn read(dir: &Path, name: &Path, want: &str, new: &str) -> Result<BaseBundle> {
        if is_delta(dir) {
            bail!(
                "{}: a delta, not a whole bundle: the base is the whole earlier bundle (its directory or tar; `airlock apply` makes it from a delta and its own base)",
                dir.display()
            );
        }
        let (tar, sums) = Self::open(dir)?;
        let Some(sums) = sums else {
            bail!(
                "missing base: {} holds no {SUMS}; the delta {} applies to the bundle whose {SUMS} has sha256 {}. Give that bundle's directory or tar",
                dir.display(),
                name.display(),
                want
            );
        };
        let base = BaseBundle {
            dir: dir.to_path_buf(),
            tar,
            hash: sha256(&sums),
            listing: BTreeMap::new(),
        };
        if base.hash != want && base.hash != new {
            // `sha256sum -c` reads BASE from a directory, not from a tar.
            let finds = match name.is_dir() {
                true => format!(
                    ", or `sha256sum -c {}` in its directory,",
                    name.join(BASE).display()
                ),
                false => String::new(),
            };
            bail!(
                "{}; nothing was written. Give the bundle the delta was built against (`sha256sum OLD/{SUMS}`{finds} finds it)",
                wrong_base(name, want, &base.label(SUMS), &base.hash)
            );
        }
        let (listing, problems) = parse_manifest(&String::from_utf8_lossy(&sums));
        if let Some(p) = problems.first() {
            bail!(
                "the base's manifest {} is damaged ({} {}: {}): check the base with `airlock verify {}`",
                base.label(SUMS),
                p.kind,
                p.path,
                p.detail,
                dir.display()
            );
        }
        Ok(BaseBundle { listing, ..base })
    }

    /// How to name the base's file `name` in a message.
    fn label(&self, name: &str) -> String {
        match &self.tar {
            Some(_) => format!("{} (in the tar {})", name, self.dir.display()),
            None => self.dir.join(name).display().to_string(),
        }
    }

    /// A head file of the base (its manifest, keys, MODES).
    fn head_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match &self.tar {
            Some(t) => Ok(t.head.get(name).cloned()),
            None => read_head(&self.dir, name),
        }
    }

    /// The base's own keyring, as its manifest lists it.
    fn keyring(&self) -> Result<Keyring> {
        let label = self.label(PUBLIC_GPG_FILE);
        let bytes = self
            .head_file(PUBLIC_GPG_FILE)?
            .with_context(|| format!("{label} is missing: pass --keyring"))?;
        match self.listing.get(PUBLIC_GPG_FILE) {
            Some(h) if *h == sha256(&bytes) => {}
            _ => bail!(
                "{label} is not the keyring the base's {SUMS} lists: the base was altered; check it with `airlock verify`, or pass --keyring"
            ),
        }
        Keyring::from_bytes(&bytes, &label)
    }

    /// A path of the base holding `hash`: `path` itself when it does.
    fn find(&self, path: &str, hash: &str, by_hash: &BTreeMap<&str, &str>) -> Option<String> {
        if self.listing.get(path).is_some_and(|h| h == hash) {
            return Some(path.to_string());
        }
        by_hash.get(hash).map(|p| p.to_string())
    }
}

/// Checks a detached signature of `data` (`sig`, from the file `name`):
/// `trust.require` distinct keys of its keyring must have made a good one.
/// The signatures as checked (when they could be), and what is wrong.
fn check_sig(
    name: &str,
    data: &[u8],
    sig: Option<&[u8]>,
    trust: &Trust,
) -> (Option<Signatures>, Option<Finding>) {
    let keyring = trust.keyring.as_ref().expect("apply always has a keyring");
    let Some(sig) = sig else {
        let missing = finding(
            FindingKind::Signature,
            name,
            "missing: the delta is not signed",
        );
        return (None, Some(missing));
    };
    match keyring.check_detached(data, sig) {
        Ok(checked) => {
            let wrong = checked
                .require(trust.require, keyring)
                .err()
                .map(|e| finding(FindingKind::Signature, name, format!("{e:#}")));
            (Some(checked), wrong)
        }
        Err(e) => {
            let bad = finding(
                FindingKind::Signature,
                name,
                format!("does not verify: {e:#}"),
            );
            (None, Some(bad))
        }
    }
}

/// The new manifest's paths, held to more than `verify` needs for reading:
/// none of the delta's own names, and no path both a file and a directory.
fn check_paths(listing: &BTreeMap<String, String>, problems: &mut Vec<Finding>) {
    for p in listing.keys() {
        if OWN.contains(&p.as_str()) {
            problems.push(finding(
                FindingKind::Unsafe,
                p,
                "the manifest lists a file of the delta's own head",
            ));
        }
        for (i, _) in p.match_indices('/') {
            let d = &p[..i];
            if listing.contains_key(d) {
                problems.push(finding(
                    FindingKind::Unsafe,
                    p,
                    format!("{d} is listed as a file and as a directory"),
                ));
            }
        }
    }
}

/// What the delta directory holds: its files of the new bundle with their
/// sizes. A link, an odd file, a file or directory the manifest does not
/// imply is a problem; nothing is followed.
fn walk_delta(
    delta: &Path,
    listing: &BTreeMap<String, String>,
    problems: &mut Vec<Finding>,
) -> BTreeMap<String, u64> {
    let dirs = manifest::implied_dirs(listing.keys());
    let mut carried = BTreeMap::new();
    for e in walkdir::WalkDir::new(delta)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
    {
        let e = match e {
            Ok(e) => e,
            Err(err) => {
                problems.push(finding(FindingKind::Unreadable, "", err.to_string()));
                continue;
            }
        };
        let rel = e
            .path()
            .strip_prefix(delta)
            .expect("under the delta")
            .to_string_lossy()
            .into_owned();
        let t = e.file_type();
        if t.is_symlink() {
            problems.push(finding(
                FindingKind::Unsafe,
                &rel,
                "a symbolic link; a delta holds none (not followed)",
            ));
        } else if t.is_dir() {
            if !dirs.contains(&rel) {
                problems.push(finding(
                    FindingKind::Extra,
                    &rel,
                    "a directory no file of the new SHA256SUMS is in",
                ));
            }
        } else if !t.is_file() {
            problems.push(finding(FindingKind::Unsafe, &rel, "not a regular file"));
        } else if OWN.contains(&rel.as_str()) {
            // The delta's head, read and checked on its own.
        } else if !listing.contains_key(&rel) {
            problems.push(finding(
                FindingKind::Extra,
                &rel,
                "in the delta, not in the new SHA256SUMS",
            ));
        } else {
            carried.insert(rel, e.metadata().map(|m| m.len()).unwrap_or(0));
        }
    }
    carried
}

/// Makes the new bundle from the delta in `delta` and the base bundle in
/// `base`, and puts it at `out` (which may be `base` itself: it is replaced
/// once the new bundle verified). `trust`: the keyrings to check the
/// delta's signatures and the new bundle with; None: the base's own
/// `archive-keyring.gpg`, so a delta is accepted when it is signed by a key
/// the base already trusted.
///
/// `delta` is the delta's directory, its tar or its volumes, opened
/// ([`open`]).
///
/// A wrong or missing base, or something unreadable, is an error; a delta
/// that does not check out is `ok: false` with every problem, and nothing
/// is written then.
pub fn apply(
    delta: &Given,
    base: &Path,
    out: &Path,
    trust: Option<&Trust>,
    progress: bool,
) -> Result<Applied> {
    apply_scoped(delta, base, out, trust, None, progress)
}

/// [`apply`] making only the files of the new bundle that `keep` names (a
/// name ending in `/` keeps everything under that directory): what a
/// prepared VM keeps of a bundle. `base` holds only those of the base
/// (with its whole `SHA256SUMS`); the part made is verified as `verify`
/// verifies a bundle, its signature with `trust`, except that the files
/// `keep` leaves out are not there.
pub fn apply_kept(
    delta: &Given,
    base: &Path,
    out: &Path,
    trust: &Trust,
    keep: &[&str],
    progress: bool,
) -> Result<Applied> {
    apply_scoped(delta, base, out, Some(trust), Some(keep), progress)
}

/// `path` is one of the files `keep` names (all of them: None).
pub fn kept(path: &str, keep: Option<&[&str]>) -> bool {
    keep.is_none_or(|k| {
        k.iter().any(|p| match p.strip_suffix('/') {
            Some(dir) => path.strip_prefix(dir).is_some_and(|r| r.starts_with('/')),
            None => path == *p,
        })
    })
}

/// Which base a delta (its directory or tar) applies to and which bundle
/// it makes: the sha256 of the base's `SHA256SUMS` (what BASE names) and
/// of the new one. Nothing is checked but the form: see [`apply`].
pub fn base_and_new(delta: &Path, name: &Path) -> Result<(String, String)> {
    let head = Head::read(delta, name)?;
    Ok((head.want, sha256(&head.sums)))
}

fn apply_scoped(
    given: &Given,
    base: &Path,
    out: &Path,
    trust: Option<&Trust>,
    keep: Option<&[&str]>,
    progress: bool,
) -> Result<Applied> {
    let (delta, name) = (given.dir(), given.name.as_path());
    let head = Head::read(delta, name)?;
    let new = sha256(&head.sums);
    let base = BaseBundle::read(base, name, &head.want, &new)?;
    let base_keyring = trust.is_none();
    let trust = match trust {
        Some(t) => t.clone(),
        None => Trust::keyring(base.keyring()?),
    };
    let mut applied = Applied {
        ok: false,
        base: head.want.clone(),
        new: new.clone(),
        already: base.hash == new,
        base_keyring,
        from_delta: 0,
        bytes_from_delta: 0,
        from_base: 0,
        bytes_from_base: 0,
        problems: Vec::new(),
        report: None,
        signed: None,
    };
    let listing = check_head(&head, &trust, &mut applied);
    if !applied.problems.is_empty() {
        return Ok(applied);
    }
    let sources = sources_of(delta, &listing, &base, keep, &mut applied.problems);
    if !applied.problems.is_empty() {
        return Ok(applied);
    }
    if applied.already && same_dir(&base.dir, out) {
        // Applied in place before: check it, write nothing.
        let report = verify_kept(out, &trust, keep, progress)?;
        applied.from_base = sources.len();
        applied.ok = report.ok;
        applied.problems = report.problems.clone();
        applied.report = Some(report);
        return Ok(applied);
    }
    let modes = read_modes(delta, &base, &sources, &listing)?;
    let staging = Staging::beside(out)?;
    // A VM's kept bundle lends its files to the new one (the same bytes,
    // read-only, removed after the switch): linked, not copied, so an
    // update needs room for what the delta carries only.
    let link = keep.is_some();
    let from = (delta, given.staged.is_some());
    copy_sources(
        from,
        &base,
        &sources,
        &modes,
        staging.path(),
        link,
        &mut applied,
    )?;
    write_new(staging.path(), SUMS, &head.sums)?;
    write_new(
        staging.path(),
        SUMS_SIG,
        head.sums_sig.as_deref().expect("checked"),
    )?;
    let report = verify_kept(staging.path(), &trust, keep, progress)?;
    if !report.ok {
        applied.problems = with_whence(&report.problems, &sources, name, &base);
        applied.report = Some(report);
        return Ok(applied);
    }
    staging.replace(out)?;
    applied.ok = true;
    applied.report = Some(report);
    Ok(applied)
}

/// `verify` of the bundle (or the part of it `keep` names) in `dir`: the
/// files `keep` leaves out are not missing.
fn verify_kept(dir: &Path, trust: &Trust, keep: Option<&[&str]>, progress: bool) -> Result<Report> {
    let mut report = verify_dir(dir, trust, progress)?;
    if keep.is_some() {
        report
            .problems
            .retain(|p| p.kind != FindingKind::Missing || kept(&p.path, keep));
        report.ok = report.problems.is_empty();
    }
    Ok(report)
}

/// The new bundle's problems, each saying where its file was taken from.
fn with_whence(
    problems: &[Finding],
    sources: &BTreeMap<String, Source>,
    name: &Path,
    base: &BaseBundle,
) -> Vec<Finding> {
    problems
        .iter()
        .map(|p| {
            let whence = match sources.get(&p.path) {
                Some(Source::Delta) => format!(" (taken from the delta {})", name.display()),
                Some(Source::Base(b)) => format!(" (taken from the base {})", base.label(b)),
                None => String::new(),
            };
            Finding {
                detail: format!("{}{whence}", p.detail),
                ..p.clone()
            }
        })
        .collect()
}

/// The delta's signatures, manifest and paths checked: the new listing.
fn check_head(head: &Head, trust: &Trust, applied: &mut Applied) -> BTreeMap<String, String> {
    let problems = &mut applied.problems;
    let (signed, wrong) = check_sig(SUMS_SIG, &head.sums, head.sums_sig.as_deref(), trust);
    applied.signed = signed;
    problems.extend(wrong);
    let base_text = render_base(&head.want);
    let (_, wrong) = check_sig(
        BASE_SIG,
        base_text.as_bytes(),
        head.base_sig.as_deref(),
        trust,
    );
    problems.extend(wrong);
    let (listing, found) = parse_manifest(&String::from_utf8_lossy(&head.sums));
    problems.extend(found);
    check_paths(&listing, problems);
    listing
}

/// Where each file of the new bundle comes from: the delta, or the base's
/// file with the same bytes; one from neither is a problem.
fn sources_of(
    delta: &Path,
    listing: &BTreeMap<String, String>,
    base: &BaseBundle,
    keep: Option<&[&str]>,
    problems: &mut Vec<Finding>,
) -> BTreeMap<String, Source> {
    let carried = walk_delta(delta, listing, problems);
    // The base holds only the files `keep` names.
    let by_hash: BTreeMap<&str, &str> = base
        .listing
        .iter()
        .filter(|(p, _)| kept(p, keep))
        .map(|(p, h)| (h.as_str(), p.as_str()))
        .collect();
    let mut sources = BTreeMap::new();
    for (path, hash) in listing.iter().filter(|(p, _)| kept(p, keep)) {
        let source = if carried.contains_key(path) {
            Source::Delta
        } else if let Some(p) = base.find(path, hash, &by_hash) {
            Source::Base(p)
        } else {
            problems.push(finding(
                FindingKind::Missing,
                path,
                format!(
                    "the delta does not carry it and the base lists no file with its sha256 {hash}"
                ),
            ));
            continue;
        };
        sources.insert(path.clone(), source);
    }
    sources
}

/// Copies every file from where it comes into `to`, counting: from a
/// base tar, in one pass over it. `delta`: its directory, and whether its
/// files are ours to move (a copy made for this apply).
fn copy_sources(
    (delta, take): (&Path, bool),
    base: &BaseBundle,
    sources: &BTreeMap<String, Source>,
    modes: &BTreeMap<String, u32>,
    to: &Path,
    link: bool,
    applied: &mut Applied,
) -> Result<()> {
    let mode = |path: &str| modes.get(path).copied();
    let mut from_tar: BTreeMap<String, Vec<(String, u32)>> = BTreeMap::new();
    for (path, source) in sources {
        let from = match (source, &base.tar) {
            (Source::Delta, _) => delta.join(path),
            (Source::Base(p), Some(_)) => {
                let dests = from_tar.entry(p.clone()).or_default();
                dests.push((path.clone(), mode(path).unwrap_or(0o644)));
                continue;
            }
            (Source::Base(p), None) => base.dir.join(p),
        };
        let n = match source {
            Source::Delta if take => take_file(&from, to, path, mode(path))?,
            Source::Delta => put(&from, to, path, mode(path), false)?,
            Source::Base(_) => put(&from, to, path, mode(path), link)?,
        };
        match source {
            Source::Delta => {
                applied.from_delta += 1;
                applied.bytes_from_delta += n;
            }
            Source::Base(_) => {
                applied.from_base += 1;
                applied.bytes_from_base += n;
            }
        }
    }
    if let Some(tar) = &base.tar {
        let sizes = tar.extract(&from_tar, to)?;
        for (p, dests) in &from_tar {
            applied.from_base += dests.len();
            applied.bytes_from_base += sizes[p] * dests.len() as u64;
        }
    }
    Ok(())
}

/// `a` and `b` are the same existing directory.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// MODES of the new bundle, from wherever it comes. A MODES that does not
/// parse leaves the modes at 0644 here; verify names the problem.
fn read_modes(
    delta: &Path,
    base: &BaseBundle,
    sources: &BTreeMap<String, Source>,
    listing: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, u32>> {
    let from = match sources.get(MODES) {
        Some(Source::Delta) => delta.join(MODES),
        Some(Source::Base(p)) if base.tar.is_some() => {
            return Ok(parse_modes_if(base.head_file(p)?, listing));
        }
        Some(Source::Base(p)) => base.dir.join(p),
        None => return Ok(BTreeMap::new()),
    };
    let bytes = fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
    Ok(parse_modes_if(Some(bytes), listing))
}

/// The modes MODES (`bytes`) gives, when it is the one `listing` names.
fn parse_modes_if(
    bytes: Option<Vec<u8>>,
    listing: &BTreeMap<String, String>,
) -> BTreeMap<String, u32> {
    let Some(bytes) = bytes.filter(|b| listing.get(MODES).is_some_and(|h| *h == sha256(b))) else {
        return BTreeMap::new();
    };
    let mut ignored = Vec::new();
    manifest::parse_modes(&String::from_utf8_lossy(&bytes), &mut ignored)
}

/// Copies the regular file `from` (never through a link) to `root/rel`
/// with `mode` (0644 when MODES does not say): the bytes copied.
/// Puts `from` at `rel` under `root` with `mode`: a hard link when `link`
/// allows it and `from` has that mode already (a link shares the mode),
/// a copy otherwise.
fn put(from: &Path, root: &Path, rel: &str, mode: Option<u32>, link: bool) -> Result<u64> {
    let meta = fs::symlink_metadata(from).with_context(|| format!("reading {}", from.display()))?;
    if !meta.is_file() {
        bail!(
            "{}: not a regular file (a link or something odd): refused",
            from.display()
        );
    }
    let to = root.join(rel);
    create_dirs(to.parent().expect("under the root"))?;
    let mode = mode.unwrap_or(0o644);
    if link && meta.permissions().mode() & 0o7777 == mode && fs::hard_link(from, &to).is_ok() {
        return Ok(meta.len());
    }
    let n = fs::copy(from, &to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    set_mode(&to, mode)?;
    Ok(n)
}

/// [`put`] by a rename, for a file of a delta copy that is ours (the
/// volumes put together, the tar unpacked): no second copy of gigabytes.
/// Copied when the rename fails (another filesystem).
fn take_file(from: &Path, root: &Path, rel: &str, mode: Option<u32>) -> Result<u64> {
    let meta = fs::symlink_metadata(from).with_context(|| format!("reading {}", from.display()))?;
    if !meta.is_file() {
        return put(from, root, rel, mode, false);
    }
    let to = root.join(rel);
    create_dirs(to.parent().expect("under the root"))?;
    if fs::rename(from, &to).is_err() {
        return put(from, root, rel, mode, false);
    }
    set_mode(&to, mode.unwrap_or(0o644))?;
    Ok(meta.len())
}

fn write_new(root: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let to = root.join(name);
    fs::write(&to, bytes).with_context(|| format!("writing {}", to.display()))?;
    set_mode(&to, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar in the bundle form holding `files` (path, bytes) in order.
    fn tar_of(path: &Path, files: &[(&str, &[u8])]) {
        let mut tw = crate::shared::tarform::TarWriter::new(Vec::new(), 0);
        for (p, b) in files {
            tw.file(p, 0o644, b.len() as u64, *b).unwrap();
        }
        fs::write(path, tw.finish().unwrap()).unwrap();
    }

    #[test]
    fn a_delta_tar_is_unpacked_beside_and_an_escaping_or_repeated_entry_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let out = d.join("new");
        fs::create_dir(d.join("delta")).unwrap();
        assert!(unpack_tar(&d.join("delta"), &out).unwrap().is_none());
        tar_of(&d.join("ok.tar"), &[("BASE", b"b"), ("repo/x", b"x")]);
        let staged = unpack_tar(&d.join("ok.tar"), &out).unwrap().unwrap();
        assert_eq!(fs::read(staged.path().join("repo/x")).unwrap(), b"x");
        assert_eq!(staged.path().parent(), Some(d));
        let path = staged.path().to_path_buf();
        drop(staged);
        assert!(!path.exists(), "removed when dropped");
        for (name, files, says) in [
            ("up.tar", &[("../escape", &b"e"[..])][..], "would leave"),
            (
                "twice.tar",
                &[("a", &b"1"[..]), ("a", &b"2"[..])][..],
                "given twice",
            ),
        ] {
            tar_of(&d.join(name), files);
            let e = format!("{:#}", unpack_tar(&d.join(name), &out).unwrap_err());
            assert!(e.contains(says), "{name}: {e}");
        }
        assert!(!d.join("escape").exists());
        let names: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 4, "nothing left beside: {names:?}");
    }

    #[test]
    fn a_file_of_our_own_copy_is_moved_with_its_mode_and_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("copy"), dir.path().join("new"));
        fs::create_dir_all(&from).unwrap();
        fs::write(from.join("x.deb"), b"12345").unwrap();
        let n = take_file(&from.join("x.deb"), &to, "repo/pool/x.deb", Some(0o640)).unwrap();
        assert_eq!(n, 5);
        assert!(!from.join("x.deb").exists(), "moved, not copied");
        let moved = to.join("repo/pool/x.deb");
        assert_eq!(fs::read(&moved).unwrap(), b"12345");
        assert_eq!(
            fs::metadata(&moved).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        std::os::unix::fs::symlink("/etc/passwd", from.join("link")).unwrap();
        let e = format!(
            "{:#}",
            take_file(&from.join("link"), &to, "l", None).unwrap_err()
        );
        assert!(e.contains("not a regular file"), "{e}");
        assert!(!to.join("l").exists());
    }

    #[test]
    fn base_is_one_sha256sum_line() {
        let h = "0123456789abcdef".repeat(4);
        assert_eq!(parse_base(&render_base(&h)), Some(h.clone()));
        for bad in [
            format!("{h}  SHA256SUMS"),
            format!("{h}  SHA256SUMS\n\n"),
            format!("{}  SHA256SUMS\n", h.to_uppercase()),
            format!("{h} SHA256SUMS\n"),
            format!("{h}  MODES\n"),
            format!("{}  SHA256SUMS\n", &h[1..]),
        ] {
            assert_eq!(parse_base(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn kept_names_files_and_whole_directories() {
        let keep: &[&str] = &["repo/", "MODES"];
        for (path, want) in [
            ("repo/pool/a.deb", true),
            ("repo", false),
            ("repository/x", false),
            ("MODES", true),
            ("MODES.bak", false),
            ("seeds/spdb1.iso", false),
        ] {
            assert_eq!(kept(path, Some(keep)), want, "{path}");
            assert!(kept(path, None), "{path}");
        }
    }

    #[test]
    fn a_path_that_is_both_a_file_and_a_directory_is_refused() {
        let h = "a".repeat(64);
        let listing: BTreeMap<String, String> = ["repo", "repo/pool/x.deb", "b/c", BASE]
            .iter()
            .map(|p| (p.to_string(), h.clone()))
            .collect();
        let mut problems = Vec::new();
        check_paths(&listing, &mut problems);
        let named: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(named, [BASE, "repo/pool/x.deb"], "{problems:?}");
    }
}
