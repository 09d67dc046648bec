//! Runs the hash, list and set subcommands.
//!
//! Text output follows redis-cli without its numbering: one element per
//! line, (nil) for a missing single value, nothing for an empty collection.
//! Hash and set contents come back in no particular order and are printed
//! sorted, so the output is stable. JSON output is one document.

use std::io::Write;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use shoal_client::Client;

use super::{Failure, number_or_json, print_json};
use crate::args::collections::{CollectionCommand, PopArgs};
use crate::output::{json_string, text};

/// Runs one collection subcommand, writing its result to `out`.
pub async fn run(
    client: &Client,
    command: &CollectionCommand,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    use CollectionCommand as C;
    match command {
        C::Hset(hset) => {
            let added = client
                .hset_with(&hset.key, hset.pairs(), hset.expiry.expiry())
                .await?;
            number_or_json(out, json, "added", added)
        }
        C::Hget { key, field } => {
            let value = client.hget(key, field).await?;
            optional_value(out, json, value)
        }
        C::Hmget { key, fields } => {
            let values = client.hmget(key, fields).await?;
            if json {
                let values: Vec<Value> = values.iter().map(|v| nullable(v.as_deref())).collect();
                print_json(out, &json!({ "values": values }))
            } else {
                for value in &values {
                    writeln!(out, "{}", value.as_deref().map_or("(nil)".into(), text))?;
                }
                Ok(())
            }
        }
        C::Hgetall { key } => {
            let mut entries = client.hgetall(key).await?;
            if json {
                let object: Map<String, Value> = entries
                    .iter()
                    .map(|(field, value)| (json_string(field), json_string(value).into()))
                    .collect();
                print_json(out, &Value::Object(object))
            } else {
                entries.sort_unstable();
                for (field, value) in &entries {
                    writeln!(out, "{}\t{}", text(field), text(value))?;
                }
                Ok(())
            }
        }
        C::Hkeys { key } => {
            let fields = client.hkeys(key).await?;
            list(out, json, "fields", sorted(fields))
        }
        C::Hvals { key } => {
            let values = client.hvals(key).await?;
            list(out, json, "values", sorted(values))
        }
        C::Hdel { key, fields } => {
            let removed = client.hdel(key, fields).await?;
            number_or_json(out, json, "removed", removed)
        }
        C::Hlen { key } => {
            let length = client.hlen(key).await?;
            number_or_json(out, json, "length", length)
        }
        C::Hexists { key, field } => {
            let exists = client.hexists(key, field).await?;
            flag(out, json, "exists", exists)
        }
        C::Hincrby { key, field, delta } => {
            let value = client.hincrby(key, field, *delta).await?;
            if json {
                print_json(out, &json!({ "value": value }))
            } else {
                writeln!(out, "{value}")?;
                Ok(())
            }
        }
        C::Lpush(push) => {
            let length = client
                .lpush_with(&push.key, push.values.clone(), push.options())
                .await?;
            number_or_json(out, json, "length", length)
        }
        C::Rpush(push) => {
            let length = client
                .rpush_with(&push.key, push.values.clone(), push.options())
                .await?;
            number_or_json(out, json, "length", length)
        }
        C::Lpop(PopArgs { key, count }) => match count {
            None => optional_value(out, json, client.lpop(key).await?),
            Some(n) => list(out, json, "values", client.lpop_count(key, *n).await?),
        },
        C::Rpop(PopArgs { key, count }) => match count {
            None => optional_value(out, json, client.rpop(key).await?),
            Some(n) => list(out, json, "values", client.rpop_count(key, *n).await?),
        },
        C::Lrange { key, start, stop } => {
            let values = client.lrange(key, *start, *stop).await?;
            list(out, json, "values", values)
        }
        C::Llen { key } => {
            let length = client.llen(key).await?;
            number_or_json(out, json, "length", length)
        }
        C::Ltrim { key, start, stop } => {
            let length = client.ltrim(key, *start, *stop).await?;
            number_or_json(out, json, "length", length)
        }
        C::Lindex { key, index } => {
            let value = client.lindex(key, *index).await?;
            optional_value(out, json, value)
        }
        C::Lset { key, index, value } => {
            let version = client.lset(key, *index, value.clone()).await?;
            if json {
                print_json(out, &json!({ "version": version }))
            } else {
                writeln!(out, "OK")?;
                Ok(())
            }
        }
        C::Lrem { key, count, value } => {
            let removed = client.lrem(key, *count, value.clone()).await?;
            number_or_json(out, json, "removed", removed)
        }
        C::Sadd(sadd) => {
            let added = client
                .sadd_with(&sadd.key, &sadd.members, sadd.expiry.expiry())
                .await?;
            number_or_json(out, json, "added", added)
        }
        C::Srem { key, members } => {
            let removed = client.srem(key, members).await?;
            number_or_json(out, json, "removed", removed)
        }
        C::Smembers { key } => {
            let members = client.smembers(key).await?;
            list(out, json, "members", sorted(members))
        }
        C::Sismember { key, member } => {
            let is_member = client.sismember(key, member).await?;
            flag(out, json, "is_member", is_member)
        }
        C::Smismember { key, members } => {
            let flags = client.smismember(key, members).await?;
            if json {
                print_json(out, &json!({ "is_member": flags }))
            } else {
                for is_member in flags {
                    writeln!(out, "{}", u8::from(is_member))?;
                }
                Ok(())
            }
        }
        C::Scard { key } => {
            let cardinality = client.scard(key).await?;
            number_or_json(out, json, "cardinality", cardinality)
        }
        C::Spop(PopArgs { key, count }) => match count {
            None => optional_value(out, json, client.spop(key).await?),
            Some(n) => list(out, json, "members", client.spop_count(key, *n).await?),
        },
        C::Srandmember { key, count } => match count {
            None => {
                let member = client.srandmember(key, 1).await?.into_iter().next();
                optional_value(out, json, member)
            }
            Some(n) => list(out, json, "members", client.srandmember(key, *n).await?),
        },
        C::Sinter { keys } => list(out, json, "members", sorted(client.sinter(keys).await?)),
        C::Sunion { keys } => list(out, json, "members", sorted(client.sunion(keys).await?)),
        C::Sdiff { keys } => list(out, json, "members", sorted(client.sdiff(keys).await?)),
    }
}

/// One value that may be missing: the value or (nil); in JSON
/// `{"found": true, "value": ...}` or `{"found": false}`, as `get` prints.
fn optional_value(out: &mut dyn Write, json: bool, value: Option<Bytes>) -> Result<(), Failure> {
    if json {
        let doc = match value {
            Some(value) => json!({ "found": true, "value": json_string(&value) }),
            None => json!({ "found": false }),
        };
        return print_json(out, &doc);
    }
    writeln!(out, "{}", value.as_deref().map_or("(nil)".into(), text))?;
    Ok(())
}

/// Elements one per line; in JSON an array under `field`.
fn list(out: &mut dyn Write, json: bool, field: &str, items: Vec<Bytes>) -> Result<(), Failure> {
    if json {
        let items: Vec<Value> = items.iter().map(|i| json_string(i).into()).collect();
        return print_json(out, &json!({ field: items }));
    }
    for item in &items {
        writeln!(out, "{}", text(item))?;
    }
    Ok(())
}

/// Redis style: 1 or 0; in JSON a boolean under `field`.
fn flag(out: &mut dyn Write, json: bool, field: &str, yes: bool) -> Result<(), Failure> {
    if json {
        print_json(out, &json!({ field: yes }))
    } else {
        writeln!(out, "{}", u8::from(yes))?;
        Ok(())
    }
}

fn nullable(value: Option<&[u8]>) -> Value {
    value.map_or(Value::Null, |v| json_string(v).into())
}

fn sorted(mut items: Vec<Bytes>) -> Vec<Bytes> {
    items.sort_unstable();
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(print: impl FnOnce(&mut dyn Write) -> Result<(), Failure>) -> String {
        let mut out = Vec::new();
        print(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn missing_values_are_nil() {
        assert_eq!(rendered(|o| optional_value(o, false, None)), "(nil)\n");
        assert_eq!(
            rendered(|o| optional_value(o, true, None)),
            "{\"found\":false}\n"
        );
        assert_eq!(
            rendered(|o| optional_value(o, false, Some(Bytes::from_static(b"a\x00")))),
            "\"a\\x00\"\n"
        );
        assert_eq!(
            rendered(|o| optional_value(o, true, Some(Bytes::from_static(b"v")))),
            "{\"found\":true,\"value\":\"v\"}\n"
        );
    }

    #[test]
    fn lists_print_one_element_per_line() {
        let items = vec![Bytes::from_static(b"b"), Bytes::from_static(b"a\nx")];
        assert_eq!(
            rendered(|o| list(o, false, "values", items.clone())),
            "b\n\"a\\nx\"\n"
        );
        assert_eq!(
            rendered(|o| list(o, true, "members", sorted(items))),
            "{\"members\":[\"a\\nx\",\"b\"]}\n"
        );
        assert_eq!(rendered(|o| list(o, false, "values", Vec::new())), "");
        assert_eq!(
            rendered(|o| flag(o, true, "exists", true)),
            "{\"exists\":true}\n"
        );
        assert_eq!(nullable(None), Value::Null);
    }
}
