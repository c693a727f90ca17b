//! ISO 9660 images through `hadris-iso`: listing a disc's files with their
//! Rock Ridge names (Joliet, then plain names, as fallbacks) and data extents.
//!
//! hadris-iso returns names as stored, so every component is checked here
//! (`..`, `/`, NUL are refused); directory sizes, depth and loops are bounded
//! so a corrupt image gives an error, not a huge allocation or a hang.

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use hadris_iso::directory::DirectoryRef;
use hadris_iso::file::EntryType;
use hadris_iso::read::{DirEntry, IsoImage, RootDir};

/// Where a file's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A file in a directory medium.
    Path(PathBuf),
    /// Byte ranges `(offset, length)` in the image, in order.
    Extents(Vec<(u64, u64)>),
}

/// One regular file of a medium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFile {
    /// Relative, `/`-separated, checked: no `..`, no empty or absolute parts.
    pub path: String,
    pub size: u64,
    /// Modification time (Rock Ridge or file system), seconds since the epoch.
    pub mtime: i64,
    /// Identity of the bytes on the medium: the file's inode for
    /// directories, 0 for images. Part of the incremental key.
    pub ident: u64,
    /// Status change time of a directory medium's file, in nanoseconds (any
    /// change to its bytes moves it, whatever mtime says); 0 for images, whose files a
    /// rebuild never reads again: it reuses its own earlier copy, which the
    /// disc's index re-checks.
    pub ctime: i64,
    pub location: Location,
}

/// Checks a path read from a medium and returns it `/`-joined.
pub fn checked_relative(parts: &[&str], medium: &str) -> Result<String> {
    for p in parts {
        if p.is_empty()
            || *p == "."
            || *p == ".."
            || p.contains(['/', '\\'])
            || p.chars().any(char::is_control)
        {
            bail!(
                "{medium}: refusing the file name {:?} in {:?}: names must not be empty, '.' or '..', nor contain '/', '\\' or control characters (a newline would forge index and manifest lines)",
                p,
                parts.join("/")
            );
        }
    }
    Ok(parts.join("/"))
}

const SECTOR: u64 = 2048;
const MAX_DEPTH: usize = 64;
const MAX_DIR_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    RockRidge,
    Joliet,
    Plain,
}

/// Strips the ISO 9660 version suffix (`;1`) and a bare trailing dot.
fn clean_iso_name(raw: &str) -> &str {
    let s = match raw.rsplit_once(';') {
        Some((base, ver)) if !ver.is_empty() && ver.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => raw,
    };
    s.strip_suffix('.').filter(|b| !b.is_empty()).unwrap_or(s)
}

fn entry_name(e: &DirEntry, naming: Naming) -> String {
    if let Some(nm) = e.rrip.as_ref().and_then(|r| r.alternate_name.as_deref()) {
        return nm.to_owned();
    }
    match naming {
        Naming::Joliet => clean_iso_name(&e.record.joliet_name()).to_owned(),
        _ => clean_iso_name(&String::from_utf8_lossy(e.name())).to_owned(),
    }
}

/// ISO 9660 / Rock Ridge date → seconds since the epoch (`gmt_off` in
/// 15-minute units); `None` for the all-zero "not specified" date.
fn unix_time(year: i64, mon: u8, day: u8, h: u8, mi: u8, s: u8, gmt_off: i8) -> Option<i64> {
    if !(1..=12).contains(&mon) || !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let (y, m) = if mon <= 2 {
        (year - 1, i64::from(mon) + 9)
    } else {
        (year, i64::from(mon) - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(
        days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s)
            - i64::from(gmt_off) * 900,
    )
}

/// Lists every regular file of the image, sorted by path, with its extents.
/// Symbolic links and devices are left out. `len` is the image's size: a
/// directory stored past it means the image is truncated.
///
/// A file's `ident` and `ctime` are 0: its extent moves whenever the image
/// is remastered, so the incremental-build key is path, size and Rock Ridge
/// mtime, and the disc's own index re-checks a cached hash.
pub fn list_files(file: &File, len: u64) -> Result<Vec<MediaFile>> {
    let image = IsoImage::open(file.try_clone()?).map_err(|e| {
        anyhow!("not a valid ISO 9660 image ({e}); is the file complete? compare its size and checksum with the original disc")
    })?;
    let (naming, root) = pick_tree(&image)?;

    let mut files = Vec::new();
    let mut visited: HashSet<usize> = HashSet::new();
    let mut stack: Vec<(DirectoryRef, Vec<String>, usize)> = vec![(root.dir_ref(), Vec::new(), 0)];
    while let Some((dref, prefix, depth)) = stack.pop() {
        let at = prefix.join("/");
        check_dir(&dref, &at, depth, len, &mut visited)?;
        let entries = image
            .open_dir(dref)
            .read_entries()
            .map_err(|e| anyhow!("reading directory {at:?}: {e}"))?;
        for e in entries {
            if e.record.is_special() {
                continue;
            }
            let mut parts = prefix.clone();
            parts.push(entry_name(&e, naming));
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            let path = checked_relative(&refs, "the image")?;
            if e.is_directory() {
                let child = e
                    .as_dir_ref(&image)
                    .map_err(|err| anyhow!("{path}: {err}"))?;
                stack.push((child, parts, depth + 1));
                continue;
            }
            files.extend(regular_file(&e, path));
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The directory tree to read and how its names are read: the primary
/// tree with Rock Ridge names, else the Joliet tree, else the primary tree
/// with plain names.
fn pick_tree(image: &IsoImage<File>) -> Result<(Naming, RootDir)> {
    let roots = image.root_dirs();
    let primary = roots
        .iter()
        .find(|r| !matches!(r.entry_type(), EntryType::Joliet { .. }))
        .copied();
    let joliet = roots
        .iter()
        .find(|r| matches!(r.entry_type(), EntryType::Joliet { .. }))
        .copied();
    Ok(match (image.supports_rrip(), primary, joliet) {
        (true, Some(p), _) => (Naming::RockRidge, p),
        (_, _, Some(j)) => (Naming::Joliet, j),
        (_, Some(p), None) => (Naming::Plain, p),
        _ => bail!("the image has no directory tree"),
    })
}

/// Bounds a directory (`at`, `depth` levels down) before it is read: not
/// too deep, not too large, inside the image's `len` bytes, and not one
/// already read (a loop).
fn check_dir(
    dref: &DirectoryRef,
    at: &str,
    depth: usize,
    len: u64,
    visited: &mut HashSet<usize>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        bail!("directory tree deeper than {MAX_DEPTH} levels at {at:?}; the image is corrupt");
    }
    if dref.size > MAX_DIR_BYTES {
        bail!(
            "directory {at:?} claims {} bytes; the image is corrupt",
            dref.size
        );
    }
    let start = dref.extent.0 as u64 * SECTOR;
    if start.saturating_add(dref.size as u64) > len {
        bail!(
            "directory {at:?} lies at bytes {start}..{} but the image has {len}: the image is truncated",
            start + dref.size as u64
        );
    }
    if !visited.insert(dref.extent.0) {
        bail!("directory {at:?} loops back to a parent; the image is corrupt");
    }
    Ok(())
}

/// A file entry at `path` as a [`MediaFile`]; `None` for a symbolic link
/// or anything else Rock Ridge says is not a regular file.
fn regular_file(e: &DirEntry, path: String) -> Option<MediaFile> {
    let rr = e.rrip.as_ref();
    if rr.and_then(|r| r.symlink_target.as_ref()).is_some() {
        return None;
    }
    let mode = rr
        .and_then(|r| r.posix_attributes.as_ref())
        .map(|px| px.file_mode.read());
    if mode.is_some_and(|m| m & 0o170000 != 0o100000) {
        return None;
    }
    let mtime = entry_mtime(e);
    let extents: Vec<(u64, u64)> = e
        .extents()
        .map(|x| (x.sector.0 as u64 * SECTOR, u64::from(x.length)))
        .filter(|&(_, n)| n > 0)
        .collect();
    let size = extents.iter().map(|&(_, n)| n).sum();
    Some(MediaFile {
        path,
        size,
        mtime: mtime.unwrap_or(0),
        ident: 0,
        ctime: 0,
        location: Location::Extents(extents),
    })
}

/// An entry's modification time: Rock Ridge's, else the directory
/// record's; `None` when neither is a date.
fn entry_mtime(e: &DirEntry) -> Option<i64> {
    match e
        .rrip
        .as_ref()
        .and_then(|r| r.timestamps.as_ref())
        .and_then(|t| t.modify)
    {
        Some(t) => unix_time(
            i64::from(t.year),
            t.month,
            t.day,
            t.hour,
            t.minute,
            t.second,
            t.gmt_offset,
        ),
        None => {
            let b = e.record.to_bytes();
            b.get(18..25).and_then(|b| {
                unix_time(
                    1900 + i64::from(b[0]),
                    b[1],
                    b[2],
                    b[3],
                    b[4],
                    b[5],
                    b[6] as i8,
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_version_suffix() {
        assert_eq!(clean_iso_name("README.TXT;1"), "README.TXT");
        assert_eq!(clean_iso_name("ABS_LINK.;1"), "ABS_LINK");
        assert_eq!(clean_iso_name("plain"), "plain");
    }

    #[test]
    fn dates_convert() {
        assert_eq!(unix_time(2020, 1, 2, 3, 4, 5, 0), Some(1_577_934_245));
        assert_eq!(unix_time(2020, 1, 2, 4, 4, 5, 4), Some(1_577_934_245));
        assert_eq!(unix_time(1900, 0, 0, 0, 0, 0, 0), None);
    }
}
