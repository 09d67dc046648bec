//! `shoal-noop`: the shoal API with no cache behind it, as a benchmark peer.
//!
//! Serves `CacheService` Get/Set/Increment, `BatchService` and gRPC health
//! with fixed answers (see `shoal_bench::noop`), so that `shoal bench`
//! against it measures what gRPC itself costs. It stores nothing: do not
//! point anything but a benchmark at it.

/// mimalloc rather than the system allocator: every call allocates and frees
/// buffers on whichever worker thread runs it, and mimalloc's per-thread free
/// lists make that cheaper than glibc's malloc (about 4% of the server's time
/// under unary GETs, against 11%).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;

/// A no-op gRPC peer for `shoal bench`: fixed answers, no cache.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50052")]
    listen: SocketAddr,
    /// Size in bytes of the value every read returns.
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    value_size: usize,
}

// The same runtime as shoal-server's: one worker thread per core.
#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let listener = match TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "shoal-noop listening on {} ({}-byte values; a benchmark peer, not a cache)",
        args.listen, args.value_size
    );
    match shoal_bench::noop::serve_noop(listener, args.value_size, shoal_bench::shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
