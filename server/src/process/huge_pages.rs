//! Transparent huge pages, turned off for this process by default.
//!
//! mimalloc asks the kernel for transparent huge pages on the memory it
//! reserves, and a huge page is resident as a whole once any byte of it is
//! touched, and stays so until all of it is free. For a cache that is
//! memory held but not used, so RSS drifts away from the memory figure the
//! budget enforces: with one million small keys the process held 42 bytes
//! a key beyond key and value with huge pages and 38 without
//! (`memory_budget -- overhead`, see BENCHMARKS.md), and before entries
//! were packed into chunks the gap was larger. Redis turns them off for
//! itself for the same reason (its `disable-thp` setting).
//! `memory.transparent_huge_pages = true` keeps them, for deployments that
//! prefer fewer TLB misses to a tight memory figure.

use std::io;

/// Stops the kernel from backing this process's memory with transparent
/// huge pages from now on (`prctl(PR_SET_THP_DISABLE)`; the flag covers
/// every thread and is inherited by children). Pages already huge stay so,
/// so call it before the cache fills. Does nothing on other systems.
///
/// # Errors
/// The kernel refused the call (Linux before 3.15).
///
/// # Examples
/// ```
/// shoal_server::process::huge_pages::disable().expect("Linux 3.15 or later");
/// assert!(!shoal_server::process::huge_pages::enabled());
/// ```
pub fn disable() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_thp_disable(true).map_err(io::Error::from)?;
    Ok(())
}

/// Whether this process may still get transparent huge pages: false once
/// [`disable`] succeeded, and on systems without them.
pub fn enabled() -> bool {
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::get_thp_disable().is_ok_and(|disabled| !disabled)
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}
