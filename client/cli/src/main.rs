//! `shoal`: the command-line client of the shoal cache.
//!
//! A thin layer over `shoal_client`: parse the arguments, run one command,
//! print the result. Errors go to stderr as `error: <message>` with exit
//! status 1.

mod args;
mod bench;
mod commands;
mod failure;
mod output;

/// mimalloc rather than the system allocator: every call allocates and frees
/// buffers on whichever worker thread runs it, and mimalloc's per-thread free
/// lists make that cheaper than glibc's malloc (about 4% of the server's time
/// under unary GETs, against 11%).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse()
        .validated()
        .unwrap_or_else(|error| error.exit());
    // One thread answers a command; `bench --threads N` drives its load from
    // N.
    let runtime = match &cli.command {
        Command::Bench(bench) if bench.threads > 1 => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(bench.threads as usize);
            builder
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    }
    .enable_all()
    .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    let mut out = BufWriter::new(io::stdout().lock());
    let result = match commands::run(&cli, &mut out).await {
        Ok(()) => out.flush().map_err(Failure::Io),
        Err(failure) => {
            let _ = out.flush();
            Err(failure)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`shoal scan | head`): not an error.
        Err(Failure::Io(error)) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::FAILURE
        }
    }
}
