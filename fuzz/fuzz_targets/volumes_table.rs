//! The table of volumes (`VOLUMES`) a disc brings: what parses must render
//! back to the same text, and reading it never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(table) = airlock::shared::volumes::Table::parse(text) {
        let again = airlock::shared::volumes::Table::parse(&table.render()).expect("renders back");
        assert_eq!(again, table);
    }
});
