//! Exit statuses, the same for `airlock` and `airlock-firstboot`, so a
//! script at the site reads both the same way.

/// A check found a problem (`verify`, `plan`, `status`), a step failed or
/// something asked for is not there yet; what was wrong was printed.
pub const FAILED: u8 = 1;
/// The command could not do its job: bad usage, or an error reading or
/// writing a file.
pub const ERROR: u8 = 2;
/// A wait ran out before what it waits for came up; the service runs the
/// runner again (sysexits' EX_TEMPFAIL).
pub const RETRY: u8 = 75;
