//! List commands, as each side runs them.

use super::*;

impl RedisSide {
    /// The reply Redis gives to `op`, one of these commands.
    pub(super) fn apply_lists(&mut self, op: &Op, _shoal: &Reply) -> Reply {
        match op {
            Op::Push {
                key,
                left,
                only_if_exists,
                values,
                expiry,
            } => {
                let name = match (left, only_if_exists) {
                    (true, false) => "LPUSH",
                    (true, true) => "LPUSHX",
                    (false, false) => "RPUSH",
                    (false, true) => "RPUSHX",
                };
                self.write(cmd(name, key).arg(values), key, *expiry)
            }
            Op::Pop { key, left, count } => {
                let mut c = cmd(if *left { "LPOP" } else { "RPOP" }, key);
                if let Some(count) = count {
                    c.arg(*count);
                }
                self.call(&c)
            }
            Op::LRange {
                key, start, stop, ..
            } => self.call(cmd("LRANGE", key).arg(*start).arg(*stop)),
            Op::LLen { key } => self.call(&cmd("LLEN", key)),
            Op::LTrim { key, start, stop } => {
                // Shoal also returns the length after trimming.
                match self.call(cmd("LTRIM", key).arg(*start).arg(*stop)) {
                    Reply::Ok => Reply::Array(vec![Reply::Ok, self.call(&cmd("LLEN", key))]),
                    other => other,
                }
            }
            Op::LIndex { key, index } => self.call(cmd("LINDEX", key).arg(*index)),
            Op::LSet { key, index, value } => self.call(cmd("LSET", key).arg(*index).arg(*value)),
            Op::LRem { key, count, value } => self.call(cmd("LREM", key).arg(*count).arg(*value)),
            _ => unreachable!("{op:?} is not among these commands"),
        }
    }
}

impl ShoalSide {
    /// The reply shoal gives to `op`, one of these commands.
    pub(super) async fn apply_lists(&mut self, op: &Op) -> Reply {
        let coll = &mut self.raw.collection;
        match op {
            Op::Push {
                key,
                left,
                only_if_exists,
                values,
                expiry,
            } => {
                if *left {
                    let request = pb::LPushRequest {
                        namespace: self.namespace.clone(),
                        key: key_bytes(key),
                        values: many(values),
                        only_if_exists: *only_if_exists,
                        expiry: write_expiry_pb(*expiry),
                    };
                    unary(coll.l_push(request).await, |response| {
                        count(response.length)
                    })
                } else {
                    let request = pb::RPushRequest {
                        namespace: self.namespace.clone(),
                        key: key_bytes(key),
                        values: many(values),
                        only_if_exists: *only_if_exists,
                        expiry: write_expiry_pb(*expiry),
                    };
                    unary(coll.r_push(request).await, |response| {
                        count(response.length)
                    })
                }
            }
            Op::Pop {
                key,
                left,
                count: n,
            } => {
                if *left {
                    let request = pb::LPopRequest {
                        namespace: self.namespace.clone(),
                        key: key_bytes(key),
                        count: *n,
                    };
                    unary(coll.l_pop(request).await, |response| {
                        popped(response.values, n.is_some())
                    })
                } else {
                    let request = pb::RPopRequest {
                        namespace: self.namespace.clone(),
                        key: key_bytes(key),
                        count: *n,
                    };
                    unary(coll.r_pop(request).await, |response| {
                        popped(response.values, n.is_some())
                    })
                }
            }
            Op::LRange {
                key,
                start,
                stop,
                chunk,
            } => self.lrange(key, *start, *stop, *chunk).await,
            Op::LLen { key } => {
                let request = pb::LLenRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                };
                unary(coll.l_len(request).await, |response| count(response.length))
            }
            Op::LTrim { key, start, stop } => {
                let request = pb::LTrimRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    start: *start,
                    stop: *stop,
                };
                unary(coll.l_trim(request).await, |response| {
                    Reply::Array(vec![Reply::Ok, count(response.length)])
                })
            }
            Op::LIndex { key, index } => {
                let request = pb::LIndexRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    index: *index,
                };
                unary(coll.l_index(request).await, |response| {
                    if response.found {
                        bytes(&response.value)
                    } else {
                        Reply::Nil
                    }
                })
            }
            Op::LSet { key, index, value } => {
                let request = pb::LSetRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    index: *index,
                    value: key_bytes(value),
                };
                unary(coll.l_set(request).await, |_| Reply::Ok)
            }
            Op::LRem {
                key,
                count: n,
                value,
            } => {
                let request = pb::LRemRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    count: *n,
                    value: key_bytes(value),
                };
                unary(coll.l_rem(request).await, |response| {
                    count(response.removed)
                })
            }
            _ => unreachable!("{op:?} is not among these commands"),
        }
    }
}
