//! The ISO 9660 reader (discs and seeds are read this way, never mounted).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    // hadris-iso reads a File: the input goes into an unlinked file in /dev/shm.
    let Ok(mut f) = tempfile::tempfile_in("/dev/shm") else {
        return;
    };
    if f.write_all(data).is_err() {
        return;
    }
    if let Ok(files) = airlock::shared::iso::list_files(&f, data.len() as u64) {
        for file in files {
            // Every listed name stays inside the disc and every extent inside the image.
            assert!(!file.path.split('/').any(|p| p == ".." || p.is_empty()));
            if let airlock::shared::iso::Location::Extents(e) = &file.location {
                assert!(e.iter().all(|&(o, n)| o.checked_add(n).is_some()));
            }
        }
    }
});
