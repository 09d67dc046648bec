//! The typed client against the real server, and its deadline and retry
//! behaviour against a scripted server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use shoal_client::proto as pb;
use shoal_client::proto::cache_service_server::{CacheService, CacheServiceServer};
use shoal_client::{
    Client, Condition, Error, Expiry, KeyType, RetryPolicy, ScanOptions, SetOptions, Ttl,
};
use shoal_server::Config;
use shoal_server::engine::{Engine, ManualClock};
use shoal_tests::TestServer;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

async fn client_for(server: &TestServer) -> Client {
    Client::builder()
        .endpoint(server.endpoint())
        .namespace("app")
        .connect()
        .await
        .expect("connect")
}

#[tokio::test]
async fn strings_counters_and_conditions() {
    let server = TestServer::start().await;
    let client = client_for(&server).await;
    assert_eq!(client.get("missing").await.expect("get"), None);
    let first = client.set("k", "v1").await.expect("set");
    assert!(first.stored);
    assert_eq!(
        client.get("k").await.expect("get").as_deref(),
        Some(&b"v1"[..])
    );

    let refused = client
        .set_with(
            "k",
            "v2",
            SetOptions::default()
                .with_condition(Condition::IfAbsent)
                .with_previous(),
        )
        .await
        .expect("set");
    assert!(!refused.stored);
    assert_eq!(refused.previous.as_deref(), Some(&b"v1"[..]));
    let swapped = client
        .set_with(
            "k",
            "v3",
            SetOptions::default().with_condition(Condition::IfVersion(first.version)),
        )
        .await
        .expect("set");
    assert!(swapped.stored);

    assert_eq!(client.increment("hits", 5).await.expect("incr"), 5);
    assert_eq!(client.increment("hits", -2).await.expect("incr"), 3);
    let created = client
        .increment_with(
            "fresh",
            1,
            Some(100),
            Expiry::After(Duration::from_secs(60)),
        )
        .await
        .expect("incr");
    assert_eq!((created.value, created.created), (101, true));
    assert!(matches!(
        client.increment("k", 1).await,
        Err(Error::FailedPrecondition { .. })
    ));

    let infos = client
        .describe(["k", "hits", "nope"])
        .await
        .expect("describe");
    assert_eq!(infos.len(), 3);
    assert_eq!(
        infos[0].meta.as_ref().map(|meta| meta.key_type),
        Some(KeyType::String)
    );
    assert!(!infos[2].exists());
    assert_eq!(
        client.delete(["k", "hits", "nope"]).await.expect("delete"),
        2
    );
    assert_eq!(client.count().await.expect("count"), 1);

    let other = client.with_namespace("other");
    assert_eq!(
        other.get("fresh").await.expect("get"),
        None,
        "namespaces are separate"
    );
}

#[tokio::test]
async fn ttls_follow_the_server_clock() {
    let clock = ManualClock::new(1_700_000_000_000);
    let config = Config::default();
    let engine = Engine::with_parts(config.engine_config(), Arc::new(clock.clone()), None);
    let server = TestServer::start_with_engine(config, engine).await;
    let client = client_for(&server).await;

    client
        .set_with("session", "s", SetOptions::ttl(Duration::from_secs(10)))
        .await
        .expect("set");
    assert_eq!(
        client.ttl("session").await.expect("ttl"),
        Ttl::Expires(Duration::from_secs(10))
    );
    assert_eq!(client.ttl("missing").await.expect("ttl"), Ttl::Missing);
    clock.advance_ms(4_000);
    assert!(
        client
            .expire("session", Duration::from_secs(1))
            .await
            .expect("expire")
    );
    assert_eq!(
        client.ttl("session").await.expect("ttl"),
        Ttl::Expires(Duration::from_secs(1))
    );
    assert!(client.persist("session").await.expect("persist"));
    assert_eq!(client.ttl("session").await.expect("ttl"), Ttl::Never);

    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + 4_000 + 500);
    assert!(client.expire_at("session", at).await.expect("expire_at"));
    clock.advance_ms(500);
    assert_eq!(client.get("session").await.expect("get"), None);
    assert!(
        !client
            .expire("session", Duration::from_secs(1))
            .await
            .expect("expire")
    );
}

#[tokio::test]
async fn scans_stream_every_matching_key() {
    let server = TestServer::start().await;
    let client = client_for(&server).await;
    for i in 0..120 {
        client.set(format!("img:{i}"), "v").await.expect("set");
    }
    client.set("other", "v").await.expect("set");
    let mut streamed: Vec<_> = client
        .scan(ScanOptions::matching("img:*").with_page_size(7))
        .map(|key| key.expect("key"))
        .collect()
        .await;
    streamed.sort();
    streamed.dedup();
    assert_eq!(streamed.len(), 120);

    let page = client
        .scan_page(ScanOptions::matching("img:*").with_page_size(50))
        .await
        .expect("page");
    assert_eq!(page.keys.len(), 50);
    let cursor = page.cursor.expect("more to come");
    let rest = client
        .scan_all(ScanOptions::matching("img:*").with_cursor(cursor))
        .await
        .expect("rest");
    assert_eq!(rest.len(), 70);

    let stats = client.stats().await.expect("stats");
    let app = stats
        .namespaces
        .iter()
        .find(|ns| ns.namespace == "app")
        .expect("app stats");
    assert_eq!(app.keys, 121);
    assert_eq!(client.flush().await.expect("flush"), 121);
    assert_eq!(client.count().await.expect("count"), 0);
}

#[tokio::test]
async fn bad_input_maps_to_typed_errors() {
    let server = TestServer::start().await;
    let client = client_for(&server).await;
    let error = client.set("", "v").await.expect_err("empty key");
    assert!(
        matches!(&error, Error::InvalidArgument { message } if message.contains("key")),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    let error = client
        .set_with(
            "k",
            "v",
            SetOptions::default()
                .with_expiry(Expiry::After(Duration::from_secs(200 * 365 * 86_400))),
        )
        .await
        .expect_err("absurd ttl");
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    let error = client
        .scan_all(ScanOptions::matching("[oops"))
        .await
        .expect_err("bad glob");
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
}

/// A scripted CacheService: fails the first `failures` calls of Get and
/// every Increment with UNAVAILABLE, and records the deadline it was sent.
#[derive(Default)]
struct Scripted {
    failures: u32,
    gets: AtomicU32,
    increments: AtomicU32,
    last_timeout: recorder::Recorded,
}

/// The scripted service as tonic serves it.
struct ScriptedService(Arc<Scripted>);

mod recorder {
    //! A tiny recorder, so the test double needs no extra dependency.
    use std::sync::Mutex;

    /// The last `grpc-timeout` header seen.
    #[derive(Default)]
    pub struct Recorded(Mutex<Option<String>>);

    impl Recorded {
        pub fn set(&self, value: Option<String>) {
            *self.0.lock().expect("not poisoned") = value;
        }
        pub fn get(&self) -> Option<String> {
            self.0.lock().expect("not poisoned").clone()
        }
    }
}

#[tonic::async_trait]
impl CacheService for ScriptedService {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        self.0.last_timeout.set(timeout);
        if self.0.gets.fetch_add(1, Ordering::SeqCst) < self.0.failures {
            return Err(Status::unavailable("warming up"));
        }
        Ok(Response::new(pb::GetResponse {
            found: true,
            value: bytes::Bytes::from_static(b"ok"),
            meta: None,
        }))
    }
    async fn set(&self, _: Request<pb::SetRequest>) -> Result<Response<pb::SetResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn delete(
        &self,
        _: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn describe(
        &self,
        _: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::DescribeResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn increment(
        &self,
        _: Request<pb::IncrementRequest>,
    ) -> Result<Response<pb::IncrementResponse>, Status> {
        self.0.increments.fetch_add(1, Ordering::SeqCst);
        Err(Status::unavailable("warming up"))
    }
    async fn update_ttl(
        &self,
        _: Request<pb::UpdateTtlRequest>,
    ) -> Result<Response<pb::UpdateTtlResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    type ScanStream = tokio_stream::Empty<Result<pb::ScanResponse, Status>>;
    async fn scan(
        &self,
        _: Request<pb::ScanRequest>,
    ) -> Result<Response<Self::ScanStream>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn count(
        &self,
        _: Request<pb::CountRequest>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
}

async fn scripted_server(script: Arc<Scripted>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CacheServiceServer::new(ScriptedService(script)))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

#[tokio::test]
async fn idempotent_calls_are_retried_and_increments_are_not() {
    let script = Arc::new(Scripted {
        failures: 2,
        ..Scripted::default()
    });
    let endpoint = scripted_server(script.clone()).await;
    let client = Client::builder()
        .endpoint(endpoint)
        .timeout(Duration::from_secs(5))
        .retry_policy(RetryPolicy::with_max_retries(3))
        .connect()
        .await
        .expect("connect");

    assert_eq!(
        client.get("k").await.expect("retried get").as_deref(),
        Some(&b"ok"[..])
    );
    assert_eq!(
        script.gets.load(Ordering::SeqCst),
        3,
        "two failures, then success"
    );
    let timeout = script.last_timeout.get().expect("grpc-timeout sent");
    assert!(
        timeout.ends_with('m') || timeout.ends_with('u') || timeout.ends_with('S'),
        "{timeout}"
    );

    let error = client.increment("k", 1).await.expect_err("increment fails");
    assert!(error.is_retryable());
    assert_eq!(
        script.increments.load(Ordering::SeqCst),
        1,
        "increment is never repeated"
    );
}

#[tokio::test]
async fn a_silent_server_hits_the_deadline() {
    // Accepts connections but never speaks HTTP/2.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let client = Client::builder()
        .endpoint(format!("http://{addr}"))
        .timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .retry_policy(RetryPolicy::none())
        .connect_lazy()
        .expect("lazy client");
    let error = client.get("k").await.expect_err("no answer");
    assert!(matches!(error, Error::DeadlineExceeded), "{error:?}");
    holder.abort();
}
