//! `airlock build --base OLD`: the bundle is built whole in a staging
//! directory, then only what OLD lacks goes to `--out`, with the whole new
//! signed manifest and the signed hash of OLD's manifest (the layout:
//! [`crate::shared::delta`]). OLD is read for its manifest only: a bundle
//! directory, a bundle tar, a bundle in volumes, a delta (its manifest is
//! the whole bundle's) or a `SHA256SUMS` file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::build::sign::Signers;
use crate::shared::delta::{ALWAYS, BASE, BASE_SIG, render_base};
use crate::shared::manifest::{SUMS, SUMS_SIG, parse_manifest};
use crate::shared::staging::Staging;
use crate::shared::volumes::{self, WHOLE, sha256};
use crate::shared::writer::create_dirs;

/// The most bytes of a base's manifest read.
const SUMS_LIMIT: u64 = 64 << 20;

/// The base of a delta: what its manifest lists.
#[derive(Debug, Clone)]
pub struct Base {
    /// Where it was read from.
    pub path: PathBuf,
    /// The sha256 of its `SHA256SUMS`.
    pub hash: String,
    /// Path → sha256.
    pub listing: BTreeMap<String, String>,
    /// Its directory, when it is a whole bundle directory (its repository
    /// and cache can speed the build up).
    pub dir: Option<PathBuf>,
}

impl Base {
    /// Reads the manifest of the base at `path`.
    pub fn read(path: &Path) -> Result<Base> {
        let (sums, dir) = base_manifest(path)?;
        let (listing, problems) = parse_manifest(&String::from_utf8_lossy(&sums));
        if let Some(p) = problems.first() {
            bail!(
                "--base {}: its {SUMS} is not a bundle's manifest ({} {}: {}); give the earlier bundle's directory, tar or {SUMS}",
                path.display(),
                p.kind,
                p.path,
                p.detail
            );
        }
        if listing.is_empty() {
            bail!(
                "--base {}: its {SUMS} lists no file; give the earlier bundle's directory, tar or {SUMS}",
                path.display()
            );
        }
        Ok(Base {
            path: path.to_path_buf(),
            hash: sha256(&sums),
            listing,
            dir,
        })
    }
}

/// The bytes of the base's `SHA256SUMS`, and its directory when it is a
/// whole bundle's.
fn base_manifest(path: &Path) -> Result<(Vec<u8>, Option<PathBuf>)> {
    let meta = fs::metadata(path).with_context(|| {
        format!(
            "--base {}: cannot read it; give the earlier bundle's directory, tar or {SUMS}",
            path.display()
        )
    })?;
    if meta.is_dir() {
        // A volume's own SHA256SUMS lists its share: the whole one is in whole/.
        let whole = if volumes::is_volume(path) {
            path.join(WHOLE).join(SUMS)
        } else if path.join(SUMS).is_file() {
            let whole_bundle = !crate::shared::delta::is_delta(path);
            return Ok((
                read_limited(&path.join(SUMS))?,
                whole_bundle.then(|| path.to_path_buf()),
            ));
        } else if let Some(v) = volumes::volume_dirs(path) {
            v[0].join(WHOLE).join(SUMS)
        } else {
            bail!(
                "--base {}: the directory holds no {SUMS}: is it a bundle?",
                path.display()
            );
        };
        return Ok((read_limited(&whole)?, None));
    }
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut magic = [0u8; 512];
    let n = read_up_to(&mut f, &mut magic)?;
    let tar = n == 512 && &magic[257..262] == b"ustar";
    let gz = n >= 2 && magic[..2] == [0x1f, 0x8b];
    if !tar && !gz {
        return Ok((read_limited(path)?, None));
    }
    let head = crate::shared::basetar::TarBase::read_head(path)
        .with_context(|| format!("--base {}", path.display()))?;
    Ok((head.head[SUMS].clone(), None))
}

fn read_up_to(f: &mut fs::File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

fn read_limited(path: &Path) -> Result<Vec<u8>> {
    let len = fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > SUMS_LIMIT {
        bail!("{}: {len} bytes, not a bundle's manifest", path.display());
    }
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// What a delta holds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The sha256 of the base's SHA256SUMS (BASE names it).
    pub base: String,
    /// Where the base was read from.
    pub base_path: PathBuf,
    /// The sha256 of the new SHA256SUMS.
    pub new: String,
    /// Files of the new bundle the delta carries, and their bytes.
    pub files: usize,
    pub bytes: u64,
    /// Every file of the new bundle (its manifest's lines), and their bytes.
    pub whole_files: usize,
    pub whole_bytes: u64,
    /// The delta on disk: every file it holds, its head included.
    pub delta_bytes: u64,
}

/// Writes the delta of the whole bundle in `full` against `base` to `out`
/// (staged beside it and renamed into place). The base's manifest hash is
/// signed in BASE.gpg by the keys that signed the bundle.
pub fn write(full: &Path, base: &Base, out: &Path, key: &Signers, time: i64) -> Result<Summary> {
    let sums = fs::read(full.join(SUMS)).context("reading the new manifest")?;
    let (listing, problems) = parse_manifest(&String::from_utf8_lossy(&sums));
    if let Some(p) = problems.first() {
        bail!("the new manifest: {} {}: {}", p.kind, p.path, p.detail);
    }
    let have: BTreeSet<&str> = base.listing.values().map(String::as_str).collect();
    let staging = Staging::beside_tagged(out, "airlock-delta")?;
    let mut summary = Summary {
        base: base.hash.clone(),
        base_path: base.path.clone(),
        new: sha256(&sums),
        files: 0,
        bytes: 0,
        whole_files: listing.len(),
        whole_bytes: 0,
        delta_bytes: 0,
    };
    for (path, hash) in &listing {
        let from = full.join(path);
        let len = fs::metadata(&from)
            .with_context(|| format!("reading {}", from.display()))?
            .len();
        summary.whole_bytes += len;
        if have.contains(hash.as_str()) && !ALWAYS.contains(&path.as_str()) {
            continue;
        }
        let to = staging.path().join(path);
        create_dirs(to.parent().expect("under the staging directory"))?;
        crate::build::link_or_copy(&from, &to)?;
        summary.files += 1;
        summary.bytes += len;
    }
    let base_text = render_base(&base.hash);
    let head: [(&str, Vec<u8>); 4] = [
        (SUMS, sums.clone()),
        (SUMS_SIG, fs::read(full.join(SUMS_SIG))?),
        (BASE, base_text.clone().into_bytes()),
        (
            BASE_SIG,
            key.detached_armored(base_text.as_bytes(), time)?
                .into_bytes(),
        ),
    ];
    let mut delta_bytes = summary.bytes;
    for (name, bytes) in head {
        let to = staging.path().join(name);
        fs::write(&to, &bytes).with_context(|| format!("writing {}", to.display()))?;
        crate::shared::writer::set_mode(&to, 0o644)?;
        delta_bytes += bytes.len() as u64;
    }
    summary.delta_bytes = delta_bytes;
    staging.replace(out)?;
    Ok(summary)
}
