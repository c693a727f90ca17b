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

/// Nothing of a bundle was put in place under the VM root `root`: no
/// `/opt/airlock`, or one that holds only the lock `prepare` took (and
/// emptied when it ended).
pub fn nothing_prepared(root: &Path) -> bool {
    let dir = root.join("opt/airlock");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return true;
    };
    let names: Vec<String> = rd
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names == ["lock"] && std::fs::read(dir.join("lock")).unwrap().is_empty()
}

/// `gpgv --status-fd 1 --keyring KEYRING ARGS`: its exit code and its
/// status lines (`[GNUPG:] GOODSIG …`, `NO_PUBKEY …`).
pub fn gpgv_status(keyring: &Path, args: &[&Path]) -> (i32, String) {
    let out = Command::new("gpgv")
        .arg("--status-fd")
        .arg("1")
        .arg("--keyring")
        .arg(keyring)
        .args(args)
        .output()
        .expect("running gpgv");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The primary key fingerprints of a keyring file, in its order.
pub fn fingerprints(keyring: &Path) -> Vec<String> {
    airlock::shared::keyring::Keyring::load(keyring)
        .unwrap()
        .keys()
        .into_iter()
        .map(|k| k.fingerprint)
        .collect()
}

/// What gpgv says of a file two keys signed, given the keyring of one:
/// a good, valid signature by `good` and one by `other` it has no key for,
/// nothing bad; it exits 2 for the signature it cannot check (measured
/// with gpgv 2.2.40: "Can't check signature: No public key"), where apt
/// takes the good one and leaves the other.
pub fn assert_gpgv_good_by_one_of_two(keyring: &Path, good: &str, other: &str, args: &[&Path]) {
    let (code, status) = gpgv_status(keyring, args);
    assert!(
        status.contains(&format!("[GNUPG:] VALIDSIG {good} ")),
        "{args:?}: no valid signature by {good}:\n{status}"
    );
    assert!(
        status.contains(&format!(
            "[GNUPG:] NO_PUBKEY {}",
            &other[other.len() - 16..]
        )),
        "{args:?}: the other signature is not there:\n{status}"
    );
    for bad in ["BADSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG"] {
        assert!(!status.contains(bad), "{args:?}: {bad}:\n{status}");
    }
    assert_eq!(status.matches("GOODSIG").count(), 1, "{status}");
    assert_eq!(code, 2, "{args:?}:\n{status}");
}
