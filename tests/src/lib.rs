//! Helpers shared by the end-to-end tests: raw `shoal.v1` clients connected
//! to a [`TestServer`], small request builders, a [`TraceCollector`]
//! that receives the spans a server exports, [`tls`]: certificates and
//! a server with TLS, and [`process`]: servers as child processes.

use std::net::SocketAddr;

use bytes::Bytes;
use shoal_proto::v1 as pb;
use shoal_proto::v1::admin_service_client::AdminServiceClient;
use shoal_proto::v1::batch_service_client::BatchServiceClient;
use shoal_proto::v1::cache_service_client::CacheServiceClient;
use shoal_proto::v1::collection_service_client::CollectionServiceClient;
use shoal_proto::v1::watch_service_client::WatchServiceClient;
pub use shoal_server::testing::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
pub use trace_collector::TraceCollector;

pub mod process;
pub mod tls;
mod trace_collector;

/// Raw generated clients for one server.
#[derive(Debug, Clone)]
pub struct Raw {
    /// `CacheService`.
    pub cache: CacheServiceClient<Channel>,
    /// `AdminService`.
    pub admin: AdminServiceClient<Channel>,
    /// `CollectionService`.
    pub collection: CollectionServiceClient<Channel>,
    /// `BatchService`.
    pub batch: BatchServiceClient<Channel>,
    /// `WatchService`.
    pub watch: WatchServiceClient<Channel>,
}

/// Connects raw clients to `server`, allowing messages as large as the server's.
///
/// # Panics
/// When the server cannot be reached.
pub async fn raw(server: &TestServer) -> Raw {
    let channel = tonic::transport::Endpoint::from_shared(server.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let limit = 64 * 1024 * 1024;
    Raw {
        cache: CacheServiceClient::new(channel.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        admin: AdminServiceClient::new(channel.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        collection: CollectionServiceClient::new(channel.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        batch: BatchServiceClient::new(channel.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        watch: WatchServiceClient::new(channel),
    }
}

/// The server's statistics, as `AdminService.Stats` reports them.
///
/// # Panics
/// When the call fails.
pub async fn stats(raw: &mut Raw) -> pb::StatsResponse {
    raw.admin
        .stats(pb::StatsRequest::default())
        .await
        .expect("stats")
        .into_inner()
}

/// `Bytes` from text.
pub fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// A plain Set request in the default namespace.
pub fn set_request(key: &str, value: &str) -> pb::SetRequest {
    pb::SetRequest {
        key: b(key),
        value: b(value),
        ..Default::default()
    }
}

/// A Get request with metadata in the default namespace.
pub fn get_request(key: &str) -> pb::GetRequest {
    pb::GetRequest {
        key: b(key),
        include_meta: true,
        ..Default::default()
    }
}

/// An expiry of `ms` milliseconds.
pub fn ttl(ms: i64) -> Option<pb::Expiry> {
    Some(pb::Expiry {
        kind: Some(pb::expiry::Kind::TtlMs(ms)),
    })
}

/// Every key a Scan stream returns, and the cursor of its last page.
///
/// # Panics
/// When the stream fails.
pub async fn scan_all(raw: &mut Raw, request: pb::ScanRequest) -> (Vec<Bytes>, Bytes) {
    let mut stream = raw.cache.scan(request).await.expect("scan").into_inner();
    let mut keys = Vec::new();
    let mut cursor = Bytes::new();
    while let Some(page) = stream.message().await.expect("scan page") {
        keys.extend(page.keys);
        cursor = page.cursor;
    }
    (keys, cursor)
}

/// Asserts that `result` failed with `code` and a message mentioning every
/// one of `parts` (the field, the limit, ...); returns the status.
///
/// # Panics
/// When it did not.
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    parts: &[&str],
) -> tonic::Status {
    let status = result.expect_err("request must fail");
    assert_eq!(status.code(), code, "{status:?}");
    for part in parts {
        assert!(
            status.message().contains(part),
            "{:?} does not mention {part:?}",
            status.message()
        );
    }
    status
}

/// A plain HTTP/1.1 GET (to the admin listener); returns the status code
/// and the body.
///
/// # Panics
/// When the listener cannot be reached or answers something that is not
/// HTTP.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the admin listener");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("headers end with a blank line");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    (status, body.to_string())
}
