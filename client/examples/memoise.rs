//! Memoising a slow call with `get_or_insert_with`: concurrent requests
//! for one key run the loader once; failures are not cached.
//!
//! Start a server (`cargo run --release -p shoal-server`), then run
//! `cargo run -p shoal-client --example memoise [ADDR]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shoal_client::{Client, Error, Json};
use tokio::task::JoinSet;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Report {
    region: String,
    revenue: u64,
}

/// Stands in for a slow database query; counts how often it runs.
async fn query_report(region: &str, queries: &AtomicUsize) -> Result<Report, std::io::Error> {
    queries.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    if region == "mars" {
        return Err(std::io::Error::other("no database on mars"));
    }
    Ok(Report {
        region: region.to_owned(),
        revenue: 1_234_567,
    })
}

#[tokio::main]
async fn main() -> shoal_client::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| shoal_client::DEFAULT_ENDPOINT.to_owned());
    let client = Client::builder()
        .endpoint(addr)
        .namespace("memoise-example")
        .connect()
        .await?;
    client.flush().await?;
    let reports = client.typed::<Report, Json>();
    let queries = Arc::new(AtomicUsize::new(0));
    let ttl = Duration::from_secs(60);

    // 100 requests for the same report arrive at once.
    let started = Instant::now();
    let mut requests = JoinSet::new();
    for _ in 0..100 {
        let reports = reports.clone();
        let queries = Arc::clone(&queries);
        requests.spawn(async move {
            reports
                .get_or_insert_with("report:eu", ttl, || async {
                    query_report("eu", &queries).await
                })
                .await
        });
    }
    while let Some(result) = requests.join_next().await {
        let report = result.expect("task")?;
        assert_eq!(report.region, "eu");
    }
    println!(
        "100 concurrent requests: {} query, {:?}",
        queries.load(Ordering::SeqCst),
        started.elapsed()
    );

    // Later requests read the stored value.
    let started = Instant::now();
    let report = reports
        .get_or_insert_with("report:eu", ttl, || query_report("eu", &queries))
        .await?;
    println!(
        "a later request: revenue {}, {} query in total, {:?}",
        report.revenue,
        queries.load(Ordering::SeqCst),
        started.elapsed()
    );

    // A failure reaches the caller and is not stored: the next call tries
    // again.
    for attempt in 1..=2 {
        match reports
            .get_or_insert_with("report:mars", ttl, || query_report("mars", &queries))
            .await
        {
            Err(Error::Loader(cause)) => println!("attempt {attempt}: loader failed: {cause}"),
            other => panic!("expected a loader error, got {other:?}"),
        }
    }
    println!("{} queries in total", queries.load(Ordering::SeqCst));

    client.flush().await?;
    Ok(())
}
