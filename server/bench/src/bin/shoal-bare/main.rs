//! `shoal-bare`: tonic alone answering `CacheService` Get and Set, as the
//! peer that shows what shoal's own stack costs (see `shoal_bench::bare`).
//! It stores nothing: do not point anything but a benchmark at it.

/// The allocator shoal-server uses, so that only the stack differs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;

/// A bare tonic peer for `shoal bench`: fixed answers, no shoal code.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50053")]
    listen: SocketAddr,
    /// Size in bytes of the value every Get returns.
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
        "shoal-bare listening on {} ({}-byte values; a benchmark peer, not a cache)",
        args.listen, args.value_size
    );
    match shoal_bench::bare::serve_bare(listener, args.value_size, shoal_bench::shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
