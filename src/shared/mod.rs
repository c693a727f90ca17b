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

/// airlock's version as both binaries carry it: a marked string a reader
/// of the file finds without running it (`airlock inspect` reads the
/// shipped runner's). The runner's `--version` prints it through
/// [`version`], so the string is in the binary.
pub static VERSION_MARK: &str = concat!("airlock-version=", env!("CARGO_PKG_VERSION"), ";");

const VERSION_PREFIX: &str = "airlock-version=";

/// This airlock's version (`0.1.0`), taken from [`VERSION_MARK`].
pub fn version() -> &'static str {
    VERSION_MARK
        .strip_prefix(VERSION_PREFIX)
        .and_then(|v| v.strip_suffix(';'))
        .unwrap_or(VERSION_MARK)
}

/// The version a binary carries in its [`VERSION_MARK`], if it has one
/// (the first well-formed one: digits, dots, letters, `-` and `+`).
pub fn version_in(binary: &[u8]) -> Option<String> {
    let prefix = VERSION_PREFIX.as_bytes();
    let mut at = 0;
    while let Some(i) = binary[at..].windows(prefix.len()).position(|w| w == prefix) {
        let start = at + i + prefix.len();
        let rest = &binary[start..binary.len().min(start + 64)];
        if let Some(end) = rest.iter().position(|b| *b == b';') {
            let v = &rest[..end];
            let ok = !v.is_empty()
                && v.iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-+.".contains(b));
            if ok {
                return Some(String::from_utf8_lossy(v).into_owned());
            }
        }
        at = start;
    }
    None
}

#[cfg(test)]
mod version_tests {
    #[test]
    fn the_version_is_found_in_a_binary_and_in_this_one() {
        assert_eq!(super::version(), env!("CARGO_PKG_VERSION"));
        // Put together at run time: a literal mark would be found in this
        // test's own binary before the real one.
        let mark = super::VERSION_PREFIX.as_bytes();
        let blob = [b"xx ", mark, b";", mark, b"1.2.3-rc1;\0"].concat();
        assert_eq!(super::version_in(&blob).as_deref(), Some("1.2.3-rc1"));
        assert_eq!(super::version_in(b"nothing"), None);
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(super::version_in(&me).as_deref(), Some(super::version()));
    }
}
