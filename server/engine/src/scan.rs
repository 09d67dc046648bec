//! Key listing with resumable cursors.
//!
//! Within a shard, keys are listed in `(hash, key)` order, which does not
//! depend on the table's layout. A cursor is therefore just "shard `s`, after
//! `(hash, key)`": it stays valid while the table grows, shrinks or is
//! rewritten, and every key present for the whole scan is listed exactly
//! once. Each pass over a shard keeps only the smallest positions it needs in
//! a bounded heap, and holds the shard's shared lock for one pass only.

use std::collections::BinaryHeap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::shard::ShardState;
use super::{EngineError, KeyPattern, KeyType};

/// Where a scan resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanCursor {
    /// Shard being listed.
    pub(crate) shard: u32,
    /// Last position listed in that shard, if any.
    pub(crate) after: Option<(u64, Bytes)>,
}

/// Which keys a scan lists.
#[derive(Debug, Clone, Default)]
pub struct ScanFilter {
    /// Only keys matching this pattern.
    pub pattern: Option<KeyPattern>,
    /// Only keys of this type.
    pub key_type: Option<KeyType>,
}

/// One page of a scan.
#[derive(Debug, Clone, Default)]
pub struct ScanPage {
    /// Keys listed, in no meaningful order.
    pub keys: Vec<Bytes>,
    /// Where to resume; `None` when the scan is complete.
    pub cursor: Option<ScanCursor>,
}

/// A cursor's bytes: format, tag, shard, whether a position follows, and
/// the position's hash and key. The tag is a hash, keyed with a secret of
/// the namespace instance that issued it, over everything after it: a
/// cursor edited, or issued by another namespace (or by this namespace
/// before it was dropped and made again), fails its check.
const CURSOR_FORMAT: u8 = 2;
const CURSOR_HEADER_BYTES: usize = 1 + 8 + 4 + 1 + 8;

/// The tag of a cursor's fields under `secret`.
fn cursor_tag(secret: u64, shard: u32, position: Option<(u64, &[u8])>) -> u64 {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::with_seed(secret).hash_one((shard, position))
}

impl ScanCursor {
    /// The cursor that starts a scan.
    pub fn start() -> Self {
        Self::default()
    }

    pub(crate) fn encode(&self, secret: u64) -> Bytes {
        let key_len = self.after.as_ref().map_or(0, |(_, key)| key.len());
        let mut out = BytesMut::with_capacity(CURSOR_HEADER_BYTES + key_len);
        out.put_u8(CURSOR_FORMAT);
        let position = self.after.as_ref().map(|(hash, key)| (*hash, &key[..]));
        out.put_u64_le(cursor_tag(secret, self.shard, position));
        out.put_u32_le(self.shard);
        match &self.after {
            None => {
                out.put_u8(0);
                out.put_u64_le(0);
            }
            Some((hash, key)) => {
                out.put_u8(1);
                out.put_u64_le(*hash);
                out.put_slice(key);
            }
        }
        out.freeze()
    }

    pub(crate) fn decode(
        bytes: &[u8],
        secret: u64,
        shard_count: usize,
    ) -> Result<Self, EngineError> {
        if bytes.is_empty() {
            return Ok(Self::start());
        }
        if bytes.len() < CURSOR_HEADER_BYTES {
            return Err(EngineError::InvalidCursor);
        }
        let mut input = bytes;
        let format = input.get_u8();
        let tag = input.get_u64_le();
        let shard = input.get_u32_le();
        let has_position = input.get_u8();
        let hash = input.get_u64_le();
        if format != CURSOR_FORMAT || shard as usize >= shard_count {
            return Err(EngineError::InvalidCursor);
        }
        let position = match has_position {
            0 if input.is_empty() => None,
            1 if !input.is_empty() => Some((hash, input)),
            _ => return Err(EngineError::InvalidCursor),
        };
        if tag != cursor_tag(secret, shard, position) {
            return Err(EngineError::InvalidCursor);
        }
        let after = position.map(|(hash, key)| (hash, Bytes::copy_from_slice(key)));
        Ok(Self { shard, after })
    }
}

/// The `wanted` smallest `(hash, key)` positions after `after` in `state`
/// that pass `filter`, in ascending order.
pub(crate) fn scan_shard(
    state: &ShardState,
    after: Option<&(u64, Bytes)>,
    filter: &ScanFilter,
    wanted: usize,
    now_ms: u64,
) -> Vec<(u64, Bytes)> {
    let mut smallest: BinaryHeap<(u64, Bytes)> = BinaryHeap::with_capacity(wanted.min(4096) + 1);
    for entry in state.entries() {
        let kept = entry.with_key(|key| {
            let position = (state.hash_of(key), key);
            if after.is_some_and(|(hash, after_key)| position <= (*hash, after_key.as_ref())) {
                return None;
            }
            if smallest.len() == wanted
                && smallest
                    .peek()
                    .is_some_and(|(hash, largest)| position >= (*hash, largest.as_ref()))
            {
                return None;
            }
            if entry.is_expired(now_ms)
                || filter
                    .key_type
                    .is_some_and(|wanted_type| entry.key_type() != wanted_type)
                || filter
                    .pattern
                    .as_ref()
                    .is_some_and(|pattern| !pattern.matches(key))
            {
                return None;
            }
            Some((position.0, Bytes::copy_from_slice(key)))
        });
        if let Some(position) = kept {
            smallest.push(position);
            if smallest.len() > wanted {
                smallest.pop();
            }
        }
    }
    smallest.into_sorted_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        for cursor in [
            ScanCursor::start(),
            ScanCursor {
                shard: 3,
                after: Some((42, Bytes::from_static(b"key"))),
            },
        ] {
            let encoded = cursor.encode(7);
            assert_eq!(ScanCursor::decode(&encoded, 7, 4), Ok(cursor));
        }
    }

    #[test]
    fn rejects_foreign_or_damaged_cursors() {
        let cursor = ScanCursor {
            shard: 3,
            after: Some((42, Bytes::from_static(b"key"))),
        };
        let encoded = cursor.encode(7);
        assert_eq!(
            ScanCursor::decode(&encoded, 8, 4),
            Err(EngineError::InvalidCursor)
        );
        assert_eq!(
            ScanCursor::decode(&encoded, 7, 2),
            Err(EngineError::InvalidCursor)
        );
        assert_eq!(
            ScanCursor::decode(&encoded[..5], 7, 4),
            Err(EngineError::InvalidCursor)
        );
        assert_eq!(
            ScanCursor::decode(b"garbage-garbage-garbage", 7, 4),
            Err(EngineError::InvalidCursor)
        );
    }
}
