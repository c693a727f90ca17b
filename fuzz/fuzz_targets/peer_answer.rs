//! What another host answers to `status` over the peer channel (one line
//! of JSON that `status --cluster` reads).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(status) = airlock::shared::status::HostStatus::parse(text) {
        let _ = format!("{status:?}");
    }
});
