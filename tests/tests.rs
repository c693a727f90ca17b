//! The one integration-test binary; each module covers one part of airlock.

mod common;
mod plan;
mod repo;
