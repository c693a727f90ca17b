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
    if let Ok(text) = std::str::from_utf8(body)
        && let Ok(all) = airlock::build::repo::control::parse_all(text)
    {
        // A paragraph (one string and its fields' bounds) reads back as
        // it was, and keeps every other field through a change.
        for p in all {
            let again = airlock::build::repo::control::Paragraph::parse(&p.to_text());
            assert_eq!(again.as_ref(), Ok(&p));
            let mut q = p.clone();
            let first = p.to_text().split(':').next().unwrap_or_default().to_string();
            if first.eq_ignore_ascii_case("Filename") {
                continue;
            }
            q.set("Filename", "pool/main/x/x_1_amd64.deb");
            q.set(&first, "changed");
            assert_eq!(q.get("filename"), Some("pool/main/x/x_1_amd64.deb"));
            assert_eq!(q.get(&first), Some("changed"));
            q.remove(&first);
            assert_eq!(q.get(&first), None);
            assert_eq!(q.get("FILENAME"), Some("pool/main/x/x_1_amd64.deb"));
        }
    }
});
