//! The VM wing: `airlock-firstboot`, the runner on each cloned VM.
//!
//! - [`cli`]: the command line (`run`, `status`, `prepare`, `role`, `token`,
//!   `pg-guard`) and its exit codes;
//! - [`discovery`]: who this VM is (role file, seed disc, inventory);
//! - [`prepare`]: the reference VM, before cloning;
//! - [`engine`]: steps, their context, waits and the journal;
//! - [`exec`]: the one command runner (and its recording fake);
//! - [`guard`]: PostgreSQL's start guard, so a returning old master never
//!   comes back writable;
//! - [`roles`]: one file per role.

pub mod cli;
pub mod discovery;
pub mod edits;
pub mod engine;
pub mod exec;
pub mod guard;
pub mod prepare;
pub mod roles;
pub mod zps;

#[cfg(test)]
pub(crate) mod testing;
