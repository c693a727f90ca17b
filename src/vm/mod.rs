//! The VM wing: `airlock-firstboot`, the runner on each cloned VM.
//!
//! - [`cli`]: the command line (`run`, `status`, `prepare`, `role`, `token`,
//!   `pg-guard`, `rejoin`, `answer`, `quorum`, `promote`, `report`,
//!   `update`) and
//!   its exit codes;
//! - [`clusterstatus`]: one status for the whole cluster, over the peer
//!   channel, and the DB state file root writes for it;
//! - [`peer`]: the questions the cluster's hosts ask each other over SSH;
//! - [`quorum`]: the DB pair's split-brain guard, the dispatchers as
//!   witnesses;
//! - [`sync`]: synchronous replication, its degrade and promotion rule;
//! - [`discovery`]: who this VM is (role file, seed disc, inventory);
//! - [`prepare`]: the reference VM, before cloning;
//! - [`engine`]: steps, their context, waits and the journal;
//! - [`exec`]: the one command runner (and its recording fake);
//! - [`guard`]: PostgreSQL's start guard, so a returning old master never
//!   comes back writable;
//! - [`report`]: this host's section of the as-built report;
//! - [`update`]: the bundle a prepared VM keeps, moved on with a delta;
//! - [`lock`]: one `prepare` or `update` at a time;
//! - [`roles`]: one file per role.

pub mod cli;
pub(crate) mod clusterstatus;
pub mod discovery;
pub(crate) mod edits;
pub(crate) mod engine;
pub(crate) mod exec;
pub(crate) mod guard;
pub(crate) mod lock;
pub(crate) mod peer;
pub(crate) mod prepare;
pub(crate) mod quorum;
pub(crate) mod rejoin;
pub mod report;
pub mod roles;
pub(crate) mod sync;
pub(crate) mod update;
pub(crate) mod zps;

#[cfg(test)]
pub(crate) mod testing;
