//! An OpenTelemetry trace receiver inside the test process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

/// An OTLP/gRPC trace receiver on `127.0.0.1:0` (the collector's
/// `TraceService`), which keeps what it receives so that tests can check
/// the spans a server exports. Stops on drop.
#[derive(Debug)]
pub struct TraceCollector {
    addr: SocketAddr,
    received: Arc<Received>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

#[derive(Debug, Default)]
struct Received {
    /// Whether spans are kept, or only counted.
    keep: bool,
    spans: Mutex<Vec<Span>>,
    count: AtomicU64,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|resource| resource.scope_spans)
            .flat_map(|scope| scope.spans);
        if self.keep {
            let mut kept = self.spans.lock();
            let before = kept.len();
            kept.extend(spans);
            self.count
                .fetch_add((kept.len() - before) as u64, Ordering::Relaxed);
        } else {
            self.count
                .fetch_add(spans.count() as u64, Ordering::Relaxed);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl TraceCollector {
    /// A receiver that keeps every span.
    ///
    /// # Panics
    /// When it cannot bind `127.0.0.1:0`.
    pub async fn start() -> Self {
        Self::start_with(true).await
    }

    /// A receiver that only counts spans, for long runs.
    ///
    /// # Panics
    /// As [`TraceCollector::start`].
    pub async fn start_counting() -> Self {
        Self::start_with(false).await
    }

    async fn start_with(keep: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let received = Arc::new(Received {
            keep,
            ..Received::default()
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::from_arc(Arc::clone(&received)))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        Self {
            addr,
            received,
            shutdown: Some(shutdown),
            task,
        }
    }

    /// `http://127.0.0.1:PORT`, as an OTLP endpoint setting takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far (none for a counting receiver).
    pub fn spans(&self) -> Vec<Span> {
        self.received.spans.lock().clone()
    }

    /// How many spans were received.
    pub fn span_count(&self) -> u64 {
        self.received.count.load(Ordering::Relaxed)
    }
}

impl Drop for TraceCollector {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task.abort();
    }
}
