//! The contract between the builder and the runner: what both read and
//! write. Imports nothing from `build` or `vm`.

pub mod inventory;
pub mod iso;
pub mod journal;
pub mod keyring;
pub mod manifest;
pub mod par;
pub mod paths;
pub mod render;
pub mod role;
pub mod tarform;
pub mod timefmt;
pub mod writer;

/// Lower-case hex of `bytes` (hashes in indexes, manifests, ids).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
