//! A coherent near cache: reads served in-process, kept fresh by the
//! server's Watch feed, alongside a raw Watch stream.
//!
//! Start a server (`cargo run -p shoal-server`), then run
//! `cargo run -p shoal-client --example near_cache [ADDR]`.

use std::time::{Duration, Instant};

use shoal_client::{Client, NearCacheOptions, WatchEvent, WatchOptions};
use tokio_stream::StreamExt;

#[tokio::main]
async fn main() -> shoal_client::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| shoal_client::DEFAULT_ENDPOINT.to_owned());
    let connect = || {
        Client::builder()
            .endpoint(addr.clone())
            .namespace("near")
            .connect()
    };
    let writer = connect().await?;
    let reader = connect().await?;
    writer.set("config:flags", "dark-mode=off").await?;

    // Follow every change under "config:" in the background.
    let mut events = writer.watch(WatchOptions::all().prefix("config:")).await?;
    let printer = tokio::spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            if let WatchEvent::Changed { kind, key, version } = event {
                println!(
                    "watch: {kind:?} {} v{version}",
                    String::from_utf8_lossy(&key)
                );
            }
        }
    });

    let near = reader.near_cache(NearCacheOptions::default());
    while !near.is_live() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    // Warm reads come from process memory.
    near.get("config:flags").await?;
    let started = Instant::now();
    for _ in 0..100_000 {
        near.get("config:flags").await?;
    }
    println!(
        "100000 near-cache reads in {:?} ({:?})",
        started.elapsed(),
        near.stats()
    );

    // Another client writes; the near cache drops the old value as soon as
    // the change event arrives.
    writer.set("config:flags", "dark-mode=on").await?;
    let started = Instant::now();
    loop {
        let value = near.get("config:flags").await?;
        if value.as_deref() == Some(&b"dark-mode=on"[..]) {
            break;
        }
    }
    println!("the near cache saw the write after {:?}", started.elapsed());
    println!("{:?}", near.stats());
    printer.abort();
    Ok(())
}
