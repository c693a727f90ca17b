//! Writing a bundle as one tar in the form verify accepts, and the listing
//! files (`SHA256SUMS`, `MODES`) of a bundle directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{BufReader, Seek as _, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::Digest as _;

use crate::build::media::{FileReader, MediaFile, Medium};
use crate::build::repo::deb::DebScanner;
use crate::shared::delta::{BASE, BASE_SIG};
use crate::shared::manifest::{self, MODES, SUMS, SUMS_SIG, canonical_order};
use crate::shared::par::progress_bar;
use crate::shared::tarform;

/// Every regular file under `dir`, as sorted `/`-separated relative paths.
/// Symbolic links and other non-regular files are errors: a bundle has none.
pub fn list_tree(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
    {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        let rel = e
            .path()
            .strip_prefix(dir)
            .expect("under the root")
            .to_string_lossy()
            .into_owned();
        if rel.is_empty() || e.file_type().is_dir() {
            continue;
        }
        if !e.file_type().is_file() {
            bail!("{rel}: not a regular file (a bundle holds no links or devices)");
        }
        out.push((rel, e.metadata()?.len()));
    }
    out.sort();
    Ok(out)
}

/// `SHA256SUMS` text for `(path, hash)` pairs (sorted by path).
pub fn render_sums(entries: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for (path, hash) in entries {
        let _ = writeln!(s, "{hash}  {path}");
    }
    s
}

/// `MODES` text: `<octal mode>  <path>` per file, sorted like SHA256SUMS.
pub fn render_modes(modes: &BTreeMap<String, u32>) -> String {
    let mut s = String::new();
    for (path, mode) in modes {
        let _ = writeln!(s, "{mode:04o}  {path}");
    }
    s
}

/// Where a tar entry's bytes come from.
pub enum Source<'a> {
    File(PathBuf),
    /// A package on a disc, checked as it is copied: its SHA256 must be
    /// `sha256` (what the signed manifest says) and it must be a whole
    /// `.deb`, or the tar is not written.
    Disc {
        medium: &'a Medium,
        file: &'a MediaFile,
        sha256: &'a str,
        /// The control member's digest when it was read for the index
        /// (the copy's must be the same); without it the copy's control
        /// member is expanded and checked whole.
        control: Option<&'a [u8; 32]>,
        /// An earlier build checked this file in this very image (the
        /// same identity, see `Medium::image_identity`): a plain tar gets
        /// it copied without hashing it again, and the image is checked
        /// to be still the same once the tar is written.
        unchanged: bool,
    },
}

/// A tar to write gzip compressed: named `.gz` or `.tgz`.
pub fn gzip_named(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == "gz" || e == "tgz")
}

/// Writes the bundle (or delta) directory as one tar in [`tarform`]'s form
/// (entries in [`canonical_order`], mtime `time`, modes from `MODES`; a
/// delta's head, then BASE and BASE.gpg, then the files it carries), gzip
/// compressed (one member) when `file` ends in `.gz` or `.tgz`. Written
/// beside and renamed.
pub fn write_tar(dir: &Path, file: &Path, time: i64, progress: bool) -> Result<()> {
    let entries = list_tree(dir)?
        .into_iter()
        .map(|(rel, size)| {
            let path = dir.join(&rel);
            (rel, (size, Source::File(path)))
        })
        .collect();
    write_tar_entries(&entries, dir, file, time, progress)
}

/// Writes `entries` (path in the bundle → size and source) as one tar like
/// [`write_tar`], with the modes of `dir`'s `MODES`.
pub fn write_tar_entries(
    entries: &BTreeMap<String, (u64, Source<'_>)>,
    dir: &Path,
    file: &Path,
    time: i64,
    progress: bool,
) -> Result<()> {
    let modes_text = fs::read_to_string(dir.join(MODES))
        .with_context(|| format!("reading {}", dir.join(MODES).display()))?;
    let mut problems = Vec::new();
    let modes = manifest::parse_modes(&modes_text, &mut problems);
    if let Some(p) = problems.first() {
        bail!("{}: {}: {}", dir.display(), p.path, p.detail);
    }
    let total = entries.values().map(|e| e.0).sum();
    let bar = progress_bar(progress, total, "writing the tar");
    let tmp = file.with_file_name(format!(
        ".{}.airlock-tmp",
        file.file_name().unwrap_or_default().to_string_lossy()
    ));
    let out = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let out = std::io::BufWriter::with_capacity(1 << 20, out);
    let gz = gzip_named(file);
    let sink = if gz {
        Sink::Gz(Box::new(
            flate2::GzBuilder::new()
                .mtime(0)
                .write(out, flate2::Compression::fast()),
        ))
    } else {
        Sink::Plain(out)
    };
    let mut tw = tarform::TarWriter::new(sink, time.max(0) as u64);
    let files: BTreeSet<String> = entries.keys().cloned().collect();
    let result = std::thread::scope(|scope| -> Result<()> {
        // A plain tar gets the discs' packages written into their places
        // by two threads while the rest is written in order.
        let placer = (!gz)
            .then(|| Placer::spawn(scope, &tmp, &bar))
            .transpose()?;
        for (rel, kind) in canonical_order(&files) {
            if kind == tarform::Kind::Dir {
                tw.dir(&rel)?;
                continue;
            }
            let mode = match rel.as_str() {
                // A delta's BASE and its signature are not in its MODES.
                SUMS | SUMS_SIG | BASE | BASE_SIG => 0o644,
                _ => *modes
                    .get(&rel)
                    .with_context(|| format!("{rel} is not in {MODES}"))?,
            };
            let (size, source) = &entries[&rel];
            // A package that failed in the placer names itself.
            if let Some(placer) = &placer {
                placer.failed()?;
            }
            let left = add_entry(&mut tw, &rel, mode, *size, source, placer.is_some(), &bar)
                .with_context(|| format!("adding {rel}"))?;
            if let (Some(placer), Some(copied)) = (&placer, left) {
                placer.place(copied)?;
            }
        }
        tw.finish()?.finish()?;
        if let Some(placer) = placer {
            placer.finish()?;
        }
        // What was copied unhashed came from images that must not have
        // changed since they were opened: each checked once.
        let mut trusted: Vec<&Medium> = Vec::new();
        for source in entries.values().map(|e| &e.1) {
            if let Source::Disc {
                medium,
                unchanged: true,
                ..
            } = source
                && !trusted.iter().any(|m| std::ptr::eq(*m, *medium))
            {
                trusted.push(medium);
            }
        }
        for medium in trusted {
            medium.check_unchanged()?;
        }
        Ok(())
    });
    bar.finish_and_clear();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", file.display()));
    }
    fs::rename(&tmp, file).with_context(|| format!("renaming {} into place", file.display()))?;
    Ok(())
}

/// How much is read at a time (a copy through a buffered reader moves
/// whole buffers; through a plain one, 8 KiB at a time).
const CHUNK: usize = 1 << 20;

/// One file into the tar from its source. With `place`, a disc's package
/// is only given its header and room: it is returned, to be placed.
fn add_entry<'a>(
    tw: &mut tarform::TarWriter<Sink>,
    rel: &str,
    mode: u32,
    size: u64,
    source: &Source<'a>,
    place: bool,
    bar: &indicatif::ProgressBar,
) -> Result<Option<Copied<'a>>> {
    let (medium, file, sha256, control, unchanged) = match source {
        Source::File(path) => {
            let f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let data = BufReader::with_capacity(CHUNK, bar.wrap_read(f));
            tw.file(rel, mode, size, data)?;
            return Ok(None);
        }
        Source::Disc {
            medium,
            file,
            sha256,
            control,
            unchanged,
        } => (*medium, *file, *sha256, *control, *unchanged),
    };
    let mut copied = Copied {
        medium,
        file,
        sha256,
        control,
        rel: rel.to_string(),
        at: 0,
        unchanged,
    };
    if !place {
        let (got, deb) = copy_hashed(tw, rel, mode, size, medium.reader(file)?, bar)?;
        copied.verdict(got, deb)?;
        return Ok(None);
    }
    // The bytes are left to the placer: the tar goes on after them.
    tw.file_from(rel, mode, size, |sink| {
        let mut out = sink.file()?;
        copied.at = out.stream_position()?;
        out.seek(std::io::SeekFrom::Current(size as i64))?;
        Ok(size)
    })?;
    Ok(Some(copied))
}

/// The tar being written: plain, where the placer writes a disc's
/// packages at their places, or gzip compressed.
enum Sink {
    Plain(std::io::BufWriter<fs::File>),
    Gz(Box<flate2::write::GzEncoder<std::io::BufWriter<fs::File>>>),
}

impl Sink {
    /// The plain tar's file, everything buffered written to it.
    fn file(&mut self) -> std::io::Result<&fs::File> {
        match self {
            Sink::Plain(out) => {
                out.flush()?;
                Ok(out.get_ref())
            }
            Sink::Gz(_) => Err(std::io::Error::other("a compressed tar has no plain file")),
        }
    }

    /// Writes what is buffered (and gzip's trailer).
    fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Plain(mut out) => out.flush(),
            Sink::Gz(gz) => gz.finish()?.flush(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(out) => out.write(buf),
            Sink::Gz(out) => out.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(out) => out.write_all(buf),
            Sink::Gz(out) => out.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(out) => out.flush(),
            Sink::Gz(out) => out.flush(),
        }
    }
}

/// A disc's package as copied into the tar, to be checked.
struct Copied<'a> {
    medium: &'a Medium,
    file: &'a MediaFile,
    /// What the signed manifest says.
    sha256: &'a str,
    control: Option<&'a [u8; 32]>,
    /// Its path in the bundle and where its bytes start in the tar.
    rel: String,
    at: u64,
    /// Copied unread: its image vouches that it was checked before.
    unchanged: bool,
}

impl Copied<'_> {
    /// The copy's SHA256 must be the manifest's and its bytes a whole
    /// `.deb` whose control member is the one indexed.
    fn verdict(&self, got: String, deb: DebScanner) -> Result<()> {
        let (label, path) = (&self.medium.label, &self.file.path);
        if got != self.sha256 {
            bail!(
                "{label}: {path} changed or does not match its disc's index: SHA256 {got}, the index and the signed manifest say {}",
                self.sha256
            );
        }
        let corrupt = |e| anyhow::anyhow!("{label}: {path}: corrupt .deb: {e}");
        match self.control {
            Some(want) => {
                if deb.finish_framing().map_err(corrupt)? != *want {
                    bail!(
                        "{label}: {path}: its control member changed since it was read for the index"
                    );
                }
            }
            None => {
                deb.finish().map_err(corrupt)?;
            }
        }
        Ok(())
    }
}

/// Writes each disc package's bytes into its place in the plain tar, on
/// two threads, while the headers and the other files are written in
/// order. A package is read a buffer at a time, hashed and scanned as a
/// `.deb`, and that very buffer written: what is checked is what the tar
/// holds. One its image vouches for (checked in this very image before) is
/// copied by the kernel unread.
struct Placer<'a> {
    queue: std::sync::mpsc::SyncSender<Copied<'a>>,
    /// The first package that failed, once one has; closed when the
    /// threads end without one.
    failure: std::sync::mpsc::Receiver<anyhow::Error>,
}

impl<'a> Placer<'a> {
    /// How many packages may wait for a thread.
    const QUEUE: usize = 64;
    /// How many threads place.
    const THREADS: usize = 2;

    fn spawn<'s>(
        scope: &'s std::thread::Scope<'s, 'a>,
        tar: &Path,
        bar: &indicatif::ProgressBar,
    ) -> Result<Placer<'a>>
    where
        'a: 's,
    {
        let out = fs::OpenOptions::new()
            .write(true)
            .open(tar)
            .with_context(|| format!("opening {}", tar.display()))?;
        let (queue, jobs) = std::sync::mpsc::sync_channel::<Copied<'a>>(Self::QUEUE);
        let jobs = std::sync::Mutex::new(jobs);
        let (fail, failure) = std::sync::mpsc::sync_channel(Self::THREADS);
        let shared = std::sync::Arc::new((out, jobs));
        for _ in 0..Self::THREADS {
            let (shared, fail, bar) = (shared.clone(), fail.clone(), bar.clone());
            scope.spawn(move || {
                let (out, jobs) = &*shared;
                let mut buf = vec![0u8; PLACE_CHUNK];
                loop {
                    let Ok(copied) = jobs.lock().expect("not poisoned").recv() else {
                        return;
                    };
                    let placed = place(out, &copied, &mut buf, &bar)
                        .with_context(|| format!("adding {}", copied.rel));
                    if let Err(e) = placed {
                        // One failure per thread: there is room.
                        let _ = fail.try_send(e);
                        return;
                    }
                }
            });
        }
        Ok(Placer { queue, failure })
    }

    /// The first failure so far, if any (to stop early).
    fn failed(&self) -> Result<()> {
        self.failure.try_recv().map_or(Ok(()), Err)
    }

    /// Queues a package whose place in the tar is set.
    fn place(&self, copied: Copied<'a>) -> Result<()> {
        if self.queue.send(copied).is_err() {
            // The threads stopped at a failure, which says why.
            return Err(self
                .failure
                .recv()
                .unwrap_or_else(|_| anyhow::anyhow!("the writing threads stopped")));
        }
        Ok(())
    }

    /// Waits for every queued package to be in place.
    fn finish(self) -> Result<()> {
        drop(self.queue);
        self.failure.recv().map_or(Ok(()), Err)
    }
}

/// How much of a package is read, checked and written at a time (fits a
/// core's cache, so the write reads what the hash just read).
const PLACE_CHUNK: usize = 1 << 18;

/// `copied`'s bytes written at its place in `out`: read, hashed, scanned
/// and written a buffer at a time, or (when its image vouches for it)
/// copied by the kernel.
fn place(
    out: &fs::File,
    copied: &Copied<'_>,
    buf: &mut [u8],
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    use std::os::unix::fs::FileExt as _;
    let (size, start) = (copied.file.size, copied.at);
    let changed = |what: String| {
        let (label, path) = (&copied.medium.label, &copied.file.path);
        anyhow::anyhow!("{label}: {path} changed while it was copied ({what})")
    };
    if copied.unchanged {
        let n = copied.medium.copy_at(copied.file, out, start)?;
        if n != size {
            return Err(changed(format!("{n} of its {size} bytes")));
        }
        bar.inc(size);
        return Ok(());
    }
    let mut sha = sha2::Sha256::new();
    let mut deb = DebScanner::new();
    let mut done = 0u64;
    copied.medium.stream(copied.file, buf, |chunk| {
        // Never past its place, whatever the source turns out to hold.
        if done + chunk.len() as u64 > size {
            return Err(changed(format!("more than its {size} bytes")));
        }
        sha.update(chunk);
        deb.feed(chunk);
        out.write_all_at(chunk, start + done)?;
        done += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
        Ok(())
    })?;
    if done != size {
        return Err(changed(format!("{done} of its {size} bytes")));
    }
    copied.verdict(crate::shared::hex(&sha.finalize()), deb)
}

/// Copies `reader` into the tar a buffer at a time while a second thread
/// hashes and scans (as a `.deb`) the very buffers written: the copy and
/// the check overlap, and what is checked is what the tar holds. Returns
/// the SHA256 and the scanner.
fn copy_hashed<W: Write>(
    tw: &mut tarform::TarWriter<W>,
    rel: &str,
    mode: u32,
    size: u64,
    mut reader: FileReader<'_>,
    bar: &indicatif::ProgressBar,
) -> Result<(String, DebScanner)> {
    use std::io::Read as _;
    use std::sync::mpsc::sync_channel;
    const BUFFERS: usize = 3;
    let (full_tx, full_rx) = sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        free_tx
            .send(vec![0u8; CHUNK])
            .expect("room for each buffer");
    }
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut sha = sha2::Sha256::new();
            let mut deb = DebScanner::new();
            for (buf, n) in full_rx {
                sha.update(&buf[..n]);
                deb.feed(&buf[..n]);
                // The reader may be gone after an error; nothing waits.
                let _ = free_tx.send(buf);
            }
            (crate::shared::hex(&sha.finalize()), deb)
        });
        let copied = tw.file_from(rel, mode, size, |out| {
            let mut total = 0u64;
            loop {
                let mut buf = free_rx.recv().map_err(std::io::Error::other)?;
                let mut n = 0;
                while n < buf.len() {
                    match reader.read(&mut buf[n..])? {
                        0 => break,
                        k => n += k,
                    }
                }
                if n == 0 {
                    return Ok(total);
                }
                out.write_all(&buf[..n])?;
                bar.inc(n as u64);
                total += n as u64;
                full_tx.send((buf, n)).map_err(std::io::Error::other)?;
            }
        });
        drop(full_tx);
        let hashed = hasher.join().expect("hashing does not panic");
        copied?;
        Ok(hashed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::repo::control::Paragraph;
    use crate::build::repo::deb::{DataFile, build_deb};

    /// A disc holding one package; its bytes.
    fn disc_with_one_package(dir: &Path, description: &str) -> Vec<u8> {
        let control = Paragraph::parse(&format!(
            "Package: x\nVersion: 1\nArchitecture: amd64\nDescription: {description}\n"
        ))
        .unwrap();
        let file = DataFile {
            path: "usr/share/doc/x/README",
            mode: 0o644,
            contents: b"x\n",
        };
        let deb = build_deb(&control, &[file], 1_700_000_000).unwrap();
        fs::create_dir_all(dir.join("pool/main/x")).unwrap();
        fs::write(dir.join("pool/main/x/x_1_amd64.deb"), &deb).unwrap();
        deb
    }

    fn scanned(bytes: &[u8]) -> (String, DebScanner) {
        let mut deb = DebScanner::new();
        deb.feed(bytes);
        (crate::shared::hex(&sha2::Sha256::digest(bytes)), deb)
    }

    /// The copy must hash to the manifest's SHA256 and carry the very
    /// control member that was indexed: another package with the right
    /// hash but another control member (the file changed between the two
    /// reads) is refused, naming it.
    #[test]
    fn a_copy_must_match_the_manifest_and_the_indexed_control_member() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = disc_with_one_package(dir.path(), "first");
        let medium = Medium::open(dir.path()).unwrap();
        let file = medium.find("pool/main/x/x_1_amd64.deb").unwrap();
        let (sha256, deb) = scanned(&bytes);
        let indexed = deb.control_digest().unwrap();
        let copied = |control| Copied {
            medium: &medium,
            file,
            sha256: &sha256,
            control,
            rel: "repo/pool/main/x/x_1_amd64.deb".to_string(),
            at: 0,
            unchanged: false,
        };
        let (got, deb) = scanned(&bytes);
        copied(Some(&indexed)).verdict(got, deb).unwrap();
        let (got, deb) = scanned(&bytes);
        copied(None).verdict(got, deb).unwrap();

        let other = disc_with_one_package(&dir.path().join("other"), "second");
        let (_, deb) = scanned(&other);
        let e = copied(Some(&indexed))
            .verdict(sha256.clone(), deb)
            .unwrap_err();
        assert!(e.to_string().contains("control member changed"), "{e}");
        assert!(e.to_string().contains("x_1_amd64.deb"), "{e}");

        let (got, deb) = scanned(&other);
        let e = copied(Some(&indexed)).verdict(got, deb).unwrap_err();
        assert!(
            e.to_string().contains("does not match its disc's index"),
            "{e}"
        );
        let mut cut = DebScanner::new();
        cut.feed(&bytes[..bytes.len() - 5]);
        let e = copied(None).verdict(sha256.clone(), cut).unwrap_err();
        assert!(e.to_string().contains("corrupt .deb"), "{e}");
    }
}
