//! Traces end to end: client calls made inside a parent span reach a real
//! server, whose spans arrive at an OTLP receiver in the caller's trace.
//!
//! One test per file: it installs the process-wide subscriber.

use std::time::Duration;

use opentelemetry::trace::TraceContextExt;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use shoal_client::{Client, ScanOptions};
use shoal_server::Config;
use shoal_tests::{TestServer, TraceCollector};
use tokio_stream::StreamExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The value of attribute `key`, as text.
fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|attribute| attribute.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        Value::StringValue(text) => text.clone(),
        Value::IntValue(number) => number.to_string(),
        Value::BoolValue(flag) => flag.to_string(),
        other => format!("{other:?}"),
    })
}

fn find<'a>(spans: &'a [Span], name: &str, kind: SpanKind) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|span| span.name == name && span.kind == kind as i32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_spans_continue_the_callers_trace() {
    let collector = TraceCollector::start().await;
    let mut config = Config::default();
    config.telemetry.otlp_endpoint = collector.endpoint();
    config.telemetry.service_name = "shoal-traced".into();
    let telemetry = std::sync::Arc::new(
        shoal_server::observe::telemetry::init(&config).expect("install telemetry"),
    );
    assert!(telemetry.exporting());
    let server = TestServer::start_with(config).await;
    let client = Client::builder()
        .endpoint(server.endpoint())
        .namespace("traced")
        .connect()
        .await
        .expect("connect");

    let checkout = tracing::info_span!("checkout");
    async {
        client.set("cart:1", "3 items").await.expect("set");
        assert!(client.get("cart:1").await.expect("get").is_some());
        client.get("").await.expect_err("an empty key is refused");
        let keys: Vec<_> = client.scan(ScanOptions::matching("cart:*")).collect().await;
        assert_eq!(keys.len(), 1);
    }
    .instrument(checkout.clone())
    .await;
    let checkout_context = checkout.context();
    let trace_id = checkout_context.span().span_context().trace_id().to_bytes();
    let checkout_id = checkout_context.span().span_context().span_id().to_bytes();
    drop(checkout);

    // Spans leave in batches: flush, then look, until everything is there.
    let wanted = [
        "shoal.v1.CacheService/Set",
        "shoal.v1.CacheService/Get",
        "shoal.v1.CacheService/Scan",
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut backoff = Duration::from_millis(10);
    let spans = loop {
        let flushing = std::sync::Arc::clone(&telemetry);
        tokio::task::spawn_blocking(move || flushing.flush())
            .await
            .expect("flush");
        let spans = collector.spans();
        let arrived = |name| {
            find(&spans, name, SpanKind::Server)
                .iter()
                .any(|span| span.trace_id == trace_id)
        };
        if wanted.iter().all(|name| arrived(name))
            && find(&spans, "checkout", SpanKind::Internal).len() == 1
        {
            break spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans missing; received {:?}",
            spans.iter().map(|span| &span.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    };

    for name in wanted {
        let servers: Vec<_> = find(&spans, name, SpanKind::Server)
            .into_iter()
            .filter(|span| span.trace_id == trace_id)
            .collect();
        let clients: Vec<_> = find(&spans, name, SpanKind::Client)
            .into_iter()
            .filter(|span| span.trace_id == trace_id)
            .collect();
        assert_eq!(
            servers.len(),
            clients.len(),
            "{name}: one server span per call"
        );
        for server_span in servers {
            let client_span = clients
                .iter()
                .find(|client| client.span_id == server_span.parent_span_id)
                .unwrap_or_else(|| panic!("{name}: the server span's parent is a client span"));
            assert_eq!(
                client_span.parent_span_id, checkout_id,
                "{name}: inside checkout"
            );
            for (key, value) in [
                ("rpc.system", "grpc"),
                ("rpc.service", "shoal.v1.CacheService"),
                ("shoal.namespace", "traced"),
            ] {
                assert_eq!(
                    attribute(server_span, key).as_deref(),
                    Some(value),
                    "{name} {key}"
                );
            }
            assert_eq!(
                attribute(server_span, "rpc.method").as_deref(),
                name.split('/').nth(1),
            );
            // The client's scan stops reading after the last page, before
            // the status: its span then ends without one.
            if !name.ends_with("/Scan") {
                assert_eq!(
                    attribute(server_span, "rpc.grpc.status_code"),
                    attribute(client_span, "rpc.grpc.status_code"),
                    "{name}: both sides saw the same status"
                );
            }
        }
    }

    let gets = find(&spans, "shoal.v1.CacheService/Get", SpanKind::Server);
    let codes: Vec<_> = gets
        .iter()
        .map(|span| attribute(span, "rpc.grpc.status_code"))
        .collect();
    assert!(codes.contains(&Some("0".into())), "{codes:?}");
    assert!(
        codes.contains(&Some("3".into())),
        "INVALID_ARGUMENT: {codes:?}"
    );
    for get in gets {
        assert_eq!(attribute(get, "shoal.items").as_deref(), Some("1"));
        // INVALID_ARGUMENT is the caller's fault: not a server error.
        let failed =
            get.status.as_ref().map(|status| status.code) == Some(StatusCode::Error as i32);
        assert!(!failed, "{get:?}");
    }
    let scan = find(&spans, "shoal.v1.CacheService/Scan", SpanKind::Server)[0];
    assert_eq!(
        attribute(scan, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    assert_eq!(attribute(scan, "shoal.items").as_deref(), Some("0"));

    drop(client);
    server.stop().await.expect("clean stop");
    let telemetry = std::sync::Arc::into_inner(telemetry).expect("sole owner");
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .expect("shutdown");
}
