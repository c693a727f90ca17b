//! The one tar form of a bundle: what `airlock build --tar` writes and the
//! only form `airlock verify` accepts.
//!
//! GNU tar reads many dialects (pax records, GNU long names, sparse maps,
//! several gzip members, entries after the end marker with `-i`) and other
//! readers pick differently among conflicting ones; every such ambiguity is
//! a way to make `verify` read one file while `tar -x` writes another. So
//! the form is fixed and checked byte for byte: each header is rendered
//! again from the name, type, mode, size and time read from it and must be
//! identical to what is there.
//!
//! - 512-byte GNU headers (`ustar  \0`), uid and gid 0, no user or group
//!   names, no link names, no device numbers;
//! - regular files (`0`) and directories (`5`, name ending in `/`, size 0)
//!   only; a name longer than 100 bytes is carried by one GNU long-name
//!   entry (`L`, `././@LongLink`) right before its header, whose name field
//!   holds the first 100 bytes;
//! - file data padded with zeros to the block;
//! - the end: two zero blocks, then nothing but zeros;
//! - compressed: exactly one gzip member with no name, comment or extra
//!   field, and nothing after it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

/// Tar's block.
pub const BLOCK: usize = 512;
const LONG_LINK: &[u8] = b"././@LongLink";
/// The largest size an 11-digit octal field holds.
pub const MAX_SIZE: u64 = 0o77_777_777_777;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// Something outside the form, at a byte offset of the (uncompressed) tar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {why}")]
pub struct FormError {
    pub offset: u64,
    pub why: String,
}

/// `value` as zero-padded octal digits and a NUL; a value too large for the
/// field fills it with `X` (no reader takes that for a number).
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    if s.len() == digits {
        field[..digits].copy_from_slice(s.as_bytes());
    } else {
        field[..digits].fill(b'X');
    }
    field[digits] = 0;
}

/// The header block of an entry named `name` (at most 100 bytes).
fn header(name: &[u8], typeflag: u8, mode: u32, size: u64, mtime: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar ");
    h[263..265].copy_from_slice(b" \0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// The blocks that start an entry: a long-name entry when the name does not
/// fit, then the header.
fn entry_blocks(name: &str, kind: Kind, mode: u32, size: u64, mtime: u64) -> Vec<u8> {
    let flag = match kind {
        Kind::File => b'0',
        Kind::Dir => b'5',
    };
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(BLOCK);
    if bytes.len() > 100 {
        let len = bytes.len() as u64 + 1;
        out.extend_from_slice(&header(LONG_LINK, b'L', 0, len, 0));
        out.extend_from_slice(bytes);
        out.push(0);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
        out.extend_from_slice(&header(&bytes[..100], flag, mode, size, mtime));
    } else {
        out.extend_from_slice(&header(bytes, flag, mode, size, mtime));
    }
    out
}

/// Writes a tar in the form.
pub struct TarWriter<W: Write> {
    out: W,
    mtime: u64,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, mtime: u64) -> TarWriter<W> {
        TarWriter { out, mtime }
    }

    /// A directory (`path` without the trailing `/`).
    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        let blocks = entry_blocks(&format!("{path}/"), Kind::Dir, 0o755, 0, self.mtime);
        self.out.write_all(&blocks)
    }

    /// A regular file of `size` bytes read from `data`.
    pub fn file(&mut self, path: &str, mode: u32, size: u64, data: impl Read) -> io::Result<()> {
        if size > MAX_SIZE {
            return Err(io::Error::other(format!(
                "{path} is {size} bytes, more than a bundle tar holds ({MAX_SIZE})"
            )));
        }
        self.out
            .write_all(&entry_blocks(path, Kind::File, mode, size, self.mtime))?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::other(format!(
                "{path} changed while it was written ({copied} of {size} bytes)"
            )));
        }
        let pad = (BLOCK - (size as usize % BLOCK)) % BLOCK;
        self.out.write_all(&[0u8; BLOCK][..pad])
    }

    /// A regular file of `size` bytes that `fill` writes to the output
    /// itself (for a writer that moves whole buffers); `fill` returns how
    /// many bytes it wrote, which must be `size`.
    pub fn file_from(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        fill: impl FnOnce(&mut W) -> io::Result<u64>,
    ) -> io::Result<()> {
        if size > MAX_SIZE {
            return Err(io::Error::other(format!(
                "{path} is {size} bytes, more than a bundle tar holds ({MAX_SIZE})"
            )));
        }
        self.out
            .write_all(&entry_blocks(path, Kind::File, mode, size, self.mtime))?;
        let copied = fill(&mut self.out)?;
        if copied != size {
            return Err(io::Error::other(format!(
                "{path} changed while it was written ({copied} of {size} bytes)"
            )));
        }
        let pad = (BLOCK - (size as usize % BLOCK)) % BLOCK;
        self.out.write_all(&[0u8; BLOCK][..pad])
    }

    /// The end marker; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        Ok(self.out)
    }
}

/// One entry as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where its first block starts (a long-name entry's, if any).
    pub offset: u64,
    /// Without the trailing `/` of a directory.
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub size: u64,
}

/// Reads a tar, refusing anything outside the form.
pub struct TarReader<R: Read> {
    input: R,
    offset: u64,
    /// Data bytes of the current entry not read yet, and its padding.
    left: u64,
    pad: usize,
    ended: bool,
}

/// An octal field: digits ended by a NUL inside the field.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let end = field.iter().position(|&b| b == 0)?;
    let digits = &field[..end];
    if digits.is_empty() || !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok()
}

fn name_of(field: &[u8]) -> &[u8] {
    field.split(|&b| b == 0).next().unwrap_or(field)
}

impl<R: Read> TarReader<R> {
    pub fn new(input: R) -> TarReader<R> {
        TarReader {
            input,
            offset: 0,
            left: 0,
            pad: 0,
            ended: false,
        }
    }

    fn fail<T>(&self, at: u64, why: impl Into<String>) -> Result<T, FormError> {
        Err(FormError {
            offset: at,
            why: why.into(),
        })
    }

    /// Reads a whole block; `None` at a clean end of input.
    fn block(&mut self) -> Result<Option<[u8; BLOCK]>, FormError> {
        let mut b = [0u8; BLOCK];
        let mut got = 0;
        while got < BLOCK {
            match self.input.read(&mut b[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(self.offset + got as u64, format!("cannot read: {e}")),
            }
        }
        if got == 0 {
            return Ok(None);
        }
        if got < BLOCK {
            return self.fail(
                self.offset,
                "the tar ends in the middle of a block (truncated)",
            );
        }
        self.offset += BLOCK as u64;
        Ok(Some(b))
    }

    /// The next entry, or `None` after the end marker (and the zeros after
    /// it). What is left of the previous entry's data is skipped.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, FormError> {
        self.finish_entry()?;
        if self.ended {
            return Ok(None);
        }
        let at = self.offset;
        let Some(first) = self.block()? else {
            return self.fail(at, "the tar ends without its end marker (truncated)");
        };
        if first.iter().all(|&b| b == 0) {
            self.end(at)?;
            return Ok(None);
        }
        let (name, head, head_at) = self.name_and_header(at, first)?;
        let kind = self.kind_of(head_at, head[156])?;
        let (mode, size) = self.check_header(head_at, &name, &head)?;
        let path = self.entry_path(head_at, name, kind, size)?;
        self.left = size;
        self.pad = (BLOCK - (size as usize % BLOCK)) % BLOCK;
        Ok(Some(Entry {
            offset: at,
            path,
            kind,
            mode: mode as u32,
            size,
        }))
    }

    /// Skips what is left of the current entry's data, and its padding.
    fn finish_entry(&mut self) -> Result<(), FormError> {
        let mut sink = [0u8; 8192];
        while self.left > 0 {
            self.read_data(&mut sink)?;
        }
        self.skip_padding()
    }

    /// An entry's full name, its header and where the header starts, from
    /// its `first` block at `at`: that header itself, or a long-name entry
    /// and the header right after it, whose name field is the long name's
    /// first 100 bytes.
    fn name_and_header(
        &mut self,
        at: u64,
        first: [u8; BLOCK],
    ) -> Result<(Vec<u8>, [u8; BLOCK], u64), FormError> {
        if first[156] != b'L' {
            return Ok((name_of(&first[..100]).to_vec(), first, at));
        }
        let long = self.long_name(at, &first)?;
        let head_at = self.offset;
        let Some(head) = self.block()? else {
            return self.fail(head_at, "a long name with no entry after it (truncated)");
        };
        if head[156] == b'L' {
            return self.fail(head_at, "two long names in a row");
        }
        if name_of(&head[..100]) != &long[..100] {
            return self.fail(
                head_at,
                "the header's name is not the start of the long name before it",
            );
        }
        Ok((long, head, head_at))
    }

    /// The kind a header's type flag gives: regular files and directories
    /// only.
    fn kind_of(&self, head_at: u64, typeflag: u8) -> Result<Kind, FormError> {
        match typeflag {
            b'0' => Ok(Kind::File),
            b'5' => Ok(Kind::Dir),
            b'x' | b'g' => self.fail(head_at, "a pax extended header; bundle tars have none"),
            b'S' => self.fail(head_at, "a GNU sparse file; bundle tars have none"),
            b'1' | b'2' => self.fail(head_at, "a link; bundle tars hold none"),
            b'K' => self.fail(head_at, "a GNU long link name; bundle tars have none"),
            other => self.fail(
                head_at,
                format!(
                    "an entry of type {:?}; bundle tars hold regular files and directories only",
                    char::from(other)
                ),
            ),
        }
    }

    /// A header's mode and size, once the header rendered again from its
    /// name, type, mode, size and time is byte for byte the one read.
    fn check_header(
        &self,
        head_at: u64,
        name: &[u8],
        head: &[u8; BLOCK],
    ) -> Result<(u64, u64), FormError> {
        let (Some(mode), Some(size), Some(mtime)) = (
            parse_octal(&head[100..108]),
            parse_octal(&head[124..136]),
            parse_octal(&head[136..148]),
        ) else {
            return self.fail(head_at, "a header with a malformed mode, size or time");
        };
        let short = &name[..name.len().min(100)];
        let canonical = header(
            short,
            head[156],
            u32::try_from(mode).unwrap_or(u32::MAX),
            size,
            mtime,
        );
        if canonical != *head {
            return self.fail(
                head_at,
                "a header not in airlock's form (owner, magic, checksum, names or padding differ)",
            );
        }
        Ok((mode, size))
    }

    /// The entry's path: UTF-8; a directory's ends in `/` (dropped here)
    /// and has no data, a file's does not.
    fn entry_path(
        &self,
        head_at: u64,
        name: Vec<u8>,
        kind: Kind,
        size: u64,
    ) -> Result<String, FormError> {
        let path = match String::from_utf8(name) {
            Ok(p) => p,
            Err(_) => return self.fail(head_at, "a name that is not UTF-8"),
        };
        match (kind, path.strip_suffix('/')) {
            (Kind::Dir, Some(p)) if size == 0 => Ok(p.to_string()),
            (Kind::Dir, _) => self.fail(
                head_at,
                "a directory whose name does not end in / or with data",
            ),
            (Kind::File, Some(_)) => self.fail(head_at, "a file whose name ends in /"),
            (Kind::File, None) => Ok(path),
        }
    }

    /// Reads a long-name entry (header already read): its data.
    fn long_name(&mut self, at: u64, h: &[u8; BLOCK]) -> Result<Vec<u8>, FormError> {
        let Some(size) = parse_octal(&h[124..136]) else {
            return self.fail(at, "a long-name entry with a malformed size");
        };
        if !(102..=4096).contains(&size) {
            return self.fail(at, format!("a long name of {size} bytes"));
        }
        if *h != header(LONG_LINK, b'L', 0, size, 0) {
            return self.fail(at, "a long-name header not in airlock's form");
        }
        let mut data = Vec::with_capacity(size as usize);
        while (data.len() as u64) < size {
            let Some(b) = self.block()? else {
                return self.fail(self.offset, "the tar ends in a long name (truncated)");
            };
            data.extend_from_slice(&b);
        }
        let (name, rest) = data.split_at(size as usize);
        if name.last() != Some(&0)
            || name[..name.len() - 1].contains(&0)
            || rest.iter().any(|&b| b != 0)
        {
            return self.fail(at, "a long name not in airlock's form");
        }
        Ok(name[..name.len() - 1].to_vec())
    }

    /// After the first zero block: one more, then only zeros to the end.
    fn end(&mut self, at: u64) -> Result<(), FormError> {
        match self.block()? {
            Some(b) if b.iter().all(|&x| x == 0) => {}
            Some(_) => {
                return self.fail(
                    at,
                    "a lone zero block with more entries after it (hidden from tar, read by tar -i)",
                );
            }
            None => return self.fail(at, "the end marker is one block, not two (truncated)"),
        }
        let mut buf = [0u8; 8192];
        loop {
            match self.input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
                        return self.fail(
                            self.offset + i as u64,
                            "data after the end marker (tar -i would read it)",
                        );
                    }
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(self.offset, format!("cannot read: {e}")),
            }
        }
        self.ended = true;
        Ok(())
    }

    /// Reads the current entry's data into `buf`; 0 at its end (its padding
    /// checked to be zeros).
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, FormError> {
        if self.left == 0 {
            self.skip_padding()?;
            return Ok(0);
        }
        let n = buf.len().min(self.left as usize);
        let got = loop {
            match self.input.read(&mut buf[..n]) {
                Ok(0) => return self.fail(self.offset, "the tar ends inside a file (truncated)"),
                Ok(got) => break got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(self.offset, format!("cannot read: {e}")),
            }
        };
        self.offset += got as u64;
        self.left -= got as u64;
        Ok(got)
    }

    /// The current entry's padding: zeros, or refused.
    fn skip_padding(&mut self) -> Result<(), FormError> {
        if self.pad > 0 {
            let mut pad = [0u8; BLOCK];
            let at = self.offset;
            let n = self.pad;
            self.read_exact_counted(&mut pad[..n])?;
            if pad[..n].iter().any(|&b| b != 0) {
                return self.fail(at, "data hidden in an entry's padding");
            }
            self.pad = 0;
        }
        Ok(())
    }

    fn read_exact_counted(&mut self, buf: &mut [u8]) -> Result<(), FormError> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => return self.fail(self.offset, "the tar ends in padding (truncated)"),
                Ok(n) => {
                    got += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(self.offset, format!("cannot read: {e}")),
            }
        }
        Ok(())
    }

    /// The rest of the current entry's data. The buffer grows as data
    /// arrives: a header's size is not trusted for an allocation (a
    /// truncated tar claiming 8 GiB fails as truncated, not out of memory).
    pub fn read_whole(&mut self) -> Result<Vec<u8>, FormError> {
        let mut out = Vec::with_capacity(self.left.min(1 << 16) as usize);
        let mut buf = [0u8; 1 << 16];
        loop {
            let n = self.read_data(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }
}

/// A bundle tar's bytes as [`TarReader`] reads them: the file as it is, or
/// what its one gzip member holds. Bytes after that member (a second
/// member, or anything: `gzip -d` would read on) are a read error at the
/// member's end, so every reader that reads a tar to its end refuses them.
pub enum Unzipped<R: BufRead> {
    Plain(R),
    Gzip(Box<flate2::bufread::GzDecoder<R>>),
}

impl<R: BufRead> Unzipped<R> {
    /// Gzip when `input` starts with gzip's magic bytes.
    pub fn new(mut input: R) -> io::Result<Unzipped<R>> {
        Ok(match input.fill_buf()?.starts_with(&[0x1f, 0x8b]) {
            true => Unzipped::Gzip(Box::new(flate2::bufread::GzDecoder::new(input))),
            false => Unzipped::Plain(input),
        })
    }

    /// Why the gzip header is not the one airlock writes (no name, comment
    /// or extra field, time 0, system "unknown"); None for a plain tar.
    pub fn header_problem(&self) -> Option<&'static str> {
        let Unzipped::Gzip(d) = self else {
            return None;
        };
        let foreign = d.header().is_some_and(|h| {
            h.filename().is_some()
                || h.comment().is_some()
                || h.extra().is_some()
                || h.mtime() != 0
                || h.operating_system() != 255
        });
        foreign.then_some(
            "a gzip header airlock does not write (a name, comment, extra field, time or system): verify the uncompressed tar instead",
        )
    }
}

impl<R: BufRead> Read for Unzipped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Unzipped::Plain(r) => r.read(buf),
            Unzipped::Gzip(d) => {
                let n = d.read(buf)?;
                if n == 0 && !buf.is_empty() && !d.get_mut().fill_buf()?.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "bytes after the gzip member (a second member or garbage: gzip -d would read on)",
                    ));
                }
                Ok(n)
            }
        }
    }
}

/// A bundle tar file (plain or gzip), to be read in the form. Its gzip
/// header is not checked here (a base or delta tar a site compressed
/// itself reads the same; `verify` holds a bundle to airlock's header).
pub fn open_file(path: &Path) -> anyhow::Result<TarReader<Unzipped<BufReader<fs::File>>>> {
    use anyhow::Context;
    let label = path.display();
    let f = fs::File::open(path).with_context(|| format!("opening {label}"))?;
    let input = Unzipped::new(BufReader::with_capacity(1 << 20, f))
        .with_context(|| format!("reading {label}"))?;
    Ok(TarReader::new(input))
}

/// The regular files a tar starts with whose names `names` holds, each
/// read whole (at most `limit` bytes), up to the first entry that is not
/// one of them.
pub fn read_leading<R: Read>(
    tr: &mut TarReader<R>,
    names: &[&str],
    limit: u64,
    label: &str,
) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let form = |e: FormError| anyhow::anyhow!("{label}: {e}");
    let mut head = BTreeMap::new();
    while let Some(e) = tr.next_entry().map_err(form)? {
        if e.kind != Kind::File || !names.contains(&e.path.as_str()) {
            break;
        }
        if e.size > limit {
            anyhow::bail!(
                "{label}: {} is {} bytes, too large for a bundle's head",
                e.path,
                e.size
            );
        }
        head.insert(e.path, tr.read_whole().map_err(form)?);
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new(), 1_800_000_000);
        w.dir("bin").unwrap();
        w.file("bin/x", 0o755, 3, &b"abc"[..]).unwrap();
        let long = format!("repo/{}/p.deb", "d".repeat(120));
        w.file(&long, 0o644, 0, &b""[..]).unwrap();
        w.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<(Entry, Vec<u8>)>, FormError> {
        let mut r = TarReader::new(bytes);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            let mut data = Vec::new();
            let mut buf = [0u8; 7];
            loop {
                let n = r.read_data(&mut buf)?;
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            out.push((e, data));
        }
        Ok(out)
    }

    #[test]
    fn what_the_writer_writes_the_reader_reads() {
        let t = sample();
        let entries = read_all(&t).unwrap();
        let names: Vec<&str> = entries.iter().map(|(e, _)| e.path.as_str()).collect();
        assert_eq!(names[..2], ["bin", "bin/x"]);
        assert!(names[2].len() > 100);
        assert_eq!(entries[1].1, b"abc");
        assert_eq!((entries[1].0.mode, entries[0].0.kind), (0o755, Kind::Dir));
    }

    fn gzip(bytes: &[u8], name: Option<&str>) -> Vec<u8> {
        let mut b = flate2::GzBuilder::new().mtime(0);
        if let Some(n) = name {
            b = b.filename(n);
        }
        let mut w = b.write(Vec::new(), flate2::Compression::fast());
        w.write_all(bytes).unwrap();
        w.finish().unwrap()
    }

    /// Every entry of `bytes` through [`Unzipped`], and its header problem.
    fn read_unzipped(bytes: &[u8]) -> (Result<usize, FormError>, Option<&'static str>) {
        let input = Unzipped::new(bytes).unwrap();
        let header = input.header_problem();
        let mut r = TarReader::new(input);
        let mut n = 0;
        let entries = loop {
            match r.next_entry() {
                Ok(Some(_)) => n += 1,
                Ok(None) => break Ok(n),
                Err(e) => break Err(e),
            }
        };
        (entries, header)
    }

    #[test]
    fn one_gzip_member_reads_and_anything_after_it_is_refused_at_its_end() {
        let t = sample();
        assert_eq!(read_unzipped(&t), (Ok(3), None));
        assert_eq!(read_unzipped(&gzip(&t, None)), (Ok(3), None));
        let named = read_unzipped(&gzip(&t, Some("t.tar")));
        assert_eq!(named.0, Ok(3));
        assert!(named.1.unwrap().contains("gzip header"));
        for after in [gzip(&t, None), b"x".to_vec(), vec![0u8; 10]] {
            let bytes = [gzip(&t, None), after].concat();
            let e = read_unzipped(&bytes).0.unwrap_err();
            assert!(e.why.contains("after the gzip member"), "{e}");
        }
    }

    #[test]
    fn an_entry_claiming_gigabytes_in_a_short_tar_is_truncated_not_allocated() {
        let mut t = entry_blocks("SHA256SUMS", Kind::File, 0o644, MAX_SIZE, 0);
        t.extend_from_slice(&[b'x'; 700]);
        let mut r = TarReader::new(&t[..]);
        assert_eq!(r.next_entry().unwrap().unwrap().size, MAX_SIZE);
        let e = r.read_whole().unwrap_err();
        assert!(e.why.contains("truncated"), "{e}");
    }

    #[test]
    fn gnu_tar_reads_it_the_same_way() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t.tar");
        std::fs::write(&t, sample()).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&t)
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{list}");
        assert!(
            list.contains("-rwxr-xr-x 0/0") && list.contains("bin/x"),
            "{list}"
        );
        assert!(list.contains(&"d".repeat(120)), "{list}");
    }

    #[test]
    fn anything_else_is_refused_with_its_offset() {
        let good = sample();
        // One changed byte anywhere in a header, or in padding: refused.
        for at in [0usize, 100, 108, 150, 257, 265, 300, 500, 525, 1024 + 10] {
            let mut t = good.clone();
            t[at] ^= 0x20;
            assert!(read_all(&t).is_err(), "byte {at}");
        }
        // Data after the end marker, a lone zero block, truncation.
        let mut t = good.clone();
        t.extend_from_slice(b"junk");
        assert!(
            read_all(&t)
                .unwrap_err()
                .why
                .contains("after the end marker")
        );
        let mut t = good[..good.len() - 1024].to_vec();
        t.extend_from_slice(&[0u8; 512]);
        t.extend_from_slice(&good[..512]);
        assert!(read_all(&t).unwrap_err().why.contains("lone zero block"));
        for cut in [1usize, 511, 600, 1500] {
            assert!(read_all(&good[..good.len() - cut]).is_err(), "cut {cut}");
        }
        // Zeros after the end are padding, as tar's records have.
        let mut t = good.clone();
        t.extend_from_slice(&[0u8; 10240]);
        assert_eq!(read_all(&t).unwrap().len(), 3);
    }
}
