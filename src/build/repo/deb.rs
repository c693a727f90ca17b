//! Reading a `.deb` as it streams past: the `ar` framing is checked and the
//! control member captured from the same bytes that are being hashed, so each
//! file is read exactly once.

use std::io::Read;

use crate::build::repo::control::Paragraph;

const AR_MAGIC: &[u8; 8] = b"!<arch>\n";
const AR_HEADER: usize = 60;
/// Control members are kilobytes; anything near this is not a real package.
const MAX_CONTROL_MEMBER: u64 = 64 << 20;

/// What is wrong with a `.deb`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DebError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, DebError> {
    Err(DebError(msg.into()))
}

#[derive(Debug)]
enum State {
    Magic,
    Header,
    Body { remaining: u64, capture: bool },
    Pad,
    Failed,
}

/// Feed it the file's bytes in order (any chunk sizes), then [`finish`].
///
/// [`finish`]: DebScanner::finish
#[derive(Debug)]
pub struct DebScanner {
    state: State,
    buf: Vec<u8>,
    members: Vec<String>,
    /// The captured members: debian-binary, then the control member.
    control: Option<(String, Vec<u8>)>,
    format: Vec<u8>,
    last_size: u64,
    error: Option<String>,
}

impl Default for DebScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl DebScanner {
    pub fn new() -> Self {
        DebScanner {
            state: State::Magic,
            buf: Vec::with_capacity(AR_HEADER),
            members: Vec::new(),
            control: None,
            format: Vec::new(),
            last_size: 0,
            error: None,
        }
    }

    fn fail(&mut self, msg: String) {
        self.error.get_or_insert(msg);
        self.state = State::Failed;
    }

    /// Takes the next bytes of the file.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Failed => return,
                State::Magic | State::Header => {
                    let need = match self.state {
                        State::Magic => AR_MAGIC.len(),
                        _ => AR_HEADER,
                    };
                    let take = (need - self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.buf.len() < need {
                        continue;
                    }
                    let block = std::mem::take(&mut self.buf);
                    if matches!(self.state, State::Magic) {
                        if block != AR_MAGIC {
                            self.fail(
                                "not an ar archive (bad magic); a .deb starts with \"!<arch>\""
                                    .into(),
                            );
                        } else {
                            self.state = State::Header;
                        }
                    } else {
                        self.header(&block);
                    }
                }
                State::Body { remaining, capture } => {
                    let take = (*remaining).min(data.len() as u64) as usize;
                    if *capture {
                        match &mut self.control {
                            Some((_, bytes)) => bytes.extend_from_slice(&data[..take]),
                            None => self.format.extend_from_slice(&data[..take]),
                        }
                    }
                    *remaining -= take as u64;
                    data = &data[take..];
                    if *remaining == 0 {
                        self.state = if self.odd_member() {
                            State::Pad
                        } else {
                            State::Header
                        };
                    }
                }
                State::Pad => {
                    // ar pads members to an even offset with '\n'.
                    data = &data[1..];
                    self.state = State::Header;
                }
            }
        }
    }

    fn odd_member(&self) -> bool {
        self.last_size % 2 == 1
    }

    fn header(&mut self, h: &[u8]) {
        if &h[58..60] != b"`\n" {
            return self.fail(format!(
                "bad ar member header after member {:?}",
                self.members.last().map(String::as_str).unwrap_or("(none)")
            ));
        }
        let name = String::from_utf8_lossy(&h[0..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size_text = String::from_utf8_lossy(&h[48..58]);
        let Ok(size) = size_text.trim().parse::<u64>() else {
            return self.fail(format!("bad size {size_text:?} in ar header of {name:?}"));
        };
        // dpkg's order, and nothing else: two control members, data before
        // control or members after data would let another reader see
        // another package.
        let expected = match self.members.len() {
            0 => name == "debian-binary",
            1 => name.starts_with("control.tar"),
            2 => name.starts_with("data.tar"),
            _ => false,
        };
        if !expected {
            let have = if self.members.is_empty() {
                "none".to_string()
            } else {
                self.members.join(", ")
            };
            return self.fail(format!(
                "member {name:?} after {have}: a .deb holds debian-binary, control.tar*, data.tar* in that order and nothing else"
            ));
        }
        let capture = name.starts_with("control.tar") || name == "debian-binary";
        if name == "debian-binary" && size > 16 {
            return self.fail(format!("debian-binary of {size} bytes"));
        }
        if name.starts_with("control.tar") {
            if size > MAX_CONTROL_MEMBER {
                return self.fail(format!(
                    "control member of {size} bytes is implausibly large"
                ));
            }
            self.control = Some((name.clone(), Vec::with_capacity(size as usize)));
        }
        self.members.push(name);
        self.last_size = size;
        self.state = if size == 0 {
            State::Header
        } else {
            State::Body {
                remaining: size,
                capture,
            }
        };
    }

    /// Whether the control member has been read whole: a reader after the
    /// control paragraph alone may stop here and take [`DebScanner::control`].
    pub fn has_control(&self) -> bool {
        self.error.is_none()
            && (self.members.len() > 2
                || (self.members.len() == 2 && !matches!(self.state, State::Body { .. })))
    }

    /// The control paragraph from what was fed so far, without the checks
    /// of the whole file's framing that [`DebScanner::finish`] makes (the
    /// caller reads the rest of the file later and checks it then).
    pub fn control(&self) -> Result<Paragraph, DebError> {
        if let Some(e) = &self.error {
            return err(e.clone());
        }
        if !self.has_control() {
            return err("truncated before the end of its control member");
        }
        let Some((name, bytes)) = &self.control else {
            return err("no control.tar member");
        };
        let (text, _) = control_from_tar(name, bytes, false)?;
        Paragraph::parse(&text).map_err(|e| DebError(format!("control file: {e}")))
    }

    /// Ends the stream: checks the framing is complete and returns the
    /// control paragraph.
    pub fn finish(self) -> Result<Paragraph, DebError> {
        self.finish_reading(false).map(|(control, _)| control)
    }

    /// Like [`DebScanner::finish`], and also returns the control member's
    /// `md5sums` file, verbatim, when the package has one (dpkg copies it
    /// as it is to `/var/lib/dpkg/info/PACKAGE.md5sums`).
    pub fn finish_with_md5sums(self) -> Result<(Paragraph, Option<Vec<u8>>), DebError> {
        self.finish_reading(true)
    }

    /// [`DebScanner::finish`], with the `md5sums` file when `md5sums`.
    fn finish_reading(self, md5sums: bool) -> Result<(Paragraph, Option<Vec<u8>>), DebError> {
        self.check_framing()?;
        let Some((name, bytes)) = self.control else {
            return err("no control.tar member");
        };
        let (text, md5sums) = control_from_tar(&name, &bytes, md5sums)?;
        let control =
            Paragraph::parse(&text).map_err(|e| DebError(format!("control file: {e}")))?;
        Ok((control, md5sums))
    }

    /// The SHA256 of the control member as read (its name, then its
    /// bytes), once it is whole: what a second reader of the same file
    /// compares instead of expanding the member again.
    pub fn control_digest(&self) -> Option<[u8; 32]> {
        use sha2::Digest as _;
        let (name, bytes) = self.control.as_ref().filter(|_| self.has_control())?;
        Some(
            sha2::Sha256::new()
                .chain_update(name.as_bytes())
                .chain_update([0])
                .chain_update(bytes)
                .finalize()
                .into(),
        )
    }

    /// Ends the stream like [`DebScanner::finish`] without expanding the
    /// control member: the framing is checked and the control member's
    /// digest (see [`DebScanner::control_digest`]) returned.
    pub fn finish_framing(self) -> Result<[u8; 32], DebError> {
        self.check_framing()?;
        self.control_digest()
            .map_or_else(|| err("no control.tar member"), Ok)
    }

    /// The whole file was a `.deb` as dpkg reads one.
    fn check_framing(&self) -> Result<(), DebError> {
        if let Some(e) = &self.error {
            return err(e.clone());
        }
        match self.state {
            State::Magic => return err("empty or truncated before the ar magic"),
            State::Header if !self.buf.is_empty() => {
                return err("truncated in an ar member header");
            }
            State::Body { remaining, .. } => {
                return err(format!(
                    "truncated: member {:?} is missing its last {remaining} bytes",
                    self.members.last().map(String::as_str).unwrap_or("")
                ));
            }
            State::Pad => return err("truncated: the last member's padding byte is missing"),
            _ => {}
        }
        if !self.members.iter().any(|m| m.starts_with("data.tar")) {
            return err("no data.tar member");
        }
        if !self.format.starts_with(b"2.") || !self.format.ends_with(b"\n") {
            return err(format!(
                "debian-binary says {:?}, not a format 2.x package",
                String::from_utf8_lossy(&self.format)
            ));
        }
        Ok(())
    }
}

/// Extracts `./control` and, if there is one and `keep_md5sums`, `./md5sums`
/// from a control member, by its compression. The whole member is read
/// either way (a second `./control` or `./md5sums` is refused: dpkg would
/// take the last); an md5sums not kept is only read past.
fn control_from_tar(
    name: &str,
    bytes: &[u8],
    keep_md5sums: bool,
) -> Result<(String, Option<Vec<u8>>), DebError> {
    let reader: Box<dyn Read + '_> = match name {
        "control.tar" => Box::new(bytes),
        "control.tar.gz" => Box::new(flate2::read::GzDecoder::new(bytes)),
        "control.tar.xz" => Box::new(liblzma::read::XzDecoder::new(bytes)),
        other => {
            return err(format!(
                "{other} is not supported (control members compressed with gzip, xz or none are)"
            ));
        }
    };
    // Bounded: a small member must not expand into gigabytes.
    let mut archive = tar::Archive::new(reader.take(MAX_CONTROL_EXPANDED));
    let entries = archive
        .entries()
        .map_err(|e| DebError(format!("{name}: {e}")))?;
    let mut control = None;
    let mut md5sums = None;
    let mut seen = (false, false);
    for entry in entries {
        let mut entry = entry.map_err(|e| DebError(format!("{name}: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| DebError(format!("{name}: {e}")))?
            .into_owned();
        let p = path.to_string_lossy();
        let p = p.strip_prefix("./").unwrap_or(&p);
        let (once, slot) = match p {
            "control" => (&mut seen.0, Some(&mut control)),
            "md5sums" => (&mut seen.1, keep_md5sums.then_some(&mut md5sums)),
            _ => continue,
        };
        if std::mem::replace(once, true) {
            return err(format!(
                "{name} holds ./{p} twice (dpkg would take the last)"
            ));
        }
        // An md5sums not kept is read past.
        let Some(slot) = slot else {
            continue;
        };
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| DebError(format!("{name}: reading {p}: {e}")))?;
        *slot = Some(bytes);
    }
    let control = control.ok_or_else(|| DebError(format!("{name} has no ./control file")))?;
    let control = String::from_utf8(control)
        .map_err(|_| DebError(format!("{name}: ./control is not UTF-8")))?;
    Ok((control, md5sums))
}

/// How far a control member may expand.
const MAX_CONTROL_EXPANDED: u64 = 64 << 20;

/// One file to put in a generated package's data member.
pub struct DataFile<'a> {
    /// Path inside the package, relative (`usr/share/doc/x/README`).
    pub path: &'a str,
    pub mode: u32,
    pub contents: &'a [u8],
}

/// Builds a real `.deb` (ar: `debian-binary`, `control.tar.gz`,
/// `data.tar.gz`) from a control paragraph and files, byte-reproducibly:
/// every timestamp is `mtime`. Its control member carries `md5sums` of the
/// files, as `dh_md5sums` writes it for every Debian package. Used by the
/// demo media and the tests.
pub fn build_deb(
    control: &Paragraph,
    files: &[DataFile<'_>],
    mtime: u64,
) -> std::io::Result<Vec<u8>> {
    let control_text = control.to_text();
    let sums = md5sums(files);
    let control_tar = tar_gz(
        &[
            DataFile {
                path: "control",
                mode: 0o644,
                contents: control_text.as_bytes(),
            },
            DataFile {
                path: "md5sums",
                mode: 0o644,
                contents: sums.as_bytes(),
            },
        ],
        mtime,
    )?;
    let data_tar = tar_gz(files, mtime)?;
    Ok(ar(
        &[
            ("debian-binary", &b"2.0\n"[..]),
            ("control.tar.gz", &control_tar),
            ("data.tar.gz", &data_tar),
        ],
        mtime,
    ))
}

/// An `ar` archive of `members`, in order.
fn ar(members: &[(&str, &[u8])], mtime: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(AR_MAGIC);
    for (name, body) in members {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            mtime,
            0,
            0,
            "100644",
            body.len()
        );
        debug_assert_eq!(header.len(), AR_HEADER);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        if body.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// `md5sums` as `dh_md5sums` writes it: `HASH  PATH` per file, sorted by
/// path.
fn md5sums(files: &[DataFile<'_>]) -> String {
    use md5::Digest as _;
    let mut lines: Vec<String> = files
        .iter()
        .map(|f| {
            let sum = md5::Md5::digest(f.contents);
            format!("{}  {}\n", crate::shared::hex(&sum), f.path)
        })
        .collect();
    lines.sort_by(|a, b| a[34..].cmp(&b[34..]));
    lines.concat()
}

fn tar_gz(files: &[DataFile<'_>], mtime: u64) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    builder.mode(tar::HeaderMode::Deterministic);
    let mut dirs = std::collections::BTreeSet::new();
    for f in files {
        let mut parent = std::path::Path::new(f.path).parent();
        let mut chain = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            chain.push(p.to_path_buf());
            parent = p.parent();
        }
        for d in chain.into_iter().rev() {
            if dirs.insert(d.clone()) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_mtime(mtime);
                h.set_size(0);
                builder.append_data(&mut h, format!("./{}/", d.display()), std::io::empty())?;
            }
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(f.mode);
        h.set_mtime(mtime);
        h.set_size(f.contents.len() as u64);
        builder.append_data(&mut h, format!("./{}", f.path), f.contents)?;
    }
    builder.into_inner()?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let control = Paragraph::parse(
            "Package: hello\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: T <t@example.org>\nDescription: greets\n and more.\n",
        )
        .unwrap();
        build_deb(
            &control,
            &[DataFile {
                path: "usr/share/doc/hello/README",
                mode: 0o644,
                contents: b"hi\n",
            }],
            1_700_000_000,
        )
        .unwrap()
    }

    fn scan(bytes: &[u8], chunk: usize) -> Result<Paragraph, DebError> {
        let mut s = DebScanner::new();
        for c in bytes.chunks(chunk.max(1)) {
            s.feed(c);
        }
        s.finish()
    }

    #[test]
    fn reads_control_in_any_chunking() {
        let deb = sample();
        for chunk in [1, 7, 60, 61, 4096, deb.len()] {
            let p = scan(&deb, chunk).unwrap();
            assert_eq!(p.get("Package"), Some("hello"));
            assert_eq!(p.get("Description"), Some("greets\n and more."));
        }
    }

    #[test]
    fn the_md5sums_member_comes_back_verbatim() {
        let (control, sums) = DebScanner::new()
            .tap(&sample())
            .finish_with_md5sums()
            .unwrap();
        assert_eq!(control.get("Package"), Some("hello"));
        // md5sum of "hi\n", as `md5sum` prints it.
        assert_eq!(
            String::from_utf8(sums.unwrap()).unwrap(),
            "764efa883dda1e11db47671c4a3bbd9e  usr/share/doc/hello/README\n"
        );
        // A package built without one (dpkg-deb without DEBIAN/md5sums).
        let control_tar = tar_gz(
            &[DataFile {
                path: "control",
                mode: 0o644,
                contents: control.to_text().as_bytes(),
            }],
            0,
        )
        .unwrap();
        let deb = ar(
            &[
                ("debian-binary", &b"2.0\n"[..]),
                ("control.tar.gz", &control_tar),
                ("data.tar.gz", &tar_gz(&[], 0).unwrap()),
            ],
            0,
        );
        let (_, sums) = DebScanner::new().tap(&deb).finish_with_md5sums().unwrap();
        assert_eq!(sums, None);
    }

    impl DebScanner {
        fn tap(mut self, bytes: &[u8]) -> DebScanner {
            self.feed(bytes);
            self
        }
    }

    #[test]
    fn build_is_reproducible() {
        assert_eq!(sample(), sample());
    }

    #[test]
    fn truncation_anywhere_is_an_error() {
        let deb = sample();
        for cut in [0, 5, 8, 30, 68, 100, deb.len() / 2, deb.len() - 1] {
            let e = scan(&deb[..cut], 4096).unwrap_err();
            assert!(
                e.0.contains("truncated") || e.0.contains("no data.tar") || e.0.contains("empty"),
                "cut at {cut}: {e}"
            );
        }
    }

    /// A reader that stops at the control member and one that checks a
    /// whole copy agree on the member's digest; a truncated copy fails.
    #[test]
    fn a_peek_and_a_framing_check_agree_on_the_control_member() {
        let deb = sample();
        let mut peek = DebScanner::new();
        let mut at = 0;
        while !peek.has_control() {
            peek.feed(&deb[at..at + 7]);
            at += 7;
        }
        assert!(at < deb.len(), "stopped before the data member");
        let control = peek.control().unwrap();
        assert_eq!(control, scan(&deb, 4096).unwrap());
        let digest = peek.control_digest().unwrap();
        let mut whole = DebScanner::new();
        whole.feed(&deb);
        assert_eq!(whole.finish_framing().unwrap(), digest);
        let mut cut = DebScanner::new();
        cut.feed(&deb[..deb.len() - 1]);
        assert!(cut.finish_framing().unwrap_err().0.contains("truncated"));
    }

    #[test]
    fn bad_magic_and_header_are_errors() {
        let mut deb = sample();
        deb[0] = b'?';
        assert!(
            scan(&deb, 4096)
                .unwrap_err()
                .0
                .contains("not an ar archive")
        );
        let mut deb = sample();
        deb[8 + 58] = b'x';
        assert!(
            scan(&deb, 4096)
                .unwrap_err()
                .0
                .contains("bad ar member header")
        );
    }

    #[test]
    fn corrupt_control_member_is_an_error() {
        let mut deb = sample();
        // debian-binary is 4 bytes; the control member's data starts after
        // its header: corrupt the gzip stream in the middle.
        let start = 8 + 60 + 4 + 60;
        deb[start + 20] ^= 0xff;
        deb[start + 21] ^= 0xff;
        assert!(scan(&deb, 4096).is_err());
    }

    #[test]
    fn not_a_deb_at_all() {
        assert!(
            scan(b"!<arch>\n", 4096)
                .unwrap_err()
                .0
                .contains("no data.tar")
        );
        assert!(scan(b"", 4096).unwrap_err().0.contains("empty"));
    }
}
