//! Typed client for the shoal cache.
//!
//! [`Client`] speaks the `shoal.v1` gRPC API with domain types
//! ([`Bytes`](bytes::Bytes) values, [`ItemMeta`], [`Ttl`], ...). A client
//! works in one namespace, applies a per-call deadline (sent to the server
//! as `grpc-timeout` and enforced locally), and retries the calls that are
//! safe to repeat when the failure is transient.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use shoal_client::{Client, ScanOptions, SetOptions};
//! use tokio_stream::StreamExt;
//!
//! #[tokio::main]
//! async fn main() -> shoal_client::Result<()> {
//!     let client = Client::builder()
//!         .endpoint("127.0.0.1:50051")
//!         .namespace("prices")
//!         .timeout(Duration::from_millis(500))
//!         .connect()
//!         .await?;
//!
//!     // A value that expires in a minute.
//!     client.set_with("AAPL", "189.12", SetOptions::ttl(Duration::from_secs(60))).await?;
//!     assert_eq!(client.get("AAPL").await?.as_deref(), Some(&b"189.12"[..]));
//!
//!     // A counter, created at 0 on first use.
//!     let ticks = client.increment("ticks:AAPL", 1).await?;
//!     println!("{ticks} ticks");
//!
//!     // Every key matching a pattern, page after page.
//!     let mut keys = client.scan(ScanOptions::matching("ticks:*"));
//!     while let Some(key) = keys.next().await {
//!         println!("{}", String::from_utf8_lossy(&key?));
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Hashes, lists and sets have methods named after the Redis commands
//! (`hset`, `rpush`, `sadd`, ...). Writes keep the key's expiry unless told
//! otherwise, and whole-collection reads arrive as one `Vec`.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use shoal_client::{Client, PushOptions};
//!
//! # async fn demo(client: Client) -> shoal_client::Result<()> {
//! // A position, one field per attribute.
//! client.hset("position:AAPL", [("qty", "100"), ("avg", "187.40")]).await?;
//! let qty = client.hincrby("position:AAPL", "qty", -20).await?;
//! assert_eq!(qty, 80);
//!
//! // Conversation memory: keep the last 100 messages, for a day.
//! client
//!     .rpush_with("chat:42", ["user: hi"], PushOptions::ttl(Duration::from_secs(86_400)))
//!     .await?;
//! client.push_capped("chat:42", "agent: hello", 100).await?;
//! let recent = client.lrange("chat:42", -10, -1).await?;
//! println!("{} recent messages", recent.len());
//!
//! // Tags, and the items carrying two of them.
//! client.sadd("tag:red", ["img:1", "img:2"]).await?;
//! client.sadd("tag:round", ["img:2", "img:3"]).await?;
//! let both = client.sinter(["tag:red", "tag:round"]).await?;
//! assert_eq!(both, ["img:2"]);
//! # Ok(()) }
//! ```
//!
//! Values of one type go through a [`Codec`] on a [`Typed`] handle ([`Raw`]
//! bytes, [`Json`], `MsgPack` with feature `msgpack`, or your own);
//! [`Compression`] shrinks large values for every reader; and
//! [`get_or_insert_with`](Typed::get_or_insert_with) memoises a slow call,
//! running one loader per key however many callers ask at once.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use serde::{Deserialize, Serialize};
//! use shoal_client::{Client, Compression, Json};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Rates {
//!     eur_usd: f64,
//! }
//!
//! async fn fetch_rates() -> Result<Rates, std::io::Error> {
//!     Ok(Rates { eur_usd: 1.08 }) // a slow upstream call
//! }
//!
//! # async fn demo() -> shoal_client::Result<()> {
//! let client = Client::builder()
//!     .compression(Compression::zstd())
//!     .connections(2)
//!     .connect()
//!     .await?;
//! let rates = client.with_namespace("fx").typed::<Rates, Json>();
//! let now = rates
//!     .get_or_insert_with("latest", Duration::from_secs(5), fetch_rates)
//!     .await?;
//! println!("EUR/USD {}", now.eur_usd);
//! # Ok(()) }
//! ```
//!
//! Each call runs in a `tracing` span (`shoal.v1.CacheService/Get`, kind
//! client) and sends that span's W3C `traceparent`, so that with a
//! `tracing-opentelemetry` layer installed the server's spans join the
//! caller's trace.
//!
//! The generated protobuf types are re-exported as [`proto`] for anything
//! the typed API does not cover.

mod batch;
mod builder;
mod call;
mod chunks;
mod client;
mod codec;
mod compression;
mod convert;
mod error;
mod hash;
mod list;
mod memoise;
mod near_cache;
mod node;
mod pipeline;
mod pool;
mod retry;
mod routing;
mod scan;
mod set;
mod shared_stream;
mod single_flight;
mod telemetry;
mod typed;
mod types;
mod watch;

pub use batch::{BatchOptions, BatchSet, DEFAULT_BATCH_CHUNK_ITEMS, DEFAULT_BATCH_IN_FLIGHT};
pub use builder::{
    ClientBuilder, DEFAULT_ENDPOINT, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_SHARED_STREAM_MAX_KEYS,
    SHOAL_TOKEN_HEADER, TlsConfig, TokenHeader,
};
pub use client::Client;
#[cfg(feature = "json")]
pub use codec::Json;
#[cfg(feature = "msgpack")]
pub use codec::MsgPack;
pub use codec::{Codec, CodecError, Raw};
pub use compression::{Algorithm, Compression, DEFAULT_THRESHOLD, MAX_DECOMPRESSED_LEN};
pub use error::{Error, Result};
pub use near_cache::{NearCache, NearCacheOptions, NearCacheStats};
pub use pipeline::{Pipeline, PipelineResults, Slot};
pub use retry::RetryPolicy;
pub use typed::Typed;
pub use types::{
    ClusterMember, Condition, Expiry, IncrementResult, ItemMeta, KeyInfo, KeyType, NamespaceBudget,
    NamespaceStats, ParseKeyTypeError, PersistenceStatus, PushOptions, RpcStats, ScanOptions,
    ScanPage, SetOptions, SetResult, SnapshotInfo, Stats, Topology, Ttl,
};

pub use watch::{ChangeKind, WatchEvent, WatchOptions, WatchStream};

/// The generated `shoal.v1` messages and gRPC clients, as an escape hatch.
pub use shoal_proto::v1 as proto;
