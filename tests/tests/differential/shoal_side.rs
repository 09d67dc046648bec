//! Shoal's side: the commands over gRPC and the normalisation of their
//! replies. Each data type's commands are in that type's file.

use super::*;

/// Runs operations on shoal over gRPC and normalises the replies.
pub(super) struct ShoalSide {
    pub(super) raw: Raw,
    /// This worker's namespace.
    pub(super) namespace: String,
}

pub(super) fn key_bytes(key: &str) -> Bytes {
    Bytes::copy_from_slice(key.as_bytes())
}

pub(super) fn many(items: &[&str]) -> Vec<Bytes> {
    items.iter().map(|item| key_bytes(item)).collect()
}

pub(super) fn ttl_expiry(ms: i64) -> Option<pb::Expiry> {
    Some(pb::Expiry {
        kind: Some(pb::expiry::Kind::TtlMs(ms)),
    })
}

pub(super) fn write_expiry_pb(expiry: WriteExpiry) -> Option<pb::Expiry> {
    match expiry {
        WriteExpiry::Keep => None,
        WriteExpiry::Px(ms) => ttl_expiry(ms),
    }
}

pub(super) fn status_reply(status: &Status) -> Reply {
    let message = status.message();
    let kind = match status.code() {
        Code::FailedPrecondition if message.starts_with("WRONGTYPE") => ErrorKind::WrongType,
        Code::FailedPrecondition if message.contains("not a 64-bit integer") => {
            ErrorKind::NotInteger
        }
        Code::FailedPrecondition if message.contains("overflow") => ErrorKind::Overflow,
        Code::NotFound => ErrorKind::NoSuchKey,
        Code::OutOfRange => ErrorKind::OutOfRange,
        code => ErrorKind::Unexpected(format!("{code:?}: {message}")),
    };
    Reply::Error(kind)
}

/// The reply built from a unary response, or the error.
pub(super) fn unary<T>(
    result: Result<tonic::Response<T>, Status>,
    reply: impl FnOnce(T) -> Reply,
) -> Reply {
    match result {
        Ok(response) => reply(response.into_inner()),
        Err(status) => status_reply(&status),
    }
}

/// Every message of a streaming response, or the error as a reply.
pub(super) async fn streamed<T>(
    result: Result<tonic::Response<tonic::Streaming<T>>, Status>,
) -> Result<Vec<T>, Reply> {
    let mut stream = result.map_err(|status| status_reply(&status))?.into_inner();
    let mut messages = Vec::new();
    while let Some(message) = stream
        .message()
        .await
        .map_err(|status| status_reply(&status))?
    {
        messages.push(message);
    }
    Ok(messages)
}

/// A pop reply: one value (or nil) without a count, an array (or nil when
/// the key does not exist) with one, as Redis answers.
pub(super) fn popped(values: Vec<Bytes>, with_count: bool) -> Reply {
    match (values.len(), with_count) {
        (0, _) => Reply::Nil,
        (1, false) => bytes(&values[0]),
        _ => Reply::Array(values.iter().map(bytes).collect()),
    }
}

pub(super) fn members_reply<T>(
    result: Result<Vec<T>, Reply>,
    members: impl Fn(T) -> Vec<Bytes>,
) -> Reply {
    match result {
        Ok(messages) => unordered(
            messages
                .into_iter()
                .flat_map(members)
                .map(|member| bytes(&member))
                .collect(),
        ),
        Err(error) => error,
    }
}

impl ShoalSide {
    pub(super) async fn flush(&mut self) {
        self.raw
            .admin
            .flush(pb::FlushRequest {
                namespace: self.namespace.clone(),
            })
            .await
            .expect("flush");
    }

    pub(super) async fn apply(&mut self, op: &Op) -> Reply {
        match op.kind() {
            OpKind::Strings => self.apply_strings(op).await,
            OpKind::Hashes => self.apply_hashes(op).await,
            OpKind::Lists => self.apply_lists(op).await,
            OpKind::Sets => self.apply_sets(op).await,
            OpKind::Snapshot => self.snapshot().await,
        }
    }

    pub(super) async fn get(&mut self, key: &str) -> Reply {
        let request = pb::GetRequest {
            namespace: self.namespace.clone(),
            key: key_bytes(key),
            include_meta: false,
        };
        unary(self.raw.cache.get(request).await, |response| {
            if response.found {
                bytes(&response.value)
            } else {
                Reply::Nil
            }
        })
    }

    pub(super) async fn update_ttl(&mut self, key: &str, kind: pb::expiry::Kind) -> Reply {
        let request = pb::UpdateTtlRequest {
            namespace: self.namespace.clone(),
            key: key_bytes(key),
            expiry: Some(pb::Expiry { kind: Some(kind) }),
        };
        unary(self.raw.cache.update_ttl(request).await, |response| {
            bool_int(response.existed)
        })
    }

    /// Whether each key exists, its type name ("none" when missing) and its
    /// TTL as PTTL reports it.
    pub(super) async fn describe(
        &mut self,
        keys: &[&str],
    ) -> Result<Vec<(bool, Reply, Reply)>, Reply> {
        let request = pb::DescribeRequest {
            namespace: self.namespace.clone(),
            keys: many(keys),
        };
        let response = self
            .raw
            .cache
            .describe(request)
            .await
            .map_err(|status| status_reply(&status))?
            .into_inner();
        Ok(response
            .keys
            .into_iter()
            .map(|description| match (description.exists, description.meta) {
                (true, Some(meta)) => {
                    let ttl = meta
                        .ttl_ms
                        .map_or(-1, |ms| i64::try_from(ms).expect("TTL fits in i64"));
                    (true, type_name(meta.r#type()), Reply::Ttl(ttl))
                }
                (true, None) => (true, bytes("exists-without-meta"), Reply::Ttl(-2)),
                (false, _) => (false, bytes("none"), Reply::Ttl(-2)),
            })
            .collect())
    }

    pub(super) async fn hgetall(&mut self, key: &str, projection: Projection, chunk: u32) -> Reply {
        let request = pb::HGetAllRequest {
            namespace: self.namespace.clone(),
            key: key_bytes(key),
            projection: match projection {
                Projection::All => pb::HashProjection::Unspecified,
                Projection::Fields => pb::HashProjection::Fields,
                Projection::Values => pb::HashProjection::Values,
            } as i32,
            chunk_size: chunk,
        };
        match streamed(self.raw.collection.h_get_all(request).await).await {
            Ok(messages) => unordered(
                messages
                    .into_iter()
                    .flat_map(|message| message.entries)
                    .map(|entry| match projection {
                        Projection::All => {
                            Reply::Array(vec![bytes(&entry.field), bytes(&entry.value)])
                        }
                        Projection::Fields => bytes(&entry.field),
                        Projection::Values => bytes(&entry.value),
                    })
                    .collect(),
            ),
            Err(error) => error,
        }
    }

    pub(super) async fn lrange(&mut self, key: &str, start: i64, stop: i64, chunk: u32) -> Reply {
        let request = pb::LRangeRequest {
            namespace: self.namespace.clone(),
            key: key_bytes(key),
            start,
            stop,
            chunk_size: chunk,
        };
        match streamed(self.raw.collection.l_range(request).await).await {
            Ok(messages) => Reply::Array(
                messages
                    .into_iter()
                    .flat_map(|message| message.values)
                    .map(|value| bytes(&value))
                    .collect(),
            ),
            Err(error) => error,
        }
    }

    pub(super) async fn smembers(&mut self, key: &str, chunk: u32) -> Reply {
        let request = pb::SMembersRequest {
            namespace: self.namespace.clone(),
            key: key_bytes(key),
            chunk_size: chunk,
        };
        members_reply(
            streamed(self.raw.collection.s_members(request).await).await,
            |message| message.members,
        )
    }

    /// Type, TTL and contents of every key, as [`RedisSide::snapshot`].
    pub(super) async fn snapshot(&mut self) -> Reply {
        let descriptions = match self.describe(&KEYS).await {
            Ok(descriptions) => descriptions,
            Err(error) => return error,
        };
        let mut keys = Vec::with_capacity(KEYS.len());
        for (key, (_, kind, ttl)) in KEYS.iter().zip(descriptions) {
            let contents = match &kind {
                Reply::Bytes(name) => match name.as_slice() {
                    b"string" => self.get(key).await,
                    b"hash" => self.hgetall(key, Projection::All, 0).await,
                    b"list" => self.lrange(key, 0, -1, 0).await,
                    b"set" => self.smembers(key, 0).await,
                    _ => Reply::Nil,
                },
                _ => Reply::Nil,
            };
            keys.push(Reply::Array(vec![bytes(key), kind, ttl, contents]));
        }
        Reply::Array(keys)
    }
}

/// SPOP/SRANDMEMBER: as a pop, but an array is unordered.
pub(super) fn random_members(members: Vec<Bytes>, with_count: bool) -> Reply {
    if with_count {
        unordered(members.iter().map(bytes).collect())
    } else {
        popped(members, false)
    }
}
