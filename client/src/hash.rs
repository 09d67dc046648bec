//! Hashes: a key holding a map of fields to values (Redis HSET, HGET, ...).

use bytes::Bytes;
use shoal_proto::v1 as pb;

use crate::call::to_bytes;
use crate::client::Client;
use crate::convert;
use crate::error::Result;
use crate::retry::Idempotency;
use crate::types::Expiry;

impl Client {
    /// Sets fields of a hash, creating it when absent, and returns how many
    /// fields are new. The key keeps its expiry (a new hash never expires).
    /// A field named twice takes its last value.
    ///
    /// ```no_run
    /// # async fn demo(client: shoal_client::Client) -> shoal_client::Result<()> {
    /// let added = client
    ///     .hset("position:AAPL", [("qty", "100"), ("avg_price", "187.40")])
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key holds
    /// another type; [`Error::InvalidArgument`](crate::Error::InvalidArgument)
    /// for no fields, more than 10000, or oversized fields or values.
    pub async fn hset<F, V>(
        &self,
        key: impl AsRef<[u8]>,
        fields: impl IntoIterator<Item = (F, V)>,
    ) -> Result<u64>
    where
        F: AsRef<[u8]>,
        V: Into<Bytes>,
    {
        self.hset_with(key, fields, Expiry::Keep).await
    }

    /// Sets fields of a hash and gives the key `expiry` after the write:
    /// [`Expiry::Keep`] leaves it as it is, [`Expiry::Never`] removes it.
    /// Returns how many fields are new.
    ///
    /// # Errors
    ///
    /// As [`hset`](Self::hset), and
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an
    /// out-of-range TTL.
    pub async fn hset_with<F, V>(
        &self,
        key: impl AsRef<[u8]>,
        fields: impl IntoIterator<Item = (F, V)>,
        expiry: Expiry,
    ) -> Result<u64>
    where
        F: AsRef<[u8]>,
        V: Into<Bytes>,
    {
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
            expiry: convert::collection_expiry(expiry),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.h_set(r).await },
            )
            .await?;
        Ok(response.added)
    }

    /// The value of one field, or `None` when the key or the field does not
    /// exist.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// hash.
    pub async fn hget(
        &self,
        key: impl AsRef<[u8]>,
        field: impl AsRef<[u8]>,
    ) -> Result<Option<Bytes>> {
        let request = pb::HGetRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            field: to_bytes(field),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.h_get(r).await },
            )
            .await?;
        Ok(response.found.then_some(response.value))
    }

    /// The values of several fields, in the order asked, `None` for each
    /// one that does not exist.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// hash; [`Error::InvalidArgument`](crate::Error::InvalidArgument) for
    /// no fields or more than 10000.
    pub async fn hmget<F: AsRef<[u8]>>(
        &self,
        key: impl AsRef<[u8]>,
        fields: impl IntoIterator<Item = F>,
    ) -> Result<Vec<Option<Bytes>>> {
        let request = pb::HmGetRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            fields: fields.into_iter().map(to_bytes).collect(),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.hm_get(r).await },
            )
            .await?;
        Ok(convert::optional_values(response.values))
    }

    /// Every field and its value, in no particular order; empty when the key
    /// does not exist.
    ///
    /// The server sends large hashes in chunks; the whole read must finish
    /// within the handle's timeout.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// hash.
    pub async fn hgetall(&self, key: impl AsRef<[u8]>) -> Result<Vec<(Bytes, Bytes)>> {
        self.hash_entries(key, pb::HashProjection::Unspecified, |e| (e.field, e.value))
            .await
    }

    /// Every field name, in no particular order.
    ///
    /// # Errors
    ///
    /// As [`hgetall`](Self::hgetall).
    pub async fn hkeys(&self, key: impl AsRef<[u8]>) -> Result<Vec<Bytes>> {
        self.hash_entries(key, pb::HashProjection::Fields, |e| e.field)
            .await
    }

    /// Every value, in no particular order.
    ///
    /// # Errors
    ///
    /// As [`hgetall`](Self::hgetall).
    pub async fn hvals(&self, key: impl AsRef<[u8]>) -> Result<Vec<Bytes>> {
        self.hash_entries(key, pb::HashProjection::Values, |e| e.value)
            .await
    }

    async fn hash_entries<T>(
        &self,
        key: impl AsRef<[u8]>,
        projection: pb::HashProjection,
        entry: fn(pb::FieldValue) -> T,
    ) -> Result<Vec<T>> {
        let request = pb::HGetAllRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            projection: projection.into(),
            chunk_size: 0,
        };
        self.read_chunks(
            self.node_for(&request.key),
            request,
            |mut c, r| async move { c.h_get_all(r).await },
            |chunk: pb::HGetAllResponse| chunk.entries.into_iter().map(entry),
        )
        .await
    }

    /// Removes fields and returns how many existed. A hash left without
    /// fields disappears.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// hash; [`Error::InvalidArgument`](crate::Error::InvalidArgument) for
    /// no fields or more than 10000.
    pub async fn hdel<F: AsRef<[u8]>>(
        &self,
        key: impl AsRef<[u8]>,
        fields: impl IntoIterator<Item = F>,
    ) -> Result<u64> {
        let request = pb::HDelRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            fields: fields.into_iter().map(to_bytes).collect(),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.h_del(r).await },
            )
            .await?;
        Ok(response.removed)
    }

    /// Number of fields; 0 when the key does not exist.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// hash.
    pub async fn hlen(&self, key: impl AsRef<[u8]>) -> Result<u64> {
        let request = pb::HLenRequest {
            namespace: self.ns(),
            key: to_bytes(key),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.h_len(r).await },
            )
            .await?;
        Ok(response.length)
    }

    /// Whether a field exists.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// hash.
    pub async fn hexists(&self, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>) -> Result<bool> {
        let request = pb::HExistsRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            field: to_bytes(field),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.h_exists(r).await },
            )
            .await?;
        Ok(response.exists)
    }

    /// Adds `delta` to a 64-bit integer field, creating the hash and the
    /// field (at 0) when absent, and returns the new value. The key keeps
    /// its expiry.
    ///
    /// Never retried: a repeated increment could count twice.
    ///
    /// # Errors
    ///
    /// [`Error::FailedPrecondition`](crate::Error::FailedPrecondition) when
    /// the field does not hold an integer or the result would overflow;
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// hash.
    pub async fn hincrby(
        &self,
        key: impl AsRef<[u8]>,
        field: impl AsRef<[u8]>,
        delta: i64,
    ) -> Result<i64> {
        let request = pb::HIncrByRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            field: to_bytes(field),
            delta,
            expiry: None,
        };
        let response = self
            .unary(
                Idempotency::NotIdempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.h_incr_by(r).await },
            )
            .await?;
        Ok(response.value)
    }
}
