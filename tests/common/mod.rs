//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `airlock` binary cargo built for these tests.
pub fn airlock_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_airlock"))
}

/// The repository's top directory.
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What a finished command said.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub mod discs;

/// Runs `airlock ARGS` in `dir`.
pub fn airlock(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(airlock_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("running airlock");
    Run::from_output(out)
}

/// In `dir`: the demo's media, recipe and bundle (`d/`) and a site key
/// (`keys/`), as most bundle tests start.
pub fn demo_site(dir: &Path) {
    for args in [
        &["demo", "--out", "d"][..],
        &["keygen", "--out", "keys"][..],
    ] {
        let run = airlock(dir, args);
        assert_eq!(run.code, 0, "airlock {args:?}: {}", run.stderr);
    }
}
