//! The builder wing: `airlock` at the secure site.

pub mod bundle;
pub mod cli;
pub mod cloudinit;
pub mod demo;
pub mod elfcheck;
pub mod isowrite;
pub mod media;
pub mod outdir;
pub mod plan;
pub mod recipe;
pub mod repo;
pub mod secrets;
pub mod seed;
pub mod sign;
