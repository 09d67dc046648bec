//! [`Pipeline`]: many commands of any kind over one stream, run in order.
//!
//! Each queued command returns a typed [`Slot`]; after
//! [`run`](Pipeline::run), [`PipelineResults::take`] turns a slot into that
//! command's result, so results are read with their own types and one
//! failed command does not hide the others.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shoal_proto::v1 as pb;

use crate::batch::{RoutedItem, invalid_response, item_error};
use crate::call::{to_bytes, with_deadline};
use crate::client::Client;
use crate::compression;
use crate::convert;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::retry::Idempotency;
use crate::types::{Expiry, SetOptions, SetResult};

use pb::pipeline_request::Command;
use pb::pipeline_response::Result as Reply;

/// A queue of commands sent together by [`run`](Self::run).
///
/// ```no_run
/// # async fn demo(client: shoal_client::Client) -> shoal_client::Result<()> {
/// let mut pipeline = client.pipeline();
/// pipeline.set("greeting", "hello");
/// let greeting = pipeline.get("greeting");
/// let visits = pipeline.increment("visits", 1);
/// let tags = pipeline.sadd("tags", ["a", "b"]);
///
/// let mut results = pipeline.run().await?;
/// assert_eq!(results.take(greeting)?.as_deref(), Some(&b"hello"[..]));
/// println!("visit {}", results.take(visits)?);
/// println!("{} new tags", results.take(tags)?);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a pipeline does nothing until run"]
pub struct Pipeline {
    client: Client,
    commands: Vec<Command>,
}

/// Where one command's result will be, typed by what it returns.
#[derive(Debug)]
pub struct Slot<T> {
    index: usize,
    decode: fn(Reply) -> Result<T>,
    kind: PhantomData<fn() -> T>,
}

/// The replies of a pipeline, one per queued command.
#[derive(Debug)]
pub struct PipelineResults {
    replies: Vec<Option<Reply>>,
}

impl PipelineResults {
    /// The result of the command behind `slot`.
    ///
    /// # Errors
    ///
    /// The error that command failed with, or
    /// [`Error::InvalidResponse`] when the slot was already taken or comes
    /// from another pipeline.
    pub fn take<T>(&mut self, slot: Slot<T>) -> Result<T> {
        let reply = self
            .replies
            .get_mut(slot.index)
            .and_then(Option::take)
            .ok_or_else(|| invalid_response("this slot was taken or is from another pipeline"))?;
        match reply {
            Reply::Error(status) => Err(item_error(status)),
            reply => (slot.decode)(reply),
        }
    }

    /// Number of replies.
    #[must_use]
    pub fn len(&self) -> usize {
        self.replies.len()
    }

    /// Whether the pipeline was empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }
}

/// Declares a decoder from one reply variant.
macro_rules! decoder {
    ($name:ident, $variant:ident, $out:ty, |$reply:ident| $body:expr) => {
        fn $name(reply: Reply) -> Result<$out> {
            match reply {
                Reply::$variant($reply) => Ok($body),
                other => Err(unexpected(&other)),
            }
        }
    };
}

fn decode_get(reply: Reply) -> Result<Option<Bytes>> {
    match reply {
        // Values written compressed (or framed) by any client read back as
        // written, as with `Client::get`.
        Reply::Get(r) if r.found => Ok(Some(compression::decode_value(r.value)?)),
        Reply::Get(_) => Ok(None),
        other => Err(unexpected(&other)),
    }
}
fn decode_set(reply: Reply) -> Result<SetResult> {
    match reply {
        Reply::Set(r) => {
            let mut result = convert::set_result(r);
            result.previous = result.previous.map(compression::decode_value).transpose()?;
            Ok(result)
        }
        other => Err(unexpected(&other)),
    }
}
decoder!(decode_delete, Delete, u64, |r| r.deleted);
decoder!(decode_increment, Increment, i64, |r| r.value);
decoder!(decode_update_ttl, UpdateTtl, bool, |r| r.existed);
decoder!(decode_hset, HSet, u64, |r| r.added);
decoder!(decode_hget, HGet, Option<Bytes>, |r| r
    .found
    .then_some(r.value));
decoder!(decode_hincrby, HIncrBy, i64, |r| r.value);
decoder!(decode_lpush, LPush, u64, |r| r.length);
decoder!(decode_rpush, RPush, u64, |r| r.length);
decoder!(decode_lrange, LRange, Vec<Bytes>, |r| r.values);
decoder!(decode_sadd, SAdd, u64, |r| r.added);
decoder!(decode_srem, SRem, u64, |r| r.removed);
decoder!(decode_smembers, SMembers, Vec<Bytes>, |r| r.members);
decoder!(decode_sismember, SIsMember, bool, |r| r.is_member);

fn decode_raw(reply: Reply) -> Result<Reply> {
    Ok(reply)
}

fn unexpected(reply: &Reply) -> Error {
    invalid_response(format!("reply of another command: {reply:?}"))
}

impl Pipeline {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            commands: Vec::new(),
        }
    }

    /// Number of queued commands.
    #[must_use]
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// Whether nothing is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    fn push<T>(&mut self, command: Command, decode: fn(Reply) -> Result<T>) -> Slot<T> {
        self.commands.push(command);
        Slot {
            index: self.commands.len() - 1,
            decode,
            kind: PhantomData,
        }
    }

    fn ns(&self) -> String {
        self.client.ns()
    }

    /// Queues any command, for those without a typed method here; its slot
    /// yields the raw reply.
    pub fn command(&mut self, command: Command) -> Slot<Reply> {
        self.push(command, decode_raw)
    }

    /// Queues [`Client::get`].
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Slot<Option<Bytes>> {
        let request = pb::GetRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            include_meta: false,
        };
        self.push(Command::Get(request), decode_get)
    }

    /// Queues [`Client::set`].
    pub fn set(&mut self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Slot<SetResult> {
        self.set_with(key, value, SetOptions::default())
    }

    /// Queues [`Client::set_with`].
    pub fn set_with(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        options: SetOptions,
    ) -> Slot<SetResult> {
        let request = pb::SetRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            value: compression::encode_value(self.client.compression.as_ref(), value.into()),
            expiry: convert::write_expiry(options.expiry),
            condition: convert::condition(options.condition),
            return_previous: options.return_previous,
        };
        self.push(Command::Set(request), decode_set)
    }

    /// Queues [`Client::delete`].
    pub fn delete<K: AsRef<[u8]>>(&mut self, keys: impl IntoIterator<Item = K>) -> Slot<u64> {
        let request = pb::DeleteRequest {
            namespace: self.ns(),
            keys: keys.into_iter().map(to_bytes).collect(),
        };
        self.push(Command::Delete(request), decode_delete)
    }

    /// Queues [`Client::increment`].
    pub fn increment(&mut self, key: impl AsRef<[u8]>, delta: i64) -> Slot<i64> {
        let request = pb::IncrementRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            delta,
            initial: None,
            expiry: None,
        };
        self.push(Command::Increment(request), decode_increment)
    }

    /// Queues [`Client::expire`].
    pub fn expire(&mut self, key: impl AsRef<[u8]>, ttl: Duration) -> Slot<bool> {
        let request = pb::UpdateTtlRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            expiry: Some(convert::expiry(Expiry::After(ttl))),
        };
        self.push(Command::UpdateTtl(request), decode_update_ttl)
    }

    /// Queues [`Client::hset`].
    pub fn hset<F: AsRef<[u8]>, V: Into<Bytes>>(
        &mut self,
        key: impl AsRef<[u8]>,
        fields: impl IntoIterator<Item = (F, V)>,
    ) -> Slot<u64> {
        let request = pb::HSetRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            fields: fields
                .into_iter()
                .map(|(field, value)| pb::FieldValue {
                    field: to_bytes(field),
                    value: value.into(),
                })
                .collect(),
            expiry: None,
        };
        self.push(Command::HSet(request), decode_hset)
    }

    /// Queues [`Client::hget`].
    pub fn hget(&mut self, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>) -> Slot<Option<Bytes>> {
        let request = pb::HGetRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            field: to_bytes(field),
        };
        self.push(Command::HGet(request), decode_hget)
    }

    /// Queues [`Client::hincrby`].
    pub fn hincrby(
        &mut self,
        key: impl AsRef<[u8]>,
        field: impl AsRef<[u8]>,
        delta: i64,
    ) -> Slot<i64> {
        let request = pb::HIncrByRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            field: to_bytes(field),
            delta,
            expiry: None,
        };
        self.push(Command::HIncrBy(request), decode_hincrby)
    }

    /// Queues [`Client::lpush`].
    pub fn lpush<V: Into<Bytes>>(
        &mut self,
        key: impl AsRef<[u8]>,
        values: impl IntoIterator<Item = V>,
    ) -> Slot<u64> {
        let request = pb::LPushRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            values: values.into_iter().map(Into::into).collect(),
            ..Default::default()
        };
        self.push(Command::LPush(request), decode_lpush)
    }

    /// Queues [`Client::rpush`].
    pub fn rpush<V: Into<Bytes>>(
        &mut self,
        key: impl AsRef<[u8]>,
        values: impl IntoIterator<Item = V>,
    ) -> Slot<u64> {
        let request = pb::RPushRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            values: values.into_iter().map(Into::into).collect(),
            ..Default::default()
        };
        self.push(Command::RPush(request), decode_rpush)
    }

    /// Queues [`Client::lrange`]; the whole range comes in one reply, at
    /// most 4 MiB.
    pub fn lrange(&mut self, key: impl AsRef<[u8]>, start: i64, stop: i64) -> Slot<Vec<Bytes>> {
        let request = pb::LRangeRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            start,
            stop,
            chunk_size: 0,
        };
        self.push(Command::LRange(request), decode_lrange)
    }

    /// Queues [`Client::sadd`].
    pub fn sadd<M: AsRef<[u8]>>(
        &mut self,
        key: impl AsRef<[u8]>,
        members: impl IntoIterator<Item = M>,
    ) -> Slot<u64> {
        let request = pb::SAddRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            members: members.into_iter().map(to_bytes).collect(),
            expiry: None,
        };
        self.push(Command::SAdd(request), decode_sadd)
    }

    /// Queues [`Client::srem`].
    pub fn srem<M: AsRef<[u8]>>(
        &mut self,
        key: impl AsRef<[u8]>,
        members: impl IntoIterator<Item = M>,
    ) -> Slot<u64> {
        let request = pb::SRemRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            members: members.into_iter().map(to_bytes).collect(),
        };
        self.push(Command::SRem(request), decode_srem)
    }

    /// Queues [`Client::smembers`]; the whole set comes in one reply, at
    /// most 4 MiB.
    pub fn smembers(&mut self, key: impl AsRef<[u8]>) -> Slot<Vec<Bytes>> {
        let request = pb::SMembersRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            chunk_size: 0,
        };
        self.push(Command::SMembers(request), decode_smembers)
    }

    /// Queues [`Client::sismember`].
    pub fn sismember(&mut self, key: impl AsRef<[u8]>, member: impl AsRef<[u8]>) -> Slot<bool> {
        let request = pb::SIsMemberRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            member: to_bytes(member),
        };
        self.push(Command::SIsMember(request), decode_sismember)
    }

    /// Sends every queued command over one stream and waits for all
    /// replies. The server runs them in order.
    ///
    /// Sent once, never retried: a pipeline may hold commands that must not
    /// run twice. The handle's deadline covers the whole pipeline.
    ///
    /// # Errors
    ///
    /// Transport failures and the deadline; each command's own failure is
    /// in its slot.
    pub async fn run(self) -> Result<PipelineResults> {
        if self.commands.is_empty() {
            return Ok(PipelineResults {
                replies: Vec::new(),
            });
        }
        let client = self.client;
        if client.router.is_none() {
            let replies = run_on(&client, client.seed_node(), self.commands).await?;
            return Ok(PipelineResults { replies });
        }
        // Split by owner, each part is one pipeline of its own. A part that
        // fails answers each of its commands with that failure, so that
        // the caller learns which commands may not have run.
        let replies = client
            .by_owner(self.commands, |node, commands| {
                let count = commands.len();
                let part = run_on(&client, node, commands);
                async move {
                    Ok(part.await.unwrap_or_else(|error| {
                        let status = tonic_types::Status {
                            code: error.code() as i32,
                            message: error.to_string(),
                            details: Vec::new(),
                        };
                        (0..count)
                            .map(|_| Some(Reply::Error(status.clone())))
                            .collect()
                    }))
                }
            })
            .await?;
        Ok(PipelineResults { replies })
    }
}

/// Sends `commands` over one stream to `node` and waits for every reply.
async fn run_on(
    client: &Client,
    node: Arc<Node>,
    commands: Vec<Command>,
) -> Result<Vec<Option<Reply>>> {
    let count = commands.len();
    let requests: Vec<pb::PipelineRequest> = commands
        .into_iter()
        .enumerate()
        .map(|(index, command)| pb::PipelineRequest {
            id: index as u64,
            command: Some(command),
        })
        .collect();
    client
        .run(Idempotency::NotIdempotent, |timeout| {
            let mut batch = node.batch.clone();
            let requests = requests.clone();
            async move {
                let request = with_deadline(tokio_stream::iter(requests), timeout);
                let mut replies = batch.pipeline(request).await?.into_inner();
                let mut results: Vec<Option<Reply>> = Vec::with_capacity(count);
                while let Some(reply) = replies.message().await? {
                    let expected = results.len() as u64;
                    if reply.id != expected {
                        return Err(invalid_response(format!(
                            "reply {} arrived where {expected} was due",
                            reply.id
                        )));
                    }
                    let result = reply
                        .result
                        .ok_or_else(|| invalid_response("a reply has no result"))?;
                    results.push(Some(result));
                }
                if results.len() != count {
                    return Err(invalid_response(format!(
                        "{} of {count} commands were answered",
                        results.len()
                    )));
                }
                Ok(results)
            }
        })
        .await
}

/// A command is placed by its key, or by its first key; a command with
/// several keys goes to the owner of the first, which forwards the rest.
/// Count names none: any member answers it.
impl RoutedItem for Command {
    fn routing_key(&self) -> &[u8] {
        macro_rules! key_of {
            ($command:expr; one: $($one:ident),*; many: $($many:ident),*) => {
                match $command {
                    $(Command::$one(request) => &request.key[..],)*
                    $(Command::$many(request) => request.keys.first().map_or(&[][..], |key| &key[..]),)*
                    Command::SetBatch(request) => request.items.first().map_or(&[][..], |item| &item.key[..]),
                    Command::Count(_) => &[],
                }
            };
        }
        key_of!(self;
            one: Get, Set, Increment, UpdateTtl, HSet, HGet, HmGet, HGetAll, HDel, HLen, HExists,
                HIncrBy, LPush, RPush, LPop, RPop, LRange, LLen, LTrim, LIndex, LSet, LRem, SAdd,
                SRem, SMembers, SIsMember, SmIsMember, SCard, SPop, SRandMember;
            many: Delete, Describe, GetBatch, DeleteBatch, SInter, SUnion, SDiff)
    }
}

impl Client {
    /// An empty pipeline on this handle's namespace and deadline.
    pub fn pipeline(&self) -> Pipeline {
        Pipeline::new(self.clone())
    }
}
