//! A rebuild that keeps most of its pool. Linking every unchanged package
//! into the new build costs a directory and a link per package, and as many
//! removals when the old tree goes: most of a rebuild where little changed.
//! Instead the previous build's pool directory is moved into the new build
//! when it is committed, the new packages are moved into it, the ones no
//! longer wanted are removed, and the new build replaces the old one.
//!
//! From the moment the old pool moves, the old build is incomplete, so the
//! commit is journaled first: `.<name>.airlock-takeover` beside the output
//! names the staged build, where the old one goes aside, the pool and every
//! file of it the new build wants. A build stopped after that point (a
//! power cut, a full disc) is finished by the next build of the same output
//! ([`recover`]) before it does anything else; one stopped before it leaves
//! the old build as it was.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::shared::staging::{Staging, replace_dir_via, sibling};
use crate::shared::writer::{check_rel, create_dirs};

const HEADER: &str = "airlock-takeover 1";
/// Where the new packages wait inside the staged build while the old pool
/// moves in.
const ADDED: &str = ".airlock-added";

/// What a commit in progress will do, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Journal {
    /// File name of the staged build, beside the output.
    staging: String,
    /// File name the old build is moved to on the way out.
    aside: String,
    /// The pool directory, relative to the build's root.
    pool: String,
    /// Every file under the pool the new build holds (relative to the root).
    wanted: BTreeSet<String>,
}

impl Journal {
    fn render(&self) -> String {
        let mut s = format!(
            "{HEADER}\nstaging {}\naside {}\npool {}\n",
            self.staging, self.aside, self.pool
        );
        for f in &self.wanted {
            s.push_str("file ");
            s.push_str(f);
            s.push('\n');
        }
        s
    }

    fn parse(text: &str) -> Result<Journal> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            bail!("it does not start with {HEADER:?}");
        }
        let mut field = |name: &str| -> Result<String> {
            match lines.next().and_then(|l| l.strip_prefix(name)) {
                Some(v) if v.starts_with(' ') => Ok(v[1..].to_string()),
                _ => bail!("the line {name:?} is missing"),
            }
        };
        let j = Journal {
            staging: field("staging")?,
            aside: field("aside")?,
            pool: field("pool")?,
            wanted: BTreeSet::new(),
        };
        for name in [&j.staging, &j.aside] {
            // One name beside the output: "." would be its parent.
            if name.is_empty() || name == "." || name.contains('/') || name.starts_with("..") {
                bail!("{name:?} is not a name beside the output");
            }
        }
        check_rel(&j.pool)?;
        let prefix = format!("{}/", j.pool);
        let mut wanted = BTreeSet::new();
        for line in lines {
            match line.strip_prefix("file ") {
                Some(f) if f.starts_with(&prefix) && check_rel(f).is_ok() => {
                    wanted.insert(f.to_string());
                }
                _ => bail!("{line:?} is not a file of the pool {}", j.pool),
            }
        }
        Ok(Journal { wanted, ..j })
    }
}

/// `.<name>.airlock-takeover` beside `target`.
fn journal_path(target: &Path) -> Result<PathBuf> {
    let name = target
        .file_name()
        .with_context(|| format!("{}: the output must name a directory", target.display()))?;
    Ok(target.with_file_name(format!(".{}.airlock-takeover", name.to_string_lossy())))
}

/// Puts `staging` where `target` is, moving `target`'s `pool` (relative to
/// both roots) into it instead of copying it; `wanted` are the pool files
/// the new build holds (relative to the root): those already staged replace
/// the old ones, and old ones not wanted go. Without an old pool it is a
/// plain [`Staging::replace`].
pub fn commit(staging: Staging, target: &Path, pool: &str, wanted: BTreeSet<String>) -> Result<()> {
    if !target.join(pool).is_dir() {
        return staging.replace(target);
    }
    let journal = begin(staging, target, pool, wanted)?;
    finish(target, &journal).with_context(|| {
        format!(
            "the build stopped while moving the previous pool into it; the next build of {} finishes it",
            target.display()
        )
    })
}

/// Journals the commit and moves the old pool into the staged build. From
/// here the old build lacks its pool until [`finish`] (or [`recover`]).
fn begin(staging: Staging, target: &Path, pool: &str, wanted: BTreeSet<String>) -> Result<Journal> {
    let s = staging.path().to_path_buf();
    if s.join(pool).exists() {
        fs::rename(s.join(pool), s.join(ADDED)).context("setting the new packages aside")?;
    }
    let name = |p: &Path| p.file_name().expect("named").to_string_lossy().into_owned();
    let journal = Journal {
        staging: name(&s),
        aside: name(&sibling(target, "airlock-old")?),
        pool: pool.to_string(),
        wanted,
    };
    let path = journal_path(target)?;
    write_durably(&path, journal.render().as_bytes())?;
    let (from, to) = (target.join(pool), s.join(pool));
    create_dirs(to.parent().expect("under the root"))?;
    if let Err(e) = fs::rename(&from, &to) {
        let _ = fs::remove_file(&path);
        return Err(e).with_context(|| format!("moving {} into the new build", from.display()));
    }
    // The journal now owns the staged build: dropping it must not remove it.
    staging.keep();
    sync_dir(from.parent().expect("under the root"))?;
    sync_dir(to.parent().expect("under the root"))?;
    Ok(journal)
}

/// Completes a journaled commit: new packages into the pool, unwanted ones
/// out, the staged build in place of the old, the journal gone. Each step
/// can be repeated after an interruption.
fn finish(target: &Path, j: &Journal) -> Result<()> {
    let s = target.with_file_name(&j.staging);
    let aside = target.with_file_name(&j.aside);
    let journal = journal_path(target)?;
    merge_added(&s, &j.pool)?;
    prune(&s, j, &journal)?;
    sync_dir(&s.join(&j.pool))?;
    replace_dir_via(&s, target, &aside)?;
    if aside.exists() {
        fs::remove_dir_all(&aside)
            .with_context(|| format!("removing the old build {}", aside.display()))?;
    }
    fs::remove_file(&journal).with_context(|| format!("removing {}", journal.display()))?;
    sync_dir(target.parent().unwrap_or(Path::new(".")))
}

/// Moves every staged new package into the (old) pool, replacing a file of
/// the same name.
fn merge_added(s: &Path, pool: &str) -> Result<()> {
    let added = s.join(ADDED);
    if !added.exists() {
        return Ok(());
    }
    for e in walkdir::WalkDir::new(&added).follow_links(false) {
        let e = e.with_context(|| format!("listing {}", added.display()))?;
        if e.file_type().is_dir() {
            continue;
        }
        let rel = e.path().strip_prefix(&added).expect("under it");
        let dest = s.join(pool).join(rel);
        create_dirs(dest.parent().expect("under the pool"))?;
        fs::rename(e.path(), &dest).with_context(|| format!("moving {}", dest.display()))?;
    }
    fs::remove_dir_all(&added).with_context(|| format!("removing {}", added.display()))
}

/// Removes what the new build does not want from its pool (and the
/// directories left empty); every wanted file must be there.
fn prune(s: &Path, j: &Journal, journal: &Path) -> Result<()> {
    let root = s.join(&j.pool);
    let mut present = BTreeSet::new();
    for e in walkdir::WalkDir::new(&root)
        .follow_links(false)
        .contents_first(true)
    {
        let e = e.with_context(|| format!("listing {}", root.display()))?;
        let rel = format!(
            "{}/{}",
            j.pool,
            e.path().strip_prefix(&root).expect("under it").display()
        );
        if e.file_type().is_dir() {
            if e.depth() > 0 {
                // Fails while the directory holds something; that is fine.
                let _ = fs::remove_dir(e.path());
            }
        } else if e.file_type().is_file() && j.wanted.contains(&rel) {
            present.insert(rel);
        } else {
            fs::remove_file(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
        }
    }
    if let Some(missing) = j.wanted.difference(&present).next() {
        bail!(
            "{missing} is missing from the pool of {}; remove that directory and {} and build again",
            s.display(),
            journal.display()
        );
    }
    Ok(())
}

/// Finishes (or, when the old pool never moved, undoes) a commit of
/// `target` that was interrupted. Returns what it did, for the log.
pub fn recover(target: &Path) -> Result<Option<String>> {
    let path = journal_path(target)?;
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let j = Journal::parse(&text).with_context(|| {
        format!(
            "{}: not a journal airlock can read; an earlier build of {} was interrupted. Remove the journal and that directory and build again",
            path.display(),
            target.display()
        )
    })?;
    let s = target.with_file_name(&j.staging);
    let t = target.display();
    if !s.exists() {
        if !target.join(&j.pool).is_dir() {
            bail!(
                "{t} lacks its pool and the build that held it ({}) is gone; remove {t} and {} and build again",
                s.display(),
                path.display()
            );
        }
        let aside = target.with_file_name(&j.aside);
        if aside.exists() {
            fs::remove_dir_all(&aside)
                .with_context(|| format!("removing the old build {}", aside.display()))?;
        }
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        return Ok(Some(format!(
            "an earlier build of {t} was interrupted after it was in place; its leftovers are removed"
        )));
    }
    if target.join(&j.pool).is_dir() && !s.join(&j.pool).exists() {
        fs::remove_dir_all(&s).with_context(|| format!("removing {}", s.display()))?;
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        return Ok(Some(format!(
            "an earlier build of {t} was interrupted before it changed anything; its staging directory is removed"
        )));
    }
    finish(target, &j)?;
    Ok(Some(format!(
        "an earlier build of {t} was interrupted while moving its pool; it is finished now"
    )))
}

/// Writes `path` so that it survives a power cut once this returns.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("new");
    let mut f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {}", path.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// An old build at `out` (pool: kept, gone) and a staged new one
    /// (pool: new), as a bundle lays them out.
    fn two_builds(dir: &Path) -> (PathBuf, Staging, BTreeSet<String>) {
        let out = dir.join("bundle");
        for (f, body) in [
            ("repo/pool/main/k/kept.deb", "kept"),
            ("repo/pool/main/g/gone.deb", "gone"),
            ("SHA256SUMS", "old"),
        ] {
            create_dirs(out.join(f).parent().unwrap()).unwrap();
            fs::write(out.join(f), body).unwrap();
        }
        let staging = Staging::beside(&out).unwrap();
        for (f, body) in [
            ("repo/pool/main/n/new.deb", "new"),
            ("repo/dists/Release", "r"),
            ("SHA256SUMS", "new"),
        ] {
            let p = staging.path().join(f);
            create_dirs(p.parent().unwrap()).unwrap();
            fs::write(p, body).unwrap();
        }
        let wanted = ["repo/pool/main/k/kept.deb", "repo/pool/main/n/new.deb"]
            .map(String::from)
            .into();
        (out, staging, wanted)
    }

    /// `out` is the new build, whole, with the kept file's very inode, and
    /// nothing of the commit is left beside it.
    fn assert_new_build(dir: &Path, out: &Path, kept_ino: u64) {
        let read = |f: &str| fs::read_to_string(out.join(f)).unwrap();
        assert_eq!(read("SHA256SUMS"), "new");
        assert_eq!(read("repo/pool/main/n/new.deb"), "new");
        assert_eq!(read("repo/dists/Release"), "r");
        let kept = out.join("repo/pool/main/k/kept.deb");
        assert_eq!(fs::metadata(&kept).unwrap().ino(), kept_ino);
        assert!(!out.join("repo/pool/main/g").exists(), "emptied dirs go");
        assert!(!out.join(ADDED).exists());
        let names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["bundle"]);
    }

    fn ino(p: &Path) -> u64 {
        fs::metadata(p).unwrap().ino()
    }

    #[test]
    fn a_commit_moves_the_old_pool_in_and_keeps_only_what_is_wanted() {
        let dir = tempfile::tempdir().unwrap();
        let (out, staging, wanted) = two_builds(dir.path());
        let kept = ino(&out.join("repo/pool/main/k/kept.deb"));
        commit(staging, &out, "repo/pool", wanted).unwrap();
        assert_new_build(dir.path(), &out, kept);
        assert_eq!(recover(&out).unwrap(), None);
    }

    #[test]
    fn a_commit_stopped_after_the_pool_moved_is_finished_by_the_next_build() {
        let dir = tempfile::tempdir().unwrap();
        let (out, staging, wanted) = two_builds(dir.path());
        let kept = ino(&out.join("repo/pool/main/k/kept.deb"));
        // The power goes right after the old pool moved.
        begin(staging, &out, "repo/pool", wanted).unwrap();
        assert!(!out.join("repo/pool").exists());
        let note = recover(&out).unwrap().unwrap();
        assert!(note.contains("finished"), "{note}");
        assert_new_build(dir.path(), &out, kept);
    }

    #[test]
    fn a_commit_stopped_between_the_two_renames_of_the_swap_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let (out, staging, wanted) = two_builds(dir.path());
        let kept = ino(&out.join("repo/pool/main/k/kept.deb"));
        let j = begin(staging, &out, "repo/pool", wanted).unwrap();
        let s = out.with_file_name(&j.staging);
        merge_added(&s, &j.pool).unwrap();
        // The old build went aside; the new one had not yet taken its name.
        fs::rename(&out, out.with_file_name(&j.aside)).unwrap();
        recover(&out).unwrap().unwrap();
        assert_new_build(dir.path(), &out, kept);
    }

    #[test]
    fn a_commit_stopped_before_the_pool_moved_leaves_the_old_build() {
        let dir = tempfile::tempdir().unwrap();
        let (out, staging, wanted) = two_builds(dir.path());
        let s = staging.keep();
        let j = Journal {
            staging: s.file_name().unwrap().to_string_lossy().into(),
            aside: ".bundle.airlock-old-1".into(),
            pool: "repo/pool".into(),
            wanted,
        };
        write_durably(&journal_path(&out).unwrap(), j.render().as_bytes()).unwrap();
        fs::rename(s.join("repo/pool"), s.join(ADDED)).unwrap();
        let note = recover(&out).unwrap().unwrap();
        assert!(note.contains("before it changed anything"), "{note}");
        assert_eq!(fs::read_to_string(out.join("SHA256SUMS")).unwrap(), "old");
        assert!(out.join("repo/pool/main/g/gone.deb").exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_unreadable_journal_is_named_and_nothing_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let (out, _staging, _) = two_builds(dir.path());
        let journal = journal_path(&out).unwrap();
        for bad in [
            "garbage\n",
            "airlock-takeover 1\nstaging ../x\naside .a\npool repo/pool\n",
            "airlock-takeover 1\nstaging .\naside .a\npool repo/pool\n",
            "airlock-takeover 1\nstaging .s\naside .\npool repo/pool\n",
            "airlock-takeover 1\nstaging .s\naside .a\npool repo/pool\nfile repo/pool/../../etc/passwd\n",
            "airlock-takeover 1\nstaging .s\naside .a\npool repo/pool\nfile SHA256SUMS\n",
        ] {
            fs::write(&journal, bad).unwrap();
            let e = format!("{:#}", recover(&out).unwrap_err());
            assert!(e.contains(".bundle.airlock-takeover"), "{e}");
            assert!(out.join("repo/pool/main/g/gone.deb").exists());
        }
    }
}
