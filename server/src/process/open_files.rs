//! The open-file limit, raised at start as far as the process may.
//!
//! A socket is a file: with the soft limit most shells and service managers
//! hand down (often 1 024), a server that also holds its own files runs out
//! of descriptors long before it runs out of anything else, and then every
//! new client fails. The soft limit is raised to the hard one, and the
//! connection cap is kept below what that leaves.

use std::io;

/// Descriptors kept back from the connection cap for the listener, the
/// admin listener, logs, trace export and files the server opens.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// Raises the soft open-file limit to the hard limit; returns the soft
/// limit now in force (`u64::MAX` for none, or on systems without limits).
///
/// # Errors
/// The kernel refused to read or change the limit.
///
/// # Examples
/// ```
/// let limit = shoal_server::process::open_files::raise_limit().expect("rlimit");
/// assert!(limit > shoal_server::process::open_files::RESERVED_DESCRIPTORS);
/// ```
pub fn raise_limit() -> io::Result<u64> {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
        if soft < hard {
            setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
        }
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
        Ok(soft)
    }
    #[cfg(not(target_os = "linux"))]
    Ok(u64::MAX)
}

/// The connection cap to use: `wanted`, lowered to stay
/// [`RESERVED_DESCRIPTORS`] below an open-file limit of `limit`.
pub fn connection_cap(wanted: u64, limit: u64) -> u64 {
    wanted
        .min(limit.saturating_sub(RESERVED_DESCRIPTORS))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_descriptor_limit() {
        assert_eq!(connection_cap(10_000, 1_024), 960);
        assert_eq!(connection_cap(500, 1_024), 500);
        assert_eq!(connection_cap(10_000, u64::MAX), 10_000);
        assert_eq!(connection_cap(10_000, 10), 1);
    }
}
