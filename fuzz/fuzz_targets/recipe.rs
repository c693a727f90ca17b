//! A recipe: strict TOML model, then every cross-field check of plan.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = airlock::build::recipe::Source {
        path: "fuzz.toml".into(),
        text: text.to_string(),
    };
    if let Ok(r) = airlock::build::recipe::parse(&source) {
        let outcome = airlock::build::plan::resolve(&r, &source, airlock::build::plan::MediaCheck::Warn);
        if let Some(plan) = outcome.plan {
            let _ = plan.to_table();
        }
    }
});
