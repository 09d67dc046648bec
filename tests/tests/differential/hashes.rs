//! Hash commands, as each side runs them.

use super::*;

impl RedisSide {
    /// The reply Redis gives to `op`, one of these commands.
    pub(super) fn apply_hashes(&mut self, op: &Op, _shoal: &Reply) -> Reply {
        match op {
            Op::HSet { key, pairs, expiry } => {
                let mut c = cmd("HSET", key);
                for (field, value) in pairs {
                    c.arg(*field).arg(*value);
                }
                self.write(&c, key, *expiry)
            }
            Op::HGet { key, field } => self.call(cmd("HGET", key).arg(*field)),
            Op::HMGet { key, fields } => self.call(cmd("HMGET", key).arg(fields)),
            Op::HGetAll {
                key, projection, ..
            } => match projection {
                Projection::All => self.hgetall(key),
                Projection::Fields => sort_array(self.call(&cmd("HKEYS", key))),
                Projection::Values => sort_array(self.call(&cmd("HVALS", key))),
            },
            Op::HDel { key, fields } => self.call(cmd("HDEL", key).arg(fields)),
            Op::HLen { key } => self.call(&cmd("HLEN", key)),
            Op::HExists { key, field } => self.call(cmd("HEXISTS", key).arg(*field)),
            Op::HIncrBy {
                key,
                field,
                delta,
                expiry,
            } => self.write(cmd("HINCRBY", key).arg(*field).arg(*delta), key, *expiry),
            _ => unreachable!("{op:?} is not among these commands"),
        }
    }
}

impl ShoalSide {
    /// The reply shoal gives to `op`, one of these commands.
    pub(super) async fn apply_hashes(&mut self, op: &Op) -> Reply {
        let coll = &mut self.raw.collection;
        match op {
            Op::HSet { key, pairs, expiry } => {
                let request = pb::HSetRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    fields: pairs
                        .iter()
                        .map(|(field, value)| pb::FieldValue {
                            field: key_bytes(field),
                            value: key_bytes(value),
                        })
                        .collect(),
                    expiry: write_expiry_pb(*expiry),
                };
                unary(coll.h_set(request).await, |response| count(response.added))
            }
            Op::HGet { key, field } => {
                let request = pb::HGetRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    field: key_bytes(field),
                };
                unary(coll.h_get(request).await, |response| {
                    if response.found {
                        bytes(&response.value)
                    } else {
                        Reply::Nil
                    }
                })
            }
            Op::HMGet { key, fields } => {
                let request = pb::HmGetRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    fields: many(fields),
                };
                unary(coll.hm_get(request).await, |response| {
                    Reply::Array(
                        response
                            .values
                            .iter()
                            .map(|value| {
                                if value.found {
                                    bytes(&value.value)
                                } else {
                                    Reply::Nil
                                }
                            })
                            .collect(),
                    )
                })
            }
            Op::HGetAll {
                key,
                projection,
                chunk,
            } => self.hgetall(key, *projection, *chunk).await,
            Op::HDel { key, fields } => {
                let request = pb::HDelRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    fields: many(fields),
                };
                unary(coll.h_del(request).await, |response| {
                    count(response.removed)
                })
            }
            Op::HLen { key } => {
                let request = pb::HLenRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                };
                unary(coll.h_len(request).await, |response| count(response.length))
            }
            Op::HExists { key, field } => {
                let request = pb::HExistsRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    field: key_bytes(field),
                };
                unary(coll.h_exists(request).await, |response| {
                    bool_int(response.exists)
                })
            }
            Op::HIncrBy {
                key,
                field,
                delta,
                expiry,
            } => {
                let request = pb::HIncrByRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    field: key_bytes(field),
                    delta: *delta,
                    expiry: write_expiry_pb(*expiry),
                };
                unary(coll.h_incr_by(request).await, |response| {
                    Reply::Int(response.value)
                })
            }
            _ => unreachable!("{op:?} is not among these commands"),
        }
    }
}
