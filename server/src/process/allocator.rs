//! Giving freed memory back to the kernel when the server goes quiet.
//!
//! mimalloc keeps the pages a thread frees for its next allocations and
//! returns them to the kernel later, but only when that thread calls the
//! allocator again. A worker thread that goes idle after a storm of large
//! values therefore keeps what it freed: with `--max-memory 32M` and values
//! up to 8 MiB, the server sat at about 115 to 180 MiB of RSS a second after
//! the writers stopped, for 32 MiB of entries (`hostile -- storm`, see
//! BENCHMARKS.md). Purging at once on every free (`MIMALLOC_PURGE_DELAY=0`)
//! fixes that but halved the storm's write rate.
//!
//! Instead, each runtime worker calls [`collect_when_idle`] as it parks
//! (tokio's `on_thread_park`): at most once a second per thread, it asks
//! mimalloc to free that thread's empty pages and purge what is pending.
//! A worker's last park before a quiet spell may come too soon after its
//! previous collection, so [`wake_workers`] runs every second and gives
//! each worker a reason to wake and park again.

use std::cell::Cell;
use std::time::{Duration, Instant};

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
    fn collects_at_most_once_a_second_per_thread() {
        collect_when_idle();
        let first = LAST_COLLECTED.with(Cell::get).expect("collected");
        collect_when_idle();
        assert_eq!(LAST_COLLECTED.with(Cell::get), Some(first));
    }
}
