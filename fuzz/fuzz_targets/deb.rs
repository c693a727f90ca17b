//! The .deb reader (ar framing, control member, control paragraph), fed in
//! uneven chunks as files stream past.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut scanner = airlock::build::repo::deb::DebScanner::new();
    let chunk = 1 + data.first().copied().unwrap_or(0) as usize;
    for c in data.chunks(chunk) {
        scanner.feed(c);
    }
    if let Ok(p) = scanner.finish() {
        // What it accepts is one paragraph that prints and parses back.
        let again = airlock::build::repo::control::Paragraph::parse(&p.to_text()).expect("round trip");
        assert_eq!(again, p);
    }
});
