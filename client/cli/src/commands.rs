//! Runs one parsed command against the server and prints its result.

mod batches;
mod collections;

use std::io::{self, Write};
use std::time::Duration;

use serde_json::{Value, json};
use shoal_client::{Client, Error, ItemMeta, KeyInfo, Ttl};
use tokio_stream::StreamExt as _;

use crate::args::{Cli, Command};
use crate::failure::Failure;
use crate::output::{self, json_string, text};

/// Runs `cli.command`, writing its result to `out`.
pub async fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), Failure> {
    match &cli.command {
        Command::Flush { yes: false } => {
            return Err(Failure::Usage(
                "flush deletes every key of the namespace; pass --yes to confirm".to_owned(),
            ));
        }
        Command::DropNamespace { yes: false } => {
            return Err(Failure::Usage(
                "drop-namespace deletes every key of the namespace; pass --yes to confirm"
                    .to_owned(),
            ));
        }
        // It opens connections of its own.
        Command::Bench(bench) => return crate::bench::run(cli, bench, out).await,
        _ => {}
    }
    let client = connect(cli).await?;
    let json = cli.json;
    match &cli.command {
        Command::Get { key, raw } => get(&client, key, *raw, json, out).await,
        Command::Set(set) => {
            let result = client
                .set_with(set.key.as_bytes(), set.value.clone(), set.options())
                .await?;
            if json {
                let mut doc = json!({ "stored": result.stored, "version": result.version });
                if set.get {
                    doc["previous"] = result
                        .previous
                        .as_deref()
                        .map_or(Value::Null, |p| json_string(p).into());
                }
                print_json(out, &doc)
            } else if set.get {
                writeln!(
                    out,
                    "{}",
                    result.previous.as_deref().map_or("(nil)".into(), text)
                )?;
                Ok(())
            } else {
                writeln!(out, "{}", if result.stored { "OK" } else { "(nil)" })?;
                Ok(())
            }
        }
        Command::Del { keys } => {
            let deleted = client.delete(keys).await?;
            number_or_json(out, json, "deleted", deleted)
        }
        Command::Incr(incr) | Command::Decr(incr) => {
            let delta = if matches!(cli.command, Command::Decr(_)) {
                incr.delta
                    .checked_neg()
                    .ok_or_else(|| Failure::Usage("decrement is out of range".to_owned()))?
            } else {
                incr.delta
            };
            let result = client
                .increment_with(incr.key.as_bytes(), delta, incr.initial, incr.expiry())
                .await?;
            if json {
                print_json(
                    out,
                    &json!({ "value": result.value, "version": result.version, "created": result.created }),
                )
            } else {
                writeln!(out, "{}", result.value)?;
                Ok(())
            }
        }
        Command::Ttl { key } => {
            let ttl = client.ttl(key).await?;
            if json {
                let (exists, ttl_ms) = match ttl {
                    Ttl::Missing => (false, Value::Null),
                    Ttl::Never => (true, Value::Null),
                    Ttl::Expires(left) => (true, millis(left).into()),
                };
                print_json(
                    out,
                    &json!({ "key": key, "exists": exists, "ttl_ms": ttl_ms }),
                )
            } else {
                let shown = match ttl {
                    Ttl::Missing => -2,
                    Ttl::Never => -1,
                    Ttl::Expires(left) => i64::try_from(millis(left)).unwrap_or(i64::MAX),
                };
                writeln!(out, "{shown}")?;
                Ok(())
            }
        }
        Command::Expire(expire) => {
            let existed = match expire.expiry() {
                shoal_client::Expiry::At(at) => client.expire_at(&expire.key, at).await?,
                shoal_client::Expiry::After(ttl) => client.expire(&expire.key, ttl).await?,
                _ => client.persist(&expire.key).await?,
            };
            flag_or_json(out, json, existed)
        }
        Command::Persist { key } => {
            let existed = client.persist(key).await?;
            flag_or_json(out, json, existed)
        }
        Command::Describe { keys } => {
            let infos = client.describe(keys).await?;
            if json {
                print_json(
                    out,
                    &Value::Array(infos.iter().map(key_info_json).collect()),
                )
            } else {
                out.write_all(output::describe_table(&infos).as_bytes())?;
                Ok(())
            }
        }
        Command::Scan(scan) => {
            let mut keys = client.scan(scan.options());
            if json {
                let mut all = Vec::new();
                while let Some(key) = keys.next().await {
                    all.push(Value::String(json_string(&key?)));
                }
                print_json(out, &json!({ "keys": all }))
            } else {
                while let Some(key) = keys.next().await {
                    writeln!(out, "{}", text(&key?))?;
                }
                Ok(())
            }
        }
        Command::Collection(command) => collections::run(&client, command, json, out).await,
        Command::Batch(command) => batches::run(&client, command, json, out).await,
        Command::Count => {
            let keys = client.count().await?;
            number_or_json(out, json, "keys", keys)
        }
        Command::Flush { .. } => {
            let removed = client.flush().await?;
            number_or_json(out, json, "removed", removed)
        }
        Command::DropNamespace { .. } => {
            // A namespace that did not exist held no keys: dropping is
            // idempotent.
            let removed = client.drop_namespace().await?.unwrap_or(0);
            number_or_json(out, json, "removed", removed)
        }
        Command::Stats { member } => {
            let stats = if *member {
                client.member_stats().await?
            } else {
                client.stats().await?
            };
            if json {
                print_json(
                    out,
                    &serde_json::to_value(&stats).map_err(io::Error::other)?,
                )
            } else {
                out.write_all(output::stats_report(&stats).as_bytes())?;
                Ok(())
            }
        }
        Command::Snapshot => {
            let snapshot = client.snapshot().await?;
            if json {
                print_json(
                    out,
                    &serde_json::to_value(&snapshot).map_err(io::Error::other)?,
                )
            } else {
                writeln!(
                    out,
                    "snapshot {}: {} keys, {} bytes, took {} ms",
                    snapshot.name,
                    snapshot.keys,
                    snapshot.bytes,
                    snapshot.duration.as_millis()
                )?;
                Ok(())
            }
        }
        Command::Cluster => {
            let topology = client.topology().await?;
            if json {
                print_json(
                    out,
                    &serde_json::to_value(&topology).map_err(io::Error::other)?,
                )
            } else {
                out.write_all(output::topology_report(&topology).as_bytes())?;
                Ok(())
            }
        }
        Command::Bench(_) => unreachable!("bench runs before the client connects"),
        Command::Namespaces => {
            let namespaces = client.list_namespaces().await?;
            if json {
                print_json(out, &json!({ "namespaces": namespaces }))
            } else {
                for namespace in namespaces {
                    writeln!(out, "{namespace}")?;
                }
                Ok(())
            }
        }
    }
}

async fn connect(cli: &Cli) -> Result<Client, Error> {
    let builder = cli.with_token(
        cli.client_builder()
            .namespace(&cli.namespace)
            .connect_timeout(cli.deadline().unwrap_or(Duration::from_secs(5))),
    );
    let builder = match cli.deadline() {
        Some(deadline) => builder.timeout(deadline),
        None => builder.no_timeout(),
    };
    builder.connect().await
}

async fn get(
    client: &Client,
    key: &str,
    raw: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    if json {
        let doc = match client.get_with_meta(key).await? {
            None => json!({ "found": false }),
            Some((value, meta)) => {
                json!({ "found": true, "value": json_string(&value), "meta": meta })
            }
        };
        return print_json(out, &doc);
    }
    match client.get(key).await? {
        Some(value) if raw => out.write_all(&value)?,
        Some(value) => writeln!(out, "{}", text(&value))?,
        None if raw => {}
        None => writeln!(out, "(nil)")?,
    }
    Ok(())
}

fn key_info_json(info: &KeyInfo) -> Value {
    let mut doc = json!({ "key": json_string(&info.key), "exists": info.exists() });
    if let Some(meta) = &info.meta
        && let (Value::Object(doc), Ok(Value::Object(fields))) =
            (&mut doc, serde_json::to_value::<&ItemMeta>(meta))
    {
        doc.extend(fields);
    }
    doc
}

fn number_or_json(out: &mut dyn Write, json: bool, field: &str, n: u64) -> Result<(), Failure> {
    if json {
        print_json(out, &json!({ field: n }))
    } else {
        writeln!(out, "{n}")?;
        Ok(())
    }
}

/// Redis style: 1 when the key existed, 0 when it did not.
fn flag_or_json(out: &mut dyn Write, json: bool, existed: bool) -> Result<(), Failure> {
    if json {
        print_json(out, &json!({ "existed": existed }))
    } else {
        writeln!(out, "{}", u8::from(existed))?;
        Ok(())
    }
}

fn print_json(out: &mut dyn Write, doc: &Value) -> Result<(), Failure> {
    serde_json::to_writer(&mut *out, doc).map_err(io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_grpc_code_once() {
        let failure =
            Failure::Client(tonic::Status::failed_precondition("WRONGTYPE against a hash").into());
        assert_eq!(
            failure.to_string(),
            "WRONGTYPE against a hash (FailedPrecondition)"
        );
        let failure = Failure::Client(tonic::Status::permission_denied("no").into());
        assert_eq!(failure.to_string(), "PermissionDenied: no");
        assert_eq!(
            Failure::Client(Error::DeadlineExceeded).to_string(),
            "deadline exceeded (DeadlineExceeded)"
        );
    }

    #[test]
    fn missing_keys_have_no_metadata_in_json() {
        let doc = key_info_json(&KeyInfo {
            key: bytes::Bytes::from_static(b"\xffk"),
            meta: None,
        });
        assert_eq!(doc, json!({ "key": "\\xffk", "exists": false }));
    }
}
