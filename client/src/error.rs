//! The one error type of the crate.

use std::sync::Arc;

use tonic::Code;

use crate::codec::CodecError;

/// Result type of every fallible operation of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a shoal server.
///
/// The common server answers have their own variants so callers can match on
/// them; any other status lands in [`Error::Status`]. [`Error::code`] gives
/// the gRPC code of every variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request was malformed: an empty or oversized key, an oversized
    /// value, a bad TTL or pattern. Retrying the same request fails again.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// The server's explanation, naming the field and the limit.
        message: String,
    },
    /// The command does not apply to the type of the stored key, for example
    /// a string read on a hash. The message starts with `WRONGTYPE`.
    #[error("{message}")]
    WrongType {
        /// The server's explanation.
        message: String,
    },
    /// The key is in a state the command cannot handle, for example an
    /// increment of a value that is not an integer or that would overflow.
    #[error("failed precondition: {message}")]
    FailedPrecondition {
        /// The server's explanation.
        message: String,
    },
    /// The key the command needs does not exist, for example
    /// [`lset`](crate::Client::lset) on a missing list (Redis: "ERR no such
    /// key").
    #[error("not found: {message}")]
    NotFound {
        /// The server's explanation.
        message: String,
    },
    /// An index lies outside the collection, for example
    /// [`lset`](crate::Client::lset) past the end of a list (Redis: "ERR
    /// index out of range").
    #[error("out of range: {message}")]
    OutOfRange {
        /// The server's explanation.
        message: String,
    },
    /// The server is out of memory under `noeviction`, or shedding load.
    #[error("resource exhausted: {message}")]
    ResourceExhausted {
        /// The server's explanation.
        message: String,
    },
    /// The server could not be reached or is shutting down. Transient.
    #[error("unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
    },
    /// The call's deadline passed before an answer arrived.
    ///
    /// Not retried: the deadline is the caller's whole budget for the call.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// Establishing the connection failed.
    #[error("cannot connect to {endpoint}")]
    Connect {
        /// The endpoint that was dialled.
        endpoint: String,
        /// The transport failure.
        #[source]
        source: tonic::transport::Error,
    },
    /// The endpoint string is not a valid URI.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The TLS settings cannot be used: a file that cannot be read, a
    /// certificate or key that is not PEM, TLS settings with an `http://`
    /// endpoint.
    #[error("TLS: {reason}")]
    Tls {
        /// What is wrong.
        reason: String,
    },
    /// The server answered with something this client cannot interpret,
    /// such as a key type it does not know.
    #[error("invalid response: {message}")]
    InvalidResponse {
        /// What was wrong with the response.
        message: String,
    },
    /// Any other gRPC status.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(tonic::Status),
    /// A value could not be encoded before a write or decoded after a read:
    /// a [`Codec`](crate::Codec) refused it, or a stored value claims to be
    /// compressed but is not a valid frame.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The loader of [`get_or_insert_with`](crate::Typed::get_or_insert_with)
    /// failed; every caller waiting for that load gets the same error.
    /// [`loader_error`](Self::loader_error) gives it back as its own type.
    #[error("loader failed: {0}")]
    Loader(#[source] Arc<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// The gRPC status code this error corresponds to.
    #[must_use]
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } | Self::InvalidEndpoint { .. } | Self::Tls { .. } => {
                Code::InvalidArgument
            }
            Self::WrongType { .. } | Self::FailedPrecondition { .. } => Code::FailedPrecondition,
            Self::NotFound { .. } => Code::NotFound,
            Self::OutOfRange { .. } => Code::OutOfRange,
            Self::ResourceExhausted { .. } => Code::ResourceExhausted,
            Self::Unavailable { .. } | Self::Connect { .. } => Code::Unavailable,
            Self::DeadlineExceeded => Code::DeadlineExceeded,
            Self::InvalidResponse { .. } | Self::Codec(_) => Code::Internal,
            Self::Status(status) => status.code(),
            Self::Loader(_) => Code::Unknown,
        }
    }

    /// The loader's error, when this is [`Error::Loader`] and the loader
    /// failed with an `E`.
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// let err = shoal_client::Error::Loader(Arc::new(std::io::Error::other("db down")));
    /// let io = err.loader_error::<std::io::Error>().unwrap();
    /// assert_eq!(io.to_string(), "db down");
    /// ```
    #[must_use]
    pub fn loader_error<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Self::Loader(source) => source.downcast_ref(),
            _ => None,
        }
    }

    /// A copy of this error, for handing one failure to several callers.
    /// Variants holding a transport error, which cannot be cloned, become
    /// a status with the same code and message.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::InvalidArgument { message } => Self::InvalidArgument {
                message: message.clone(),
            },
            Self::WrongType { message } => Self::WrongType {
                message: message.clone(),
            },
            Self::FailedPrecondition { message } => Self::FailedPrecondition {
                message: message.clone(),
            },
            Self::NotFound { message } => Self::NotFound {
                message: message.clone(),
            },
            Self::OutOfRange { message } => Self::OutOfRange {
                message: message.clone(),
            },
            Self::ResourceExhausted { message } => Self::ResourceExhausted {
                message: message.clone(),
            },
            Self::Unavailable { message } => Self::Unavailable {
                message: message.clone(),
            },
            Self::DeadlineExceeded => Self::DeadlineExceeded,
            Self::InvalidResponse { message } => Self::InvalidResponse {
                message: message.clone(),
            },
            Self::Status(status) => Self::Status(status.clone()),
            Self::Codec(error) => Self::Codec(error.clone()),
            Self::Loader(source) => Self::Loader(Arc::clone(source)),
            other => Self::Status(tonic::Status::new(other.code(), other.to_string())),
        }
    }

    /// Whether repeating the same call may succeed: transient transport
    /// failures, `UNAVAILABLE` and `ABORTED`.
    ///
    /// Only idempotent calls are ever retried, whatever this says.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self.code(), Code::Unavailable | Code::Aborted)
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument => Self::InvalidArgument { message },
            Code::FailedPrecondition if message.starts_with("WRONGTYPE") => {
                Self::WrongType { message }
            }
            Code::FailedPrecondition => Self::FailedPrecondition { message },
            Code::NotFound => Self::NotFound { message },
            Code::OutOfRange => Self::OutOfRange { message },
            Code::ResourceExhausted => Self::ResourceExhausted { message },
            Code::Unavailable => Self::Unavailable {
                message: message_with_causes(&status),
            },
            Code::DeadlineExceeded => Self::DeadlineExceeded,
            Code::Cancelled if is_local_timeout(&status) => Self::DeadlineExceeded,
            // A transport failure (a refused TLS handshake, a reset) arrives
            // as UNKNOWN "transport error"; keep the reason behind it.
            code if std::error::Error::source(&status).is_some() => {
                Self::Status(tonic::Status::new(code, message_with_causes(&status)))
            }
            _ => Self::Status(status),
        }
    }
}

/// Whether tonic's channel cut the call off at its `grpc-timeout`: it
/// reports that as CANCELLED with the text of [`tonic::TimeoutExpired`].
fn is_local_timeout(status: &tonic::Status) -> bool {
    status.message() == tonic::TimeoutExpired(()).to_string()
}

/// The status message, followed by the transport failure behind it when
/// there is one (connection refused, reset, ...), so the reason is not lost.
fn message_with_causes(status: &tonic::Status) -> String {
    let mut message = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The name of a code as written in the gRPC spec's Rust spelling, for
/// example `FailedPrecondition`.
pub(crate) fn code_name(code: Code) -> String {
    format!("{code:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrongtype_is_recognised_by_its_prefix() {
        let err = Error::from(tonic::Status::failed_precondition(
            "WRONGTYPE operation against a hash",
        ));
        assert!(matches!(err, Error::WrongType { .. }));
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert_eq!(err.to_string(), "WRONGTYPE operation against a hash");

        let err = Error::from(tonic::Status::failed_precondition(
            "value is not an integer",
        ));
        assert!(matches!(err, Error::FailedPrecondition { .. }));
    }

    #[test]
    fn statuses_map_to_variants() {
        assert!(matches!(
            Error::from(tonic::Status::invalid_argument("key is empty")),
            Error::InvalidArgument { .. }
        ));
        assert!(matches!(
            Error::from(tonic::Status::resource_exhausted("full")),
            Error::ResourceExhausted { .. }
        ));
        assert!(matches!(
            Error::from(tonic::Status::unavailable("bye")),
            Error::Unavailable { .. }
        ));
        assert!(matches!(
            Error::from(tonic::Status::deadline_exceeded("late")),
            Error::DeadlineExceeded
        ));
        let missing = Error::from(tonic::Status::not_found("no such key"));
        assert!(matches!(&missing, Error::NotFound { message } if message == "no such key"));
        assert_eq!(missing.code(), Code::NotFound);
        assert_eq!(missing.to_string(), "not found: no such key");
        let outside = Error::from(tonic::Status::out_of_range("index out of range"));
        assert!(matches!(outside, Error::OutOfRange { .. }));
        assert_eq!(outside.code(), Code::OutOfRange);
        let other = Error::from(tonic::Status::permission_denied("no"));
        assert_eq!(other.code(), Code::PermissionDenied);
        assert_eq!(other.to_string(), "PermissionDenied: no");
    }

    #[test]
    fn duplicates_keep_the_variant_and_the_message() {
        let errors = [
            Error::from(tonic::Status::invalid_argument("key is empty")),
            Error::from(tonic::Status::failed_precondition("WRONGTYPE hash")),
            Error::from(tonic::Status::unavailable("down")),
            Error::from(tonic::Status::permission_denied("no")),
            Error::DeadlineExceeded,
            Error::Loader(Arc::new(std::io::Error::other("db down"))),
            Error::InvalidEndpoint {
                endpoint: "bad host".into(),
                reason: "space".into(),
            },
        ];
        for error in errors {
            let copy = error.duplicate();
            assert_eq!(copy.code(), error.code(), "{error:?}");
            assert!(copy.to_string().contains(&error.to_string()), "{error:?}");
            assert_eq!(copy.is_retryable(), error.is_retryable());
        }
        let loader = Error::Loader(Arc::new(std::io::Error::other("db down"))).duplicate();
        assert!(loader.loader_error::<std::io::Error>().is_some());
        assert!(loader.loader_error::<std::fmt::Error>().is_none());
        assert!(
            Error::DeadlineExceeded
                .loader_error::<std::io::Error>()
                .is_none()
        );
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        assert!(Error::from(tonic::Status::unavailable("down")).is_retryable());
        assert!(Error::from(tonic::Status::aborted("conflict")).is_retryable());
        assert!(!Error::DeadlineExceeded.is_retryable());
        assert!(!Error::from(tonic::Status::invalid_argument("bad")).is_retryable());
        assert!(!Error::from(tonic::Status::resource_exhausted("full")).is_retryable());
        assert!(!Error::from(tonic::Status::internal("bug")).is_retryable());
    }
}
