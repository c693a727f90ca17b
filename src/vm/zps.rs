//! Astra's closed software environment (ZPS): with `DIGSIG_ELF_MODE=1`
//! only ELF files signed with the site's key run. The runner says so when it
//! finds ZPS on and itself unsigned.

/// Whether an ELF file carries a bsign signature section (`.signature`,
/// where bsign embeds its hash and signature).
use object::Object;

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
