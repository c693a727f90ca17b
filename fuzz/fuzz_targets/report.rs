//! An as-built report the site brings back to the builder (`airlock report
//! check FILE`): a whole report or one host's section.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(report) = airlock::shared::report::Report::parse(text, "fuzz") {
        let _ = format!("{report:?}");
    }
});
