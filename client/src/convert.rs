//! Conversions between the domain types and the `shoal.v1` messages.
//!
//! The only module that knows both; the rest of the client speaks domain
//! types.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use shoal_proto::v1 as pb;

use crate::error::{Error, Result};
use crate::types::{
    ClusterMember, Condition, Expiry, IncrementResult, ItemMeta, KeyInfo, KeyType, NamespaceBudget,
    NamespaceStats, PersistenceStatus, RpcStats, ScanOptions, ScanPage, SetResult, SnapshotInfo,
    Stats, Topology,
};

/// Whole milliseconds in `d`, rounded up so that a nonzero duration never
/// becomes 0 (which the server would reject as "no TTL").
pub(crate) fn ceil_millis(d: Duration) -> i64 {
    let whole = d.as_millis();
    let millis = if d.subsec_nanos().is_multiple_of(1_000_000) {
        whole
    } else {
        whole + 1
    };
    i64::try_from(millis).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch, negative before it.
pub(crate) fn unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// The explicit wire form of an expiry.
pub(crate) fn expiry(expiry: Expiry) -> pb::Expiry {
    use pb::expiry::Kind;
    let kind = match expiry {
        Expiry::Never => Kind::Never(pb::NoExpiry {}),
        Expiry::Keep => Kind::Keep(pb::KeepExpiry {}),
        Expiry::After(d) => Kind::TtlMs(ceil_millis(d)),
        Expiry::At(t) => Kind::AtUnixMs(unix_millis(t)),
    };
    pb::Expiry { kind: Some(kind) }
}

/// The expiry field of a write, where "unset" already means "never".
pub(crate) fn write_expiry(e: Expiry) -> Option<pb::Expiry> {
    match e {
        Expiry::Never => None,
        other => Some(expiry(other)),
    }
}

/// The expiry field of a collection write, where "unset" means "keep":
/// [`Expiry::Keep`] is sent as no field at all.
pub(crate) fn collection_expiry(e: Expiry) -> Option<pb::Expiry> {
    match e {
        Expiry::Keep => None,
        other => Some(expiry(other)),
    }
}

/// Values that may be missing, in request order.
pub(crate) fn optional_values(values: Vec<pb::OptionalValue>) -> Vec<Option<Bytes>> {
    values
        .into_iter()
        .map(|v| v.found.then_some(v.value))
        .collect()
}

pub(crate) fn condition(condition: Condition) -> Option<pb::Condition> {
    use pb::condition::Kind;
    let kind = match condition {
        Condition::Always => return None,
        Condition::IfAbsent => Kind::IfAbsent(pb::IfAbsent {}),
        Condition::IfPresent => Kind::IfPresent(pb::IfPresent {}),
        Condition::IfVersion(v) => Kind::IfVersion(v),
    };
    Some(pb::Condition { kind: Some(kind) })
}

pub(crate) fn key_type_to_proto(key_type: Option<KeyType>) -> pb::KeyType {
    match key_type {
        None => pb::KeyType::Unspecified,
        Some(KeyType::String) => pb::KeyType::String,
        Some(KeyType::Hash) => pb::KeyType::Hash,
        Some(KeyType::List) => pb::KeyType::List,
        Some(KeyType::Set) => pb::KeyType::Set,
    }
}

pub(crate) fn key_type_from_proto(raw: i32) -> Result<KeyType> {
    match pb::KeyType::try_from(raw) {
        Ok(pb::KeyType::String) => Ok(KeyType::String),
        Ok(pb::KeyType::Hash) => Ok(KeyType::Hash),
        Ok(pb::KeyType::List) => Ok(KeyType::List),
        Ok(pb::KeyType::Set) => Ok(KeyType::Set),
        Ok(pb::KeyType::Unspecified) | Err(_) => Err(Error::InvalidResponse {
            message: format!("unknown key type {raw}"),
        }),
    }
}

pub(crate) fn item_meta(meta: pb::ItemMeta) -> Result<ItemMeta> {
    Ok(ItemMeta {
        version: meta.version,
        expires_at: (meta.expires_at_unix_ms != 0)
            .then(|| UNIX_EPOCH + Duration::from_millis(meta.expires_at_unix_ms)),
        ttl: meta.ttl_ms.map(Duration::from_millis),
        key_type: key_type_from_proto(meta.r#type)?,
        size: meta.size,
    })
}

fn required_meta(meta: Option<pb::ItemMeta>) -> Result<ItemMeta> {
    item_meta(meta.ok_or_else(|| Error::InvalidResponse {
        message: "existing key without metadata".into(),
    })?)
}

pub(crate) fn get_with_meta(response: pb::GetResponse) -> Result<Option<(Bytes, ItemMeta)>> {
    if !response.found {
        return Ok(None);
    }
    Ok(Some((response.value, required_meta(response.meta)?)))
}

pub(crate) fn set_result(response: pb::SetResponse) -> SetResult {
    SetResult {
        stored: response.stored,
        version: response.version,
        previous: response.previous,
    }
}

pub(crate) fn increment_result(response: pb::IncrementResponse) -> IncrementResult {
    IncrementResult {
        value: response.value,
        version: response.version,
        created: response.created,
    }
}

pub(crate) fn key_info(description: pb::KeyDescription) -> Result<KeyInfo> {
    let meta = if description.exists {
        Some(required_meta(description.meta)?)
    } else {
        None
    };
    Ok(KeyInfo {
        key: description.key,
        meta,
    })
}

pub(crate) fn scan_request(namespace: &str, options: &ScanOptions) -> pb::ScanRequest {
    pb::ScanRequest {
        namespace: namespace.to_owned(),
        pattern: options.pattern.clone().unwrap_or_default(),
        r#type: key_type_to_proto(options.key_type).into(),
        page_size: options.page_size,
        cursor: options.cursor.clone().unwrap_or_default(),
        limit: options.limit,
    }
}

pub(crate) fn scan_page(response: pb::ScanResponse) -> ScanPage {
    ScanPage {
        keys: response.keys,
        cursor: (!response.cursor.is_empty()).then_some(response.cursor),
    }
}

fn namespace_stats(stats: pb::NamespaceStats) -> NamespaceStats {
    NamespaceStats {
        namespace: stats.namespace,
        keys: stats.keys,
        hits: stats.hits,
        misses: stats.misses,
        hit_ratio: stats.hit_ratio,
        sets: stats.sets,
        deletes: stats.deletes,
        expirations: stats.expirations,
        memory_bytes: stats.memory_bytes,
        snapshot_bytes: stats.snapshot_bytes,
        flushed: stats.flushed,
        evicted_for_keys: stats.evicted_for_keys,
        evicted_for_memory: stats.evicted_for_memory,
        budget: stats.budget.map(|budget| NamespaceBudget {
            keys: budget.keys,
            charged_bytes: budget.charged_bytes,
            max_keys: budget.max_keys,
            max_memory_bytes: budget.max_memory_bytes,
        }),
    }
}

pub(crate) fn stats(response: pb::StatsResponse) -> Stats {
    Stats {
        total: namespace_stats(response.total.unwrap_or_default()),
        namespaces: response
            .namespaces
            .into_iter()
            .map(namespace_stats)
            .collect(),
        rpcs: response
            .rpcs
            .into_iter()
            .map(|rpc| RpcStats {
                method: rpc.method,
                calls: rpc.calls,
                errors: rpc.errors,
                errors_by_code: rpc.errors_by_code.into_iter().collect(),
            })
            .collect(),
        uptime: Duration::from_millis(response.uptime_ms),
        server_version: response.server_version,
        max_keys: response.max_keys,
        max_memory_bytes: response.max_memory_bytes,
        charged_bytes: response.charged_bytes,
        eviction_policy: response.eviction_policy,
        inflight_request_bytes: response.inflight_request_bytes,
        max_inflight_request_bytes: response.max_inflight_request_bytes,
        connections_open: response.connections_open,
        auth_failures: response.auth_failures,
        permission_denials: response.permission_denials,
        persistence: response.persistence.map(persistence_status),
        members: response.members.max(1),
    }
}

fn persistence_status(status: pb::PersistenceStatus) -> PersistenceStatus {
    let last_snapshot = (!status.last_snapshot_name.is_empty()).then(|| SnapshotInfo {
        name: status.last_snapshot_name,
        keys: status.last_snapshot_keys,
        bytes: status.last_snapshot_bytes,
        duration: Duration::from_millis(status.last_snapshot_duration_ms),
    });
    PersistenceStatus {
        mode: status.mode,
        fsync: status.fsync,
        data_dir: status.data_dir,
        last_snapshot,
        last_snapshot_unix_ms: status.last_snapshot_unix_ms,
        snapshots: status.snapshots,
        snapshot_failures: status.snapshot_failures,
        log_bytes: status.log_bytes,
        log_bytes_since_snapshot: status.log_bytes_since_snapshot,
        fsyncs: status.fsyncs,
        fsync_mean_us: status.fsync_mean_us,
        fsync_max_us: status.fsync_max_us,
        start_snapshot_keys: status.start_snapshot_keys,
        start_replayed_records: status.start_replayed_records,
        start_expired_keys: status.start_expired_keys,
        start_recovery: Duration::from_millis(status.start_recovery_ms),
    }
}

pub(crate) fn snapshot(response: pb::SnapshotResponse) -> SnapshotInfo {
    SnapshotInfo {
        name: response.name,
        keys: response.keys,
        bytes: response.bytes,
        duration: Duration::from_millis(response.duration_ms),
    }
}

pub(crate) fn topology(topology: pb::Topology) -> Topology {
    Topology {
        epoch: topology.epoch,
        local_id: topology.local_id,
        members: topology
            .members
            .into_iter()
            .map(|member| ClusterMember {
                id: member.id,
                address: member.address,
                ready: member.ready,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::expiry::Kind;

    #[test]
    fn sub_millisecond_ttls_round_up() {
        assert_eq!(ceil_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_millis(Duration::from_micros(999)), 1);
        assert_eq!(ceil_millis(Duration::from_millis(5)), 5);
        assert_eq!(ceil_millis(Duration::from_micros(5_001)), 6);
        assert_eq!(ceil_millis(Duration::ZERO), 0);
        assert_eq!(ceil_millis(Duration::MAX), i64::MAX);
    }

    #[test]
    fn expiries_map_to_their_wire_form() {
        assert_eq!(
            expiry(Expiry::After(Duration::from_secs(2))).kind,
            Some(Kind::TtlMs(2_000))
        );
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(
            expiry(Expiry::At(at)).kind,
            Some(Kind::AtUnixMs(1_700_000_000_123))
        );
        assert_eq!(
            expiry(Expiry::At(UNIX_EPOCH - Duration::from_secs(1))).kind,
            Some(Kind::AtUnixMs(-1_000))
        );
        assert_eq!(
            expiry(Expiry::Keep).kind,
            Some(Kind::Keep(pb::KeepExpiry {}))
        );
        assert_eq!(
            expiry(Expiry::Never).kind,
            Some(Kind::Never(pb::NoExpiry {}))
        );
        assert_eq!(write_expiry(Expiry::Never), None);
    }

    #[test]
    fn collection_writes_send_no_expiry_to_keep_it() {
        assert_eq!(collection_expiry(Expiry::Keep), None);
        assert_eq!(
            collection_expiry(Expiry::Never).and_then(|e| e.kind),
            Some(Kind::Never(pb::NoExpiry {}))
        );
        assert_eq!(
            collection_expiry(Expiry::After(Duration::from_millis(1500))).and_then(|e| e.kind),
            Some(Kind::TtlMs(1500))
        );
    }

    #[test]
    fn optional_values_keep_their_order() {
        let values = optional_values(vec![
            pb::OptionalValue {
                found: true,
                value: Bytes::from_static(b"a"),
            },
            pb::OptionalValue::default(),
            pb::OptionalValue {
                found: true,
                value: Bytes::new(),
            },
        ]);
        assert_eq!(
            values,
            [Some(Bytes::from_static(b"a")), None, Some(Bytes::new())]
        );
    }

    #[test]
    fn conditions_map_to_their_wire_form() {
        use pb::condition::Kind;
        assert_eq!(condition(Condition::Always), None);
        assert_eq!(
            condition(Condition::IfAbsent).and_then(|c| c.kind),
            Some(Kind::IfAbsent(pb::IfAbsent {}))
        );
        assert_eq!(
            condition(Condition::IfPresent).and_then(|c| c.kind),
            Some(Kind::IfPresent(pb::IfPresent {}))
        );
        assert_eq!(
            condition(Condition::IfVersion(9)).and_then(|c| c.kind),
            Some(Kind::IfVersion(9))
        );
    }

    #[test]
    fn item_meta_reads_zero_as_no_expiry() {
        let meta = item_meta(pb::ItemMeta {
            version: 3,
            expires_at_unix_ms: 0,
            ttl_ms: None,
            r#type: pb::KeyType::List.into(),
            size: 10,
        })
        .unwrap();
        assert_eq!(meta.expires_at, None);
        assert_eq!(meta.ttl, None);
        assert_eq!(meta.key_type, KeyType::List);
        assert!(
            item_meta(pb::ItemMeta {
                r#type: 42,
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn empty_cursor_ends_the_scan() {
        let last = scan_page(pb::ScanResponse {
            keys: vec![Bytes::from_static(b"a")],
            cursor: Bytes::new(),
        });
        assert_eq!(last.cursor, None);
        let more = scan_page(pb::ScanResponse {
            keys: vec![],
            cursor: Bytes::from_static(b"c"),
        });
        assert_eq!(more.cursor, Some(Bytes::from_static(b"c")));
    }
}
