//! `shoal bench`: load generation in the manner of redis-benchmark.
//!
//! A test runs as `-c` workers, each a task keeping one request in flight
//! (one Pipeline stream with `-P` commands for `pipeline`), assigned in turn
//! to `--connections` HTTP/2 connections. The workers draw from one budget
//! of `-n` requests and record latencies in histograms of their own, merged
//! when the phase ends, so the hot path shares nothing but an atomic
//! counter. The generated gRPC clients are used directly: the typed client's
//! retries and deadlines would be measured too.

mod report;
mod workers;
mod workload;

use std::io::{IsTerminal as _, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use shoal_client::Client;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::args::Cli;
use crate::args::bench::{BenchArgs, Test, Warmup};
use crate::bench::report::Report;
use crate::bench::workers::{Authorize, Shared, Tally, Worker};
use crate::bench::workload::{Budget, KeyPlan};
use crate::failure::Failure;

/// Keys per SetBatch chunk when preloading the key space.
const PRELOAD_CHUNK: u64 = 1000;

/// How long to wait for the server when `--timeout 0` sets no deadline.
const DEFAULT_PATIENCE: Duration = Duration::from_secs(5);

/// Runs every test of `args` against `cli.addr` and prints one report per
/// test.
///
/// # Errors
/// When the server cannot be reached, preloading fails, or any request of a
/// test failed (after every report has been printed).
pub async fn run(cli: &Cli, args: &BenchArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let channels = connect(cli, args).await?;
    let authorize = Authorize::new(&cli.with_token(Client::builder()))?;
    // The typed client, for the tests that measure what it adds: mget's
    // batches ride its shared streams. No deadline and no retries, so that
    // only the calls themselves are measured.
    let builder = cli
        .with_token(cli.client_builder())
        .namespace(&cli.namespace)
        .no_timeout()
        .max_retries(0)
        .shared_stream_max_keys(if args.batch_calls {
            0
        } else {
            shoal_client::DEFAULT_SHARED_STREAM_MAX_KEYS
        });
    let client = if args.topology_aware {
        // Connections of its own to each member, as many as asked.
        builder
            .connections(args.connections as usize)
            .topology_aware(true)
            .connect()
            .await?
    } else {
        builder.build_with_channels(channels.clone())
    };
    let bench = Bench {
        channels,
        authorize,
        client,
        namespace: cli.namespace.clone(),
        value: Bytes::from(vec![b'x'; args.value_size]),
        progress: !args.quiet && std::io::stderr().is_terminal(),
        args,
    };
    let mut strings_loaded = args.no_preload;
    let mut hashes_loaded = args.no_preload;
    let mut failures = Vec::new();
    for &test in &args.tests {
        match test {
            Test::Get | Test::Mget | Test::Pipeline if !strings_loaded => {
                bench.preload_strings().await?;
                strings_loaded = true;
            }
            Test::Hget if !hashes_loaded => {
                bench.preload_hashes().await?;
                hashes_loaded = true;
            }
            _ => {}
        }
        let report = bench.measure(test).await;
        if test == Test::Delete {
            strings_loaded = args.no_preload;
        }
        if cli.json {
            serde_json::to_writer(&mut *out, &report.json(args)).map_err(std::io::Error::from)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", report.line())?;
        }
        out.flush()?;
        if let Some(status) = &report.tally.first_error {
            failures.push(format!(
                "{test}: {} errors, the first {}",
                report.tally.errors,
                report::describe(status)
            ));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::Bench(format!(
            "requests failed: {}",
            failures.join("; ")
        )))
    }
}

/// Connects `--connections` channels once the server reports SERVING.
async fn connect(cli: &Cli, args: &BenchArgs) -> Result<Vec<Channel>, Failure> {
    let patience = cli.deadline().unwrap_or(DEFAULT_PATIENCE);
    let builder = cli.client_builder().connect_timeout(patience);
    // A server started a moment ago may not listen, or not serve, yet:
    // scripts start one and run the benchmark right after.
    let deadline = Instant::now() + patience;
    let first = loop {
        let retry = match builder.connect_channel().await {
            Ok(channel) => match serving(channel.clone()).await {
                Ok(()) => break channel,
                Err(status) => Failure::Bench(format!(
                    "the server at {} is not serving: {}",
                    cli.addr,
                    status.message()
                )),
            },
            Err(error) => Failure::Client(error),
        };
        if Instant::now() >= deadline {
            return Err(retry);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut channels = vec![first];
    for _ in 1..args.connections {
        channels.push(builder.connect_channel().await?);
    }
    Ok(channels)
}

/// Asks the standard health service; a server without one is taken as
/// serving, so any implementation of the API can be measured.
async fn serving(channel: Channel) -> Result<(), Status> {
    let check = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    match check.map(|r| ServingStatus::try_from(r.into_inner().status)) {
        Ok(Ok(ServingStatus::Serving)) => Ok(()),
        Ok(status) => Err(Status::unavailable(format!("health is {status:?}"))),
        Err(status) if status.code() == Code::Unimplemented => Ok(()),
        Err(status) => Err(status),
    }
}

/// One round of workers: a preload, a warmup or a measurement.
struct Phase<'a> {
    /// What every worker sends.
    test: Test,
    /// Which keys.
    plan: KeyPlan,
    /// Keys per batch, commands in flight per pipeline stream.
    depth: u32,
    /// How many requests.
    budget: Budget,
    /// Requests in flight.
    workers: u32,
    /// Worker `i` draws its keys from seed `seed + i`.
    seed: u64,
    /// Name on the progress bar.
    label: &'a str,
}

/// Settings shared by every phase of a run.
struct Bench<'a> {
    channels: Vec<Channel>,
    /// Puts the token, if any, on the calls made on `channels`.
    authorize: Authorize,
    client: Client,
    namespace: String,
    value: Bytes,
    progress: bool,
    args: &'a BenchArgs,
}

impl Bench<'_> {
    /// The warmup, then the measured run, of `test`.
    async fn measure(&self, test: Test) -> Report {
        let args = self.args;
        let depth = match test {
            Test::Mget | Test::Mset | Test::Pipeline => args.depth,
            _ => 1,
        };
        let plan = KeyPlan::Random {
            keyspace: args.keyspace,
            distribution: args.distribution,
            exponent: args.zipf_exponent,
        };
        let salt = 1 + Test::ALL.iter().position(|&t| t == test).unwrap_or(0) as u64;
        if !args.warmup.is_none() {
            let budget = match args.warmup {
                Warmup::Requests(n) => Budget::count(n),
                Warmup::Time(duration) => Budget::time(duration),
            };
            let label = format!("{test} warmup");
            self.phase(Phase {
                test,
                plan,
                depth,
                budget,
                workers: args.concurrency,
                seed: salt << 40,
                label: &label,
            })
            .await;
        }
        let (tally, elapsed) = self
            .phase(Phase {
                test,
                plan,
                depth,
                budget: Budget::count(args.requests),
                workers: args.concurrency,
                seed: salt << 48,
                label: test.name(),
            })
            .await;
        Report {
            test,
            depth,
            elapsed,
            tally,
        }
    }

    /// Writes every string key of the key space, so that reads hit: with
    /// SetBatch, or unary Sets when the server has no BatchService.
    async fn preload_strings(&self) -> Result<(), Failure> {
        let keyspace = self.args.keyspace;
        let chunk = PRELOAD_CHUNK.min(keyspace);
        let batches = keyspace.div_ceil(chunk);
        let plan = KeyPlan::Sequential { keyspace };
        let workers = u64::from(self.args.concurrency).min(batches) as u32;
        let (tally, _) = self
            .phase(Phase {
                test: Test::Mset,
                plan,
                depth: chunk as u32,
                budget: Budget::count(batches),
                workers,
                seed: 0,
                label: "preload",
            })
            .await;
        let unimplemented = tally
            .first_error
            .as_ref()
            .is_some_and(|status| status.code() == Code::Unimplemented);
        let tally = if unimplemented {
            let workers = u64::from(self.args.concurrency).min(keyspace) as u32;
            self.phase(Phase {
                test: Test::Set,
                plan,
                depth: 1,
                budget: Budget::count(keyspace),
                workers,
                seed: 0,
                label: "preload",
            })
            .await
            .0
        } else {
            tally
        };
        preloaded(&tally, keyspace, "string keys")
    }

    /// Writes the field that hget reads into every hash of the key space.
    async fn preload_hashes(&self) -> Result<(), Failure> {
        let keyspace = self.args.keyspace;
        let workers = u64::from(self.args.concurrency).min(keyspace) as u32;
        let (tally, _) = self
            .phase(Phase {
                test: Test::Hset,
                plan: KeyPlan::Sequential { keyspace },
                depth: 1,
                budget: Budget::count(keyspace),
                workers,
                seed: 0,
                label: "preload",
            })
            .await;
        preloaded(&tally, keyspace, "hashes")
    }

    /// Runs the workers of `phase` until its budget is spent; returns what
    /// they measured and how long it took.
    async fn phase(&self, phase: Phase<'_>) -> (Tally, Duration) {
        let Phase {
            test,
            plan,
            depth,
            budget,
            workers,
            seed,
            label,
        } = phase;
        let bar = self.progress_bar(label, &budget);
        let shared = Arc::new(Shared {
            budget,
            done: AtomicU64::new(0),
        });
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for i in 0..workers as usize {
            let worker = Worker {
                channel: self.channels[i % self.channels.len()].clone(),
                authorize: self.authorize.clone(),
                client: self.client.clone(),
                typed: self.args.topology_aware,
                namespace: self.namespace.clone(),
                ids: plan.ids(seed + i as u64),
                value: self.value.clone(),
                depth: depth as usize,
                shared: Arc::clone(&shared),
            };
            tasks.spawn(worker.run(test));
        }
        let mut tally = Tally::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    Some(Ok(worker)) => tally.merge(worker),
                    Some(Err(error)) => std::panic::resume_unwind(error.into_panic()),
                    None => break,
                },
                _ = tick.tick() => {
                    let done = shared.done.load(Ordering::Relaxed);
                    let elapsed = start.elapsed();
                    bar.set_message(format!("{:.0} requests/s", done as f64 / elapsed.as_secs_f64()));
                    bar.set_position(match &shared.budget {
                        Budget::Count { .. } => done,
                        Budget::Until { .. } => elapsed.as_millis() as u64,
                    });
                }
            }
        }
        let elapsed = start.elapsed();
        bar.finish_and_clear();
        (tally, elapsed)
    }

    /// A bar on stderr counting requests (or milliseconds of a timed
    /// warmup); hidden with --quiet or when stderr is not a terminal.
    fn progress_bar(&self, label: &str, budget: &Budget) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let (length, template) = match budget {
            Budget::Count { limit, .. } => (
                *limit,
                "{prefix:>14} [{bar:40}] {human_pos}/{human_len} {msg} eta {eta}",
            ),
            Budget::Until { deadline, .. } => (
                deadline
                    .saturating_duration_since(Instant::now())
                    .as_millis() as u64,
                "{prefix:>14} [{bar:40}] {elapsed} {msg}",
            ),
        };
        let style = ProgressStyle::with_template(template)
            .expect("valid progress template")
            .progress_chars("=> ");
        ProgressBar::new(length)
            .with_style(style)
            .with_prefix(label.to_owned())
    }
}

/// Fails when a preload phase had errors: the reads would measure misses.
fn preloaded(tally: &Tally, keyspace: u64, what: &str) -> Result<(), Failure> {
    match &tally.first_error {
        None => Ok(()),
        Some(status) => Err(Failure::Bench(format!(
            "preloading {keyspace} {what} failed ({} errors, the first {})",
            tally.errors,
            report::describe(status)
        ))),
    }
}
