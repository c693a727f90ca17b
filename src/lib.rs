//! airlock: turn a cluster recipe and the install discs into one verified
//! bundle for an air-gapped site, and let cloned VMs configure themselves into
//! a fault-tolerant Space VDI 5.4 cluster.
//!
//! Three wings:
//! - [`build`]: the builder at the secure site (`airlock`): recipe, plan,
//!   discs, repository, seeds, bundle (only with the `builder` feature);
//! - [`vm`]: the runner on each clone (`airlock-firstboot`);
//! - [`shared`]: the contract both read: VM paths, the role file, the
//!   inventory, the journal, the manifest and its verification, ISO reading,
//!   the VM files' renderers, the atomic writer.
//!
//! `vm` and `shared` import nothing from `build` (`just lint` builds them
//! without it).

// Built without the builder (the runner alone), the half of the contract
// only the builder uses (writing the tar form, hashing a bundle) is unused.
#![cfg_attr(not(feature = "builder"), allow(dead_code))]

#[cfg(feature = "builder")]
pub mod build;
pub mod shared;
pub mod vm;
