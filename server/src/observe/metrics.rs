//! The Prometheus metrics served at `/metrics`.
//!
//! Nothing here counts anything: every figure is read at scrape time from
//! where it is already kept (the engine's per-namespace statistics and
//! budget, [`RpcStats`](crate::observe::rpc_stats::RpcStats),
//! [`Traffic`](crate::limits::traffic::Traffic),
//! the Watch [`ChangeFeed`](crate::change_feed::ChangeFeed),
//! [`AuthCounters`]),
//! so the metrics and `AdminService.Stats` always agree and the request path
//! pays for no second set of counters.
//!
//! The families, in the OpenMetrics text format (a counter's samples carry
//! the `_total` suffix):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `shoal_build_info` | gauge (1) | `version` |
//! | `shoal_requests_total` | counter | `service`, `method`, `code` |
//! | `shoal_request_duration_seconds` | histogram | `service`, `method` |
//! | `shoal_cache_hits_total`, `shoal_cache_misses_total`, `shoal_cache_sets_total` | counter | `namespace` |
//! | `shoal_evictions_total` | counter | `namespace`, `cause` (`memory`, `keys`) |
//! | `shoal_expirations_total` | counter | `namespace` |
//! | `shoal_keys` | gauge | `namespace` |
//! | `shoal_memory_used_bytes` | gauge | `namespace` |
//! | `shoal_memory_limit_bytes` | gauge (0: no limit) | |
//! | `shoal_keys_limit` | gauge (0: no limit) | |
//! | `shoal_connections_open`, `shoal_streams_open` | gauge | |
//! | `shoal_watch_subscribers` | gauge | |
//! | `shoal_watch_resyncs_total` | counter | |
//! | `shoal_auth_failures_total` | counter | `reason` (`missing`, `malformed`, `unknown`, `expired`, `rate_limited`) |
//! | `shoal_permission_denials_total` | counter | |
//! | `shoal_persistence_info` | gauge (1), with persistence on | `mode`, `fsync` |
//! | `shoal_persistence_log_written_bytes_total` | counter | |
//! | `shoal_persistence_log_since_snapshot_bytes` | gauge | |
//! | `shoal_persistence_fsyncs_total`, `shoal_persistence_fsync_seconds_total` | counter | |
//! | `shoal_persistence_fsync_last_seconds`, `shoal_persistence_fsync_max_seconds` | gauge | |
//! | `shoal_persistence_snapshots_total`, `shoal_persistence_snapshot_failures_total` | counter | |
//! | `shoal_persistence_last_snapshot_timestamp_seconds`, `shoal_persistence_last_snapshot_keys`, `shoal_persistence_last_snapshot_bytes`, `shoal_persistence_last_snapshot_duration_seconds` | gauge | |
//! | `shoal_persistence_start_replayed_records`, `shoal_persistence_start_restored_keys`, `shoal_persistence_start_recovery_seconds` | gauge | |

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::auth::{AuthCounters, Refusal};
use crate::change_feed::ChangeFeed;
use crate::engine::{Engine, NamespaceStats};
use crate::limits::byte_budget::ByteBudget;
use crate::limits::traffic::Traffic;
use crate::observe::rpc_stats::{RpcStats, code_name};
use crate::persistence::runtime::Persistence;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics of one server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

/// What the metrics are read from at scrape time: the parts of the
/// server's state that keep figures. They are named one by one so that this
/// module depends on the figures, not on the gRPC services that hold them.
#[derive(Debug, Clone)]
pub struct MetricSources {
    /// The cache, for per-namespace statistics.
    pub engine: Engine,
    /// Per-method call counts and latencies.
    pub rpc_stats: Arc<RpcStats>,
    /// Connections and streams open.
    pub traffic: Arc<Traffic>,
    /// Request bytes in flight: from a message's first byte until it is handled.
    pub inflight: Arc<ByteBudget>,
    /// Watch subscribers and resyncs.
    pub feed: Arc<ChangeFeed>,
    /// Calls refused for their credentials or rights.
    pub auth: Arc<AuthCounters>,
    /// The log and snapshots, with persistence on.
    pub persistence: Option<Arc<Persistence>>,
}

impl Metrics {
    /// Metrics read from `state`.
    pub fn new(state: MetricSources) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ServerCollector { state }));
        Self { registry }
    }

    /// Every metric, in the OpenMetrics text format.
    ///
    /// # Errors
    /// When a collector fails to write, which ours never do.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut text = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Reads the server's figures at scrape time.
#[derive(Debug)]
struct ServerCollector {
    state: MetricSources,
}

impl Collector for ServerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let state = &self.state;
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        let mut build = encoder.encode_descriptor(
            "shoal_build_info",
            "The running version; always 1.",
            None,
            MetricType::Gauge,
        )?;
        build.encode_family(&version)?.encode_gauge(&1u64)?;

        self.encode_requests(&mut encoder)?;
        self.encode_engine(&mut encoder)?;

        let traffic = &state.traffic;
        gauge(
            &mut encoder,
            "shoal_connections_open",
            "TCP connections open on the gRPC listener.",
            None,
            traffic.connections_open(),
        )?;
        gauge(
            &mut encoder,
            "shoal_streams_open",
            "gRPC calls in flight, unary and streaming.",
            None,
            traffic.streams_open(),
        )?;
        self.encode_limits(&mut encoder)?;
        let watch = &state.feed;
        gauge(
            &mut encoder,
            "shoal_watch_subscribers",
            "Subscribers of the Watch feed.",
            None,
            watch.watchers() as u64,
        )?;
        let mut resyncs = encoder.encode_descriptor(
            "shoal_watch_resyncs",
            "Watch subscribers told to resync after falling behind.",
            None,
            MetricType::Counter,
        )?;
        encode_counter(&mut resyncs, watch.resyncs())?;
        self.encode_auth(&mut encoder)?;
        self.encode_persistence(&mut encoder)
    }
}

/// Microseconds as seconds.
fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

impl ServerCollector {
    /// The log, snapshots and recovery; nothing with persistence off.
    fn encode_persistence(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let Some(persistence) = &self.state.persistence else {
            return Ok(());
        };
        let status = persistence.status();
        let labels = [
            ("mode", crate::persistence::runtime::mode_name(status.mode)),
            (
                "fsync",
                crate::persistence::runtime::fsync_name(status.fsync),
            ),
        ];
        encoder
            .encode_descriptor(
                "shoal_persistence_info",
                "What survives a restart (mode) and when the log reaches the disk (fsync); always 1.",
                None,
                MetricType::Gauge,
            )?
            .encode_family(&labels)?
            .encode_gauge(&1u64)?;
        let counters: [(&str, &str, Option<&Unit>, f64); 5] = [
            (
                "shoal_persistence_log_written",
                "Bytes appended to the log since start.",
                Some(&Unit::Bytes),
                status.log_bytes as f64,
            ),
            (
                "shoal_persistence_fsyncs",
                "fdatasync calls on log segments.",
                None,
                status.fsyncs as f64,
            ),
            (
                "shoal_persistence_fsync",
                "Time spent in fdatasync on log segments.",
                Some(&Unit::Seconds),
                seconds(status.fsync_total_us),
            ),
            (
                "shoal_persistence_snapshots",
                "Snapshots taken since start.",
                None,
                status.snapshots as f64,
            ),
            (
                "shoal_persistence_snapshot_failures",
                "Snapshots that failed (the previous one stays in force).",
                None,
                status.snapshot_failures as f64,
            ),
        ];
        for (name, help, unit, value) in counters {
            let mut counter = encoder.encode_descriptor(name, help, unit, MetricType::Counter)?;
            encode_counter(&mut counter, value)?;
        }
        let last = status.last_snapshot.clone().unwrap_or_default();
        let gauges: [(&str, &str, Option<&Unit>, f64); 10] = [
            (
                "shoal_persistence_log_since_snapshot",
                "Log bytes appended since the last snapshot: what a restart replays beyond it.",
                Some(&Unit::Bytes),
                status.log_bytes_since_snapshot as f64,
            ),
            (
                "shoal_persistence_fsync_last",
                "The last fdatasync of a log segment.",
                Some(&Unit::Seconds),
                seconds(status.fsync_last_us),
            ),
            (
                "shoal_persistence_fsync_max",
                "The longest fdatasync of a log segment since start.",
                Some(&Unit::Seconds),
                seconds(status.fsync_max_us),
            ),
            (
                "shoal_persistence_last_snapshot_timestamp",
                "When this process's last snapshot finished, in Unix time; 0 for none yet.",
                Some(&Unit::Seconds),
                last.finished_unix_ms as f64 / 1e3,
            ),
            (
                "shoal_persistence_last_snapshot_keys",
                "Keys in this process's last snapshot.",
                None,
                last.keys as f64,
            ),
            (
                "shoal_persistence_last_snapshot",
                "Size of this process's last snapshot file.",
                Some(&Unit::Bytes),
                last.bytes as f64,
            ),
            (
                "shoal_persistence_last_snapshot_duration",
                "Time this process's last snapshot took.",
                Some(&Unit::Seconds),
                last.duration.as_secs_f64(),
            ),
            (
                "shoal_persistence_start_replayed_records",
                "Log records replayed at start-up.",
                None,
                status.start.replayed_records as f64,
            ),
            (
                "shoal_persistence_start_restored_keys",
                "Keys restored from the snapshot at start-up.",
                None,
                status.start.snapshot_keys as f64,
            ),
            (
                "shoal_persistence_start_recovery",
                "Time recovery took at start-up.",
                Some(&Unit::Seconds),
                status.start.elapsed.as_secs_f64(),
            ),
        ];
        for (name, help, unit, value) in gauges {
            gauge(encoder, name, help, unit, value)?;
        }
        Ok(())
    }
}

impl ServerCollector {
    /// Calls refused by authentication or authorization.
    fn encode_auth(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let auth = &self.state.auth;
        let mut failures = encoder.encode_descriptor(
            "shoal_auth_failures",
            "Calls refused before their handler for missing, malformed, unknown or expired \
             credentials, or because their address failed too often, by reason.",
            None,
            MetricType::Counter,
        )?;
        for refusal in Refusal::ALL {
            let labels = [("reason", refusal.name())];
            encode_counter(
                &mut failures.encode_family(&labels)?,
                auth.refusals(refusal),
            )?;
        }
        let mut denials = encoder.encode_descriptor(
            "shoal_permission_denials",
            "Calls, batch items and pipeline commands refused for want of a right.",
            None,
            MetricType::Counter,
        )?;
        encode_counter(&mut denials, auth.denials())
    }

    /// What the limits on clients hold and refuse.
    fn encode_limits(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let inflight = &self.state.inflight;
        gauge(
            encoder,
            "shoal_inflight_request",
            "Bytes of request messages in flight, from their first byte until they are handled.",
            Some(&Unit::Bytes),
            inflight.used(),
        )?;
        gauge(
            encoder,
            "shoal_inflight_request_limit",
            "The limit on them (grpc.max_inflight_bytes).",
            Some(&Unit::Bytes),
            inflight.limit(),
        )?;
        let traffic = &self.state.traffic;
        let closed: [(&str, u64); 5] = [
            ("max_connections", traffic.refused_at_cap()),
            ("preface_timeout", traffic.preface_timeouts()),
            ("idle_timeout", traffic.idle_closes()),
            ("max_handshakes", traffic.refused_at_handshake_cap()),
            ("handshake_timeout", traffic.handshake_timeouts()),
        ];
        let mut family = encoder.encode_descriptor(
            "shoal_connections_closed_by_limit",
            "Connections the server closed because of a limit, by limit.",
            None,
            MetricType::Counter,
        )?;
        for (limit, count) in closed {
            let labels = [("limit", limit)];
            encode_counter(&mut family.encode_family(&labels)?, count)?;
        }
        let failed: [(&str, u64); 2] = [
            ("client_certificate", traffic.client_refusals()),
            ("other", traffic.handshake_failures()),
        ];
        let mut family = encoder.encode_descriptor(
            "shoal_tls_handshake_failures",
            "TLS handshakes on the gRPC listener that failed, by reason: a client \
             certificate refused or missing, or anything else.",
            None,
            MetricType::Counter,
        )?;
        for (reason, count) in failed {
            let labels = [("reason", reason)];
            encode_counter(&mut family.encode_family(&labels)?, count)?;
        }
        let mut refused = encoder.encode_descriptor(
            "shoal_inflight_refusals",
            "Request messages refused because the server's in-flight budget \
             (grpc.max_inflight_bytes) was full.",
            None,
            MetricType::Counter,
        )?;
        encode_counter(&mut refused, inflight.refused())
    }

    fn encode_requests(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let methods = self.state.rpc_stats.snapshot();
        let mut requests = encoder.encode_descriptor(
            "shoal_requests",
            "gRPC calls finished, by final status code.",
            None,
            MetricType::Counter,
        )?;
        for method in &methods {
            for (code, count) in &method.by_code {
                let labels = [
                    ("service", method.service()),
                    ("method", method.name()),
                    ("code", code_name(*code)),
                ];
                encode_counter(&mut requests.encode_family(&labels)?, *count)?;
            }
        }
        let mut durations = encoder.encode_descriptor(
            "shoal_request_duration",
            "Time from a call's arrival to its final status (a stream's last message).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for method in &methods {
            let labels = [("service", method.service()), ("method", method.name())];
            let latency = &method.latency;
            durations
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    latency.sum_seconds,
                    latency.count,
                    &latency.buckets,
                    None,
                )?;
        }
        Ok(())
    }

    fn encode_engine(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let engine = &self.state.engine;
        let namespaces: Vec<_> = engine
            .namespaces()
            .iter()
            .map(|namespace| (namespace.name().to_string(), namespace.stats()))
            .collect();
        per_namespace(
            encoder,
            &namespaces,
            "shoal_cache_hits",
            "Reads that found their key.",
            None,
            MetricType::Counter,
            |stats| stats.hits,
        )?;
        per_namespace(
            encoder,
            &namespaces,
            "shoal_cache_misses",
            "Reads that did not find their key.",
            None,
            MetricType::Counter,
            |stats| stats.misses,
        )?;
        per_namespace(
            encoder,
            &namespaces,
            "shoal_cache_sets",
            "Writes that stored a value.",
            None,
            MetricType::Counter,
            |stats| stats.sets,
        )?;
        let mut evictions = encoder.encode_descriptor(
            "shoal_evictions",
            "Keys evicted to stay within a limit, by the limit hit.",
            None,
            MetricType::Counter,
        )?;
        for (namespace, stats) in &namespaces {
            for (cause, count) in [
                ("memory", stats.evicted_for_memory),
                ("keys", stats.evicted_for_keys),
            ] {
                let labels = [("namespace", namespace.as_str()), ("cause", cause)];
                encode_counter(&mut evictions.encode_family(&labels)?, count)?;
            }
        }
        per_namespace(
            encoder,
            &namespaces,
            "shoal_expirations",
            "Keys removed because their deadline passed.",
            None,
            MetricType::Counter,
            |stats| stats.expirations,
        )?;
        per_namespace(
            encoder,
            &namespaces,
            "shoal_keys",
            "Keys held.",
            None,
            MetricType::Gauge,
            |stats| stats.keys,
        )?;
        per_namespace(
            encoder,
            &namespaces,
            "shoal_memory_used",
            "Bytes held for entries: payload, table slots and expiry index.",
            Some(&Unit::Bytes),
            MetricType::Gauge,
            |stats| stats.memory_bytes,
        )?;
        per_namespace(
            encoder,
            &namespaces,
            "shoal_snapshot_memory",
            "Bytes of collection versions kept for streamed reads still reading them; \
             charged to the memory budget.",
            Some(&Unit::Bytes),
            MetricType::Gauge,
            |stats| stats.snapshot_bytes,
        )?;
        let budget = engine.budget_usage();
        gauge(
            encoder,
            "shoal_memory_limit",
            "Memory budget for entries across namespaces; 0 for none.",
            Some(&Unit::Bytes),
            budget.max_memory_bytes,
        )?;
        gauge(
            encoder,
            "shoal_keys_limit",
            "Most keys across namespaces; 0 for none.",
            None,
            budget.max_keys,
        )
    }
}

/// A family with one sample per namespace, read by `value`.
fn per_namespace(
    encoder: &mut DescriptorEncoder<'_>,
    namespaces: &[(String, NamespaceStats)],
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    value: fn(&NamespaceStats) -> u64,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, unit, kind)?;
    for (namespace, stats) in namespaces {
        let labels = [("namespace", namespace.as_str())];
        let mut sample = family.encode_family(&labels)?;
        match kind {
            MetricType::Counter => encode_counter(&mut sample, value(stats))?,
            _ => sample.encode_gauge(&value(stats))?,
        }
    }
    Ok(())
}

/// A gauge without labels.
fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, unit, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// A counter sample, without exemplar.
fn encode_counter(encoder: &mut MetricEncoder<'_>, value: impl EncodeCounterValue) -> fmt::Result {
    encoder.encode_counter::<NoLabelSet, _, u64>(&value, None)
}
