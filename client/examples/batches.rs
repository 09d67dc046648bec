//! Many keys per call: `set_many`, `get_many`, `delete_many`, and a
//! pipeline of mixed commands with typed results.
//!
//! Start a server (`cargo run -p shoal-server`), then run
//! `cargo run -p shoal-client --example batches [ADDR]`.

use std::time::{Duration, Instant};

use shoal_client::{BatchSet, Client, SetOptions};

#[tokio::main]
async fn main() -> shoal_client::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| shoal_client::DEFAULT_ENDPOINT.to_owned());
    let client = Client::builder()
        .endpoint(addr)
        .namespace("batches")
        .connect()
        .await?;
    client.flush().await?;

    // Ten thousand rows in one stream of chunks, each with a TTL.
    let started = Instant::now();
    let rows = (0..10_000).map(|n| {
        BatchSet::new(format!("row:{n}"), format!("value {n}"))
            .with_options(SetOptions::ttl(Duration::from_secs(300)))
    });
    let written = client
        .set_many_with(rows, shoal_client::BatchOptions::default())
        .await?;
    let failed = written.iter().filter(|result| result.is_err()).count();
    println!(
        "set_many: {} rows in {:?}, {failed} failed",
        written.len(),
        started.elapsed()
    );

    // Read them back with a few misses and a bad key mixed in: one outcome
    // per key, in the order asked.
    let mut keys: Vec<String> = (0..10_000).map(|n| format!("row:{n}")).collect();
    keys.push("row:missing".into());
    keys.push(String::new());
    let started = Instant::now();
    let values = client.get_many(&keys).await?;
    let hits = values.iter().filter(|v| matches!(v, Ok(Some(_)))).count();
    let misses = values.iter().filter(|v| matches!(v, Ok(None))).count();
    let errors: Vec<String> = values
        .iter()
        .filter_map(|v| v.as_ref().err().map(ToString::to_string))
        .collect();
    println!(
        "get_many: {hits} hits, {misses} miss, errors {errors:?} in {:?}",
        started.elapsed()
    );

    // A pipeline: any commands, run in order over one stream, each result
    // read with its own type.
    let mut pipeline = client.pipeline();
    pipeline.set("greeting", "hello");
    let greeting = pipeline.get("greeting");
    let visits = pipeline.increment("visits", 1);
    let queue = pipeline.rpush("queue", ["job-1", "job-2"]);
    let wrong = pipeline.sadd("greeting", ["not a set"]);
    let mut results = pipeline.run().await?;
    println!("greeting = {:?}", results.take(greeting)?);
    println!("visits = {}", results.take(visits)?);
    println!("queue length = {}", results.take(queue)?);
    println!("sadd on a string: {}", results.take(wrong).unwrap_err());

    let removed = client
        .delete_many(["row:0", "row:1", "row:missing"])
        .await?;
    println!("delete_many existed: {removed:?}");
    Ok(())
}
