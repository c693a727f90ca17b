//! Writing the small ISO 9660 images of the seeds (volume label `cidata`),
//! reproducibly. Reading images is [`crate::shared::iso`].

use std::collections::HashSet;

use anyhow::{Result, anyhow, bail};

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
    let (y, mo, d, h, mi, s) = crate::shared::timefmt::civil(epoch);
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
    let (y, mo, d, h, mi, s) = crate::shared::timefmt::civil(epoch);
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
    use crate::shared::iso::list_files;
    use std::fs::File;

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
}
