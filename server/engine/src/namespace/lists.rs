//! List commands (Redis LPUSH, RPUSH, LPUSHX, RPUSHX, LPOP, RPOP, LRANGE,
//! LLEN, LTRIM, LINDEX, LSET, LREM).

use std::sync::Arc;

use bytes::Bytes;

use crate::collections::{Growth, ListValue, resolve_index, resolve_range};
use crate::value::Value;
use crate::{CollectionChange, EngineError, Expiry, KeyType, Namespace, WriteOutcome};

/// A point-in-time view of a list, cheap to take and readable without
/// holding any lock.
#[derive(Debug, Clone)]
pub struct ListSnapshot(pub(crate) Arc<ListValue>);

impl ListSnapshot {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list has no elements (never true for a stored list).
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// The element at `position` (0 to `len() - 1`).
    pub fn get(&self, position: usize) -> Option<&Bytes> {
        self.0.items.get(position)
    }

    /// The positions `start..end` that `start` and `stop` select, with Redis
    /// index rules.
    pub fn positions(&self, start: i64, stop: i64) -> std::ops::Range<usize> {
        resolve_range(start, stop, self.0.len())
    }

    /// Elements from `start` to `stop` inclusive, with Redis index rules
    /// (negative counts from the end; out-of-range parts are clamped).
    pub fn range(&self, start: i64, stop: i64) -> impl Iterator<Item = &Bytes> {
        self.0.items.range(resolve_range(start, stop, self.0.len()))
    }
}

fn as_list(value: &Value) -> Result<&ListValue, EngineError> {
    match value {
        Value::List(list) => Ok(list),
        other => Err(wrong_type(other)),
    }
}

fn as_list_mut(value: &mut Value) -> Result<&mut ListValue, EngineError> {
    match value {
        Value::List(list) => Ok(Arc::make_mut(list)),
        other => Err(wrong_type(other)),
    }
}

fn wrong_type(value: &Value) -> EngineError {
    EngineError::WrongType {
        expected: KeyType::List,
        actual: value.key_type(),
    }
}

impl Namespace {
    /// Pushes values one after the other at the head (`front`, Redis LPUSH)
    /// or the tail (RPUSH); with `only_if_exists` a missing list stays
    /// missing (LPUSHX, RPUSHX). Returns the new length (0 when nothing was
    /// pushed to a missing list).
    ///
    /// # Errors
    /// Invalid key, element or expiry; WRONGTYPE.
    pub fn push(
        &self,
        key: &[u8],
        values: Vec<Bytes>,
        front: bool,
        only_if_exists: bool,
        expiry: Expiry,
    ) -> Result<WriteOutcome<u64>, EngineError> {
        for value in &values {
            self.check_value(value)?;
        }
        let growth = Growth {
            elements: values.len(),
            payload: values.iter().map(Bytes::len).sum(),
        };
        let outcome = self.write_collection(
            key,
            KeyType::List,
            !only_if_exists,
            expiry,
            growth,
            |value| {
                let list = as_list_mut(value)?;
                for value in &values {
                    list.push(value.clone(), front);
                }
                let change =
                    (!values.is_empty()).then_some(CollectionChange::ListPushed { front, values });
                Ok((list.len() as u64, change))
            },
        )?;
        Ok(outcome.unwrap_or(WriteOutcome {
            result: 0,
            version: 0,
        }))
    }

    /// Removes and returns up to `count` elements from the head (`front`,
    /// Redis LPOP) or the tail (RPOP); empty when the key does not exist.
    ///
    /// # Errors
    /// Invalid key; WRONGTYPE.
    pub fn pop(&self, key: &[u8], count: usize, front: bool) -> Result<Vec<Bytes>, EngineError> {
        let outcome = self.shrink_collection(key, KeyType::List, |value| {
            let list = as_list_mut(value)?;
            let popped: Vec<Bytes> = std::iter::from_fn(|| list.pop(front)).take(count).collect();
            let change = (!popped.is_empty()).then_some(CollectionChange::ListPopped {
                front,
                count: popped.len() as u64,
            });
            Ok((popped, change))
        })?;
        Ok(outcome.map(|outcome| outcome.result).unwrap_or_default())
    }

    /// A snapshot of the list, for LRANGE.
    ///
    /// # Errors
    /// Invalid key; WRONGTYPE.
    pub fn list_snapshot(&self, key: &[u8]) -> Result<Option<ListSnapshot>, EngineError> {
        self.read_value(key, KeyType::List, |value| match value {
            None => Ok(None),
            Some(Value::List(list)) => Ok(Some(ListSnapshot(Arc::clone(list)))),
            Some(other) => Err(wrong_type(other)),
        })
    }

    /// Elements from `start` to `stop` inclusive (Redis LRANGE).
    ///
    /// # Errors
    /// Invalid key; WRONGTYPE.
    pub fn lrange(&self, key: &[u8], start: i64, stop: i64) -> Result<Vec<Bytes>, EngineError> {
        Ok(self
            .list_snapshot(key)?
            .map(|list| list.range(start, stop).cloned().collect())
            .unwrap_or_default())
    }

    /// Number of elements (Redis LLEN).
    ///
    /// # Errors
    /// Invalid key; WRONGTYPE.
    pub fn llen(&self, key: &[u8]) -> Result<u64, EngineError> {
        self.read_value(key, KeyType::List, |value| {
            value.map_or(Ok(0), |value| Ok(as_list(value)?.len() as u64))
        })
    }

    /// Keeps only the elements from `start` to `stop` inclusive (Redis
    /// LTRIM); an empty range removes the list. Returns the new length.
    ///
    /// # Errors
    /// Invalid key; WRONGTYPE.
    pub fn ltrim(&self, key: &[u8], start: i64, stop: i64) -> Result<u64, EngineError> {
        let outcome = self.shrink_collection(key, KeyType::List, |value| {
            let list = as_list_mut(value)?;
            let before = list.len();
            let range = resolve_range(start, stop, before);
            if range == (0..before) {
                return Ok((before as u64, None));
            }
            list.keep(range.start, range.end);
            let change = CollectionChange::ListTrimmed {
                start: range.start as u64,
                end: range.end as u64,
            };
            Ok((list.len() as u64, Some(change)))
        })?;
        Ok(outcome.map_or(0, |outcome| outcome.result))
    }

    /// The element at `index` (Redis LINDEX).
    ///
    /// # Errors
    /// Invalid key; WRONGTYPE.
    pub fn lindex(&self, key: &[u8], index: i64) -> Result<Option<Bytes>, EngineError> {
        self.read_value(key, KeyType::List, |value| match value {
            None => Ok(None),
            Some(value) => {
                let list = as_list(value)?;
                Ok(resolve_index(index, list.len()).and_then(|at| list.items.get(at).cloned()))
            }
        })
    }

    /// Replaces the element at `index` (Redis LSET); returns the new version.
    ///
    /// # Errors
    /// Invalid key or element; WRONGTYPE; [`EngineError::NoSuchKey`];
    /// [`EngineError::IndexOutOfRange`].
    pub fn lset(&self, key: &[u8], index: i64, element: Bytes) -> Result<u64, EngineError> {
        self.check_value(&element)?;
        let growth = Growth {
            elements: 0,
            payload: element.len(),
        };
        let outcome =
            self.write_collection(key, KeyType::List, false, Expiry::Keep, growth, |value| {
                let list = as_list_mut(value)?;
                let at = resolve_index(index, list.len()).ok_or(EngineError::IndexOutOfRange)?;
                list.replace(at, element.clone());
                Ok((
                    (),
                    Some(CollectionChange::ListSet {
                        index: at as u64,
                        value: element,
                    }),
                ))
            })?;
        outcome
            .map(|outcome| outcome.version)
            .ok_or(EngineError::NoSuchKey)
    }

    /// Removes occurrences of `element` (Redis LREM): `count > 0` from the
    /// head, `< 0` from the tail, `0` all. Returns how many were removed.
    ///
    /// # Errors
    /// Invalid key; WRONGTYPE.
    pub fn lrem(&self, key: &[u8], count: i64, element: &[u8]) -> Result<u64, EngineError> {
        let outcome = self.shrink_collection(key, KeyType::List, |value| {
            let list = as_list_mut(value)?;
            let limit = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
            let removed = list.remove_occurrences(element, limit, count < 0) as u64;
            let change = (removed > 0).then(|| CollectionChange::ListRemoved {
                count,
                value: Bytes::copy_from_slice(element),
            });
            Ok((removed, change))
        })?;
        Ok(outcome.map_or(0, |outcome| outcome.result))
    }
}
