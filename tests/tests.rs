//! The one integration-test binary; each module covers one part of airlock.

mod bake;
mod bundle;
mod check;
mod common;
mod delta;
mod delta_volumes;
mod docs;
mod firstboot;
mod hostile;
mod hostile_discs;
mod inspect;
mod offline;
mod plan;
mod repo;
mod report;
mod sbom;
mod volumes;
