//! A tour of the client: strings with TTL, compare-and-set, counters,
//! expiry and key listing.
//!
//! Start a server (`cargo run -p shoal-server`), then run
//! `cargo run -p shoal-client --example quickstart [ADDR]`.

use std::time::{Duration, SystemTime};

use shoal_client::{Client, Condition, Expiry, ScanOptions, SetOptions, Ttl};

#[tokio::main]
async fn main() -> shoal_client::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| shoal_client::DEFAULT_ENDPOINT.to_owned());
    let client = Client::builder()
        .endpoint(addr)
        .namespace("quickstart")
        .connect()
        .await?;
    client.flush().await?;

    // A price that expires in a minute.
    client
        .set_with(
            "price:AAPL",
            "189.12",
            SetOptions::ttl(Duration::from_secs(60)),
        )
        .await?;
    let (price, meta) = client
        .get_with_meta("price:AAPL")
        .await?
        .expect("just written");
    println!(
        "price {price:?}, version {}, ttl {:?}",
        meta.version, meta.ttl
    );

    // Compare-and-set: only the writer that saw the current version wins.
    let stale = SetOptions::default().with_condition(Condition::IfVersion(meta.version + 1));
    assert!(!client.set_with("price:AAPL", "0", stale).await?.stored);
    let fresh = SetOptions::default()
        .with_condition(Condition::IfVersion(meta.version))
        .with_expiry(Expiry::Keep)
        .with_previous();
    let written = client.set_with("price:AAPL", "190.01", fresh).await?;
    println!("replaced {:?}", written.previous);

    // A counter that starts at 100 and lives for an hour.
    let hour = Expiry::After(Duration::from_secs(3600));
    let ticks = client
        .increment_with("ticks:AAPL", 1, Some(100), hour)
        .await?;
    println!("ticks {} (created: {})", ticks.value, ticks.created);

    // Expiry management.
    client
        .expire_at("ticks:AAPL", SystemTime::now() + Duration::from_secs(30))
        .await?;
    client.persist("price:AAPL").await?;
    assert_eq!(client.ttl("price:AAPL").await?, Ttl::Never);
    assert_eq!(client.ttl("missing").await?, Ttl::Missing);

    // Key listing, one page at a time or all at once.
    for i in 0..25 {
        client.set(format!("order:{i}"), "open").await?;
    }
    let page = client
        .scan_page(ScanOptions::matching("order:*").with_page_size(10))
        .await?;
    println!(
        "first page: {} keys, more: {}",
        page.keys.len(),
        page.cursor.is_some()
    );
    let orders = client.scan_all(ScanOptions::matching("order:*")).await?;
    println!(
        "{} orders, {} keys in total",
        orders.len(),
        client.count().await?
    );

    for info in client
        .describe(["price:AAPL", "ticks:AAPL", "missing"])
        .await?
    {
        println!("{:?}: {:?}", String::from_utf8_lossy(&info.key), info.meta);
    }
    println!("deleted {}", client.delete(&orders).await?);
    Ok(())
}
