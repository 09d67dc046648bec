//! Lists: a key holding an ordered sequence of values (Redis LPUSH, LRANGE,
//! LTRIM, ...).
//!
//! Indexes are signed: 0 is the first element, -1 the last. Ranges are
//! inclusive at both ends and clamped to the list.

use bytes::Bytes;
use shoal_proto::v1 as pb;

use crate::call::to_bytes;
use crate::client::Client;
use crate::convert;
use crate::error::Result;
use crate::retry::Idempotency;
use crate::types::PushOptions;

impl Client {
    /// Inserts values at the head of a list, creating it when absent, and
    /// returns the list's new length. The values go in one after the other,
    /// so the last one ends up first, as in Redis.
    ///
    /// Never retried: a repeated push could insert twice.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key holds
    /// another type; [`Error::InvalidArgument`](crate::Error::InvalidArgument)
    /// for no values, more than 10000, or an oversized value.
    pub async fn lpush<V: Into<Bytes>>(
        &self,
        key: impl AsRef<[u8]>,
        values: impl IntoIterator<Item = V>,
    ) -> Result<u64> {
        self.lpush_with(key, values, PushOptions::default()).await
    }

    /// [`lpush`](Self::lpush) with options: only onto an existing list
    /// (Redis `LPUSHX`, which returns 0 when there is none), and an expiry
    /// for the list.
    ///
    /// # Errors
    ///
    /// As [`lpush`](Self::lpush), and
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an
    /// out-of-range TTL.
    pub async fn lpush_with<V: Into<Bytes>>(
        &self,
        key: impl AsRef<[u8]>,
        values: impl IntoIterator<Item = V>,
        options: PushOptions,
    ) -> Result<u64> {
        let request = pb::LPushRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            values: values.into_iter().map(Into::into).collect(),
            only_if_exists: options.only_if_exists,
            expiry: convert::collection_expiry(options.expiry),
        };
        let response = self
            .unary(
                Idempotency::NotIdempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.l_push(r).await },
            )
            .await?;
        Ok(response.length)
    }

    /// Appends values at the tail of a list, in order, creating it when
    /// absent, and returns the list's new length.
    ///
    /// Never retried: a repeated push could append twice.
    ///
    /// # Errors
    ///
    /// As [`lpush`](Self::lpush).
    pub async fn rpush<V: Into<Bytes>>(
        &self,
        key: impl AsRef<[u8]>,
        values: impl IntoIterator<Item = V>,
    ) -> Result<u64> {
        self.rpush_with(key, values, PushOptions::default()).await
    }

    /// [`rpush`](Self::rpush) with options: only onto an existing list
    /// (Redis `RPUSHX`, which returns 0 when there is none), and an expiry
    /// for the list.
    ///
    /// ```no_run
    /// # async fn demo(client: shoal_client::Client) -> shoal_client::Result<()> {
    /// use std::time::Duration;
    /// use shoal_client::PushOptions;
    ///
    /// // The conversation expires an hour after its last message.
    /// client
    ///     .rpush_with("chat:42", ["hello"], PushOptions::ttl(Duration::from_secs(3600)))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`lpush_with`](Self::lpush_with).
    pub async fn rpush_with<V: Into<Bytes>>(
        &self,
        key: impl AsRef<[u8]>,
        values: impl IntoIterator<Item = V>,
        options: PushOptions,
    ) -> Result<u64> {
        let request = pb::RPushRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            values: values.into_iter().map(Into::into).collect(),
            only_if_exists: options.only_if_exists,
            expiry: convert::collection_expiry(options.expiry),
        };
        let response = self
            .unary(
                Idempotency::NotIdempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.r_push(r).await },
            )
            .await?;
        Ok(response.length)
    }

    /// Appends `value` and keeps only the last `keep` elements ("keep the
    /// last 100"), returning the list's length afterwards.
    ///
    /// Not atomic: it is an [`rpush`](Self::rpush) followed, when the list
    /// has grown past `keep`, by an [`ltrim`](Self::ltrim). A reader may see
    /// the list between the two, one element over the cap; concurrent
    /// writers using this method each trim, so the cap holds once they are
    /// done. `keep = 0` empties the list, which removes it.
    ///
    /// ```no_run
    /// # async fn demo(client: shoal_client::Client) -> shoal_client::Result<()> {
    /// client.push_capped("chat:42", "user: hi", 100).await?;
    /// let last_ten = client.lrange("chat:42", -10, -1).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`rpush`](Self::rpush) and [`ltrim`](Self::ltrim). When the trim
    /// fails the value has been pushed already.
    pub async fn push_capped(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        keep: u64,
    ) -> Result<u64> {
        let key = key.as_ref();
        let length = self.rpush(key, [value]).await?;
        match trim_to_last(length, keep) {
            None => Ok(length),
            Some((start, stop)) => self.ltrim(key, start, stop).await,
        }
    }

    /// Removes and returns the first element, or `None` when the list does
    /// not exist.
    ///
    /// Never retried: a repeated pop could remove two elements.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// list.
    pub async fn lpop(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        Ok(self.lpop_values(key, None).await?.into_iter().next())
    }

    /// Removes and returns up to `count` elements from the head, first
    /// element first; empty when the list does not exist.
    ///
    /// # Errors
    ///
    /// As [`lpop`](Self::lpop), and
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a count
    /// of 0 or above 10000.
    pub async fn lpop_count(&self, key: impl AsRef<[u8]>, count: u32) -> Result<Vec<Bytes>> {
        self.lpop_values(key, Some(count)).await
    }

    async fn lpop_values(&self, key: impl AsRef<[u8]>, count: Option<u32>) -> Result<Vec<Bytes>> {
        let request = pb::LPopRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            count,
        };
        let response = self
            .unary(
                Idempotency::NotIdempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.l_pop(r).await },
            )
            .await?;
        Ok(response.values)
    }

    /// Removes and returns the last element, or `None` when the list does
    /// not exist.
    ///
    /// Never retried: a repeated pop could remove two elements.
    ///
    /// # Errors
    ///
    /// As [`lpop`](Self::lpop).
    pub async fn rpop(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        Ok(self.rpop_values(key, None).await?.into_iter().next())
    }

    /// Removes and returns up to `count` elements from the tail, last
    /// element first; empty when the list does not exist.
    ///
    /// # Errors
    ///
    /// As [`lpop_count`](Self::lpop_count).
    pub async fn rpop_count(&self, key: impl AsRef<[u8]>, count: u32) -> Result<Vec<Bytes>> {
        self.rpop_values(key, Some(count)).await
    }

    async fn rpop_values(&self, key: impl AsRef<[u8]>, count: Option<u32>) -> Result<Vec<Bytes>> {
        let request = pb::RPopRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            count,
        };
        let response = self
            .unary(
                Idempotency::NotIdempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.r_pop(r).await },
            )
            .await?;
        Ok(response.values)
    }

    /// The elements from index `start` to index `stop`, both included, in
    /// list order. `lrange(key, 0, -1)` is the whole list, `lrange(key, -10,
    /// -1)` its last ten elements; empty when the key does not exist.
    ///
    /// The server sends long ranges in chunks; the whole read must finish
    /// within the handle's timeout.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// list.
    pub async fn lrange(&self, key: impl AsRef<[u8]>, start: i64, stop: i64) -> Result<Vec<Bytes>> {
        let request = pb::LRangeRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            start,
            stop,
            chunk_size: 0,
        };
        self.read_chunks(
            self.node_for(&request.key),
            request,
            |mut c, r| async move { c.l_range(r).await },
            |chunk: pb::LRangeResponse| chunk.values,
        )
        .await
    }

    /// Number of elements; 0 when the key does not exist.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// list.
    pub async fn llen(&self, key: impl AsRef<[u8]>) -> Result<u64> {
        let request = pb::LLenRequest {
            namespace: self.ns(),
            key: to_bytes(key),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.l_len(r).await },
            )
            .await?;
        Ok(response.length)
    }

    /// Keeps only the elements from index `start` to index `stop`, both
    /// included, and returns the list's length afterwards: `ltrim(key, -100,
    /// -1)` keeps the last 100. A list trimmed to nothing disappears.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// list.
    pub async fn ltrim(&self, key: impl AsRef<[u8]>, start: i64, stop: i64) -> Result<u64> {
        let request = pb::LTrimRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            start,
            stop,
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.l_trim(r).await },
            )
            .await?;
        Ok(response.length)
    }

    /// The element at `index` (negative counts from the end), or `None`
    /// when the key or the index does not exist.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// list.
    pub async fn lindex(&self, key: impl AsRef<[u8]>, index: i64) -> Result<Option<Bytes>> {
        let request = pb::LIndexRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            index,
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.l_index(r).await },
            )
            .await?;
        Ok(response.found.then_some(response.value))
    }

    /// Replaces the element at `index` (negative counts from the end) and
    /// returns the key's new version.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) when the key does not
    /// exist, [`Error::OutOfRange`](crate::Error::OutOfRange) when the index
    /// lies outside the list, [`Error::WrongType`](crate::Error::WrongType)
    /// when the key is not a list.
    pub async fn lset(
        &self,
        key: impl AsRef<[u8]>,
        index: i64,
        value: impl Into<Bytes>,
    ) -> Result<u64> {
        let request = pb::LSetRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            index,
            value: value.into(),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.l_set(r).await },
            )
            .await?;
        Ok(response.version)
    }

    /// Removes occurrences of `value` and returns how many were removed:
    /// the first `count` from the head when `count > 0`, the last `-count`
    /// from the tail when `count < 0`, all of them when `count == 0`.
    ///
    /// Never retried: a repeated removal could remove more occurrences.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the key is not a
    /// list.
    pub async fn lrem(
        &self,
        key: impl AsRef<[u8]>,
        count: i64,
        value: impl Into<Bytes>,
    ) -> Result<u64> {
        let request = pb::LRemRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            count,
            value: value.into(),
        };
        let response = self
            .unary(
                Idempotency::NotIdempotent,
                &self.node_for(&request.key).collection,
                request,
                |mut c, r| async move { c.l_rem(r).await },
            )
            .await?;
        Ok(response.removed)
    }
}

/// The LTRIM range that keeps the last `keep` elements of a list of
/// `length`, or `None` when nothing needs to go.
fn trim_to_last(length: u64, keep: u64) -> Option<(i64, i64)> {
    if length <= keep {
        None
    } else if keep == 0 {
        // start > stop: nothing is kept.
        Some((1, 0))
    } else {
        Some((-i64::try_from(keep).unwrap_or(i64::MAX), -1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_pushes_trim_only_past_the_cap() {
        assert_eq!(trim_to_last(99, 100), None);
        assert_eq!(trim_to_last(100, 100), None);
        assert_eq!(trim_to_last(101, 100), Some((-100, -1)));
        assert_eq!(trim_to_last(1, 0), Some((1, 0)));
        assert_eq!(trim_to_last(u64::MAX, u64::MAX - 1), Some((-i64::MAX, -1)));
    }
}
