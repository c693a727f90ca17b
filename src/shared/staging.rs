//! A staging directory beside an output, renamed into place only when it is
//! complete: a failed or interrupted build leaves the old output as it was.
//! Used by `airlock build` and `repo build` for their outputs and by
//! `airlock-firstboot prepare` for the trees it copies onto the image.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A directory `.<name>.airlock-tmp-<pid>` beside the output `<name>`,
/// removed when dropped unless [`Staging::replace`] moved it into place.
#[derive(Debug)]
pub struct Staging {
    path: PathBuf,
    armed: bool,
}

impl Staging {
    /// Creates the staging directory for `out` (and `out`'s parent if
    /// needed); a stale one from a crashed run with the same pid goes.
    pub fn beside(out: &Path) -> Result<Staging> {
        Staging::beside_tagged(out, "airlock-tmp")
    }

    /// [`Staging::beside`] named `.<name>.<tag>-<pid>`, for a second
    /// staging directory beside the same output.
    pub fn beside_tagged(out: &Path, tag: &str) -> Result<Staging> {
        let path = sibling(out, tag)?;
        let parent = path.parent().expect("a sibling has a parent");
        fs::create_dir_all(parent)
            .with_context(|| format!("creating the output's parent {}", parent.display()))?;
        if path.exists() {
            fs::remove_dir_all(&path)
                .with_context(|| format!("removing a stale {}", path.display()))?;
        }
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Staging { path, armed: true })
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands the directory over: it is no longer removed when dropped (for
    /// a caller that journals what becomes of it).
    pub fn keep(mut self) -> PathBuf {
        self.armed = false;
        std::mem::take(&mut self.path)
    }

    /// Puts the staged tree where `target` is (see [`replace_dir`]).
    pub fn replace(mut self, target: &Path) -> Result<()> {
        replace_dir(&self.path, target)?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// `.<name>.<tag>-<pid>` beside `out`.
pub fn sibling(out: &Path, tag: &str) -> Result<PathBuf> {
    let name = out
        .file_name()
        .with_context(|| format!("{}: the output must name a directory", out.display()))?
        .to_string_lossy();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok(parent.join(format!(".{name}.{tag}-{}", std::process::id())))
}

/// Puts `new` where `target` is, atomically as far as rename allows: the old
/// directory is moved aside first and removed after; if the second rename
/// fails the old one is put back.
pub fn replace_dir(new: &Path, target: &Path) -> Result<()> {
    replace_dir_via(new, target, &sibling(target, "airlock-old")?)
}

/// [`replace_dir`] with the old directory moved to `aside` on the way.
pub fn replace_dir_via(new: &Path, target: &Path, aside: &Path) -> Result<()> {
    if !target.exists() {
        return fs::rename(new, target)
            .with_context(|| format!("moving the new build to {}", target.display()));
    }
    fs::rename(target, aside)
        .with_context(|| format!("moving the old {} aside", target.display()))?;
    if let Err(e) = fs::rename(new, target) {
        let _ = fs::rename(aside, target);
        return Err(e).with_context(|| format!("moving the new build to {}", target.display()));
    }
    fs::remove_dir_all(aside).with_context(|| format!("removing the old build {}", aside.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_stage_leaves_the_old_output_alone() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("old"), "1").unwrap();
        {
            let s = Staging::beside(&out).unwrap();
            fs::write(s.path().join("new"), "2").unwrap();
        }
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out"]);
        assert!(out.join("old").exists());
    }

    #[test]
    fn replace_swaps_the_whole_tree() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("old"), "1").unwrap();
        let s = Staging::beside(&out).unwrap();
        fs::write(s.path().join("new"), "2").unwrap();
        s.replace(&out).unwrap();
        assert!(out.join("new").exists() && !out.join("old").exists());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out"]);
    }
}
