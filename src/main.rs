//! `airlock`, the builder. Everything lives in the library; see `airlock --help`.

fn main() -> std::process::ExitCode {
    fixed_mmap_threshold();
    airlock::build::cli::main()
}

/// Keeps glibc's malloc from holding on to what the workers free. Each
/// time a block above its mmap threshold (128 KiB) is freed, glibc raises
/// the threshold to that block's size, so the next ones (xz's dictionary
/// for each package's control member, read buffers) come from the
/// threads' arenas and their pages stay resident after they are freed:
/// 57–64 MiB peak on 2,428 packages instead of 44 MiB (BENCHMARKS.md).
/// Setting the threshold once turns that adjustment off.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fixed_mmap_threshold() {
    // SAFETY: mallopt only changes malloc's tuning, and it runs before
    // any other thread exists. Its result (0 when refused) changes nothing
    // but memory use.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fixed_mmap_threshold() {}
