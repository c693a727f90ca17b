//! Work spread over the cores, and the progress bar long work shows on a
//! terminal (and not in a pipe). Shared by the repository build, the bundle's
//! manifest and `verify`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes each worker reads at a time.
pub const BUF_SIZE: usize = 1 << 20;

/// One thread per core (at least one), or `jobs` when it is not 0.
pub fn threads(jobs: usize) -> usize {
    if jobs > 0 {
        jobs
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}

/// `f` applied to every item on `threads` workers, each with its own
/// `BUF_SIZE` buffer; results in the items' order. Memory stays one buffer
/// per worker, whatever the items' sizes.
pub fn map_buffered<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T, &mut [u8]) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut buf = vec![0u8; BUF_SIZE];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items.len() {
                        break;
                    }
                    let r = f(&items[i], &mut buf);
                    out.lock().expect("no panic while held")[i] = Some(r);
                }
            });
        }
    });
    out.into_inner()
        .expect("workers finished")
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// A byte-counting bar labelled `what`, or a hidden one when `show` is false.
pub fn progress_bar(show: bool, total: u64, what: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} {{msg}} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order() {
        let items: Vec<usize> = (0..1000).collect();
        let out = map_buffered(&items, 3, |i, buf| i * 2 + buf.len() - BUF_SIZE);
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
    }
}
