//! Logs and traces: the span each RPC runs in, and its export to an
//! OpenTelemetry collector over OTLP/gRPC.
//!
//! The [`RpcLayer`](crate::observe::rpc_layer::RpcLayer) opens one span per call,
//! named `shoal.v1.CacheService/Get` and so on, with the OpenTelemetry
//! semantic conventions for RPC (`rpc.system`, `rpc.service`, `rpc.method`,
//! `rpc.grpc.status_code`), continuing the caller's trace when the request
//! carries a W3C `traceparent`. Handlers add what only the decoded request
//! knows with [`record_call`].
//!
//! The span is at DEBUG level on the target [`RPC_TARGET`]. With the default
//! log level nothing listens to it, so it is never built and tracing costs
//! a disabled-callsite check per call; exporting (or `RUST_LOG=
//! shoal_server=debug`) turns it on.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tonic::Code;
use tracing::field::Empty;
use tracing::{Level, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, LogFormat, TelemetrySettings};
use crate::engine::DEFAULT_NAMESPACE;
use crate::error::ServerError;

/// Target of the per-call spans.
pub const RPC_TARGET: &str = "shoal_server::rpc";

/// Name of the tracer, in exported spans' instrumentation scope.
const TRACER_NAME: &str = "shoal-server";

/// Records on the current call's span the namespace a request works in and
/// how many keys, fields, members or values it names (1 for a single key,
/// 0 for none, as in a scan).
///
/// Handlers call it first: the span is opened before the request body is
/// decoded, so only they know these. Outside a call's span, or when nobody
/// listens to these spans, it does nothing and costs next to nothing.
pub fn record_call(namespace: &str, items: usize) {
    if !tracing::enabled!(target: RPC_TARGET, Level::DEBUG) {
        return;
    }
    let namespace = if namespace.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        namespace
    };
    let span = Span::current();
    span.record("shoal.namespace", namespace);
    span.record("shoal.items", items as u64);
}

/// Opens the span of a call to `path`, a child of the caller's span when
/// `headers` carry a W3C trace context.
pub(crate) fn rpc_span(path: &'static str, headers: &http::HeaderMap) -> Span {
    use crate::observe::rpc_stats::split_path;
    // The fields are computed inside the macro, which skips them when the
    // span is disabled (the common case: no exporter, no debug logs).
    let span = tracing::debug_span!(
        target: RPC_TARGET,
        "rpc",
        otel.name = path.strip_prefix('/').unwrap_or(path),
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = split_path(path).0,
        rpc.method = split_path(path).1,
        rpc.grpc.status_code = Empty,
        shoal.namespace = Empty,
        shoal.items = Empty,
    );
    if !span.is_disabled() && headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        // Fails only when no OpenTelemetry layer is installed (spans are
        // then only logged), which leaves nothing to continue.
        let _ = span.set_parent(parent);
    }
    span
}

/// Records how a call ended on its span. The codes the RPC conventions count
/// as server errors also mark the span as failed.
pub(crate) fn record_status(span: &Span, code: Code) {
    if span.is_disabled() {
        return;
    }
    span.record("rpc.grpc.status_code", code as i64);
    if matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    ) {
        span.record("otel.status_code", "ERROR");
    }
}

/// What [`init`] set up. Keep it for the life of the process and call
/// [`Telemetry::shutdown`] at the end, so buffered spans are not lost.
#[derive(Debug)]
#[must_use = "dropping it does not flush the spans still buffered"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans buffered so far. Blocks: call it from a thread that
    /// may block (`tokio::task::spawn_blocking`), never from the runtime
    /// the exporter runs on.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(error) = provider.force_flush()
        {
            tracing::warn!(%error, "cannot export spans");
        }
    }

    /// Exports what is buffered and stops exporting. Blocks, as
    /// [`Telemetry::flush`].
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            tracing::warn!(%error, "cannot export the last spans");
        }
    }
}

/// Installs the process-wide subscriber: log lines on stderr in
/// What is logged when `RUST_LOG` is unset: shoal's own events from
/// `info`, and h2's and hyper's only from `error`. h2 warns once for every
/// connection it closes for a rapid-reset flood, so a client that
/// reconnects and floods again would otherwise fill the log (1 267 lines
/// in 3 s in `hostile.sh resets`). kube's client logs every failed request
/// to the API server as an error, which the Kubernetes membership watch
/// logs again as a warning saying what failed and what happens next, so
/// the client's own line is left out. `RUST_LOG=info` shows them.
pub const DEFAULT_LOG_FILTER: &str = "info,h2=error,hyper=error,kube_client::client::builder=off";

/// `config.log.format` at the level `RUST_LOG` sets (`info` by default),
/// coloured only when stderr is a terminal (a file or a log collector gets
/// plain text), and
/// when `config.telemetry` names an OTLP endpoint, spans exported there.
///
/// Must run inside a Tokio runtime, where the exporter keeps its connection.
///
/// # Errors
/// [`ServerError::Exporter`] when the exporter cannot be built,
/// [`ServerError::Subscriber`] when a subscriber is already installed.
pub fn init(config: &Config) -> Result<Telemetry, ServerError> {
    let provider = tracer_provider(&config.telemetry)?;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let logs = match config.log.format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().boxed(),
    }
    .with_filter(filter);
    let traces = provider.as_ref().map(otel_layer);
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()?;
    Ok(Telemetry { provider })
}

/// A tracer provider exporting to the OTLP/gRPC endpoint in `settings`, or
/// `None` when there is none. Sampling is parent-based: a call whose caller
/// sampled its trace is always recorded, other traces with
/// `settings.sampling_ratio`.
///
/// Must run inside a Tokio runtime.
///
/// # Errors
/// [`ServerError::Exporter`] when the exporter cannot be built.
pub fn tracer_provider(
    settings: &TelemetrySettings,
) -> Result<Option<SdkTracerProvider>, ServerError> {
    if settings.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.otlp_endpoint.clone())
        .build()
        .map_err(|source| ServerError::Exporter {
            endpoint: settings.otlp_endpoint.clone(),
            source,
        })?;
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sampling_ratio,
            ))))
            .with_resource(resource)
            .build(),
    ))
}

/// A layer sending spans to `provider`: the per-call spans, and any other
/// span at INFO or above (so that a program embedding the server keeps its
/// own spans as parents).
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let spans = Targets::new()
        .with_default(Level::INFO)
        .with_target(RPC_TARGET, Level::DEBUG);
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(TRACER_NAME))
        .with_filter(spans)
}
