//! Who may call, and what each caller may do in which namespace.
//!
//! # Model
//!
//! - A **token** is a random secret (`shoal_` and 32 bytes from the OS
//!   RNG, base64url; made by `shoal-server token`) sent on every call as
//!   `authorization: Bearer <secret>` (the standard form, which grpcurl and
//!   every gRPC library can send) or as `shoal-token: <secret>` (the Rust
//!   client's default; a call with both is refused as malformed). They
//!   differ in cost only: HTTP/2 implementations never put `authorization`
//!   in a connection's header compression table, so it is sent and decoded
//!   in full on every call (about 1 700 of the server's instructions per
//!   call, more than the check itself), while `shoal-token` is sent once
//!   per connection and then as a one-byte reference. Indexing a secret is
//!   safe when it cannot be guessed whole (RFC 7541, section 7.1.3), as
//!   256 random bits cannot. The server stores no secret: it holds one
//!   only while a connection that sent it is open (see
//!   [`ConnectionCredentials`]), and its token file lists each token's id,
//!   the hex SHA-256 of the secret, an optional expiry (RFC 3339) and its grants. SHA-256 without salt or
//!   stretching is enough because secrets have 256 bits of entropy; there is
//!   no dictionary to attack.
//! - A **certificate identity** (a URI or DNS SAN of a verified mTLS client
//!   certificate) may be listed in the same file with grants of its own. A
//!   call that carries no token but arrives on a connection
//!   with a listed identity gets that identity's grants.
//! - A **grant** is a namespace pattern (a Redis-style glob, as Scan
//!   patterns are: `orders*`, `catalog`, `*`) and a [`Role`]: `read`,
//!   `write` (read and write) or `admin` (everything, including Flush and
//!   DropNamespace). A caller's role in a namespace is the highest role of
//!   the grants whose pattern matches it (the empty name matches as
//!   `default`).
//! - **Server-wide** operations (Stats of every namespace, the server-wide
//!   figures in any Stats reply) need `admin` granted on `*`. A Stats call
//!   naming namespaces needs `read` on each; such a caller gets the entries
//!   of those namespaces, a total summed over them only, and no per-RPC or
//!   memory-limit figures. ListNamespaces lists the namespaces the caller may
//!   read.
//!
//! # Checks
//!
//! 1. [`AuthLayer`], inside the server's tower stack, authenticates every
//!    call once, before any handler runs and before its body is read.
//!    Health and reflection are open. A missing, malformed, unknown or
//!    expired token is refused with UNAUTHENTICATED, always with the same
//!    message ([`UNAUTHENTICATED_MESSAGE`]), so that a caller learns nothing
//!    about which tokens exist. The resolved [`Access`] goes into the
//!    request's extensions. Each connection remembers the last credential
//!    it verified ([`ConnectionCredentials`]), so its later calls skip the
//!    digest and the shared token set until the token file is read again.
//! 2. Every handler then asks [`Access::check`] for each namespace it
//!    touches, before it touches it: the one decision per (caller,
//!    namespace, role). Each item of a batch and each command of a pipeline
//!    is checked on its own; a refused one gets PERMISSION_DENIED (naming
//!    the namespace and the role needed) as its own outcome and the rest go
//!    on.
//! 3. Repeated authentication failures from one address (an IPv6 address
//!    counts by its /64) drain a small token bucket; an address whose bucket
//!    is empty is answered RESOURCE_EXHAUSTED at once, without its token
//!    being looked at, until the bucket refills. The buckets live in a
//!    bounded map.
//!
//! # Guaranteed
//!
//! - With a token file configured, no shoal RPC reads or changes data
//!   without a grant for its namespace; a refused write changes nothing.
//! - Secrets are compared as SHA-256 digests in constant time, are never
//!   logged, and are redacted from `Debug` output on both sides.
//! - A token file that changes on disk (checked every
//!   `auth.reload_interval_ms`) or on SIGHUP is read again; a file that no
//!   longer parses is reported in one log line and the tokens in force are
//!   kept. A removed token stops working at the next reload.
//!
//! # Not guaranteed
//!
//! - Confidentiality on the wire: without TLS, a token crosses the network
//!   in clear and anyone on the path can replay it.
//! - Revocation is only as quick as the reload: up to one poll interval, or
//!   at once on SIGHUP. Calls already running (a Watch, a Pipeline) keep the
//!   rights they were authenticated with until they end.
//! - Rate limiting is per address, so clients behind one NAT share a
//!   bucket: a misbehaving neighbour can hold them off for a while.
//! - Without a token file, every call is allowed, as if every caller held
//!   `admin` on `*`.

mod connection_credentials;
mod layer;
mod principal;
mod rate_limit;
mod secret;
mod store;
mod token_file;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use connection_credentials::ConnectionCredentials;
pub use layer::{AuthLayer, AuthService, Authenticator, FailureLimits};
pub use principal::{Access, NamespacePattern, Principal, PrincipalKind, Role};
pub use rate_limit::FailureLimiter;
pub use secret::{NewToken, digest_hex, generate_token, parse_grant, secret_digest, token_stanza};
pub use store::{TokenStore, watch_token_file};
pub use token_file::{TokenSet, parse_rfc3339};

/// The message of every UNAUTHENTICATED answer, whatever was wrong.
pub const UNAUTHENTICATED_MESSAGE: &str =
    "missing or invalid credentials: send `authorization: Bearer <token>`";
/// The message of a call refused because its address failed too often.
pub const RATE_LIMITED_MESSAGE: &str =
    "too many failed authentications from this address; retry later";

/// Domain of the `ErrorInfo` reasons shoal reports.
const ERROR_DOMAIN: &str = "shoal.v1";

/// Why a call was not authenticated; all but [`Refusal::RateLimited`] are
/// answered alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token header, and no listed certificate identity.
    Missing,
    /// An `authorization` value that is not `Bearer <token>`, a
    /// `shoal-token` value that is not a bare token, or both headers.
    Malformed,
    /// A token the file does not list.
    Unknown,
    /// A listed token past its expiry.
    Expired,
    /// The caller's address failed too often of late.
    RateLimited,
}

impl Refusal {
    /// Every refusal, in the order the metrics list them.
    pub const ALL: [Refusal; 5] = [
        Refusal::Missing,
        Refusal::Malformed,
        Refusal::Unknown,
        Refusal::Expired,
        Refusal::RateLimited,
    ];

    /// The refusal's name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Unknown => "unknown",
            Refusal::Expired => "expired",
            Refusal::RateLimited => "rate_limited",
        }
    }
}

/// Errors of authentication and authorization.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token file could not be read.
    #[error("cannot read token file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The token file is not valid.
    #[error("invalid token file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the entry.
        reason: String,
    },
    /// The call carries no usable credentials.
    #[error("{}", match .0 { Refusal::RateLimited => RATE_LIMITED_MESSAGE, _ => UNAUTHENTICATED_MESSAGE })]
    Unauthenticated(Refusal),
    /// The caller may not do this in this namespace.
    #[error("{caller} may not {action} namespace {namespace:?}: that needs role {needed}")]
    Denied {
        /// Who asked: `token "id"` or `certificate "identity"`.
        caller: String,
        /// What was asked: `read`, `write` or `administer`.
        action: &'static str,
        /// The namespace, as resolved (`default` for the empty name).
        namespace: String,
        /// The role that would allow it.
        needed: Role,
    },
    /// The caller may not do this server-wide.
    #[error("{caller} may not {what}: that needs role admin on every namespace (\"*\")")]
    NotServerAdmin {
        /// Who asked.
        caller: String,
        /// What was asked.
        what: &'static str,
    },
}

/// PERMISSION_DENIED with the namespace and the role needed as error
/// details, for clients that act on them.
fn permission_denied(message: String, namespace: String, needed: Role) -> Status {
    Status::with_error_details(
        Code::PermissionDenied,
        message,
        ErrorDetails::with_error_info(
            "PERMISSION_DENIED",
            ERROR_DOMAIN,
            HashMap::from([
                ("namespace".to_string(), namespace),
                ("role".to_string(), needed.to_string()),
            ]),
        ),
    )
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        let message = error.to_string();
        match error {
            AuthError::Unauthenticated(Refusal::RateLimited) => Status::resource_exhausted(message),
            AuthError::Unauthenticated(_) => Status::unauthenticated(message),
            AuthError::Denied {
                namespace, needed, ..
            } => permission_denied(message, namespace, needed),
            AuthError::NotServerAdmin { .. } => {
                permission_denied(message, "*".to_string(), Role::Admin)
            }
            // Never raised by a call; a bug if it were.
            AuthError::Read { .. } | AuthError::Invalid { .. } => {
                Status::internal("internal error")
            }
        }
    }
}

/// Counts of refused calls, for `AdminService.Stats` and `/metrics`.
#[derive(Debug, Default)]
pub struct AuthCounters {
    refused: [AtomicU64; Refusal::ALL.len()],
    denied: AtomicU64,
}

impl AuthCounters {
    /// Counts a call that was not authenticated.
    pub fn count_refusal(&self, refusal: Refusal) {
        self.refused[refusal as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a call, batch item or pipeline command refused for want of a
    /// right.
    pub fn count_denial(&self) {
        self.denied.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls not authenticated for `refusal`.
    pub fn refusals(&self, refusal: Refusal) -> u64 {
        self.refused[refusal as usize].load(Ordering::Relaxed)
    }

    /// Calls not authenticated, for any reason.
    pub fn failures(&self) -> u64 {
        Refusal::ALL.iter().map(|&r| self.refusals(r)).sum()
    }

    /// Calls, items and commands refused for want of a right.
    pub fn denials(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }
}

/// Whether a call to `path` is served without credentials: health checks
/// and reflection, so that probes and `grpcurl list` work.
pub fn is_open_path(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// Authentication for a server, if its configuration asks for it.
#[derive(Debug, Clone)]
pub struct AuthState {
    /// Verifies each call; `None` when auth is off.
    pub authenticator: Option<Arc<Authenticator>>,
    /// Refusals and denials, counted whether auth is on or not.
    pub counters: Arc<AuthCounters>,
}

impl AuthState {
    /// Auth off: every call allowed.
    pub fn off() -> Self {
        Self {
            authenticator: None,
            counters: Arc::default(),
        }
    }

    /// Whether calls must carry credentials.
    pub fn enabled(&self) -> bool {
        self.authenticator.is_some()
    }
}
