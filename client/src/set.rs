//! Sets: a key holding unique members, in no particular order (Redis SADD,
//! SMEMBERS, SINTER, ...).

use bytes::Bytes;
use shoal_proto::v1 as pb;

use crate::call::to_bytes;
use crate::client::Client;
use crate::convert;
use crate::error::Result;
use crate::retry::Idempotency;
use crate::types::Expiry;

impl Client {
    /// Adds members to a set, creating it when absent, and returns how many
    /// are new. The key keeps its expiry (a new set never expires).
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key holds
    /// another type; [`Error::InvalidArgument`](crate::Error::InvalidArgument)
    /// for no members, more than 10000, or a member over 65536 bytes.
    pub async fn sadd<M: AsRef<[u8]>>(
        &self,
        key: impl AsRef<[u8]>,
        members: impl IntoIterator<Item = M>,
    ) -> Result<u64> {
        self.sadd_with(key, members, Expiry::Keep).await
    }

    /// Adds members to a set and gives the key `expiry` after the write:
    /// [`Expiry::Keep`] leaves it as it is, [`Expiry::Never`] removes it.
    /// Returns how many members are new.
    ///
    /// # Errors
    ///
    /// As [`sadd`](Self::sadd), and
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an
    /// out-of-range TTL.
    pub async fn sadd_with<M: AsRef<[u8]>>(
        &self,
        key: impl AsRef<[u8]>,
        members: impl IntoIterator<Item = M>,
        expiry: Expiry,
    ) -> Result<u64> {
        let request = pb::SAddRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            members: members.into_iter().map(to_bytes).collect(),
            expiry: convert::collection_expiry(expiry),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.s_add(r).await },
            )
            .await?;
        Ok(response.added)
    }

    /// Removes members and returns how many were in the set. A set left
    /// without members disappears.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// set; [`Error::InvalidArgument`](crate::Error::InvalidArgument) for no
    /// members or more than 10000.
    pub async fn srem<M: AsRef<[u8]>>(
        &self,
        key: impl AsRef<[u8]>,
        members: impl IntoIterator<Item = M>,
    ) -> Result<u64> {
        let request = pb::SRemRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            members: members.into_iter().map(to_bytes).collect(),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.s_rem(r).await },
            )
            .await?;
        Ok(response.removed)
    }

    /// Every member, in no particular order; empty when the key does not
    /// exist.
    ///
    /// The server sends large sets in chunks; the whole read must finish
    /// within the handle's timeout.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// set.
    pub async fn smembers(&self, key: impl AsRef<[u8]>) -> Result<Vec<Bytes>> {
        let request = pb::SMembersRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            chunk_size: 0,
        };
        self.read_chunks(
            self.node_for(&request.key),
            request,
            |mut c, r| async move { c.s_members(r).await },
            |chunk: pb::SMembersResponse| chunk.members,
        )
        .await
    }

    /// Whether `member` is in the set.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// set.
    pub async fn sismember(&self, key: impl AsRef<[u8]>, member: impl AsRef<[u8]>) -> Result<bool> {
        let request = pb::SIsMemberRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            member: to_bytes(member),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.s_is_member(r).await },
            )
            .await?;
        Ok(response.is_member)
    }

    /// Whether each of `members` is in the set, in the order asked.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// set; [`Error::InvalidArgument`](crate::Error::InvalidArgument) for no
    /// members or more than 10000.
    pub async fn smismember<M: AsRef<[u8]>>(
        &self,
        key: impl AsRef<[u8]>,
        members: impl IntoIterator<Item = M>,
    ) -> Result<Vec<bool>> {
        let request = pb::SmIsMemberRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            members: members.into_iter().map(to_bytes).collect(),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.sm_is_member(r).await },
            )
            .await?;
        Ok(response.is_member)
    }

    /// Number of members; 0 when the key does not exist.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// set.
    pub async fn scard(&self, key: impl AsRef<[u8]>) -> Result<u64> {
        let request = pb::SCardRequest {
            namespace: self.ns(),
            key: to_bytes(key),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.s_card(r).await },
            )
            .await?;
        Ok(response.cardinality)
    }

    /// Removes and returns a random member, or `None` when the set does not
    /// exist.
    ///
    /// Never retried: a repeated pop could remove two members.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// set.
    pub async fn spop(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        Ok(self.spop_members(key, None).await?.into_iter().next())
    }

    /// Removes and returns up to `count` random members; empty when the set
    /// does not exist.
    ///
    /// # Errors
    ///
    /// As [`spop`](Self::spop), and
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a count
    /// of 0 or above 10000.
    pub async fn spop_count(&self, key: impl AsRef<[u8]>, count: u32) -> Result<Vec<Bytes>> {
        self.spop_members(key, Some(count)).await
    }

    async fn spop_members(&self, key: impl AsRef<[u8]>, count: Option<u32>) -> Result<Vec<Bytes>> {
        let request = pb::SPopRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            count,
        };
        let response = self
            .unary(
                Idempotency::NotIdempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.s_pop(r).await },
            )
            .await?;
        Ok(response.members)
    }

    /// Random members, left in the set: with a positive `count`, up to that
    /// many distinct members; with a negative one, exactly `-count` members,
    /// possibly repeated. Empty when the set does not exist.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// set; [`Error::InvalidArgument`](crate::Error::InvalidArgument) when
    /// `|count|` is above 10000.
    pub async fn srandmember(&self, key: impl AsRef<[u8]>, count: i64) -> Result<Vec<Bytes>> {
        let request = pb::SRandMemberRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            count: Some(count),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.s_rand_member(r).await },
            )
            .await?;
        Ok(response.members)
    }

    /// Members in every one of the sets, in no particular order; a missing
    /// key counts as an empty set.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when a key is not a
    /// set; [`Error::InvalidArgument`](crate::Error::InvalidArgument) for no
    /// keys or more than 10000.
    pub async fn sinter<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Bytes>> {
        let request = pb::SInterRequest {
            namespace: self.ns(),
            keys: keys.into_iter().map(to_bytes).collect(),
            chunk_size: 0,
        };
        self.read_chunks(
            self.node_for_keys(&request.keys),
            request,
            |mut c, r| async move { c.s_inter(r).await },
            |chunk: pb::SInterResponse| chunk.members,
        )
        .await
    }

    /// Members in any of the sets, in no particular order.
    ///
    /// # Errors
    ///
    /// As [`sinter`](Self::sinter).
    pub async fn sunion<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Bytes>> {
        let request = pb::SUnionRequest {
            namespace: self.ns(),
            keys: keys.into_iter().map(to_bytes).collect(),
            chunk_size: 0,
        };
        self.read_chunks(
            self.node_for_keys(&request.keys),
            request,
            |mut c, r| async move { c.s_union(r).await },
            |chunk: pb::SUnionResponse| chunk.members,
        )
        .await
    }

    /// Members of the first set that are in none of the others, in no
    /// particular order.
    ///
    /// # Errors
    ///
    /// As [`sinter`](Self::sinter).
    pub async fn sdiff<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Bytes>> {
        let request = pb::SDiffRequest {
            namespace: self.ns(),
            keys: keys.into_iter().map(to_bytes).collect(),
            chunk_size: 0,
        };
        self.read_chunks(
            self.node_for_keys(&request.keys),
            request,
            |mut c, r| async move { c.s_diff(r).await },
            |chunk: pb::SDiffResponse| chunk.members,
        )
        .await
    }
}
