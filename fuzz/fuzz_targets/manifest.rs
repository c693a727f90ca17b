//! SHA256SUMS as verify reads it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (listing, _) = airlock::build::bundle::parse_manifest(&text);
    for path in listing.keys() {
        assert!(airlock::build::bundle::safe_path(path));
    }
});
