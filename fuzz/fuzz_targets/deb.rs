//! The .deb reader (ar framing, control member, control paragraph), fed in
//! uneven chunks as files stream past.
#![no_main]
use airlock::build::repo::deb::DebScanner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let chunk = 1 + data.first().copied().unwrap_or(0) as usize;
    let scan = || {
        let mut scanner = DebScanner::new();
        for c in data.chunks(chunk) {
            scanner.feed(c);
        }
        scanner
    };
    let index = scan().finish();
    // The report's reading keeps the md5sums the index's reads past: both
    // take and refuse the same packages, with the same control.
    let report = scan().finish_with_md5sums();
    assert_eq!(
        index.as_ref().ok(),
        report.as_ref().ok().map(|(p, _)| p),
        "{index:?} / {report:?}"
    );
    if let Ok(p) = index {
        // What it accepts is one paragraph that prints and parses back.
        let again = airlock::build::repo::control::Paragraph::parse(&p.to_text()).expect("round trip");
        assert_eq!(again, p);
    }
});
