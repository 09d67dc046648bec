//! The shoal cache server.
//!
//! - [`engine`]: the cache itself, usable in-process.

pub mod engine;
