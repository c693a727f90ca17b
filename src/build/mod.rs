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
