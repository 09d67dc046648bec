//! Checks on request shape that the engine cannot make: how many items a
//! request names, counts and chunk sizes, and keys of requests that never
//! reach the engine (reads of a namespace that does not exist).

use bytes::Bytes;
use tonic::Status;

use super::ServiceState;
use super::status::{engine_status, invalid};
use crate::engine::EngineError;

/// Most keys, fields, values or members one request may name, and the
/// largest count (LPop, SPop, SRandMember).
pub const MAX_ITEMS_PER_REQUEST: usize = 10_000;

/// Checks that `field` lists between `min` and [`MAX_ITEMS_PER_REQUEST`] items.
pub(crate) fn item_count(field: &str, count: usize, min: usize) -> Result<(), Status> {
    if count < min {
        return Err(invalid(
            field,
            format!("{field} must name at least {min} item(s)"),
        ));
    }
    if count > MAX_ITEMS_PER_REQUEST {
        return Err(invalid(
            field,
            format!(
                "{field} has {count} items, over the limit of {MAX_ITEMS_PER_REQUEST} per request"
            ),
        ));
    }
    Ok(())
}

/// A pop count: 1 when unset, otherwise 1 to [`MAX_ITEMS_PER_REQUEST`].
pub(crate) fn pop_count(count: Option<u32>) -> Result<usize, Status> {
    match count {
        None => Ok(1),
        Some(count @ 1..) if count as usize <= MAX_ITEMS_PER_REQUEST => Ok(count as usize),
        Some(count) => Err(invalid(
            "count",
            format!("count is {count}, must be between 1 and {MAX_ITEMS_PER_REQUEST}"),
        )),
    }
}

/// Checks a key the engine will not see.
pub(crate) fn key(state: &ServiceState, key: &[u8]) -> Result<(), Status> {
    let config = state.engine.config();
    let error = if key.is_empty() {
        EngineError::EmptyKey
    } else if key.len() > config.max_key_bytes {
        EngineError::KeyTooLong {
            len: key.len(),
            max: config.max_key_bytes,
        }
    } else {
        return Ok(());
    };
    Err(engine_status(error, None))
}

/// Checks every key of a multi-key request, naming the bad one by index.
pub(crate) fn keys(state: &ServiceState, keys: &[Bytes]) -> Result<(), Status> {
    for (index, each) in keys.iter().enumerate() {
        key(state, each)
            .map_err(|status| invalid(&format!("keys[{index}]"), status.message().to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_outside_the_limits_are_refused() {
        assert_eq!(pop_count(None).expect("default"), 1);
        assert_eq!(pop_count(Some(10_000)).expect("max"), 10_000);
        assert!(pop_count(Some(0)).is_err());
        assert!(pop_count(Some(10_001)).is_err());
        assert!(item_count("fields", 0, 1).is_err());
        assert!(item_count("fields", 10_001, 1).is_err());
        let status = item_count("values", 10_001, 1).expect_err("too many");
        assert_eq!(
            status.message(),
            "values has 10001 items, over the limit of 10000 per request"
        );
    }
}
