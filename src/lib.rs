//! airlock: turn a cluster recipe and the install discs into one verified
//! bundle for an air-gapped site, and let cloned VMs configure themselves into
//! a fault-tolerant Space VDI 5.4 cluster.

pub mod bundle;
pub mod cli;
pub mod control;
pub mod deb;
pub mod debpolicy;
pub mod demo;
pub mod edits;
pub mod elfcheck;
pub mod iso;
pub mod journal;
pub mod media;
pub mod outdir;
pub mod par;
pub mod payload;
pub mod plan;
pub mod recipe;
pub mod repo;
pub mod role;
pub mod secrets;
pub mod seed;
pub mod sign;
pub mod tarform;
pub mod timefmt;
pub mod vm;
pub mod writer;
