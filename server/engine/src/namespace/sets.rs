//! Set commands (Redis SADD, SREM, SMEMBERS, SISMEMBER, SMISMEMBER, SCARD,
//! SPOP, SRANDMEMBER, SINTER, SUNION, SDIFF).

use std::sync::Arc;

use bytes::Bytes;

use crate::collections::{Growth, SetValue};
use crate::value::Value;
use crate::{CollectionChange, EngineError, Expiry, KeyType, Namespace, WriteOutcome};

/// A point-in-time view of a set, cheap to take and readable without
/// holding any lock.
#[derive(Debug, Clone)]
pub struct SetSnapshot(pub(crate) Arc<SetValue>);

impl SetSnapshot {
    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set has no members (never true for a stored set).
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// Members, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.0.members.iter()
    }

    /// The member at `position` (0 to `len() - 1`), for reading in chunks.
    pub fn get(&self, position: usize) -> Option<&Bytes> {
        self.0.members.get_index(position)
    }

    fn contains(&self, member: &[u8]) -> bool {
        self.0.contains(member)
    }
}

/// How [`Namespace::combine_sets`] combines sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOperation {
    /// Members in every set (SINTER).
    Intersection,
    /// Members in any set (SUNION).
    Union,
    /// Members of the first set in none of the others (SDIFF).
    Difference,
}

fn as_set(value: &Value) -> Result<&SetValue, EngineError> {
    match value {
        Value::Set(set) => Ok(set),
        other => Err(wrong_type(other)),
    }
}

fn as_set_mut(value: &mut Value) -> Result<&mut SetValue, EngineError> {
    match value {
        Value::Set(set) => Ok(Arc::make_mut(set)),
        other => Err(wrong_type(other)),
    }
}

fn wrong_type(value: &Value) -> EngineError {
    EngineError::WrongType {
        expected: KeyType::Set,
        actual: value.key_type(),
    }
}

impl Namespace {
    /// Adds members (Redis SADD); returns how many are new.
    ///
    /// # Errors
    /// Invalid key, member or expiry; WRONGTYPE.
    pub fn sadd(
        &self,
        key: &[u8],
        members: Vec<Bytes>,
        expiry: Expiry,
    ) -> Result<WriteOutcome<u64>, EngineError> {
        for member in &members {
            self.check_element("member", member)?;
        }
        let growth = Growth {
            elements: members.len(),
            payload: members.iter().map(Bytes::len).sum(),
        };
        let outcome = self.write_collection(key, KeyType::Set, true, expiry, growth, |value| {
            let set = as_set_mut(value)?;
            let added: Vec<Bytes> = members
                .into_iter()
                .filter(|member| set.insert(member.clone()))
                .collect();
            let count = added.len() as u64;
            let change = (count > 0).then_some(CollectionChange::SetAdded { members: added });
            Ok((count, change))
        })?;
        Ok(outcome.unwrap_or(WriteOutcome {
            result: 0,
            version: 0,
        }))
    }

    /// Removes members (Redis SREM); returns how many existed.
    ///
    /// # Errors
    /// Invalid key; WRONGTYPE.
    pub fn srem<M: AsRef<[u8]>>(&self, key: &[u8], members: &[M]) -> Result<u64, EngineError> {
        for member in members {
            self.check_element("member", member.as_ref())?;
        }
        let outcome = self.shrink_collection(key, KeyType::Set, |value| {
            let set = as_set_mut(value)?;
            let removed: Vec<Bytes> = members
                .iter()
                .filter(|member| set.remove(member.as_ref()))
                .map(|member| Bytes::copy_from_slice(member.as_ref()))
                .collect();
            let count = removed.len() as u64;
            let change = (count > 0).then_some(CollectionChange::SetRemoved { members: removed });
            Ok((count, change))
        })?;
        Ok(outcome.map_or(0, |outcome| outcome.result))
    }

    /// A snapshot of the set (Redis SMEMBERS).
    ///
    /// # Errors
    /// Invalid key; WRONGTYPE.
    pub fn smembers(&self, key: &[u8]) -> Result<Option<SetSnapshot>, EngineError> {
        self.read_value(key, KeyType::Set, |value| match value {
            None => Ok(None),
            Some(Value::Set(set)) => Ok(Some(SetSnapshot(Arc::clone(set)))),
            Some(other) => Err(wrong_type(other)),
        })
    }

    /// Whether each value is a member, in order (Redis SMISMEMBER; one value
    /// is SISMEMBER).
    ///
    /// # Errors
    /// Invalid key or member (one longer than any stored one can be is
    /// refused, as an oversized key is); WRONGTYPE.
    pub fn smismember<M: AsRef<[u8]>>(
        &self,
        key: &[u8],
        members: &[M],
    ) -> Result<Vec<bool>, EngineError> {
        for member in members {
            self.check_element("member", member.as_ref())?;
        }
        self.read_value(key, KeyType::Set, |value| match value {
            None => Ok(vec![false; members.len()]),
            Some(value) => {
                let set = as_set(value)?;
                Ok(members
                    .iter()
                    .map(|member| set.contains(member.as_ref()))
                    .collect())
            }
        })
    }

    /// Number of members (Redis SCARD).
    ///
    /// # Errors
    /// Invalid key; WRONGTYPE.
    pub fn scard(&self, key: &[u8]) -> Result<u64, EngineError> {
        self.read_value(key, KeyType::Set, |value| {
            value.map_or(Ok(0), |value| Ok(as_set(value)?.len() as u64))
        })
    }

    /// Removes and returns up to `count` random members (Redis SPOP).
    ///
    /// # Errors
    /// Invalid key; WRONGTYPE.
    pub fn spop(&self, key: &[u8], count: usize) -> Result<Vec<Bytes>, EngineError> {
        let outcome = self.shrink_collection(key, KeyType::Set, |value| {
            let set = as_set_mut(value)?;
            let popped: Vec<Bytes> = std::iter::from_fn(|| match set.len() {
                0 => None,
                len => set.remove_at(fastrand::usize(..len)),
            })
            .take(count)
            .collect();
            let change = (!popped.is_empty()).then(|| CollectionChange::SetRemoved {
                members: popped.clone(),
            });
            Ok((popped, change))
        })?;
        Ok(outcome.map(|outcome| outcome.result).unwrap_or_default())
    }

    /// Random members without removing them (Redis SRANDMEMBER): a positive
    /// `count` gives up to that many distinct members, a negative one exactly
    /// `|count|` members that may repeat.
    ///
    /// # Errors
    /// Invalid key; WRONGTYPE.
    pub fn srandmember(&self, key: &[u8], count: i64) -> Result<Vec<Bytes>, EngineError> {
        self.read_value(key, KeyType::Set, |value| {
            let Some(value) = value else {
                return Ok(Vec::new());
            };
            let set = as_set(value)?;
            let len = set.len();
            let wanted = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
            let pick = |index: usize| set.members.get_index(index).cloned();
            if count < 0 {
                return Ok((0..wanted)
                    .filter_map(|_| pick(fastrand::usize(..len)))
                    .collect());
            }
            if wanted >= len {
                return Ok(set.members.iter().cloned().collect());
            }
            // Distinct picks: a partial Fisher-Yates shuffle of the indexes.
            let mut indexes: Vec<usize> = (0..len).collect();
            for slot in 0..wanted {
                let chosen = fastrand::usize(slot..len);
                indexes.swap(slot, chosen);
            }
            Ok(indexes[..wanted]
                .iter()
                .filter_map(|index| pick(*index))
                .collect())
        })
    }

    /// Intersection, union or difference of the sets under `keys` (Redis
    /// SINTER, SUNION, SDIFF); a missing key counts as an empty set.
    ///
    /// Each key is read under its own shard's lock, one after the other, so
    /// the result is not an atomic view across keys written concurrently.
    ///
    /// # Errors
    /// Invalid key; WRONGTYPE when any key holds another type.
    pub fn combine_sets<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        operation: SetOperation,
    ) -> Result<Vec<Bytes>, EngineError> {
        let snapshots = keys
            .iter()
            .map(|key| self.smembers(key.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let Some((first, rest)) = snapshots.split_first() else {
            return Ok(Vec::new());
        };
        Ok(match operation {
            SetOperation::Intersection => {
                if snapshots.iter().any(Option::is_none) {
                    return Ok(Vec::new());
                }
                let mut sets: Vec<&SetSnapshot> = snapshots.iter().flatten().collect();
                sets.sort_by_key(|set| set.len());
                let (smallest, others) = sets
                    .split_first()
                    .map_or((None, &[][..]), |(s, o)| (Some(*s), o));
                smallest
                    .into_iter()
                    .flat_map(SetSnapshot::iter)
                    .filter(|member| others.iter().all(|set| set.contains(member)))
                    .cloned()
                    .collect()
            }
            SetOperation::Union => {
                let mut union = indexmap::IndexSet::<Bytes, foldhash::fast::RandomState>::default();
                for set in snapshots.iter().flatten() {
                    union.extend(set.iter().cloned());
                }
                union.into_iter().collect()
            }
            SetOperation::Difference => first
                .iter()
                .flat_map(SetSnapshot::iter)
                .filter(|member| rest.iter().flatten().all(|set| !set.contains(member)))
                .cloned()
                .collect(),
        })
    }
}
