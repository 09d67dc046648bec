//! Strings, counters, deletes, expiry and key metadata, as each side runs them.

use super::*;

impl RedisSide {
    /// The reply Redis gives to `op`, one of these commands.
    pub(super) fn apply_strings(&mut self, op: &Op, _shoal: &Reply) -> Reply {
        match op {
            Op::Set {
                key,
                value,
                condition,
                expiry,
                get,
            } => {
                let mut c = cmd("SET", key);
                c.arg(*value);
                match condition {
                    Condition::Always => {}
                    Condition::Nx => {
                        c.arg("NX");
                    }
                    Condition::Xx => {
                        c.arg("XX");
                    }
                }
                match expiry {
                    SetExpiry::Clear => {}
                    SetExpiry::Ex(seconds) => {
                        c.arg("EX").arg(*seconds);
                    }
                    SetExpiry::Px(ms) => {
                        c.arg("PX").arg(*ms);
                    }
                    SetExpiry::KeepTtl => {
                        c.arg("KEEPTTL");
                    }
                    SetExpiry::PxAtPast => {
                        c.arg("PXAT").arg(1);
                    }
                }
                if *get {
                    c.arg("GET");
                }
                self.call(&c)
            }
            Op::Get { key } => self.call(&cmd("GET", key)),
            Op::Del { keys } => self.call(redis::cmd("DEL").arg(keys)),
            Op::IncrBy {
                key,
                delta,
                as_decr,
            } => {
                if *as_decr {
                    self.call(cmd("DECRBY", key).arg(-delta))
                } else {
                    self.call(cmd("INCRBY", key).arg(*delta))
                }
            }
            Op::Expire {
                key,
                ms,
                in_seconds,
            } => {
                if *in_seconds {
                    self.call(cmd("EXPIRE", key).arg(ms / 1000))
                } else {
                    self.call(cmd("PEXPIRE", key).arg(*ms))
                }
            }
            Op::Persist { key } => {
                // UpdateTtl says whether the key existed; PERSIST whether it
                // had a TTL.
                let existed = self.call(&cmd("EXISTS", key));
                match self.call(&cmd("PERSIST", key)) {
                    Reply::Int(_) => existed,
                    other => other,
                }
            }
            Op::ExpireAtPast { key } => self.call(cmd("PEXPIREAT", key).arg(1)),
            Op::Describe { keys } => Reply::Array(
                keys.iter()
                    .map(|key| {
                        Reply::Array(vec![
                            self.call(&cmd("EXISTS", key)),
                            self.call(&cmd("TYPE", key)),
                            self.ttl(key),
                        ])
                    })
                    .collect(),
            ),
            _ => unreachable!("{op:?} is not among these commands"),
        }
    }
}

impl ShoalSide {
    /// The reply shoal gives to `op`, one of these commands.
    pub(super) async fn apply_strings(&mut self, op: &Op) -> Reply {
        let cache = &mut self.raw.cache;
        match op {
            Op::Set {
                key,
                value,
                condition,
                expiry,
                get,
            } => {
                let condition = match condition {
                    Condition::Always => None,
                    Condition::Nx => Some(pb::condition::Kind::IfAbsent(pb::IfAbsent {})),
                    Condition::Xx => Some(pb::condition::Kind::IfPresent(pb::IfPresent {})),
                };
                let expiry = match expiry {
                    SetExpiry::Clear => None,
                    SetExpiry::Ex(seconds) => ttl_expiry(seconds * 1000),
                    SetExpiry::Px(ms) => ttl_expiry(*ms),
                    SetExpiry::KeepTtl => Some(pb::Expiry {
                        kind: Some(pb::expiry::Kind::Keep(pb::KeepExpiry {})),
                    }),
                    SetExpiry::PxAtPast => Some(pb::Expiry {
                        kind: Some(pb::expiry::Kind::AtUnixMs(1)),
                    }),
                };
                let request = pb::SetRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    value: key_bytes(value),
                    expiry,
                    condition: condition.map(|kind| pb::Condition { kind: Some(kind) }),
                    return_previous: *get,
                };
                unary(cache.set(request).await, |response| {
                    if *get {
                        response.previous.map_or(Reply::Nil, bytes)
                    } else if response.stored {
                        Reply::Ok
                    } else {
                        Reply::Nil
                    }
                })
            }
            Op::Get { key } => self.get(key).await,
            Op::Del { keys } => {
                let request = pb::DeleteRequest {
                    namespace: self.namespace.clone(),
                    keys: many(keys),
                };
                unary(cache.delete(request).await, |response| {
                    count(response.deleted)
                })
            }
            Op::IncrBy { key, delta, .. } => {
                let request = pb::IncrementRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    delta: *delta,
                    ..Default::default()
                };
                unary(cache.increment(request).await, |response| {
                    Reply::Int(response.value)
                })
            }
            Op::Expire {
                key,
                ms,
                in_seconds,
            } => {
                let ms = if *in_seconds { ms / 1000 * 1000 } else { *ms };
                self.update_ttl(key, pb::expiry::Kind::TtlMs(ms)).await
            }
            Op::Persist { key } => {
                self.update_ttl(key, pb::expiry::Kind::Never(pb::NoExpiry {}))
                    .await
            }
            Op::ExpireAtPast { key } => self.update_ttl(key, pb::expiry::Kind::AtUnixMs(1)).await,
            Op::Describe { keys } => match self.describe(keys).await {
                Ok(descriptions) => Reply::Array(
                    descriptions
                        .into_iter()
                        .map(|(exists, kind, ttl)| Reply::Array(vec![bool_int(exists), kind, ttl]))
                        .collect(),
                ),
                Err(error) => error,
            },
            _ => unreachable!("{op:?} is not among these commands"),
        }
    }
}
