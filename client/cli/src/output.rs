//! Rendering: escaping of keys and values, tables, sizes and durations.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

use shoal_client::{KeyInfo, NamespaceStats, Stats, Topology};

/// Bytes as text for people: printable UTF-8 as it is; anything else
/// (control characters, invalid UTF-8) double-quoted with escapes, as
/// `redis-cli` shows it: `"a\x00b\n"`.
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(char::is_control) => Cow::Borrowed(s),
        _ => Cow::Owned(format!("\"{}\"", escape(bytes, true))),
    }
}

/// Bytes as a JSON string: valid UTF-8 as it is (JSON escapes what it
/// needs), otherwise the escaped form of [`text`] without quotes.
pub fn json_string(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => escape(bytes, false),
    }
}

/// Escapes backslashes, control characters and invalid UTF-8 bytes
/// (`\x80`), and double quotes when `quote` is set.
fn escape(bytes: &[u8], quote: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' if quote => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Column alignment in a [`table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text columns.
    Left,
    /// Number columns.
    Right,
}

/// A plain-text table: a header line, then one line per row, columns
/// separated by two spaces and padded to their widest cell.
pub fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns
        .iter()
        .map(|(name, _)| name.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = columns.iter().map(|(name, _)| (*name).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, ((cell, width), (_, align))) in row.iter().zip(&widths).zip(columns).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = width - cell.chars().count();
            match align {
                Align::Left => {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The `describe` table.
pub fn describe_table(infos: &[KeyInfo]) -> String {
    let columns = [
        ("KEY", Align::Left),
        ("EXISTS", Align::Left),
        ("TYPE", Align::Left),
        ("TTL", Align::Right),
        ("VERSION", Align::Right),
        ("SIZE", Align::Right),
    ];
    let rows: Vec<Vec<String>> = infos
        .iter()
        .map(|info| {
            let key = text(&info.key).into_owned();
            match &info.meta {
                None => vec![
                    key,
                    "no".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ],
                Some(meta) => vec![
                    key,
                    "yes".into(),
                    meta.key_type.to_string(),
                    meta.ttl.map_or_else(
                        || "never".to_owned(),
                        |ttl| format!("{}ms", ttl.as_millis()),
                    ),
                    meta.version.to_string(),
                    meta.size.to_string(),
                ],
            }
        })
        .collect();
    table(&columns, &rows)
}

/// The `stats` report: a table per namespace with the total, then one per
/// RPC method.
/// The persistence paragraph of `shoal stats`.
fn persistence_line(status: Option<&shoal_client::PersistenceStatus>) -> String {
    let Some(status) = status else {
        return "persistence off: a restart starts empty\n\n".to_owned();
    };
    let last = match &status.last_snapshot {
        Some(last) => format!(
            "last snapshot {} ({} keys, {}, took {})",
            last.name,
            last.keys,
            size(last.bytes),
            duration(last.duration)
        ),
        None => "no snapshot taken since start".to_owned(),
    };
    format!(
        "persistence {} (fsync {}) in {}; {last}; {} snapshots, {} failed\n\
         log {} written, {} since the last snapshot; {} fsyncs, mean {} us, max {} us\n\
         at start: {} keys from the snapshot, {} log records replayed, {} expired, took {}\n\n",
        status.mode,
        status.fsync,
        status.data_dir,
        status.snapshots,
        status.snapshot_failures,
        size(status.log_bytes),
        size(status.log_bytes_since_snapshot),
        status.fsyncs,
        status.fsync_mean_us,
        status.fsync_max_us,
        status.start_snapshot_keys,
        status.start_replayed_records,
        status.start_expired_keys,
        duration(status.start_recovery),
    )
}

/// The members of a cluster, one per line, marking the one that answered.
pub fn topology_report(topology: &Topology) -> String {
    let columns = [
        ("ID", Align::Left),
        ("ADDRESS", Align::Left),
        ("READY", Align::Left),
        ("", Align::Left),
    ];
    let rows: Vec<Vec<String>> = topology
        .members
        .iter()
        .map(|member| {
            vec![
                member.id.clone(),
                if member.address.is_empty() {
                    "-".to_owned()
                } else {
                    member.address.clone()
                },
                if member.ready { "yes" } else { "no" }.to_owned(),
                if member.id == topology.local_id {
                    "(answered)".to_owned()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    format!(
        "epoch {}, {} members\n{}",
        topology.epoch,
        topology.members.len(),
        table(&columns, &rows)
    )
}

pub fn stats_report(stats: &Stats) -> String {
    let limit = |max: u64, show: &dyn Fn(u64) -> String| {
        if max == 0 {
            "none".to_owned()
        } else {
            show(max)
        }
    };
    let mut out = if stats.members > 1 {
        format!(
            "{} cluster members added up (--member for this one alone)\n",
            stats.members
        )
    } else {
        String::new()
    };
    out += &format!(
        "server {}, up {}; eviction policy {}, max keys {}, max memory {} ({} charged)\n\
         {} connections, {} of {} in flight; {} failed authentications, {} permission denials\n\n",
        stats.server_version,
        duration(stats.uptime),
        stats.eviction_policy,
        limit(stats.max_keys, &|n| n.to_string()),
        limit(stats.max_memory_bytes, &size),
        size(stats.charged_bytes),
        stats.connections_open,
        size(stats.inflight_request_bytes),
        limit(stats.max_inflight_request_bytes, &size),
        stats.auth_failures,
        stats.permission_denials,
    );
    out.push_str(&persistence_line(stats.persistence.as_ref()));
    let columns = [
        ("NAMESPACE", Align::Left),
        ("KEYS", Align::Right),
        ("HITS", Align::Right),
        ("MISSES", Align::Right),
        ("HIT%", Align::Right),
        ("SETS", Align::Right),
        ("DELETES", Align::Right),
        ("EXPIRED", Align::Right),
        ("FLUSHED", Align::Right),
        ("EVICTED", Align::Right),
        ("MEMORY", Align::Right),
        ("BUDGET", Align::Right),
    ];
    let budget = |ns: &NamespaceStats| {
        let Some(budget) = ns.budget else {
            return "-".to_owned();
        };
        let mut limits = Vec::new();
        if budget.max_memory_bytes > 0 {
            limits.push(size(budget.max_memory_bytes));
        }
        if budget.max_keys > 0 {
            limits.push(format!("{} keys", budget.max_keys));
        }
        limits.join(", ")
    };
    let row = |name: &str, ns: &NamespaceStats| {
        vec![
            name.to_owned(),
            ns.keys.to_string(),
            ns.hits.to_string(),
            ns.misses.to_string(),
            format!("{:.1}", ns.hit_ratio * 100.0),
            ns.sets.to_string(),
            ns.deletes.to_string(),
            ns.expirations.to_string(),
            ns.flushed.to_string(),
            (ns.evicted_for_keys + ns.evicted_for_memory).to_string(),
            if ns.snapshot_bytes > 0 {
                format!(
                    "{} (+{} snapshots)",
                    size(ns.memory_bytes),
                    size(ns.snapshot_bytes)
                )
            } else {
                size(ns.memory_bytes)
            },
            budget(ns),
        ]
    };
    let mut rows: Vec<Vec<String>> = stats
        .namespaces
        .iter()
        .map(|ns| row(&ns.namespace, ns))
        .collect();
    rows.push(row("(total)", &stats.total));
    out.push_str(&table(&columns, &rows));

    if !stats.rpcs.is_empty() {
        out.push('\n');
        let columns = [
            ("METHOD", Align::Left),
            ("CALLS", Align::Right),
            ("ERRORS", Align::Right),
            ("BY CODE", Align::Left),
        ];
        let rows: Vec<Vec<String>> = stats
            .rpcs
            .iter()
            .map(|rpc| {
                let by_code: Vec<String> = rpc
                    .errors_by_code
                    .iter()
                    .map(|(code, n)| format!("{code}={n}"))
                    .collect();
                vec![
                    rpc.method.clone(),
                    rpc.calls.to_string(),
                    rpc.errors.to_string(),
                    by_code.join(" "),
                ]
            })
            .collect();
        out.push_str(&table(&columns, &rows));
    }
    out
}

/// A byte count in binary units: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    #[allow(clippy::cast_precision_loss)] // a display value
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration in days, hours, minutes and seconds: `2d 3h 0m 5s`, `42s`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, minutes, seconds) =
        (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d {hours}h {minutes}m {seconds}s")
    } else if hours > 0 {
        format!("{hours}h {minutes}m {seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m {seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use shoal_client::{ItemMeta, KeyType};

    use super::*;

    #[test]
    fn printable_utf8_is_shown_as_is() {
        assert_eq!(text(b"price:AAPL"), "price:AAPL");
        assert_eq!(text("caf\u{e9} \\ \"q\"".as_bytes()), "caf\u{e9} \\ \"q\"");
        assert_eq!(text(b""), "");
    }

    #[test]
    fn other_bytes_are_quoted_and_escaped() {
        assert_eq!(text(b"a\x00b"), r#""a\x00b""#);
        assert_eq!(text(b"line\nnext\t\"x\"\\"), r#""line\nnext\t\"x\"\\""#);
        assert_eq!(text(b"\xff\xfeok"), r#""\xff\xfeok""#);
        assert_eq!(text("\u{e9}\x7f".as_bytes()), "\"\u{e9}\\x7f\"");
    }

    #[test]
    fn json_strings_escape_only_invalid_utf8() {
        assert_eq!(json_string(b"a\nb"), "a\nb");
        assert_eq!(json_string(b"a\xffb\\"), r"a\xffb\\");
    }

    #[test]
    fn tables_pad_columns() {
        let rendered = table(
            &[("NAME", Align::Left), ("N", Align::Right)],
            &[
                vec!["a".into(), "1000".into()],
                vec!["long name".into(), "2".into()],
            ],
        );
        assert_eq!(
            rendered,
            "NAME          N\na          1000\nlong name     2\n"
        );
    }

    #[test]
    fn describe_shows_missing_and_present_keys() {
        let infos = [
            KeyInfo {
                key: Bytes::from_static(b"gone"),
                meta: None,
            },
            KeyInfo {
                key: Bytes::from_static(b"k"),
                meta: Some(ItemMeta {
                    version: 4,
                    expires_at: None,
                    ttl: Some(Duration::from_millis(1500)),
                    key_type: KeyType::String,
                    size: 12,
                }),
            },
        ];
        let rendered = describe_table(&infos);
        let lines: Vec<&str> = rendered.lines().collect();
        assert_eq!(lines[0], "KEY   EXISTS  TYPE       TTL  VERSION  SIZE");
        assert_eq!(lines[1], "gone  no      -            -        -     -");
        assert_eq!(lines[2], "k     yes     string  1500ms        4    12");
    }

    #[test]
    fn sizes_and_durations_are_readable() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(duration(Duration::from_secs(42)), "42s");
        assert_eq!(duration(Duration::from_secs(3 * 3600 + 5)), "3h 0m 5s");
        assert_eq!(
            duration(Duration::from_secs(2 * 86_400 + 61)),
            "2d 0h 1m 1s"
        );
    }
}
