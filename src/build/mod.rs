//! The builder wing: `airlock` at the secure site.

pub mod bundle;
pub mod check;
pub mod cli;
pub(crate) mod cloudinit;
pub mod delta;
pub mod demo;
pub mod diff;
pub mod elfcheck;
pub mod inspect;
pub(crate) mod isowrite;
pub(crate) mod media;
pub(crate) mod outdir;
pub mod plan;
pub mod recipe;
pub mod repo;
pub mod report;
pub mod resolve;
pub mod sbom;
pub(crate) mod secrets;
pub(crate) mod seed;
pub mod sign;
pub(crate) mod takeover;
pub mod volumes;

/// A hard link to `from` at `to` (same file system: no bytes copied), else
/// a copy.
pub(crate) fn link_or_copy(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}
