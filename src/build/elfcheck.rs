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
