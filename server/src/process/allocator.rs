//! Giving freed memory back to the kernel, during storms and when the
//! server goes quiet.
//!
//! mimalloc holds memory it has freed for a while (a second by default, in
//! the mimalloc 3 the server links; 10 ms in mimalloc 2) before
//! it gives it back, and only gives it back when the thread that freed it
//! calls the allocator again. Under a storm of large values that is a lot
//! of memory: with `--max-memory 32M` and 8 writers of values up to 8 MiB,
//! RSS peaked at about 155 MiB with 30 MiB of entries and 16 MiB of
//! requests in flight; with the delay at 0 it peaked at about 70 MiB
//! (`hostile -- storm`, see BENCHMARKS.md). The price is a page fault for
//! each page of memory used again; it is a small share of what writing a
//! large value costs anyway, and for small values, which reuse pages that
//! never empty, it did not show. So [`purge_at_once`] sets the delay to 0 at
//! start, unless `MIMALLOC_PURGE_DELAY` is set (mimalloc reads that itself).
//!
//! A worker thread that goes idle after a storm still keeps what it freed
//! but has not purged yet. So each runtime worker calls [`collect_when_idle`] as it parks
//! (tokio's `on_thread_park`): at most once a second per thread, it asks
//! mimalloc to free that thread's empty pages and purge what is pending.
//! A worker's last park before a quiet spell may come too soon after its
//! previous collection, so [`wake_workers`] runs every second and gives
//! each worker a reason to wake and park again.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_t`, in
/// mimalloc.h, the same in 2.x and 3.x), which the bindings do not name.
const PURGE_DELAY_OPTION: libmimalloc_sys::mi_option_t = 15;

/// Least time between two collections on one thread.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

thread_local! {
    static LAST_COLLECTED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Returns this thread's free memory to the kernel if it has not done so
/// in the last second. Meant for a worker about to park; does nothing
/// useful (but no harm) when mimalloc is not the global allocator.
pub fn collect_when_idle() {
    let now = Instant::now();
    let due = LAST_COLLECTED.with(|last| match last.get() {
        Some(at) if now.duration_since(at) < MIN_INTERVAL => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    if due {
        collect();
    }
}

/// Every second, spawns one empty task per runtime worker, so that workers
/// parked since a storm wake, park again and collect. Runs until the
/// runtime stops.
pub async fn wake_workers() {
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let mut ticks = tokio::time::interval(MIN_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for _ in 0..workers {
            tokio::spawn(async {});
        }
    }
}

/// Makes mimalloc give memory back to the kernel as soon as it is free
/// rather than a second later, unless `MIMALLOC_PURGE_DELAY` says otherwise.
/// Call once at start; does nothing useful (but no harm) when mimalloc is
/// not the global allocator.
#[allow(unsafe_code)]
pub fn purge_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` takes no pointers; mimalloc reads this
    // option each time it decides whether to purge, so setting it while
    // threads allocate is allowed.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY_OPTION, 0) };
}

/// Frees this thread's empty pages and purges the memory mimalloc holds
/// for reuse.
#[allow(unsafe_code)]
fn collect() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any
    // thread at any time; it only walks mimalloc's own structures.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_option_is_mimallocs() {
        // SAFETY: reading an option takes no pointers.
        let get = || unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY_OPTION) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert!(
                [10, 1000].contains(&get()),
                "mimalloc's documented default purge delay (2.x: 10 ms, 3.x: 1000 ms)"
            );
        }
        purge_at_once();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(), 0);
        }
    }

    #[test]
    fn collects_at_most_once_a_second_per_thread() {
        collect_when_idle();
        let first = LAST_COLLECTED.with(Cell::get).expect("collected");
        collect_when_idle();
        assert_eq!(LAST_COLLECTED.with(Cell::get), Some(first));
    }
}
