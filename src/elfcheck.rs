//! Checks that the runner shipped in a bundle runs on Astra SE 1.7, whose
//! glibc is 2.28: the highest `GLIBC_x.y` version the ELF file needs (from
//! its dynamic string table), or none for a static binary.

use anyhow::{Context, Result, bail};
use object::{Object, ObjectSection};

/// The glibc of Astra Linux SE 1.7 (Debian 10 based).
pub const ASTRA_GLIBC: (u32, u32) = (2, 28);

/// The highest glibc version `elf` needs, or None when it needs none
/// (static, or musl).
pub fn max_glibc(elf: &[u8]) -> Result<Option<(u32, u32)>> {
    let file = object::File::parse(elf).context("not an ELF file")?;
    let Some(dynstr) = file.section_by_name(".dynstr") else {
        return Ok(None);
    };
    let data = dynstr.data().context("reading .dynstr")?;
    let mut max = None;
    for s in data.split(|b| *b == 0) {
        let Some(v) = s.strip_prefix(b"GLIBC_") else {
            continue;
        };
        let v = String::from_utf8_lossy(v);
        let mut parts = v.split('.').map(|p| p.parse::<u32>());
        if let (Some(Ok(a)), Some(Ok(b))) = (parts.next(), parts.next()) {
            max = max.max(Some((a, b)));
        }
    }
    Ok(max)
}

/// Refuses a runner that needs a newer glibc than Astra SE 1.7 has.
pub fn check_runner(path: &std::path::Path, elf: &[u8]) -> Result<()> {
    match max_glibc(elf).with_context(|| format!("checking the runner {}", path.display()))? {
        Some(v) if v > ASTRA_GLIBC => bail!(
            "the runner {} needs GLIBC_{}.{}, but Astra Linux SE 1.7 has glibc {}.{}: build it with `just runner` (static musl or glibc 2.28 via cargo-zigbuild) and pass --runner",
            path.display(),
            v.0,
            v.1,
            ASTRA_GLIBC.0,
            ASTRA_GLIBC.1
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_has_a_glibc_version() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let v = max_glibc(&me).unwrap();
        assert!(v.is_some_and(|v| v >= (2, 2)), "{v:?}");
    }

    #[test]
    fn garbage_is_not_elf() {
        assert!(max_glibc(b"#!/bin/sh\n").is_err());
    }
}

/// Whether an ELF file carries a bsign signature section (`.signature`,
/// where bsign embeds its hash and signature).
pub fn has_bsign_section(elf: &[u8]) -> bool {
    object::File::parse(elf)
        .ok()
        .is_some_and(|f| f.section_by_name(".signature").is_some())
}

/// Whether Astra's closed software environment (ZPS) checks ELF signatures:
/// `DIGSIG_ELF_MODE=1` in /etc/digsig/digsig_initramfs.conf under `root`.
pub fn zps_enforced(root: &std::path::Path) -> bool {
    std::fs::read_to_string(root.join("etc/digsig/digsig_initramfs.conf")).is_ok_and(|t| {
        t.lines().any(|l| {
            let l = l.trim();
            !l.starts_with('#') && l.replace(' ', "") == "DIGSIG_ELF_MODE=1"
        })
    })
}

/// A hint when ZPS would refuse this runner: it must be signed with the
/// site's key (`bsign --sign`) before the clones boot.
pub fn zps_hint(root: &std::path::Path, runner: &[u8], runner_path: &str) -> Option<String> {
    (zps_enforced(root) && !has_bsign_section(runner)).then(|| {
        format!(
            "the closed software environment is on (DIGSIG_ELF_MODE=1) and {runner_path} carries no bsign signature: sign it with the site's key (bsign --sign {runner_path}) on the reference VM before cloning, or the clones will refuse to run it"
        )
    })
}

#[cfg(test)]
mod zps_tests {
    use super::*;

    #[test]
    fn hint_only_when_enforced_and_unsigned() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(zps_hint(dir.path(), &me, "/x").is_none());
        std::fs::create_dir_all(dir.path().join("etc/digsig")).unwrap();
        std::fs::write(
            dir.path().join("etc/digsig/digsig_initramfs.conf"),
            "# comment\nDIGSIG_ELF_MODE=1\n",
        )
        .unwrap();
        assert!(
            zps_hint(dir.path(), &me, "/x")
                .unwrap()
                .contains("bsign --sign /x")
        );
        std::fs::write(
            dir.path().join("etc/digsig/digsig_initramfs.conf"),
            "DIGSIG_ELF_MODE=0\n",
        )
        .unwrap();
        assert!(zps_hint(dir.path(), &me, "/x").is_none());
    }
}
