//! Reading install discs: an ISO 9660 image (Rock Ridge names, Joliet as a
//! fallback) read straight from the file, or a directory holding `pool/` and
//! `dists/`. Nothing is mounted or extracted; file contents are streamed from
//! their extents with positioned reads, so several threads can read one image.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::shared::iso;
pub use crate::shared::iso::{Location, MediaFile, checked_relative};

#[derive(Debug)]
enum Kind {
    Dir,
    Image {
        file: Arc<File>,
        len: u64,
        /// The image file's identity when it was opened (see
        /// [`Medium::image_identity`]).
        identity: String,
        /// Its filesystem keeps status change times ([`keeps_ctime`]):
        /// only then does an unchanged identity vouch for its bytes.
        vouches: bool,
    },
}

/// What changes when any byte of an image file changes: its device and
/// inode, size, and modification and status change times (a write moves
/// both; the status change time cannot be set back without setting the
/// clock).
fn identity_of(file: &File) -> std::io::Result<String> {
    let m = file.metadata()?;
    Ok(format!(
        "{}:{}:{}:{}.{:09}:{}.{:09}",
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

/// Filesystems whose status change time follows every write and cannot be
/// set back (ext2–4, XFS, Btrfs, tmpfs, F2FS, ZFS, overlayfs). On vfat,
/// exFAT, FUSE, NFS or SMB it follows the modification time or a server,
/// which `touch -d` sets back: an image there is hashed every time.
const CTIME_KEEPING: [u64; 7] = [
    0xEF53,
    0x5846_5342,
    0x9123_683E,
    0x0102_1994,
    0xF2F5_2010,
    0x2FC1_2FC1,
    0x794C_7630,
];

/// `file` is on a filesystem of [`CTIME_KEEPING`].
fn keeps_ctime(file: &File) -> bool {
    rustix::fs::fstatfs(file).is_ok_and(|s| CTIME_KEEPING.contains(&(s.f_type as u64)))
}

/// An opened disc: an `.iso` file or a directory.
#[derive(Debug)]
pub struct Medium {
    /// How the user named it, for messages.
    pub label: String,
    kind: Kind,
    /// Every regular file, sorted by path.
    files: Vec<MediaFile>,
}

impl Medium {
    /// Opens an apt disc: a directory holding `pool/` (and usually
    /// `dists/`), or an ISO 9660 image with a `pool/` directory.
    pub fn open(path: &Path) -> Result<Medium> {
        Medium::open_as(path, true)
    }

    /// Opens any disc (the vendor's): every regular file of the directory or
    /// image.
    pub fn open_any(path: &Path) -> Result<Medium> {
        Medium::open_as(path, false)
    }

    fn open_as(path: &Path, apt: bool) -> Result<Medium> {
        let label = path.display().to_string();
        let meta = std::fs::metadata(path).with_context(|| {
            format!("opening disc {label}: it does not exist or cannot be read")
        })?;
        let medium = if meta.is_dir() {
            if apt && !path.join("pool").is_dir() {
                bail!(
                    "{label} is a directory without pool/: give the disc's top directory (holding pool/ and dists/) or its .iso file"
                );
            }
            let tops: &[&str] = if apt { &["pool", "dists"] } else { &[""] };
            let files = list_dir(path, tops, &label)?;
            Medium {
                label,
                kind: Kind::Dir,
                files,
            }
        } else {
            let file = File::open(path).with_context(|| format!("opening disc image {label}"))?;
            let identity = identity_of(&file).with_context(|| format!("reading {label}"))?;
            let vouches = keeps_ctime(&file);
            let len = meta.len();
            let files = iso::list_files(&file, len)
                .with_context(|| format!("reading ISO 9660 image {label}"))?;
            let medium = Medium {
                label,
                kind: Kind::Image {
                    file: Arc::new(file),
                    len,
                    identity,
                    vouches,
                },
                files,
            };
            medium.check_extents()?;
            if apt && !medium.files.iter().any(|f| f.path.starts_with("pool/")) {
                bail!(
                    "{}: the image has no pool/ directory; is it an Astra Linux install disc?",
                    medium.label
                );
            }
            medium
        };
        Ok(medium)
    }

    /// An image's identity when it was opened: equal identities mean the
    /// same bytes (a rebuild cache may say a package of it was checked).
    /// None for a directory, whose files carry their own, and for an image
    /// on a filesystem whose status change times can be set back.
    pub fn image_identity(&self) -> Option<&str> {
        match &self.kind {
            Kind::Image {
                identity,
                vouches: true,
                ..
            } => Some(identity),
            _ => None,
        }
    }

    /// Refuses an image that changed since it was opened (checked after
    /// copying packages trusted by [`Medium::image_identity`]).
    pub fn check_unchanged(&self) -> Result<()> {
        let Kind::Image { file, identity, .. } = &self.kind else {
            return Ok(());
        };
        let now = identity_of(file).with_context(|| format!("reading {}", self.label))?;
        if now != *identity {
            bail!(
                "{}: the image changed while it was read (was {identity}, now {now}); nothing was written: build again once it stays as it is",
                self.label
            );
        }
        Ok(())
    }

    /// Every regular file, sorted by path.
    pub fn files(&self) -> &[MediaFile] {
        &self.files
    }

    /// A truncated image lists files whose data lies past its end.
    fn check_extents(&self) -> Result<()> {
        let Kind::Image { len, .. } = &self.kind else {
            return Ok(());
        };
        for f in &self.files {
            if let Location::Extents(ext) = &f.location {
                for &(off, n) in ext {
                    if off.saturating_add(n) > *len {
                        bail!(
                            "{}: the image is truncated or corrupt: {} needs bytes up to {} but the image has {len}",
                            self.label,
                            f.path,
                            off + n
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Streams `f`'s bytes through `each`, `buf.len()` at a time.
    pub fn stream(
        &self,
        f: &MediaFile,
        buf: &mut [u8],
        mut each: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        match (&f.location, &self.kind) {
            (Location::Path(p), _) => {
                let mut file =
                    File::open(p).with_context(|| format!("{}: opening {}", self.label, f.path))?;
                let mut total = 0u64;
                loop {
                    let n = file
                        .read(buf)
                        .with_context(|| format!("{}: reading {}", self.label, f.path))?;
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                    each(&buf[..n])?;
                }
                if total != f.size {
                    bail!(
                        "{}: {} changed while it was read ({} bytes, listed as {})",
                        self.label,
                        f.path,
                        total,
                        f.size
                    );
                }
                Ok(())
            }
            (Location::Extents(ext), Kind::Image { file, .. }) => {
                for &(mut off, len) in ext {
                    let end = off + len;
                    while off < end {
                        let want = ((end - off) as usize).min(buf.len());
                        let n = file.read_at(&mut buf[..want], off).with_context(|| {
                            format!("{}: reading {} at byte {off}", self.label, f.path)
                        })?;
                        if n == 0 {
                            bail!(
                                "{}: the image ends inside {} (byte {off}); it is truncated",
                                self.label,
                                f.path
                            );
                        }
                        each(&buf[..n])?;
                        off += n as u64;
                    }
                }
                Ok(())
            }
            (Location::Extents(_), Kind::Dir) => unreachable!("extents only come from images"),
        }
    }

    /// `f`'s bytes as a reader (for a consumer that pulls, such as a tar
    /// writer). It ends early, with an error, where the image does.
    pub fn reader<'a>(&'a self, f: &'a MediaFile) -> Result<FileReader<'a>> {
        Ok(match (&f.location, &self.kind) {
            (Location::Path(p), _) => FileReader::Plain(
                File::open(p).with_context(|| format!("{}: opening {}", self.label, f.path))?,
            ),
            (Location::Extents(ext), Kind::Image { file, .. }) => FileReader::Extents {
                image: file,
                extents: ext,
                at: 0,
                done: 0,
            },
            (Location::Extents(_), Kind::Dir) => unreachable!("extents only come from images"),
        })
    }

    /// Writes `f`'s bytes into `out` from byte `at` (its position does not
    /// move), copied by the kernel (`copy_file_range`: the bytes never pass
    /// through this process) where it can, else read and written. Returns
    /// how many bytes were copied; a file shorter than its listing gives
    /// fewer than `f.size` (never more), a truncated image an error.
    pub fn copy_at(&self, f: &MediaFile, out: &File, at: u64) -> Result<u64> {
        let reading = || format!("{}: copying {}", self.label, f.path);
        match (&f.location, &self.kind) {
            (Location::Path(p), _) => {
                let src =
                    File::open(p).with_context(|| format!("{}: opening {}", self.label, f.path))?;
                copy_range(&src, 0, f.size, out, at, false).with_context(reading)
            }
            (Location::Extents(ext), Kind::Image { file, .. }) => {
                let mut total = 0;
                for &(off, len) in ext {
                    total +=
                        copy_range(file, off, len, out, at + total, true).with_context(reading)?;
                }
                Ok(total)
            }
            (Location::Extents(_), Kind::Dir) => unreachable!("extents only come from images"),
        }
    }

    /// Reads a whole (small) file, such as a Packages index.
    pub fn read(&self, f: &MediaFile) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(f.size as usize);
        let mut buf = vec![0u8; 1 << 16];
        self.stream(f, &mut buf, |chunk| {
            out.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(out)
    }

    /// The file at `path`, if there is one.
    pub fn find(&self, path: &str) -> Option<&MediaFile> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }
}

/// A disc file's bytes in order (see [`Medium::reader`]).
pub enum FileReader<'a> {
    Plain(File),
    Extents {
        image: &'a File,
        extents: &'a [(u64, u64)],
        /// The extent being read and how far into it.
        at: usize,
        done: u64,
    },
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            FileReader::Plain(f) => f.read(buf),
            FileReader::Extents {
                image,
                extents,
                at,
                done,
            } => loop {
                let Some(&(off, len)) = extents.get(*at) else {
                    return Ok(0);
                };
                if *done == len {
                    *at += 1;
                    *done = 0;
                    continue;
                }
                let want = ((len - *done) as usize).min(buf.len());
                let n = image.read_at(&mut buf[..want], off + *done)?;
                if n == 0 && want > 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the image ends at byte {}: it is truncated", off + *done),
                    ));
                }
                *done += n as u64;
                return Ok(n);
            },
        }
    }
}

/// Copies up to `len` bytes of `src` from `off` into `out` from `out_at`.
/// The end of `src` before `len` is an error when `whole` (an image's
/// extent), else a short count. Falls back to reading and writing where the
/// kernel cannot copy between the two files (another file system on older
/// kernels, some network and FUSE file systems).
fn copy_range(
    src: &File,
    off: u64,
    len: u64,
    out: &File,
    out_at: u64,
    whole: bool,
) -> std::io::Result<u64> {
    use rustix::io::Errno;
    let end = off + len;
    let (mut at, mut to) = (off, out_at);
    while at < end {
        let want = (end - at).min(1 << 30) as usize;
        match rustix::fs::copy_file_range(src, Some(&mut at), out, Some(&mut to), want) {
            Ok(0) => break,
            Ok(_) => {}
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP | Errno::PERM) => {
                at += read_write(src, at, end, out, to)?;
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if whole && at < end {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the image ends at byte {at}: it is truncated"),
        ));
    }
    Ok(at - off)
}

/// [`copy_range`]'s fallback: bytes `off..end` of `src` read and written
/// into `out` from `out_at`.
fn read_write(src: &File, mut off: u64, end: u64, out: &File, out_at: u64) -> std::io::Result<u64> {
    let start = off;
    let mut buf = vec![0u8; (end - off).min(1 << 20) as usize];
    while off < end {
        let want = ((end - off) as usize).min(buf.len());
        let n = src.read_at(&mut buf[..want], off)?;
        if n == 0 {
            break;
        }
        out.write_all_at(&buf[..n], out_at + (off - start))?;
        off += n as u64;
    }
    Ok(off - start)
}

fn list_dir(root: &Path, tops: &[&str], label: &str) -> Result<Vec<MediaFile>> {
    let mut files = Vec::new();
    for top in tops {
        let dir = if top.is_empty() {
            root.to_path_buf()
        } else {
            root.join(top)
        };
        if !dir.is_dir() {
            continue;
        }
        for entry in walkdir::WalkDir::new(&dir).follow_links(false) {
            let entry = entry.with_context(|| format!("{label}: listing {top}/"))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(root)
                .expect("walkdir stays under its root");
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            let path = checked_relative(&refs, label)?;
            let meta = entry
                .metadata()
                .with_context(|| format!("{label}: reading {path}"))?;
            files.push(MediaFile {
                path,
                size: meta.len(),
                mtime: meta.mtime(),
                ident: meta.ino(),
                ctime: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
                location: Location::Path(entry.path().to_path_buf()),
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    #[test]
    fn only_a_filesystem_that_keeps_status_change_times_vouches_for_an_image() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("x.iso")).unwrap();
        assert!(
            keeps_ctime(&f),
            "the test directory's filesystem (ext4 or tmpfs)"
        );
        assert!(!keeps_ctime(&File::open("/proc/self/status").unwrap()));
    }

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(bytes).unwrap();
        let f = File::open(t.path()).unwrap();
        (t, f)
    }

    /// The kernel's copy and the fallback write the same bytes at the
    /// place asked, and the output's position stays where it was.
    #[test]
    fn a_range_is_placed_by_either_copy() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (_t, src) = file_with(&data);
        for kernel in [true, false] {
            let mut out = tempfile::tempfile().unwrap();
            out.write_all(b"head").unwrap();
            let n = if kernel {
                copy_range(&src, 1000, 200_000, &out, 4, true).unwrap()
            } else {
                read_write(&src, 1000, 201_000, &out, 4).unwrap()
            };
            assert_eq!(n, 200_000);
            assert_eq!(out.stream_position().unwrap(), 4);
            out.seek(std::io::SeekFrom::Start(200_004)).unwrap();
            out.write_all(b"tail").unwrap();
            out.rewind().unwrap();
            let mut got = Vec::new();
            out.read_to_end(&mut got).unwrap();
            assert_eq!(&got[..4], b"head");
            assert!(got[4..200_004] == data[1000..201_000], "kernel: {kernel}");
            assert_eq!(&got[200_004..], b"tail");
        }
    }

    /// An image written to after it was opened is refused; a directory,
    /// whose files carry their own identity, has none to compare.
    #[test]
    fn an_image_changed_after_it_was_opened_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("vendor.iso");
        let files: [(&str, &[u8]); 1] = [("install.sh", b"#!/bin/sh\n")];
        let image = crate::build::isowrite::write_image("VENDOR", &files, 1_700_000_000).unwrap();
        std::fs::write(&iso, &image).unwrap();
        let medium = Medium::open_any(&iso).unwrap();
        let identity = medium.image_identity().unwrap().to_string();
        medium.check_unchanged().unwrap();
        // The same bytes written again: the times move, so it is refused.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&iso, &image).unwrap();
        let e = medium.check_unchanged().unwrap_err().to_string();
        assert!(e.contains("changed while it was read"), "{e}");
        assert_ne!(
            Medium::open_any(&iso).unwrap().image_identity().unwrap(),
            identity
        );
        assert_eq!(Medium::open_any(dir.path()).unwrap().image_identity(), None);
    }

    /// Past the end of the source: an image's extent is an error, a plain
    /// file's copy is short (its caller compares the count).
    #[test]
    fn the_end_of_the_source_is_an_error_for_an_image_only() {
        let (_t, src) = file_with(&[1u8; 5000]);
        let out = tempfile::tempfile().unwrap();
        let e = copy_range(&src, 4000, 2000, &out, 0, true).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let out = tempfile::tempfile().unwrap();
        assert_eq!(copy_range(&src, 4000, 2000, &out, 0, false).unwrap(), 1000);
    }
}
