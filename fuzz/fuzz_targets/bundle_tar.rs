//! verify of a bundle tar (or .tar.gz), with the demo key as the keyring.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn trust() -> &'static airlock::build::bundle::Trust {
    static K: OnceLock<airlock::build::bundle::Trust> = OnceLock::new();
    K.get_or_init(|| {
        airlock::build::bundle::Trust::keyring(airlock::build::demo::demo_key().unwrap().keyring())
    })
}

fuzz_target!(|data: &[u8]| {
    let r = airlock::build::bundle::verify_tar_stream(data, trust(), "fuzz.tar");
    // Also the raw tar form alone.
    let mut tr = airlock::shared::tarform::TarReader::new(data);
    let mut buf = [0u8; 4096];
    while let Ok(Some(_)) = tr.next_entry() {
        while let Ok(n) = tr.read_data(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }
    let _ = r;
});
