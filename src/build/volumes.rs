//! `airlock build --volume-size`: the finished bundle cut into volumes that
//! each verify alone (the layout and its checks: [`crate::shared::volumes`]).
//! Files are taken in the bundle's path order and never split; each volume
//! keeps room for its own manifest, the keys, the runner, the README, the
//! whole manifest and the table, and counts every file as the 2 KiB sectors an ISO 9660 image
//! gives it, plus one sector for its directory record, and each directory
//! two sectors (its ISO 9660 and Joliet records).
//!
//! A delta (`--base`) is cut the same way: its files are what the delta
//! directory holds (not every file its whole manifest lists), and every
//! volume also carries its BASE and BASE.gpg, whose hash the table names.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::build::bundle::{render_modes, render_sums};
use crate::build::sign::Signers;
use crate::shared::delta::{self, BASE, BASE_SIG};
use crate::shared::keyring;
use crate::shared::manifest::{self, MODES, RUNNER, SUMS, SUMS_SIG};
use crate::shared::staging::Staging;
use crate::shared::volumes::{Entry, TABLE, TABLE_SIG, Table, WHOLE, sha256};

/// Named volume sizes (bytes): the smallest disc of each kind (DVD+R,
/// DVD+R DL, BD-R SL and DL), and the largest file FAT32 holds, so a
/// volume fits one file on a FAT32 stick.
pub const NAMED: [(&str, u64); 5] = [
    ("dvd", 2_295_104 * 2048),
    ("dvd-dl", 4_173_824 * 2048),
    ("bd25", 12_219_392 * 2048),
    ("bd50", 24_438_784 * 2048),
    ("fat32", (4 << 30) - 1),
];

/// Parses `--volume-size`: a name of [`NAMED`], or bytes with an optional
/// K, M or G suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    if let Some((_, n)) = NAMED.iter().find(|(name, _)| *name == s) {
        return Ok(*n);
    }
    let (digits, unit) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let names: Vec<&str> = NAMED.iter().map(|(n, _)| *n).collect();
    let n: u64 = digits.parse().map_err(|_| {
        format!(
            "{s:?} is not a volume size: give {} or a number of bytes (K, M or G suffix allowed)",
            names.join(", ")
        )
    })?;
    n.checked_mul(unit)
        .filter(|b| *b >= MIN_SIZE)
        .ok_or_else(|| format!("{s:?}: a volume size must be between 512K and 16E"))
}

/// The smallest volume accepted.
const MIN_SIZE: u64 = 512 << 10;
/// An ISO 9660 sector.
const SECTOR: u64 = 2048;
/// Kept free in every volume for its manifest, table, signatures and the
/// image's own structures.
const RESERVE: u64 = 256 << 10;

/// What the volumes hold.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub size: u64,
    pub volumes: Vec<Entry>,
    /// `volumes/NN.iso`, with `--iso`.
    pub images: Vec<PathBuf>,
}

/// What a file costs in a volume: its sectors, its directory record, and
/// its lines in SHA256SUMS and MODES.
fn cost(path: &str, len: u64) -> u64 {
    len.div_ceil(SECTOR) * SECTOR + SECTOR + 2 * (path.len() as u64 + 72)
}

/// The directories above `path`, nearest last (`a`, `a/b` for `a/b/c`).
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// What a directory costs in an image: a sector in the ISO 9660 tree and
/// one in the Joliet tree, and its path table entries.
fn dir_cost(dir: &str) -> u64 {
    2 * SECTOR + 4 * (dir.len() as u64 + 10)
}

/// Replaces the bundle (or the delta) in `dir` by `dir/volumes/NN/`, each
/// at most `size` bytes: done beside it and moved into place, so a failure
/// leaves the bundle as it was.
pub fn split(dir: &Path, size: u64, cluster: &str, key: &Signers, time: i64) -> Result<Summary> {
    let bundle = Bundle::read(dir)?;
    let shares = pack(&bundle, size)?;
    let width = shares.len().to_string().len().max(2);
    let staging = Staging::beside(dir)?;
    let root = staging.path().join("volumes");
    let mut entries = Vec::new();
    for (i, share) in shares.iter().enumerate() {
        let name = format!("{:0width$}", i + 1);
        entries.push(write_volume(
            &bundle,
            share,
            &root.join(&name),
            name,
            key,
            time,
        )?);
    }
    let table = Table {
        cluster: cluster.to_string(),
        whole: sha256(&bundle.whole_sums),
        base: bundle.base.clone(),
        volumes: entries,
    };
    write_table(&root, &table, size, key, time)?;
    staging.replace(dir)?;
    Ok(Summary {
        size,
        volumes: table.volumes,
        images: Vec::new(),
    })
}

/// In every volume: the keys, the runner that assembles them and what to
/// do at the site, so any disc can start.
const EVERYWHERE: [&str; 4] = [
    keyring::PUBLIC_GPG_FILE,
    keyring::PUBLIC_ASC_FILE,
    RUNNER,
    "README.txt",
];

/// The finished bundle or delta: its manifest, modes, the files it holds,
/// and the head files every volume carries (under `whole/`; a delta's BASE
/// and BASE.gpg at the root).
struct Bundle<'a> {
    dir: &'a Path,
    whole_sums: Vec<u8>,
    listed: BTreeMap<String, String>,
    /// The files of `listed` that `dir` holds: all of them for a bundle,
    /// those a delta carries.
    held: Vec<String>,
    modes: BTreeMap<String, u32>,
    carried: Vec<(String, Vec<u8>)>,
    /// A delta's base: the sha256 its BASE names.
    base: Option<String>,
}

impl<'a> Bundle<'a> {
    fn read(dir: &'a Path) -> Result<Bundle<'a>> {
        let read = |p: &str| {
            fs::read(dir.join(p)).with_context(|| format!("reading {}", dir.join(p).display()))
        };
        let refuse = |file: &str, p: &manifest::Finding| {
            anyhow::anyhow!(
                "{}: {} {}: {}",
                dir.join(file).display(),
                p.kind,
                p.path,
                p.detail
            )
        };
        let whole_sums = read(SUMS)?;
        let (listed, problems) = manifest::parse_manifest(&String::from_utf8_lossy(&whole_sums));
        if let Some(p) = problems.first() {
            return Err(refuse(SUMS, p));
        }
        let whole_modes = read(MODES)?;
        let mut problems = Vec::new();
        let modes = manifest::parse_modes(&String::from_utf8_lossy(&whole_modes), &mut problems);
        if let Some(p) = problems.first() {
            return Err(refuse(MODES, p));
        }
        let mut carried = vec![
            (format!("{WHOLE}/{SUMS}"), whole_sums.clone()),
            (format!("{WHOLE}/{SUMS_SIG}"), read(SUMS_SIG)?),
            (format!("{WHOLE}/{MODES}"), whole_modes),
        ];
        let is_delta = delta::is_delta(dir);
        let base = if is_delta {
            let text = read(BASE)?;
            let hash = delta::parse_base(&String::from_utf8_lossy(&text))
                .with_context(|| format!("{}: not a delta's BASE", dir.join(BASE).display()))?;
            carried.push((BASE.to_string(), text));
            carried.push((BASE_SIG.to_string(), read(BASE_SIG)?));
            Some(hash)
        } else {
            None
        };
        // A delta holds only some of the files its manifest lists.
        let held = listed
            .keys()
            .filter(|p| !is_delta || fs::symlink_metadata(dir.join(p)).is_ok_and(|m| m.is_file()))
            .cloned()
            .collect();
        Ok(Bundle {
            dir,
            whole_sums,
            listed,
            held,
            modes,
            carried,
            base,
        })
    }

    /// What every volume spends before its share of files.
    fn fixed_cost(&self) -> u64 {
        RESERVE
            + dir_cost(WHOLE)
            + dir_cost("bin")
            + self
                .carried
                .iter()
                .map(|(p, b)| cost(p, b.len() as u64))
                .sum::<u64>()
            + EVERYWHERE
                .iter()
                .map(|k| fs::metadata(self.dir.join(k)).map_or(0, |m| cost(k, m.len())))
                .sum::<u64>()
    }
}

/// The bundle's files (but the head every volume carries), in path order,
/// cut into shares that each fit a volume of `size` bytes.
fn pack(b: &Bundle, size: u64) -> Result<Vec<Vec<String>>> {
    let fixed = b.fixed_cost();
    let room = size.checked_sub(fixed).filter(|r| *r > 0).with_context(|| {
        format!("a volume of {size} bytes has no room for files: each one needs {fixed} bytes for its manifests and keys")
    })?;
    let mut shares: Vec<Vec<String>> = vec![Vec::new()];
    let mut used = 0;
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for path in &b.held {
        if path == MODES || EVERYWHERE.contains(&path.as_str()) {
            continue;
        }
        let len = fs::metadata(b.dir.join(path))
            .with_context(|| format!("reading {}", b.dir.join(path).display()))?
            .len();
        let alone = cost(path, len) + parents(path).map(dir_cost).sum::<u64>();
        if alone > room {
            bail!(
                "{path} ({len} bytes) does not fit in a volume of {size} bytes (room for files: {room} bytes): files are never split; choose a larger --volume-size"
            );
        }
        let with_new_dirs = cost(path, len)
            + parents(path)
                .filter(|d| !dirs.contains(*d))
                .map(dir_cost)
                .sum::<u64>();
        if used + with_new_dirs > room {
            shares.push(Vec::new());
            dirs.clear();
            used = alone;
        } else {
            used += with_new_dirs;
        }
        dirs.extend(parents(path).map(str::to_string));
        shares
            .last_mut()
            .expect("one share at least")
            .push(path.clone());
    }
    Ok(shares)
}

/// One volume in `vol`: the files everywhere, the whole manifest, its
/// share (hard links), its MODES, SHA256SUMS and signature.
fn write_volume(
    b: &Bundle,
    share: &[String],
    vol: &Path,
    name: String,
    key: &Signers,
    time: i64,
) -> Result<Entry> {
    let mut sums = BTreeMap::new();
    let mut vol_modes = BTreeMap::new();
    let mut bytes = 0;
    let mut record = |p: &str, hash: String, target: &Path| -> Result<()> {
        bytes += fs::metadata(target)?.len();
        sums.insert(p.to_string(), hash);
        vol_modes.insert(p.to_string(), b.modes.get(p).copied().unwrap_or(0o644));
        Ok(())
    };
    let linked = EVERYWHERE
        .iter()
        .filter(|k| b.dir.join(k).exists())
        .map(|k| k.to_string())
        .chain(share.iter().cloned());
    for p in linked {
        let target = vol.join(&p);
        fs::create_dir_all(target.parent().expect("under the volume"))?;
        crate::build::link_or_copy(&b.dir.join(&p), &target)?;
        let hash = b
            .listed
            .get(&p)
            .with_context(|| format!("{p}: not in the bundle's manifest"))?;
        record(&p, hash.clone(), &target)?;
    }
    for (p, body) in &b.carried {
        let target = vol.join(p);
        fs::create_dir_all(target.parent().expect("under the volume"))?;
        fs::write(&target, body).with_context(|| format!("writing {}", target.display()))?;
        record(p, sha256(body), &target)?;
    }
    vol_modes.insert(MODES.to_string(), 0o644);
    let modes_text = render_modes(&vol_modes);
    fs::write(vol.join(MODES), &modes_text)?;
    bytes += modes_text.len() as u64;
    sums.insert(MODES.to_string(), sha256(modes_text.as_bytes()));
    let sums_text = render_sums(&sums);
    fs::write(vol.join(SUMS), &sums_text)?;
    let sig = key.detached_armored(sums_text.as_bytes(), time)?;
    fs::write(vol.join(SUMS_SIG), &sig)?;
    bytes += (sums_text.len() + sig.len()) as u64;
    Ok(Entry {
        name,
        files: sums.len(),
        bytes,
        sums: sha256(sums_text.as_bytes()),
    })
}

/// The signed table, in every volume; no volume over `size`.
fn write_table(root: &Path, table: &Table, size: u64, key: &Signers, time: i64) -> Result<()> {
    let text = table.render();
    let sig = key.detached_armored(text.as_bytes(), time)?;
    for v in &table.volumes {
        fs::write(root.join(&v.name).join(TABLE), &text)?;
        fs::write(root.join(&v.name).join(TABLE_SIG), &sig)?;
        let total = v.bytes + (text.len() + sig.len()) as u64;
        if total > size {
            bail!(
                "volume {} came to {total} bytes, over the {size} asked for (the reserve of {RESERVE} bytes was too small): please report this",
                v.name
            );
        }
    }
    Ok(())
}

/// The ISO 9660 label of a volume: `AIRLOCK_<CLUSTER>_<NN>`, in the
/// characters a label may hold, at most 32.
pub fn label(cluster: &str, name: &str) -> String {
    let room = 32 - "AIRLOCK__".len() - name.len();
    let cluster: String = cluster
        .chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9') => c,
            _ => '_',
        })
        .take(room)
        .collect();
    format!("AIRLOCK_{cluster}_{name}")
}

/// `--iso`: each volume also as `volumes/NN.iso` (ISO 9660 with Rock Ridge
/// and Joliet names, labelled by [`label`]), made by xorriso from the
/// volume's directory (streamed from the files, as no image writer crate
/// does for discs of gigabytes), its timestamps set to `time`. Written
/// beside and renamed.
pub fn write_images(
    out: &Path,
    summary: &Summary,
    cluster: &str,
    time: i64,
) -> Result<Vec<PathBuf>> {
    let mut images = Vec::new();
    for v in &summary.volumes {
        let dir = out.join("volumes").join(&v.name);
        let image = out.join("volumes").join(format!("{}.iso", v.name));
        let partial = out
            .join("volumes")
            .join(format!(".{}.iso.airlock-tmp", v.name));
        let run = std::process::Command::new("xorriso")
            .args([
                "-as",
                "mkisofs",
                "-quiet",
                "-no-pad",
                "-R",
                "-J",
                "-joliet-long",
                "-V",
            ])
            .arg(label(cluster, &v.name))
            .arg("-o")
            .arg(&partial)
            .arg(&dir)
            .env("SOURCE_DATE_EPOCH", time.to_string())
            .output();
        let out = match run {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "--iso needs xorriso to write the volume images (apt-get install xorriso); the volumes in {} are complete without them",
                dir.parent().expect("volumes/").display()
            ),
            Err(e) => return Err(e).context("running xorriso"),
        };
        if !out.status.success() {
            let _ = fs::remove_file(&partial);
            bail!(
                "xorriso could not write {}: {}",
                image.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        fs::rename(&partial, &image)
            .with_context(|| format!("moving the image to {}", image.display()))?;
        images.push(image);
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_by_name_or_bytes_and_a_clear_refusal() {
        assert_eq!(parse_size("dvd").unwrap(), 4_700_372_992);
        assert_eq!(parse_size("bd25").unwrap(), 25_025_314_816);
        assert_eq!(parse_size("fat32").unwrap(), 4_294_967_295);
        assert_eq!(parse_size("700M").unwrap(), 700 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        for bad in ["", "cd", "12X", "100K", "-5M", "99999999999G"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn a_label_is_what_iso_9660_allows_and_names_the_volume() {
        assert_eq!(label("spacevdi", "01"), "AIRLOCK_SPACEVDI_01");
        let long = label("a-very-long.cluster name of a site", "102");
        assert_eq!(long.len(), 32, "{long}");
        assert!(
            long.ends_with("_102") && long.starts_with("AIRLOCK_A_VERY_LONG_CL"),
            "{long}"
        );
    }
}
