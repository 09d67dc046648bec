//! Runs the batch and watch subcommands.

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};
use shoal_client::{ChangeKind, Client, WatchEvent, WatchOptions};
use tokio_stream::StreamExt as _;

use super::{Failure, print_json};
use crate::args::batches::BatchCommand;
use crate::output::{json_string, text};

/// Runs one batch subcommand, writing its result to `out`.
pub async fn run(
    client: &Client,
    command: &BatchCommand,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match command {
        BatchCommand::Mget { keys } => {
            let values = client.get_many(keys).await?;
            if json {
                let items: Vec<Value> = values
                    .iter()
                    .map(|value| match value {
                        Ok(Some(value)) => json_string(value).into(),
                        Ok(None) => Value::Null,
                        Err(error) => json!({ "error": error.to_string() }),
                    })
                    .collect();
                return print_json(out, &Value::Array(items));
            }
            for value in values {
                match value {
                    Ok(Some(value)) => writeln!(out, "{}", text(&value))?,
                    Ok(None) => writeln!(out, "(nil)")?,
                    Err(error) => writeln!(out, "(error) {error}")?,
                }
            }
            Ok(())
        }
        BatchCommand::Mset { pairs } => {
            let items = pairs
                .chunks(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()));
            let results = client.set_many(items).await?;
            let failures: Vec<(usize, String)> = results
                .iter()
                .enumerate()
                .filter_map(|(at, result)| result.as_ref().err().map(|e| (at, e.to_string())))
                .collect();
            if json {
                let failures: Vec<Value> = failures
                    .iter()
                    .map(|(at, error)| json!({ "key": pairs[at * 2], "error": error }))
                    .collect();
                return print_json(
                    out,
                    &json!({ "stored": results.len() - failures.len(), "failures": failures }),
                );
            }
            if failures.is_empty() {
                writeln!(out, "OK")?;
            }
            for (at, error) in &failures {
                writeln!(out, "(error) {}: {error}", pairs[at * 2])?;
            }
            Ok(())
        }
        BatchCommand::Watch {
            prefixes,
            count,
            heartbeat,
        } => {
            let mut options = WatchOptions::all();
            for prefix in prefixes {
                options = options.prefix(prefix);
            }
            if let Some(ms) = heartbeat {
                options = options.heartbeat(Duration::from_millis(*ms));
            }
            let mut events = client.watch(options).await?;
            let mut seen = 0;
            while count.is_none_or(|count| seen < count) {
                let Some(event) = events.next().await else {
                    break;
                };
                seen += 1;
                let event = event?;
                if json {
                    print_json(out, &event_json(&event))?;
                } else {
                    writeln!(out, "{}", event_line(&event))?;
                }
                out.flush()?;
            }
            Ok(())
        }
    }
}

fn kind_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Set => "set",
        ChangeKind::Update => "update",
        ChangeKind::Expiry => "expiry",
        ChangeKind::Delete => "delete",
        ChangeKind::Expire => "expire",
        ChangeKind::Evict => "evict",
        _ => "other",
    }
}

fn event_line(event: &WatchEvent) -> String {
    match event {
        WatchEvent::Changed { kind, key, version } => {
            format!("{} {} {version}", kind_name(*kind), text(key))
        }
        WatchEvent::Flushed { removed } => format!("flushed {removed}"),
        WatchEvent::Heartbeat => "heartbeat".to_owned(),
        WatchEvent::Resync { missed } => format!("resync {missed}"),
        _ => "other".to_owned(),
    }
}

fn event_json(event: &WatchEvent) -> Value {
    match event {
        WatchEvent::Changed { kind, key, version } => {
            json!({ "event": kind_name(*kind), "key": json_string(key), "version": version })
        }
        WatchEvent::Flushed { removed } => json!({ "event": "flushed", "removed": removed }),
        WatchEvent::Heartbeat => json!({ "event": "heartbeat" }),
        WatchEvent::Resync { missed } => json!({ "event": "resync", "missed": missed }),
        _ => json!({ "event": "other" }),
    }
}
