//! Hash commands (Redis HSET, HGET, HMGET, HGETALL, HDEL, HLEN, HEXISTS,
//! HINCRBY).

use std::sync::Arc;

use bytes::Bytes;

use crate::collections::{Growth, HashValue};
use crate::integer::{format_i64, parse_i64};
use crate::value::Value;
use crate::{CollectionChange, EngineError, Expiry, KeyType, Namespace, WriteOutcome};

/// A point-in-time view of a hash, cheap to take and readable without
/// holding any lock.
#[derive(Debug, Clone)]
pub struct HashSnapshot(pub(crate) Arc<HashValue>);

impl HashSnapshot {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the hash has no fields (never true for a stored hash).
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// Fields and values, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.0.map.iter()
    }

    /// The entry at `position` (0 to `len() - 1`), for reading in chunks.
    pub fn get(&self, position: usize) -> Option<(&Bytes, &Bytes)> {
        self.0.map.get_index(position)
    }
}

fn as_hash(value: &Value) -> Result<&HashValue, EngineError> {
    match value {
        Value::Hash(hash) => Ok(hash),
        other => Err(wrong_type(other)),
    }
}

fn as_hash_mut(value: &mut Value) -> Result<&mut HashValue, EngineError> {
    match value {
        Value::Hash(hash) => Ok(Arc::make_mut(hash)),
        other => Err(wrong_type(other)),
    }
}

fn wrong_type(value: &Value) -> EngineError {
    EngineError::WrongType {
        expected: KeyType::Hash,
        actual: value.key_type(),
    }
}

impl Namespace {
    /// Sets hash fields (Redis HSET); returns how many are new. `expiry`
    /// applies to the key after the write (`Keep` leaves it).
    ///
    /// # Errors
    /// Invalid key, field, value or expiry; WRONGTYPE.
    pub fn hset(
        &self,
        key: &[u8],
        fields: Vec<(Bytes, Bytes)>,
        expiry: Expiry,
    ) -> Result<WriteOutcome<u64>, EngineError> {
        for (field, value) in &fields {
            self.check_element("field", field)?;
            self.check_value(value)?;
        }
        let growth = Growth {
            elements: fields.len(),
            payload: fields.iter().map(|(f, v)| f.len() + v.len()).sum(),
        };
        let outcome = self.write_collection(key, KeyType::Hash, true, expiry, growth, |value| {
            let hash = as_hash_mut(value)?;
            let added = fields
                .iter()
                .filter(|(field, value)| hash.insert(field.clone(), value.clone()))
                .count() as u64;
            Ok((added, Some(CollectionChange::HashSet { fields })))
        })?;
        Ok(outcome.unwrap_or(WriteOutcome {
            result: 0,
            version: 0,
        }))
    }

    /// The value of one field (Redis HGET).
    ///
    /// # Errors
    /// Invalid key or field (a field longer than any stored one can be is
    /// refused, as an oversized key is); WRONGTYPE.
    pub fn hget(&self, key: &[u8], field: &[u8]) -> Result<Option<Bytes>, EngineError> {
        self.check_element("field", field)?;
        self.read_value(key, KeyType::Hash, |value| match value {
            None => Ok(None),
            Some(value) => Ok(as_hash(value)?.map.get(field).cloned()),
        })
    }

    /// The values of several fields, in order (Redis HMGET).
    ///
    /// # Errors
    /// Invalid key or field; WRONGTYPE.
    pub fn hmget<F: AsRef<[u8]>>(
        &self,
        key: &[u8],
        fields: &[F],
    ) -> Result<Vec<Option<Bytes>>, EngineError> {
        for field in fields {
            self.check_element("field", field.as_ref())?;
        }
        self.read_value(key, KeyType::Hash, |value| match value {
            None => Ok(vec![None; fields.len()]),
            Some(value) => {
                let hash = as_hash(value)?;
                Ok(fields
                    .iter()
                    .map(|field| hash.map.get(field.as_ref()).cloned())
                    .collect())
            }
        })
    }

    /// A snapshot of the whole hash (Redis HGETALL, HKEYS, HVALS).
    ///
    /// # Errors
    /// Invalid key; WRONGTYPE.
    pub fn hgetall(&self, key: &[u8]) -> Result<Option<HashSnapshot>, EngineError> {
        self.read_value(key, KeyType::Hash, |value| match value {
            None => Ok(None),
            Some(Value::Hash(hash)) => Ok(Some(HashSnapshot(Arc::clone(hash)))),
            Some(other) => Err(wrong_type(other)),
        })
    }

    /// Removes fields (Redis HDEL); returns how many existed.
    ///
    /// # Errors
    /// Invalid key or field; WRONGTYPE.
    pub fn hdel<F: AsRef<[u8]>>(&self, key: &[u8], fields: &[F]) -> Result<u64, EngineError> {
        for field in fields {
            self.check_element("field", field.as_ref())?;
        }
        let outcome = self.shrink_collection(key, KeyType::Hash, |value| {
            let hash = as_hash_mut(value)?;
            let removed: Vec<Bytes> = fields
                .iter()
                .filter(|field| hash.remove(field.as_ref()))
                .map(|field| Bytes::copy_from_slice(field.as_ref()))
                .collect();
            let count = removed.len() as u64;
            let change = (count > 0).then_some(CollectionChange::HashDeleted { fields: removed });
            Ok((count, change))
        })?;
        Ok(outcome.map_or(0, |outcome| outcome.result))
    }

    /// Number of fields (Redis HLEN).
    ///
    /// # Errors
    /// Invalid key; WRONGTYPE.
    pub fn hlen(&self, key: &[u8]) -> Result<u64, EngineError> {
        self.read_value(key, KeyType::Hash, |value| {
            value.map_or(Ok(0), |value| Ok(as_hash(value)?.len() as u64))
        })
    }

    /// Whether a field exists (Redis HEXISTS).
    ///
    /// # Errors
    /// Invalid key or field; WRONGTYPE.
    pub fn hexists(&self, key: &[u8], field: &[u8]) -> Result<bool, EngineError> {
        self.check_element("field", field)?;
        self.read_value(key, KeyType::Hash, |value| {
            value.map_or(Ok(false), |value| {
                Ok(as_hash(value)?.map.contains_key(field))
            })
        })
    }

    /// Adds `delta` to an integer field, created at 0 (Redis HINCRBY).
    ///
    /// # Errors
    /// Invalid key, field or expiry; WRONGTYPE; NotAnInteger;
    /// IncrementOverflow. Nothing changes on error.
    pub fn hincrby(
        &self,
        key: &[u8],
        field: &[u8],
        delta: i64,
        expiry: Expiry,
    ) -> Result<i64, EngineError> {
        self.check_element("field", field)?;
        let growth = Growth {
            elements: 1,
            payload: field.len() + 20,
        };
        let outcome = self.write_collection(key, KeyType::Hash, true, expiry, growth, |value| {
            let hash = as_hash_mut(value)?;
            let current = match hash.map.get(field) {
                Some(text) => parse_i64(text)?,
                None => 0,
            };
            let next = current
                .checked_add(delta)
                .ok_or(EngineError::IncrementOverflow)?;
            let field = Bytes::copy_from_slice(field);
            let text = format_i64(next);
            hash.insert(field.clone(), text.clone());
            Ok((
                next,
                Some(CollectionChange::HashSet {
                    fields: vec![(field, text)],
                }),
            ))
        })?;
        Ok(outcome.map_or(0, |outcome| outcome.result))
    }
}
