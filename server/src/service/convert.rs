//! Conversions between `shoal.v1` messages and engine types.

use shoal_proto::v1 as pb;
use tonic::Status;

use super::status::invalid;
use crate::engine::{Condition, Expiry, ItemMeta, KeyType};

/// The expiry a request asks for; an absent or empty message means `Never`.
pub(crate) fn expiry(expiry: Option<pb::Expiry>) -> Expiry {
    match expiry.and_then(|expiry| expiry.kind) {
        None | Some(pb::expiry::Kind::Never(_)) => Expiry::Never,
        Some(pb::expiry::Kind::Keep(_)) => Expiry::Keep,
        Some(pb::expiry::Kind::TtlMs(ms)) => Expiry::AfterMs(ms),
        Some(pb::expiry::Kind::AtUnixMs(at)) => Expiry::AtUnixMs(at),
    }
}

/// The expiry of a collection write: absent or empty keeps the key's
/// current expiry, as Redis's HSET, LPUSH and SADD do.
pub(crate) fn collection_expiry(expiry: Option<pb::Expiry>) -> Expiry {
    match expiry.and_then(|expiry| expiry.kind) {
        None => Expiry::Keep,
        kind => self::expiry(Some(pb::Expiry { kind })),
    }
}

/// The write condition a request asks for; absent means `Always`.
pub(crate) fn condition(condition: Option<pb::Condition>) -> Condition {
    match condition.and_then(|condition| condition.kind) {
        None => Condition::Always,
        Some(pb::condition::Kind::IfAbsent(_)) => Condition::IfAbsent,
        Some(pb::condition::Kind::IfPresent(_)) => Condition::IfPresent,
        Some(pb::condition::Kind::IfVersion(version)) => Condition::IfVersion(version),
    }
}

/// A type filter: `KEY_TYPE_UNSPECIFIED` means any type; an unknown number
/// is refused rather than silently matching nothing.
pub(crate) fn key_type_filter(field: &str, raw: i32) -> Result<Option<KeyType>, Status> {
    match pb::KeyType::try_from(raw) {
        Ok(pb::KeyType::Unspecified) => Ok(None),
        Ok(pb::KeyType::String) => Ok(Some(KeyType::String)),
        Ok(pb::KeyType::Hash) => Ok(Some(KeyType::Hash)),
        Ok(pb::KeyType::List) => Ok(Some(KeyType::List)),
        Ok(pb::KeyType::Set) => Ok(Some(KeyType::Set)),
        Err(_) => Err(invalid(
            field,
            format!(
                "{field} has unknown value {raw}; expected KEY_TYPE_UNSPECIFIED (0), KEY_TYPE_STRING (1), \
                 KEY_TYPE_HASH (2), KEY_TYPE_LIST (3) or KEY_TYPE_SET (4)"
            ),
        )),
    }
}

/// The wire form of a key type.
pub(crate) fn key_type(key_type: KeyType) -> pb::KeyType {
    match key_type {
        KeyType::String => pb::KeyType::String,
        KeyType::Hash => pb::KeyType::Hash,
        KeyType::List => pb::KeyType::List,
        KeyType::Set => pb::KeyType::Set,
    }
}

/// The wire form of key metadata.
pub(crate) fn meta(meta: ItemMeta) -> pb::ItemMeta {
    pb::ItemMeta {
        version: meta.version,
        expires_at_unix_ms: meta.expires_at_ms.unwrap_or(0),
        ttl_ms: meta.ttl_ms,
        r#type: key_type(meta.key_type).into(),
        size: meta.size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_enum_values_are_invalid_arguments() {
        let status = key_type_filter("type", 42).expect_err("unknown");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with("type has unknown value 42"));
        assert_eq!(key_type_filter("type", 0).expect("known"), None);
    }

    #[test]
    fn absent_expiry_and_condition_mean_never_and_always() {
        assert_eq!(expiry(None), Expiry::Never);
        assert_eq!(expiry(Some(pb::Expiry { kind: None })), Expiry::Never);
        assert_eq!(condition(None), Condition::Always);
    }
}
