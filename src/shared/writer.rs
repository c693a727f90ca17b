//! Every file airlock writes goes through a writer rooted at a directory:
//! paths are relative to it (no `..`), each file is written to a temporary
//! name and renamed, and a file that already holds the right bytes and mode is
//! left alone, so re-runs are idempotent. A file that is replaced keeps its
//! owner; directories it creates are 0755 whatever the umask.
//! [`MemWriter`] captures writes for tests.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Where files go.
pub trait Writer {
    /// Writes `bytes` at `rel` with `mode`; returns whether anything changed.
    fn write(&mut self, rel: &str, bytes: &[u8], mode: u32) -> Result<bool>;
}

/// Checks that `rel` stays under the root.
pub fn check_rel(rel: &str) -> Result<&Path> {
    let p = Path::new(rel);
    if rel.is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        bail!("refusing to write {rel:?}: paths must be relative and stay inside the output");
    }
    Ok(p)
}

/// Writes under a directory on disk.
#[derive(Debug, Clone)]
pub struct RootWriter {
    root: PathBuf,
}

impl RootWriter {
    pub fn new(root: impl Into<PathBuf>) -> RootWriter {
        RootWriter { root: root.into() }
    }
}

impl Writer for RootWriter {
    fn write(&mut self, rel: &str, bytes: &[u8], mode: u32) -> Result<bool> {
        let path = self.root.join(check_rel(rel)?);
        let old = fs::metadata(&path).ok();
        if let Some(meta) = &old
            && meta.permissions().mode() & 0o7777 == mode
            && meta.len() == bytes.len() as u64
            && fs::read(&path).is_ok_and(|old| old == bytes)
        {
            return Ok(false);
        }
        let dir = path
            .parent()
            .expect("a relative path under the root has a parent");
        create_dirs(dir)?;
        let tmp = dir.join(format!(
            ".{}.airlock-new",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_data())
            .with_context(|| format!("writing {}", tmp.display()))?;
        if let Some(meta) = &old {
            // Replacing a file keeps its owner (pg_hba.conf stays postgres').
            std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()))
                .with_context(|| format!("keeping the owner of {}", path.display()))?;
        }
        // create_new applies the umask; set the mode exactly.
        set_mode(&tmp, mode)?;
        fs::rename(&tmp, &path)
            .with_context(|| format!("renaming {} into place", path.display()))?;
        Ok(true)
    }
}

/// Sets the mode of `path` exactly; an error names the path.
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// Creates `dir` and its missing parents with mode 0755 exactly (the
/// umask of whoever runs airlock does not narrow them).
pub fn create_dirs(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => set_mode(dir, 0o755),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", dir.display())),
    }
}

/// The permission bits of `path`, if it exists.
pub fn mode_of(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// Captures writes in memory (for tests).
#[derive(Debug, Default, Clone)]
#[cfg(test)]
pub struct MemWriter {
    pub files: std::collections::BTreeMap<String, (Vec<u8>, u32)>,
}

#[cfg(test)]
impl Writer for MemWriter {
    fn write(&mut self, rel: &str, bytes: &[u8], mode: u32) -> Result<bool> {
        check_rel(rel)?;
        let new = (bytes.to_vec(), mode);
        Ok(self.files.insert(rel.to_string(), new.clone()) != Some(new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewriting_the_same_bytes_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = RootWriter::new(dir.path());
        assert!(w.write("a/b.txt", b"x", 0o600).unwrap());
        assert!(!w.write("a/b.txt", b"x", 0o600).unwrap());
        assert!(w.write("a/b.txt", b"x", 0o644).unwrap());
        assert!(w.write("a/b.txt", b"y", 0o644).unwrap());
        let meta = fs::metadata(dir.path().join("a/b.txt")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    }

    #[test]
    fn new_directories_are_0755_and_owners_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = RootWriter::new(dir.path());
        w.write("opt/airlock/repo/Release", b"x", 0o644).unwrap();
        for d in ["opt", "opt/airlock", "opt/airlock/repo"] {
            assert_eq!(mode_of(&dir.path().join(d)), Some(0o755), "{d}");
        }
        let p = dir.path().join("owned");
        fs::write(&p, "a").unwrap();
        if std::os::unix::fs::chown(&p, Some(1234), Some(2345)).is_ok() {
            w.write("owned", b"b", 0o640).unwrap();
            let meta = fs::metadata(&p).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid(), meta.mode() & 0o777),
                (1234, 2345, 0o640)
            );
        }
    }

    #[test]
    fn paths_leaving_the_root_are_refused() {
        let mut w = MemWriter::default();
        for bad in ["../x", "/etc/x", "a/../../x", ""] {
            assert!(w.write(bad, b"", 0o644).is_err(), "{bad}");
        }
    }
}
