//! Measurement tools for shoal: the peers and drivers its benchmarks run.
//!
//! - [`noop`]: the shoal gRPC API with no cache behind it, served by the
//!   `shoal-noop` binary, so that a network benchmark can divide shoal's
//!   figure by the cost of gRPC itself.
//! - [`bare`]: tonic alone answering Get and Set, served by the
//!   `shoal-bare` binary: the floor a unary call reaches with the library
//!   shoal is built on, with none of shoal's stack.
//! - the `shoal-trace` binary replays cache traces through shoal's eviction
//!   policies and independent caches (moka, quick_cache, an exact LRU) and
//!   prints hit ratios side by side.
//! - `benches/engine.rs` (criterion) and `examples/` measure the engine
//!   in-process: throughput, instructions per operation, latency during
//!   bursts, memory against the budget, expiry reclaim, tracing overhead.
//! - `benches/*.sh` run whole servers side by side with redis-server.
//!
//! Nothing here is a library an application needs; it exists so that every
//! figure in BENCHMARKS.md has a command that reproduces it.

pub mod bare;
pub mod noop;

/// Completes on SIGINT or SIGTERM: how the peer servers here are stopped.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    if let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = terminate.recv() => {},
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}
