//! Set commands, as each side runs them.

use super::*;

impl RedisSide {
    /// The reply Redis gives to `op`, one of these commands.
    pub(super) fn apply_sets(&mut self, op: &Op, shoal: &Reply) -> Reply {
        match op {
            Op::SAdd {
                key,
                members,
                expiry,
            } => self.write(cmd("SADD", key).arg(members), key, *expiry),
            Op::SRem { key, members } => self.call(cmd("SREM", key).arg(members)),
            Op::SMembers { key, .. } => sort_array(self.call(&cmd("SMEMBERS", key))),
            Op::SIsMember { key, member } => self.call(cmd("SISMEMBER", key).arg(*member)),
            Op::SMIsMember { key, members } => self.call(cmd("SMISMEMBER", key).arg(members)),
            Op::SCard { key } => self.call(&cmd("SCARD", key)),
            Op::SCombine { kind, keys, .. } => {
                let name = match kind {
                    Combine::Inter => "SINTER",
                    Combine::Union => "SUNION",
                    Combine::Diff => "SDIFF",
                };
                sort_array(self.call(redis::cmd(name).arg(keys)))
            }
            Op::SPop { key, count } => self.check_spop(key, *count, shoal),
            Op::SRandMember { key, count } => self.check_srandmember(key, *count, shoal),
            _ => unreachable!("{op:?} is not among these commands"),
        }
    }
}

impl ShoalSide {
    /// The reply shoal gives to `op`, one of these commands.
    pub(super) async fn apply_sets(&mut self, op: &Op) -> Reply {
        let coll = &mut self.raw.collection;
        match op {
            Op::SAdd {
                key,
                members,
                expiry,
            } => {
                let request = pb::SAddRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    members: many(members),
                    expiry: write_expiry_pb(*expiry),
                };
                unary(coll.s_add(request).await, |response| count(response.added))
            }
            Op::SRem { key, members } => {
                let request = pb::SRemRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    members: many(members),
                };
                unary(coll.s_rem(request).await, |response| {
                    count(response.removed)
                })
            }
            Op::SMembers { key, chunk } => self.smembers(key, *chunk).await,
            Op::SIsMember { key, member } => {
                let request = pb::SIsMemberRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    member: key_bytes(member),
                };
                unary(coll.s_is_member(request).await, |response| {
                    bool_int(response.is_member)
                })
            }
            Op::SMIsMember { key, members } => {
                let request = pb::SmIsMemberRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    members: many(members),
                };
                unary(coll.sm_is_member(request).await, |response| {
                    Reply::Array(response.is_member.into_iter().map(bool_int).collect())
                })
            }
            Op::SCard { key } => {
                let request = pb::SCardRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                };
                unary(coll.s_card(request).await, |response| {
                    count(response.cardinality)
                })
            }
            Op::SCombine { kind, keys, chunk } => {
                let (namespace, keys, chunk_size) = (self.namespace.clone(), many(keys), *chunk);
                match kind {
                    Combine::Inter => {
                        let request = pb::SInterRequest {
                            namespace,
                            keys,
                            chunk_size,
                        };
                        members_reply(streamed(coll.s_inter(request).await).await, |m| m.members)
                    }
                    Combine::Union => {
                        let request = pb::SUnionRequest {
                            namespace,
                            keys,
                            chunk_size,
                        };
                        members_reply(streamed(coll.s_union(request).await).await, |m| m.members)
                    }
                    Combine::Diff => {
                        let request = pb::SDiffRequest {
                            namespace,
                            keys,
                            chunk_size,
                        };
                        members_reply(streamed(coll.s_diff(request).await).await, |m| m.members)
                    }
                }
            }
            Op::SPop { key, count: n } => {
                let request = pb::SPopRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    count: *n,
                };
                unary(coll.s_pop(request).await, |response| {
                    random_members(response.members, n.is_some())
                })
            }
            Op::SRandMember { key, count: n } => {
                let request = pb::SRandMemberRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    count: *n,
                };
                unary(coll.s_rand_member(request).await, |response| {
                    random_members(response.members, n.is_some())
                })
            }
            _ => unreachable!("{op:?} is not among these commands"),
        }
    }
}
