//! The role file a clone reads (from its seed, or a person's edit).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(role) = airlock::shared::role::RoleFile::parse(text, "fuzz") {
        let _ = airlock::vm::roles::steps_for(&role);
        let _ = role.to_toml();
    }
});
