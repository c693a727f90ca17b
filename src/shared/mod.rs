//! The contract between the builder and the runner: what both read and
//! write. Imports nothing from `build` or `vm`.

pub(crate) mod basetar;
pub mod delta;
pub mod exit;
pub(crate) mod inventory;
pub mod iso;
pub(crate) mod journal;
pub mod keyring;
pub(crate) mod manifest;
pub(crate) mod par;
pub(crate) mod paths;
pub mod render;
pub mod report;
pub mod role;
pub(crate) mod staging;
pub mod status;
pub mod tarform;
pub(crate) mod timefmt;
pub mod volumes;
pub(crate) mod writer;

/// Lower-case hex of `bytes` (hashes in indexes, manifests, ids).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
