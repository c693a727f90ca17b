//! ISO 9660 images through `hadris-iso`: listing a disc's files with their
//! Rock Ridge names (Joliet, then plain names, as fallbacks) and data extents.
//!
//! hadris-iso returns names as stored, so every component is checked here
//! (`..`, `/`, NUL are refused); directory sizes, depth and loops are bounded
//! so a corrupt image gives an error, not a huge allocation or a hang.

use std::collections::HashSet;
use std::fs::File;

use anyhow::{Result, anyhow, bail};
use hadris_iso::directory::DirectoryRef;
use hadris_iso::file::EntryType;
use hadris_iso::read::{DirEntry, IsoImage};

use crate::media::{Location, MediaFile, checked_relative};

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
    let roots = image.root_dirs();
    let primary = roots
        .iter()
        .find(|r| !matches!(r.entry_type(), EntryType::Joliet { .. }))
        .copied();
    let joliet = roots
        .iter()
        .find(|r| matches!(r.entry_type(), EntryType::Joliet { .. }))
        .copied();
    let (naming, root) = match (image.supports_rrip(), primary, joliet) {
        (true, Some(p), _) => (Naming::RockRidge, p),
        (_, _, Some(j)) => (Naming::Joliet, j),
        (_, Some(p), None) => (Naming::Plain, p),
        _ => bail!("the image has no directory tree"),
    };

    let mut files = Vec::new();
    let mut visited: HashSet<usize> = HashSet::new();
    let mut stack: Vec<(DirectoryRef, Vec<String>, usize)> = vec![(root.dir_ref(), Vec::new(), 0)];
    while let Some((dref, prefix, depth)) = stack.pop() {
        let at = prefix.join("/");
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
            let rr = e.rrip.as_ref();
            if rr.and_then(|r| r.symlink_target.as_ref()).is_some() {
                continue;
            }
            let mode = rr
                .and_then(|r| r.posix_attributes.as_ref())
                .map(|px| px.file_mode.read());
            if mode.is_some_and(|m| m & 0o170000 != 0o100000) {
                continue;
            }
            let mtime = match rr
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
            };
            let extents: Vec<(u64, u64)> = e
                .extents()
                .map(|x| (x.sector.0 as u64 * SECTOR, u64::from(x.length)))
                .filter(|&(_, n)| n > 0)
                .collect();
            let size = extents.iter().map(|&(_, n)| n).sum();
            files.push(MediaFile {
                path,
                size,
                mtime: mtime.unwrap_or(0),
                ident: 0,
                ctime: 0,
                location: Location::Extents(extents),
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Writes a small ISO 9660 image (Rock Ridge and Joliet names) holding
/// `files` at its root, with volume label `label`, every timestamp set to
/// `epoch`: the same input gives the same bytes.
pub fn write_image(label: &str, files: &[(&str, &[u8])], epoch: i64) -> Result<Vec<u8>> {
    use hadris_iso::joliet::JolietLevel;
    use hadris_iso::read::PathSeparator;
    use hadris_iso::rrip::RripOptions;
    use hadris_iso::write::options::{BaseIsoLevel, CreationFeatures, IsoFormatOptions};
    use hadris_iso::write::{InputEntry, InputMetadata, InputTree, IsoImageWriter};

    let md = InputMetadata {
        mode: Some(0o644),
        uid: Some(0),
        gid: Some(0),
        created: None,
        modified: Some(epoch),
        accessed: Some(epoch),
    };
    let entries = files
        .iter()
        .map(|(name, bytes)| InputEntry::file(*name, bytes.to_vec()).with_metadata(md))
        .collect();
    let options = IsoFormatOptions {
        volume_name: label.to_string(),
        system_id: None,
        volume_set_id: None,
        publisher_id: None,
        preparer_id: None,
        application_id: None,
        sector_size: 2048,
        path_separator: PathSeparator::ForwardSlash,
        features: CreationFeatures {
            filenames: BaseIsoLevel::Level1 {
                supports_lowercase: false,
                supports_rrip: true,
            },
            long_filenames: false,
            joliet: Some(JolietLevel::Level3),
            rock_ridge: Some(RripOptions::default()),
            el_torito: None,
            hybrid_boot: None,
        },
        // Keeps the lower-case label `cidata` that cloud-init looks for.
        strict_charset: false,
    };
    let tree = InputTree::new(PathSeparator::ForwardSlash, entries);
    let mut img = IsoImageWriter::create(std::io::Cursor::new(Vec::new()), tree, options)
        .map_err(|e| anyhow!("writing the ISO image: {e}"))?
        .into_inner();
    normalize_timestamps(&mut img, epoch)?;
    Ok(img)
}

// hadris-iso stamps "now" into the volume descriptors' dates, every directory
// record and the Rock Ridge TF entries of the root, with no option to fix
// them: they are overwritten after writing.

const SECTOR_BYTES: usize = 2048;

fn dir_date(epoch: i64) -> [u8; 7] {
    let (y, mo, d, h, mi, s) = crate::timefmt::civil(epoch);
    [
        (y - 1900) as u8,
        mo as u8,
        d as u8,
        h as u8,
        mi as u8,
        s as u8,
        0,
    ]
}

fn dec_date(epoch: i64) -> [u8; 17] {
    let (y, mo, d, h, mi, s) = crate::timefmt::civil(epoch);
    let txt = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}00");
    let mut out = [0u8; 17];
    out[..16].copy_from_slice(txt.as_bytes());
    out
}

fn u32le(b: &[u8]) -> usize {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// Patches the TF entries of one SUSP area; returns its CE continuation
/// (block, offset, length), if any.
fn patch_susp(area: &mut [u8], short: &[u8; 7], long: &[u8; 17]) -> Option<(usize, usize, usize)> {
    let mut i = 0;
    let mut ce = None;
    while i + 4 <= area.len() {
        let (sig, len) = ([area[i], area[i + 1]], area[i + 2] as usize);
        if len < 4 || i + len > area.len() {
            break;
        }
        match &sig {
            b"TF" if len >= 5 => {
                let size = if area[i + 4] & 0x80 != 0 { 17 } else { 7 };
                let mut p = i + 5;
                while p + size <= i + len {
                    if size == 7 {
                        area[p..p + 7].copy_from_slice(short);
                    } else {
                        area[p..p + 17].copy_from_slice(long);
                    }
                    p += size;
                }
            }
            b"CE" if len >= 28 => {
                ce = Some((
                    u32le(&area[i + 4..]),
                    u32le(&area[i + 12..]),
                    u32le(&area[i + 20..]),
                ));
            }
            b"ST" => break,
            _ => {}
        }
        i += len;
    }
    ce
}

/// Sets every timestamp of an image written by hadris-iso to `epoch`.
fn normalize_timestamps(img: &mut [u8], epoch: i64) -> Result<()> {
    let short = dir_date(epoch);
    let long = dec_date(epoch);
    let mut stack = Vec::new();
    let mut s = 16;
    loop {
        let vd = img
            .get_mut(s * SECTOR_BYTES..(s + 1) * SECTOR_BYTES)
            .ok_or_else(|| anyhow!("the written image has no volume descriptor terminator"))?;
        if &vd[1..6] != b"CD001" {
            bail!("the written image has a bad volume descriptor at sector {s}");
        }
        match vd[0] {
            255 => break,
            1 | 2 => {
                vd[813..830].copy_from_slice(&long);
                vd[830..847].copy_from_slice(&long);
                vd[156 + 18..156 + 25].copy_from_slice(&short);
                stack.push((u32le(&vd[156 + 2..]), u32le(&vd[156 + 10..])));
            }
            _ => {}
        }
        s += 1;
    }
    let mut seen = HashSet::new();
    while let Some((lba, size)) = stack.pop() {
        if !seen.insert(lba) {
            continue;
        }
        let mut off = 0;
        while off < size {
            let base = lba * SECTOR_BYTES + off;
            let len = *img
                .get(base)
                .ok_or_else(|| anyhow!("a directory lies outside the written image"))?
                as usize;
            if len == 0 {
                off = (off / SECTOR_BYTES + 1) * SECTOR_BYTES;
                continue;
            }
            let rec = &mut img[base..base + len];
            rec[18..25].copy_from_slice(&short);
            let name_len = rec[32] as usize;
            let special = name_len == 1 && rec[33] <= 1;
            if rec[25] & 0x02 != 0 && !special {
                stack.push((u32le(&rec[2..]), u32le(&rec[10..])));
            }
            let su_start = (33 + name_len + 1) & !1;
            let mut ce = if su_start < len {
                patch_susp(&mut rec[su_start..], &short, &long)
            } else {
                None
            };
            let mut depth = 0;
            while let Some((b, o, l)) = ce.take() {
                depth += 1;
                let start = b * SECTOR_BYTES + o;
                if depth > 16 || start + l > img.len() {
                    break;
                }
                ce = patch_susp(&mut img[start..start + l], &short, &long);
            }
            off += len;
        }
    }
    Ok(())
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
    fn written_images_read_back_and_are_reproducible() {
        let files: [(&str, &[u8]); 2] = [("user-data", b"#cloud-config\n"), ("meta-data", b"x")];
        let a = write_image("cidata", &files, 1_700_000_000).unwrap();
        let b = write_image("cidata", &files, 1_700_000_000).unwrap();
        assert_eq!(a, b);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seed.iso");
        std::fs::write(&p, &a).unwrap();
        let f = File::open(&p).unwrap();
        let listed = list_files(&f, a.len() as u64).unwrap();
        let names: Vec<&str> = listed.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["meta-data", "user-data"]);
        assert_eq!(listed[0].mtime, 1_700_000_000);
    }

    #[test]
    fn dates_convert() {
        assert_eq!(unix_time(2020, 1, 2, 3, 4, 5, 0), Some(1_577_934_245));
        assert_eq!(unix_time(2020, 1, 2, 4, 4, 5, 4), Some(1_577_934_245));
        assert_eq!(unix_time(1900, 0, 0, 0, 0, 0, 0), None);
    }
}
