//! The one mapping from engine errors to gRPC statuses.
//!
//! Statuses carry rich details (`google.rpc.BadRequest` naming the field,
//! `google.rpc.ErrorInfo` with a reason) so that clients in any language can
//! branch on them without parsing messages.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::engine::EngineError;

/// Domain of the `ErrorInfo` reasons shoal reports.
const ERROR_DOMAIN: &str = "shoal.v1";

/// Maps an engine error to a status. `field` is the request field the error
/// is about when the caller knows it better than the engine (for example
/// `keys[3]`); otherwise the engine's own field name is used.
pub(crate) fn engine_status(error: EngineError, field: Option<&str>) -> Status {
    let message = error.to_string();
    match &error {
        EngineError::EmptyKey | EngineError::KeyTooLong { .. } => {
            invalid(field.unwrap_or("key"), message)
        }
        EngineError::ValueTooLarge { .. } => invalid(field.unwrap_or("value"), message),
        EngineError::ElementTooLong { element, .. } => invalid(field.unwrap_or(element), message),
        EngineError::NoSuchKey => Status::with_error_details(
            Code::NotFound,
            message,
            ErrorDetails::with_error_info("NO_SUCH_KEY", ERROR_DOMAIN, HashMap::new()),
        ),
        EngineError::IndexOutOfRange => Status::with_error_details(
            Code::OutOfRange,
            message,
            ErrorDetails::with_error_info("INDEX_OUT_OF_RANGE", ERROR_DOMAIN, HashMap::new()),
        ),
        EngineError::InvalidExpiry {
            field: part,
            reason,
        } => {
            let path = match *part {
                "expiry" => "expiry".to_string(),
                part => format!("expiry.{part}"),
            };
            invalid(&path, format!("{path} {reason}"))
        }
        EngineError::InvalidPattern(_) => invalid(field.unwrap_or("pattern"), message),
        EngineError::InvalidCursor => invalid(field.unwrap_or("cursor"), message),
        EngineError::InvalidNamespace { .. } => invalid(field.unwrap_or("namespace"), message),
        EngineError::WrongType { .. } => precondition("WRONGTYPE", message),
        EngineError::NotAnInteger => precondition("NOT_AN_INTEGER", message),
        EngineError::IncrementOverflow => precondition("INCREMENT_OVERFLOW", message),
        EngineError::OutOfMemory { limit } => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_error_info(
                "OUT_OF_MEMORY",
                ERROR_DOMAIN,
                HashMap::from([("limit".to_string(), (*limit).to_string())]),
            ),
        ),
        EngineError::TooManyNamespaces { .. } => Status::with_error_details(
            Code::ResourceExhausted,
            format!(
                "{message} (engine.max_namespaces); drop unused ones with \
                 AdminService.DropNamespace, empty ones are reclaimed after \
                 engine.empty_namespace_grace_secs"
            ),
            ErrorDetails::with_error_info("TOO_MANY_NAMESPACES", ERROR_DOMAIN, HashMap::new()),
        ),
    }
}

/// INVALID_ARGUMENT about `field`, with a `BadRequest` detail. The message
/// starts with the field so that a person reading it knows where to look.
pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Status {
    let message = message.into();
    let text = if message.starts_with(field) {
        message.clone()
    } else {
        format!("{field}: {message}")
    };
    Status::with_error_details(
        Code::InvalidArgument,
        text,
        ErrorDetails::with_bad_request_violation(field, message),
    )
}

/// The `google.rpc.Status` a failed item of a batch or pipeline carries:
/// the same code, message and details the call would have failed with.
pub(crate) fn item_status(status: &Status) -> tonic_types::Status {
    // A status built with details carries them as an encoded
    // `google.rpc.Status`; only its details list is needed here.
    let details = match status.details() {
        [] => Vec::new(),
        encoded => <tonic_types::Status as prost::Message>::decode(encoded)
            .map(|decoded| decoded.details)
            .unwrap_or_default(),
    };
    tonic_types::Status {
        code: status.code() as i32,
        message: status.message().to_string(),
        details,
    }
}

/// FAILED_PRECONDITION with an `ErrorInfo` reason such as `WRONGTYPE`.
fn precondition(reason: &str, message: String) -> Status {
    Status::with_error_details(
        Code::FailedPrecondition,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new()),
    )
}

/// The status of a change the engine applied but the log could not
/// acknowledge: UNAVAILABLE, since this server can no longer promise that
/// writes survive a restart.
pub(crate) fn unlogged(error: crate::persistence::PersistenceError) -> Status {
    Status::with_error_details(
        Code::Unavailable,
        format!(
            "the change was applied in memory but its log record was not acknowledged, so it \
             may not survive a restart: {error}"
        ),
        ErrorDetails::with_error_info("NOT_LOGGED", ERROR_DOMAIN, HashMap::new()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::KeyType;

    #[test]
    fn invalid_input_names_the_field_and_the_limit() {
        let status = engine_status(
            EngineError::KeyTooLong {
                len: 70_000,
                max: 65_536,
            },
            None,
        );
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "key is 70000 bytes, over the limit of 65536 bytes"
        );
        let details = status.get_error_details();
        let violations = &details.bad_request().expect("bad request").field_violations;
        assert_eq!(violations[0].field, "key");

        let status = engine_status(EngineError::EmptyKey, Some("keys[2]"));
        assert_eq!(status.message(), "keys[2]: key must not be empty");

        let status = engine_status(
            EngineError::InvalidExpiry {
                field: "ttl_ms",
                reason: "is -1, must be between 1 and 10".into(),
            },
            None,
        );
        assert_eq!(
            status.message(),
            "expiry.ttl_ms is -1, must be between 1 and 10"
        );
    }

    #[test]
    fn item_statuses_keep_code_message_and_details() {
        let status = engine_status(EngineError::EmptyKey, Some("keys[2]"));
        let item = item_status(&status);
        assert_eq!(item.code, Code::InvalidArgument as i32);
        assert_eq!(item.message, "keys[2]: key must not be empty");
        assert_eq!(item.details.len(), 1);
        assert!(item.details[0].type_url.ends_with("google.rpc.BadRequest"));
        assert!(item_status(&Status::internal("plain")).details.is_empty());
    }

    #[test]
    fn wrong_type_is_a_failed_precondition_with_reason() {
        let status = engine_status(
            EngineError::WrongType {
                expected: KeyType::String,
                actual: KeyType::Hash,
            },
            None,
        );
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().starts_with("WRONGTYPE"));
        let details = status.get_error_details();
        assert_eq!(
            details.error_info().expect("error info").reason,
            "WRONGTYPE"
        );
    }
}
