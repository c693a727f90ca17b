//! A bundle delivered in volumes (discs, sticks), each of which verifies
//! alone, and their assembly back into the bundle. Shared by `airlock
//! verify` and `airlock-firstboot prepare`; `airlock build --volume-size`
//! writes them (the builder's `volumes` module).
//!
//! ```text
//! volumes/NN/SHA256SUMS      this volume's files, "<hex>  <path>"
//! volumes/NN/SHA256SUMS.gpg  its signature (one per key)
//! volumes/NN/MODES           its files' modes
//! volumes/NN/archive-keyring.gpg (.asc)   the public keys, in every volume
//! volumes/NN/bin/airlock-firstboot, README.txt   in every volume too
//! volumes/NN/whole/          the whole bundle's SHA256SUMS, .gpg and MODES
//! volumes/NN/VOLUMES         the table of all volumes, signed:
//! volumes/NN/VOLUMES.gpg       VOLUMES.gpg
//! volumes/NN/…               the bundle's files that fell in this volume
//! ```
//!
//! A delta (`airlock build --base --volume-size`) is cut the same way: the
//! files it carries are shared out, `whole/` holds the new bundle's
//! manifest, and every volume also carries the delta's `BASE` and
//! `BASE.gpg` at its root (so `sha256sum -c BASE` in the base's directory
//! and `gpgv BASE.gpg BASE` work on any one of them); its table has a
//! `base` line naming the base's manifest. Its volumes put together give
//! the delta's directory ([`Assembly::finish_delta`]), which is then
//! applied as any delta is.
//!
//! `sha256sum -c SHA256SUMS` and `gpgv SHA256SUMS.gpg SHA256SUMS` check a
//! volume alone; `gpgv VOLUMES.gpg VOLUMES` checks the table, whose lines
//! name each volume's SHA256SUMS by its hash. No file is split: the
//! assembled bundle is the union of the volumes' files with the whole
//! manifest at its root, and is verified as any bundle is.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::shared::delta::{self, BASE};
use crate::shared::hex;
use crate::shared::keyring::{self, Keyring};
use crate::shared::manifest::{self, Finding, FindingKind, MODES, Report, SUMS, SUMS_SIG, Trust};
use crate::shared::staging::Staging;

/// The table of all volumes.
pub const TABLE: &str = "VOLUMES";
/// Its signature.
pub const TABLE_SIG: &str = "VOLUMES.gpg";
/// Where a volume keeps the whole bundle's manifest.
pub const WHOLE: &str = "whole";
/// The first line of a table.
const TABLE_HEAD: &str = "airlock-volumes 1";

/// The whole bundle's head files a volume carries under [`WHOLE`], and
/// where they go when the volumes are assembled.
pub const WHOLE_FILES: [&str; 3] = [SUMS, SUMS_SIG, MODES];

/// The signed table of a bundle's volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Table {
    pub cluster: String,
    /// SHA-256 of the whole bundle's SHA256SUMS.
    pub whole: String,
    /// A delta's volumes: the SHA-256 of its base's SHA256SUMS (what its
    /// BASE names).
    pub base: Option<String>,
    pub volumes: Vec<Entry>,
}

/// One volume in the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// `01`, `02`, …: its directory's name.
    pub name: String,
    /// Files in its SHA256SUMS.
    pub files: usize,
    /// Bytes of all its files.
    pub bytes: u64,
    /// SHA-256 of its SHA256SUMS.
    pub sums: String,
}

impl Table {
    pub fn render(&self) -> String {
        let mut s = format!(
            "{TABLE_HEAD}\ncluster {}\nwhole {}\n",
            self.cluster, self.whole
        );
        if let Some(base) = &self.base {
            s.push_str(&format!("base {base}\n"));
        }
        for v in &self.volumes {
            s.push_str(&format!(
                "volume {} files {} bytes {} sums {}\n",
                v.name, v.files, v.bytes, v.sums
            ));
        }
        s
    }

    /// Parses a table; anything else than what [`Table::render`] writes is
    /// an error naming the line.
    pub fn parse(text: &str) -> Result<Table> {
        let mut lines = text.lines().enumerate().peekable();
        let mut next = |what: &str| -> Result<(usize, &str)> {
            lines
                .next()
                .with_context(|| format!("{TABLE} ends before its {what} line"))
        };
        let (_, head) = next("first")?;
        if head != TABLE_HEAD {
            bail!("{TABLE} line 1 is not \"{TABLE_HEAD}\": not a table of airlock volumes");
        }
        let (_, cluster) = next("cluster")?;
        let cluster = field(cluster, "cluster", 2)?;
        let (_, whole) = next("whole")?;
        let whole = sha(field(whole, "whole", 3)?, 3)?;
        let base = match lines.next_if(|(_, l)| l.starts_with("base ")) {
            Some((i, l)) => Some(sha(field(l, "base", i + 1)?, i + 1)?),
            None => None,
        };
        let mut volumes: Vec<Entry> = Vec::new();
        for (i, line) in lines {
            let w: Vec<&str> = line.split(' ').collect();
            let ["volume", name, "files", files, "bytes", bytes, "sums", sums] = w.as_slice()
            else {
                bail!(
                    "{TABLE} line {} is not \"volume NN files N bytes N sums SHA256\"",
                    i + 1
                );
            };
            let number = |s: &str| -> Result<u64> {
                s.parse()
                    .with_context(|| format!("{TABLE} line {}: {s:?} is not a number", i + 1))
            };
            if !valid_name(name) || volumes.iter().any(|v| v.name == *name) {
                bail!(
                    "{TABLE} line {}: {name:?} is not a new volume name (digits)",
                    i + 1
                );
            }
            volumes.push(Entry {
                name: name.to_string(),
                files: number(files)? as usize,
                bytes: number(bytes)?,
                sums: sha(sums, i + 1)?,
            });
        }
        if volumes.is_empty() {
            bail!("{TABLE} lists no volume");
        }
        Ok(Table {
            cluster: cluster.to_string(),
            whole,
            base,
            volumes,
        })
    }

    /// What the table is of, for a message: the whole manifest, the
    /// cluster, and the base for a delta's volumes.
    pub fn describe(&self) -> String {
        match &self.base {
            Some(b) => format!(
                "the whole manifest {} (cluster {}; a delta for the base {b})",
                self.whole, self.cluster
            ),
            None => format!(
                "the whole manifest {} (cluster {})",
                self.whole, self.cluster
            ),
        }
    }

    pub fn names(&self) -> Vec<&str> {
        self.volumes.iter().map(|v| v.name.as_str()).collect()
    }
}

fn field<'a>(line: &'a str, key: &str, n: usize) -> Result<&'a str> {
    line.strip_prefix(key)
        .and_then(|r| r.strip_prefix(' '))
        .filter(|v| !v.is_empty() && !v.chars().any(|c| c == ' ' || c.is_control()))
        .with_context(|| format!("{TABLE} line {n} is not \"{key} VALUE\""))
}

fn sha(s: &str, line: usize) -> Result<String> {
    if s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(s.to_string())
    } else {
        bail!("{TABLE} line {line}: {s:?} is not a SHA-256 in hex")
    }
}

/// A volume's directory name: digits only.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 4 && name.bytes().all(|b| b.is_ascii_digit())
}

/// SHA-256 of bytes, hex.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// A volume checked alone.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeReport {
    /// Its name in the table (None: its SHA256SUMS is not in it).
    pub name: Option<String>,
    /// The table, when its signature held.
    pub table: Option<Table>,
    /// The volume as a bundle: its files, its manifest, its signature, and
    /// what is wrong with its table.
    pub report: Report,
}

/// Whether `dir` is a volume (it holds a table).
pub fn is_volume(dir: &Path) -> bool {
    dir.join(TABLE).is_file()
}

/// Checks one volume alone: its files against its signed SHA256SUMS (as
/// `airlock verify` checks a bundle), the table's signature, and that the
/// table names this volume's SHA256SUMS and the whole manifest it carries.
pub fn verify_volume(dir: &Path, trust: &Trust, progress: bool) -> Result<VolumeReport> {
    let mut report = manifest::verify_dir(dir, trust, progress)?;
    // The table and its signature are outside the volume's manifest (the
    // table names its hash); they are checked here instead.
    report
        .problems
        .retain(|p| !(p.kind == FindingKind::Extra && (p.path == TABLE || p.path == TABLE_SIG)));
    let mut problem = |path: &str, detail: String| {
        report.problems.push(Finding {
            kind: FindingKind::Volume,
            path: path.into(),
            detail,
        })
    };
    let table = match read_table(dir, trust) {
        Ok(t) => Some(t),
        Err(e) => {
            problem(TABLE, format!("{e:#}"));
            None
        }
    };
    let mut name = None;
    if let Some(t) = &table {
        let sums = fs::read(dir.join(SUMS)).unwrap_or_default();
        let own = sha256(&sums);
        match t.volumes.iter().find(|v| v.sums == own) {
            Some(v) => name = Some(v.name.clone()),
            None => problem(
                SUMS,
                format!(
                    "its SHA-256 {own} is not in the table of volumes ({}): this volume does not belong with that table",
                    t.names().join(", ")
                ),
            ),
        }
        let whole_path = format!("{WHOLE}/{SUMS}");
        let whole = sha256(&fs::read(dir.join(&whole_path)).unwrap_or_default());
        if whole != t.whole {
            problem(
                &whole_path,
                format!(
                    "its SHA-256 is {whole}; the table says the whole bundle's manifest is {}",
                    t.whole
                ),
            );
        }
        check_base(dir, t, &mut problem);
    }
    report.ok = report.problems.is_empty();
    Ok(VolumeReport {
        name,
        table,
        report,
    })
}

/// A delta's volume carries the BASE its table names; a whole bundle's
/// volume none.
fn check_base(dir: &Path, t: &Table, problem: &mut impl FnMut(&str, String)) {
    // A link, an odd file or one too large is refused as the delta's own
    // head files are; unreadable is not "missing".
    let text = match delta::read_head(dir, BASE) {
        Ok(text) => text,
        Err(e) => return problem(BASE, format!("{e:#}")),
    };
    match (&t.base, text) {
        (None, None) => {}
        (None, Some(_)) => problem(
            BASE,
            "a volume of a whole bundle holds no BASE (its table names no base)".into(),
        ),
        (Some(want), None) => problem(
            BASE,
            format!("missing: the table says these are the volumes of a delta for the base {want}"),
        ),
        (Some(want), Some(text)) => {
            let named = delta::parse_base(&String::from_utf8_lossy(&text));
            if named.as_deref() != Some(want.as_str()) {
                problem(
                    BASE,
                    format!(
                        "it names the base {}; the table says {want}",
                        named
                            .as_deref()
                            .unwrap_or("(not one \"<sha256>  SHA256SUMS\" line)")
                    ),
                );
            }
        }
    }
}

/// The table of the volume in `dir`, its signature checked like the
/// manifest's.
fn read_table(dir: &Path, trust: &Trust) -> Result<Table> {
    let text = fs::read(dir.join(TABLE))
        .with_context(|| format!("reading {}", dir.join(TABLE).display()))?;
    let sig = fs::read(dir.join(TABLE_SIG))
        .with_context(|| format!("reading {}", dir.join(TABLE_SIG).display()))?;
    let own;
    let keyring = match &trust.keyring {
        Some(k) => k,
        None => {
            own = Keyring::load(&dir.join(keyring::PUBLIC_GPG_FILE))?;
            &own
        }
    };
    keyring
        .check_detached(&text, &sig)
        .and_then(|s| s.require(trust.require, keyring))
        .with_context(|| format!("{TABLE_SIG} does not prove {TABLE}"))?;
    Table::parse(&String::from_utf8_lossy(&text))
}

/// The volumes given, each checked alone, then put together: the bundle
/// they make, in `out` (replaced only once it verifies as a whole).
/// Volumes may come in any order, and one given twice counts once; a
/// missing one, or one from another bundle, is refused, naming it.
pub fn assemble(volumes: &[PathBuf], out: &Path, trust: &Trust, progress: bool) -> Result<Report> {
    let mut a = Assembly::new(out, trust.clone(), progress)?;
    for dir in volumes {
        a.add(dir)?;
    }
    a.finish(out)
}

/// A volume given does not verify (its files, its signatures or its
/// table): a check that failed, where a missing or foreign volume is a
/// usage error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unverified(pub String);

/// Volumes taken one after the other (one disc drive: each is copied before
/// the next is inserted), put together in a staging directory.
pub struct Assembly {
    staging: Staging,
    trust: Trust,
    progress: bool,
    table: Option<(Table, PathBuf)>,
    have: BTreeMap<String, PathBuf>,
}

impl Assembly {
    /// An assembly whose result goes to `out`.
    pub fn new(out: &Path, trust: Trust, progress: bool) -> Result<Assembly> {
        Assembly::tagged(out, "airlock-tmp", trust, progress)
    }

    /// An assembly put together in a staging directory beside `out` named
    /// with `tag` (see [`Staging::beside_tagged`]).
    pub fn tagged(out: &Path, tag: &str, trust: Trust, progress: bool) -> Result<Assembly> {
        Ok(Assembly {
            staging: Staging::beside_tagged(out, tag)?,
            trust,
            progress,
            table: None,
            have: BTreeMap::new(),
        })
    }

    /// Checks the volume in `dir` alone and copies its share: its name.
    pub fn add(&mut self, dir: &Path) -> Result<String> {
        // The disc is read once: copied as it is, then the copy is checked
        // and its files moved into place (a disc's second pass would double
        // the slowest part, and the copy cannot change under the check).
        let incoming = self.staging.path().join(INCOMING);
        let _ = fs::remove_dir_all(&incoming);
        let added = copy_tree(dir, &incoming).and_then(|()| self.add_copied(dir, &incoming));
        let _ = fs::remove_dir_all(&incoming);
        added
    }

    /// [`Assembly::add`] once the volume in `dir` is copied to `copy`.
    fn add_copied(&mut self, dir: &Path, copy: &Path) -> Result<String> {
        let v = verify_volume(copy, &self.trust, self.progress)?;
        if !v.report.ok {
            return Err(anyhow::Error::new(Unverified(format!(
                "the volume {} does not verify ({} problem(s)): {}; check it with `airlock verify {}`",
                dir.display(),
                v.report.problems.len(),
                first_problems(&v.report),
                dir.display()
            ))));
        }
        let (name, t) = (v.name.expect("ok"), v.table.expect("ok"));
        match &self.table {
            Some((first, from)) if *first != t => bail!(
                "the volume {} belongs to another {}: its table names {}, the table of {} names {}; give only the volumes of one",
                dir.display(),
                if t.base.is_some() { "delta" } else { "bundle" },
                t.describe(),
                from.display(),
                first.describe()
            ),
            Some(_) => {}
            None => self.table = Some((t, dir.to_path_buf())),
        }
        if !self.have.contains_key(&name) {
            move_volume(copy, self.staging.path())?;
            self.have.insert(name.clone(), dir.to_path_buf());
        }
        Ok(name)
    }

    /// The table of the volumes taken so far.
    pub fn table(&self) -> Option<&Table> {
        self.table.as_ref().map(|(t, _)| t)
    }

    /// The table's volumes not taken yet.
    pub fn missing(&self) -> Vec<String> {
        self.table()
            .map(|t| {
                t.names()
                    .into_iter()
                    .filter(|n| !self.have.contains_key(*n))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every volume of the table taken: its table.
    fn complete(&self) -> Result<&Table> {
        let Some(table) = self.table() else {
            bail!("no volume given");
        };
        let missing = self.missing();
        if !missing.is_empty() {
            bail!(
                "volume(s) {} of {} missing (the {} of cluster {} has {}): give every volume",
                missing.join(", "),
                table.names().join(", "),
                if table.base.is_some() {
                    "delta"
                } else {
                    "bundle"
                },
                table.cluster,
                table.volumes.len()
            );
        }
        Ok(table)
    }

    /// The volumes taken, as they were given, for a message.
    fn given(&self) -> String {
        let paths: Vec<String> = self
            .have
            .values()
            .map(|p| p.display().to_string())
            .collect();
        paths.join(", ")
    }

    /// The whole bundle verified, then moved to `out`.
    pub fn finish(self, out: &Path) -> Result<Report> {
        let table = self.complete()?;
        if let Some(base) = &table.base {
            bail!(
                "the volumes ({}) hold a delta for the base whose SHA256SUMS has sha256 {base}, not a whole bundle: give that base too (`airlock apply VOLUMES… --to OLD`, `airlock-firstboot prepare --base OLD`, or `airlock-firstboot update` on a VM that has it)",
                self.given()
            );
        }
        let report = manifest::verify_dir(self.staging.path(), &self.trust, self.progress)?;
        if !report.ok {
            bail!(
                "the volumes verify one by one, but not together ({} problem(s)): {}",
                report.problems.len(),
                first_problems(&report)
            );
        }
        self.staging.replace(out)?;
        Ok(report)
    }

    /// Every volume of a delta taken: the delta's directory they make (its
    /// head from `whole/`, BASE, and the files it carries), in the staging
    /// directory, removed when dropped. It is checked as any delta is when
    /// applied; each volume was checked alone.
    pub fn finish_delta(self) -> Result<Staging> {
        let table = self.complete()?;
        if table.base.is_none() {
            bail!(
                "the volumes ({}) hold a whole bundle, not a delta: verify it with `airlock verify`, or prepare a VM from it with `airlock-firstboot prepare --bundle` (no --base)",
                self.given()
            );
        }
        Ok(self.staging)
    }
}

/// The directories of volumes `given` names: each a volume (it holds
/// VOLUMES) or a directory holding `volumes/NN/` (all of them); None when
/// none is. One that is neither, among volumes, is refused naming it.
pub fn given_volumes(given: &[PathBuf]) -> Result<Option<Vec<PathBuf>>> {
    let mut dirs = Vec::new();
    let mut other = None;
    for g in given {
        if is_volume(g) {
            dirs.push(g.clone());
        } else if let Some(v) = volume_dirs(g).filter(|_| !g.join(SUMS).exists()) {
            dirs.extend(v);
        } else {
            other.get_or_insert(g);
        }
    }
    match other {
        Some(g) if !dirs.is_empty() => bail!(
            "{} is not a volume (no {TABLE}) nor a directory of volumes (volumes/NN/), but the other paths given are volumes: give every volume, and only volumes",
            g.display()
        ),
        _ => Ok((!dirs.is_empty()).then_some(dirs)),
    }
}

fn first_problems(r: &Report) -> String {
    r.problems
        .iter()
        .take(3)
        .map(|p| format!("{} {}: {}", p.kind, p.path, p.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where [`Assembly::add`] copies a volume before checking it (inside the
/// staging directory, so its files are moved, not copied again).
const INCOMING: &str = ".incoming-volume";

/// Copies the volume in `from` to `to` as it is: its directories and
/// regular files, keeping their modes; a link or anything else is refused
/// (a volume holds none), never followed.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for e in walkdir::WalkDir::new(from).follow_links(false) {
        let e = e.with_context(|| format!("reading the volume {}", from.display()))?;
        let rel = e.path().strip_prefix(from).expect("under the volume");
        let target = to.join(rel);
        let kind = e.file_type();
        if kind.is_dir() {
            fs::create_dir_all(&target)
                .with_context(|| format!("creating {}", target.display()))?;
        } else if kind.is_file() {
            fs::copy(e.path(), &target).with_context(|| {
                format!("copying {} to {}", e.path().display(), target.display())
            })?;
        } else {
            bail!(
                "the volume {}: {} is {}; a volume holds regular files only (not followed)",
                from.display(),
                rel.display(),
                if kind.is_symlink() {
                    "a symbolic link"
                } else {
                    "not a regular file"
                }
            );
        }
    }
    Ok(())
}

/// Moves a verified volume's share of the bundle from its copy `dir` into
/// `to`: its listed files (the keys are the same in every volume), and the
/// whole manifest to the root. Its own SHA256SUMS, MODES and table stay.
fn move_volume(dir: &Path, to: &Path) -> Result<()> {
    let sums = fs::read_to_string(dir.join(SUMS))?;
    let (listed, _) = manifest::parse_manifest(&sums);
    let whole_prefix = format!("{WHOLE}/");
    for path in listed.keys().filter(|p| p.as_str() != MODES) {
        let target = match path.strip_prefix(&whole_prefix) {
            Some(head) if WHOLE_FILES.contains(&head) => to.join(head),
            Some(_) => bail!("{}: {path} is not a file a volume carries", dir.display()),
            None => to.join(path),
        };
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            crate::shared::writer::set_mode(parent, 0o755)?;
        }
        let from = dir.join(path);
        fs::rename(&from, &target)
            .with_context(|| format!("moving {} to {}", from.display(), target.display()))?;
    }
    Ok(())
}

/// The volume directories under `dir/volumes`, sorted, if `dir` is a bundle
/// written in volumes.
pub fn volume_dirs(dir: &Path) -> Option<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir.join("volumes"))
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(valid_name) && e.path().is_dir())
        .map(|e| e.path())
        .collect();
    out.sort();
    (!out.is_empty()).then_some(out)
}

/// For each volume of a set whose table differs from the first table's:
/// its index and what its table names instead (another bundle's volume).
pub fn foreign(reports: &[VolumeReport]) -> Vec<(usize, String)> {
    let mut tables = reports
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r.table.as_ref()?)));
    let Some((_, first)) = tables.next() else {
        return Vec::new();
    };
    tables
        .filter(|(_, t)| *t != first)
        .map(|(i, t)| {
            (
                i,
                format!(
                    "its table names {}, the others {}: a volume of another {}",
                    t.describe(),
                    first.describe(),
                    if t.base.is_some() { "delta" } else { "bundle" }
                ),
            )
        })
        .collect()
}

/// The names a set of volumes' tables list that none of them is.
pub fn missing_from(reports: &[VolumeReport]) -> Vec<String> {
    let present: BTreeSet<&str> = reports.iter().filter_map(|r| r.name.as_deref()).collect();
    let listed: BTreeSet<&str> = reports
        .iter()
        .filter_map(|r| r.table.as_ref())
        .flat_map(|t| t.names())
        .collect();
    listed.difference(&present).map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            cluster: "demo".into(),
            whole: "a".repeat(64),
            base: None,
            volumes: vec![
                Entry {
                    name: "01".into(),
                    files: 3,
                    bytes: 4096,
                    sums: "b".repeat(64),
                },
                Entry {
                    name: "02".into(),
                    files: 1,
                    bytes: 10,
                    sums: "c".repeat(64),
                },
            ],
        }
    }

    #[test]
    fn a_deltas_table_names_its_base_on_line_4() {
        let t = Table {
            base: Some("d".repeat(64)),
            ..table()
        };
        let text = t.render();
        assert_eq!(
            text.lines().nth(3),
            Some(&*format!("base {}", "d".repeat(64)))
        );
        assert_eq!(Table::parse(&text).unwrap(), t);
        assert!(
            t.describe()
                .contains(&format!("a delta for the base {}", "d".repeat(64)))
        );
        assert!(!table().describe().contains("delta"));
        for (bad, says) in [
            (
                text.replace(&"d".repeat(64), "D"),
                "line 4: \"D\" is not a SHA-256",
            ),
            (
                text.replace("base ", "base  "),
                "line 4 is not \"base VALUE\"",
            ),
        ] {
            let e = format!("{:#}", Table::parse(&bad).unwrap_err());
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_deltas_volume_holds_the_base_its_table_names_and_a_bundles_none() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path();
        let said = |t: &Table| {
            let mut found = Vec::new();
            check_base(v, t, &mut |p: &str, d: String| {
                found.push(format!("{p}: {d}"))
            });
            found
        };
        let want = "d".repeat(64);
        let delta = Table {
            base: Some(want.clone()),
            ..table()
        };
        assert!(said(&table()).is_empty(), "a bundle's volume, no BASE");
        assert!(said(&delta)[0].contains("missing"), "{:?}", said(&delta));
        fs::write(v.join(BASE), delta::render_base(&want)).unwrap();
        assert!(said(&delta).is_empty());
        assert!(said(&table())[0].contains("holds no BASE"));
        fs::write(v.join(BASE), delta::render_base(&"e".repeat(64))).unwrap();
        let other = said(&delta);
        assert!(
            other[0].contains(&"e".repeat(64)) && other[0].contains(&want),
            "{other:?}"
        );
        fs::write(v.join(BASE), "not a base\n").unwrap();
        assert!(said(&delta)[0].contains("not one"), "{:?}", said(&delta));
    }

    #[test]
    fn a_table_reads_back_and_anything_else_is_refused_naming_the_line() {
        let t = table();
        assert_eq!(Table::parse(&t.render()).unwrap(), t);
        for (bad, says) in [
            ("", "ends before"),
            ("airlock-volumes 2\n", "line 1"),
            // Found by the fuzzer: a carriage return the line reader eats.
            (
                &t.render().replace("cluster demo", "cluster de\r\rmo\r"),
                "line 2",
            ),
            (
                &t.render().replace("volume 02", "volume ../02"),
                "not a new volume name",
            ),
            (
                &t.render().replace("volume 02", "volume 01"),
                "not a new volume name",
            ),
            (&t.render().replace("bytes 10", "bytes ten"), "not a number"),
            (&format!("{}extra\n", t.render()), "line 6"),
            (&t.render().replace(&"c".repeat(64), "C"), "not a SHA-256"),
            (
                "airlock-volumes 1\ncluster demo\nwhole x\n",
                "not a SHA-256",
            ),
            (
                &format!(
                    "airlock-volumes 1\ncluster demo\nwhole {}\n",
                    "a".repeat(64)
                ),
                "no volume",
            ),
        ] {
            let e = format!("{:#}", Table::parse(bad).unwrap_err());
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
