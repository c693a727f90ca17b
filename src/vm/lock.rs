//! One `prepare` or `update` at a time: both rewrite `/opt/airlock` (the
//! kept bundles, the `current` link, the trusted key, the runner), and two
//! at once would remove each other's staging directories. Each takes an
//! exclusive `flock` on [`paths::LOCK`] for the whole operation; a second
//! one is refused at once, naming the process that holds it.
//!
//! The lock file is the one file not written through the writer: a lock
//! lives on its inode, so it is opened in place, never replaced. It holds
//! the pid and the command of its holder, for the refusal to name.

use std::fs;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::shared::paths;
use crate::shared::writer::create_dirs;
use crate::vm::engine::under;

/// The lock, held until dropped (closing the file releases it; a killed
/// holder's lock goes with its process).
#[derive(Debug)]
pub struct Lock {
    file: fs::File,
}

impl Lock {
    /// Takes the lock under `root` for `what` (`update`, `prepare`), or
    /// refuses at once when another process holds it.
    pub fn take(root: &Path, what: &str) -> Result<Lock> {
        let path = under(root, paths::LOCK);
        create_dirs(path.parent().expect("an absolute path has a parent"))?;
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        // flock(2) through rustix (`File::try_lock` needs Rust 1.89; the
        // crate builds with 1.88).
        use rustix::fs::{FlockOperation, flock};
        if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if e != rustix::io::Errno::WOULDBLOCK {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("locking {}", path.display()));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            bail!(refusal(&path, &holder, what));
        }
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{} airlock-firstboot {what}", std::process::id()))
            .with_context(|| format!("writing this process's id into {}", path.display()))?;
        Ok(Lock { file })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // The pid of a process that is gone would only mislead.
        let _ = self.file.set_len(0);
    }
}

/// Why `what` may not run now: `path` is held by the process `holder`
/// names (`PID airlock-firstboot COMMAND`; empty while it is being written).
fn refusal(path: &Path, holder: &str, what: &str) -> String {
    let holder = holder.trim();
    let pid = holder.split_whitespace().next().unwrap_or_default();
    let who = match holder.split_once(' ') {
        Some((_, cmd)) => format!("pid {pid} ({cmd})"),
        None if !pid.is_empty() => format!("pid {pid}"),
        None => "a process that has not written its pid yet".to_string(),
    };
    format!(
        "another prepare or update runs on this VM: {} is locked by {who}; nothing was changed. Wait for it to finish (`ps -p {}`), then run `airlock-firstboot {what}` again",
        path.display(),
        if pid.is_empty() { "PID" } else { pid }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_path(root: &Path) -> std::path::PathBuf {
        under(root, paths::LOCK)
    }

    #[test]
    fn a_second_lock_is_refused_naming_the_file_and_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let held = Lock::take(root, "update").unwrap();
        let text = fs::read_to_string(lock_path(root)).unwrap();
        assert_eq!(
            text,
            format!("{} airlock-firstboot update\n", std::process::id())
        );
        // flock locks belong to the open file: a second open in this
        // process conflicts as another process's would.
        let e = Lock::take(root, "prepare").unwrap_err().to_string();
        assert!(e.contains(&lock_path(root).display().to_string()), "{e}");
        assert!(
            e.contains(&format!(
                "pid {} (airlock-firstboot update)",
                std::process::id()
            )),
            "{e}"
        );
        assert!(e.contains("run `airlock-firstboot prepare` again"), "{e}");
        drop(held);
        assert_eq!(fs::read_to_string(lock_path(root)).unwrap(), "");
        let again = Lock::take(root, "prepare").unwrap();
        drop(again);
    }

    #[test]
    fn a_holder_that_wrote_nothing_yet_is_named_as_such() {
        let e = refusal(Path::new("/opt/airlock/lock"), "", "update");
        assert!(e.contains("not written its pid yet"), "{e}");
        assert!(e.contains("`ps -p PID`"), "{e}");
        let e = refusal(Path::new("/opt/airlock/lock"), "42\n", "update");
        assert!(e.contains("locked by pid 42;"), "{e}");
    }
}
