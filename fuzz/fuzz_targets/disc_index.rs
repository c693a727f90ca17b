//! A disc's Packages index (plain, gzip or xz, chosen by the first byte).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (name, body) = match data.split_first() {
        Some((b, rest)) if b % 3 == 1 => ("Packages.gz", rest),
        Some((b, rest)) if b % 3 == 2 => ("Packages.xz", rest),
        Some((_, rest)) => ("Packages", rest),
        None => return,
    };
    let _ = airlock::build::repo::parse_disc_packages(name, body);
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = airlock::build::repo::control::parse_all(text);
    }
});
