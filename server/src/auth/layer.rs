//! The tower layer that authenticates every call before its handler runs.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::HeaderMap;
use pin_project_lite::pin_project;
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

use super::principal::{Access, Principal};
use super::rate_limit::FailureLimiter;
use super::store::TokenStore;
use super::{AuthCounters, AuthError, Refusal, is_open_path};
use crate::limits::connections::ConnectionInfo;

/// Longest `authorization` value looked at; real ones are about 60 bytes.
const MAX_CREDENTIAL_BYTES: usize = 1024;

/// The other header a token may come in, alone, without a scheme: the Rust
/// client's default, because HTTP/2 may add it to a connection's header
/// table and then send it as a one-byte reference, where `authorization` is
/// sent and decoded in full on every call (see [`super`], Model).
pub const TOKEN_HEADER: http::HeaderName = http::HeaderName::from_static("shoal-token");

/// How many authentication failures an address may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimits {
    /// Failures allowed at once.
    pub burst: u32,
    /// Failures allowed again each minute.
    pub refill_per_minute: u32,
}

/// Verifies the credentials of calls against a token file.
pub struct Authenticator {
    store: Arc<TokenStore>,
    limiter: FailureLimiter,
    counters: Arc<AuthCounters>,
    clock: fn() -> SystemTime,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("token_file", &self.store.path())
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Verifies against `store`, holding addresses to `limits`, counting
    /// refusals in `counters`.
    pub fn new(store: Arc<TokenStore>, limits: FailureLimits, counters: Arc<AuthCounters>) -> Self {
        Self {
            store,
            limiter: FailureLimiter::new(limits.burst, limits.refill_per_minute),
            counters,
            clock: SystemTime::now,
        }
    }

    /// Reads time from `clock` rather than the system's, for tests of
    /// expiry.
    pub fn with_clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }

    /// The token file in force.
    pub fn store(&self) -> &Arc<TokenStore> {
        &self.store
    }

    /// The caller a request with `headers` and `extensions` speaks for.
    ///
    /// # Errors
    /// [`AuthError::Unauthenticated`] with the refusal, counted and, unless
    /// the address is held off already, charged to the address.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<Arc<Principal>, AuthError> {
        let connection = extensions.get::<ConnectionInfo>();
        let peer = connection
            .and_then(|connection| connection.remote)
            .map(|addr| addr.ip());
        if self.limiter.is_held_off(peer) {
            self.counters.count_refusal(Refusal::RateLimited);
            return Err(AuthError::Unauthenticated(Refusal::RateLimited));
        }
        let result = match credential(headers) {
            Some(Some(secret)) => self.token(secret, connection),
            Some(None) => Err(Refusal::Malformed),
            None => connection
                .filter(|connection| !connection.client_identities().is_empty())
                .and_then(|connection| self.certificate(connection))
                .ok_or(Refusal::Missing),
        };
        result.map_err(|refusal| {
            self.refused(peer, refusal);
            AuthError::Unauthenticated(refusal)
        })
    }

    /// The caller of bearer `secret`: from the connection's memo when it
    /// verified this secret under the tokens in force, else from the token
    /// file (and then memoised).
    fn token(
        &self,
        secret: &[u8],
        connection: Option<&ConnectionInfo>,
    ) -> Result<Arc<Principal>, Refusal> {
        let memo = connection.map(ConnectionInfo::credentials);
        if let Some(principal) = memo.and_then(|memo| memo.token(secret, self.store.generation())) {
            // The clock is read only for a token that expires.
            let expired = principal
                .expires()
                .is_some_and(|expires| (self.clock)() >= expires);
            return if expired {
                Err(Refusal::Expired)
            } else {
                Ok(principal)
            };
        }
        self.store.with_current_generation(|set, generation| {
            let principal = set.authenticate(secret, (self.clock)())?;
            if let Some(memo) = memo {
                memo.remember_token(secret, generation, principal);
            }
            Ok(Arc::clone(principal))
        })
    }

    /// The caller of the connection's verified client certificate, if the
    /// token file lists one of its identities.
    fn certificate(&self, connection: &ConnectionInfo) -> Option<Arc<Principal>> {
        let memo = connection.credentials();
        if let Some(principal) = memo.certificate(self.store.generation()) {
            return Some(principal);
        }
        self.store.with_current_generation(|set, generation| {
            let principal = set.certificate(connection.client_identities())?;
            memo.remember_certificate(generation, principal);
            Some(Arc::clone(principal))
        })
    }

    fn refused(&self, peer: Option<IpAddr>, refusal: Refusal) {
        self.counters.count_refusal(refusal);
        // The credentials themselves are never logged.
        tracing::debug!(?peer, reason = refusal.name(), "call not authenticated");
        if self.limiter.count_failure(peer) {
            tracing::warn!(
                ?peer,
                "too many failed authentications: calls from this address are refused \
                 until its allowance refills (auth.failure_burst, auth.failure_refill_per_minute)"
            );
        }
    }
}

/// The secret a call carries: `None` without any, `Some(None)` when what it
/// carries is malformed (a bad value, or both headers at once, which could
/// disagree).
fn credential(headers: &HeaderMap) -> Option<Option<&[u8]>> {
    match (
        headers.get(http::header::AUTHORIZATION),
        headers.get(TOKEN_HEADER),
    ) {
        (None, None) => None,
        (Some(value), None) => Some(bearer(value.as_bytes())),
        (None, Some(value)) => Some(bare_secret(value.as_bytes())),
        (Some(_), Some(_)) => Some(None),
    }
}

/// The secret of a `shoal-token` value: the token alone, without
/// whitespace or control characters.
fn bare_secret(value: &[u8]) -> Option<&[u8]> {
    (!value.is_empty() && value.len() <= MAX_CREDENTIAL_BYTES && is_clean(value)).then_some(value)
}

/// Whether `secret` holds no whitespace or control character (the ASCII
/// ones are the bytes up to the space, and DEL). A fold without an early
/// exit, which the compiler turns into a few vector compares.
fn is_clean(secret: &[u8]) -> bool {
    secret
        .iter()
        .fold(true, |clean, byte| clean & (*byte > b' ' && *byte != 0x7f))
}

/// The secret of an `authorization: Bearer <secret>` value: the scheme in
/// any case, then spaces, then a token without whitespace.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if value.len() > MAX_CREDENTIAL_BYTES || value.len() <= SCHEME.len() {
        return None;
    }
    let (scheme, rest) = value.split_at(SCHEME.len());
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let start = rest.iter().position(|byte| *byte != b' ')?;
    let end = rest.iter().rposition(|byte| *byte != b' ')? + 1;
    let secret = &rest[start..end];
    is_clean(secret).then_some(secret)
}

/// Authenticates every call of the services it wraps (health and
/// reflection excepted) and puts its [`Access`] in the request's
/// extensions; with no authenticator, it passes every call through.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    authenticator: Option<Arc<Authenticator>>,
}

impl AuthLayer {
    /// Checks calls with `authenticator`; `None` for auth off.
    pub fn new(authenticator: Option<Arc<Authenticator>>) -> Self {
        Self { authenticator }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

/// The service [`AuthLayer`] builds.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    authenticator: Option<Arc<Authenticator>>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = AuthFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        if let Some(authenticator) = &self.authenticator
            && !is_open_path(request.uri().path())
        {
            match authenticator.authenticate(request.headers(), request.extensions()) {
                Ok(principal) => {
                    let access = Access::Caller(principal);
                    match request.extensions_mut().get_mut::<ConnectionInfo>() {
                        Some(connection) => connection.set_caller(access),
                        None => {
                            request.extensions_mut().insert(access);
                        }
                    }
                }
                Err(error) => {
                    return AuthFuture::Refused {
                        response: Some(Status::from(error).into_http()),
                    };
                }
            }
        }
        AuthFuture::Inner {
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// The response future of [`AuthService`]: the handler's, or a refusal.
    #[project = AuthFutureProjection]
    pub enum AuthFuture<F, B> {
        /// The call was let through.
        Inner { #[pin] inner: F },
        /// The call was refused before any handler ran.
        Refused { response: Option<http::Response<B>> },
    }
}

impl<F, B> fmt::Debug for AuthFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthFuture::Inner { .. } => "AuthFuture::Inner",
            AuthFuture::Refused { .. } => "AuthFuture::Refused",
        })
    }
}

impl<F, B, E> Future for AuthFuture<F, B>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AuthFutureProjection::Inner { inner } => inner.poll(cx),
            AuthFutureProjection::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use proptest::prelude::*;

    use super::*;
    use crate::auth::secret::{digest_hex, secret_digest};

    const KNOWN: &str = "shoal_the-one-known-secret";

    /// An authenticator knowing only [`KNOWN`], with no limit on failures.
    fn authenticator() -> &'static Authenticator {
        static AUTHENTICATOR: OnceLock<Authenticator> = OnceLock::new();
        AUTHENTICATOR.get_or_init(|| {
            let store = store_of(&format!(
                "[[token]]\nid = \"known\"\nsha256 = \"{}\"\ngrants = [{{ namespaces = \"*\", role = \"read\" }}]\n",
                digest_hex(&secret_digest(KNOWN.as_bytes()))
            ));
            unlimited(store)
        })
    }

    /// The tokens of a token file holding `text`.
    fn store_of(text: &str) -> Arc<TokenStore> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, text).unwrap();
        Arc::new(TokenStore::load(&path).unwrap())
    }

    /// An authenticator of `store` with no limit on failures.
    fn unlimited(store: Arc<TokenStore>) -> Authenticator {
        let limits = FailureLimits {
            burst: u32::MAX,
            refill_per_minute: 0,
        };
        Authenticator::new(store, limits, Arc::default())
    }

    fn authenticate(value: Option<&[u8]>) -> Result<Arc<Principal>, AuthError> {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        authenticator().authenticate(&headers, &http::Extensions::new())
    }

    #[test]
    fn only_the_known_token_is_accepted() {
        let principal = authenticate(Some(format!("Bearer {KNOWN}").as_bytes())).unwrap();
        assert_eq!(principal.id(), "known");
        assert!(matches!(
            authenticate(None),
            Err(AuthError::Unauthenticated(Refusal::Missing))
        ));
        assert!(matches!(
            authenticate(Some(b"Bearer nope")),
            Err(AuthError::Unauthenticated(Refusal::Unknown))
        ));
        assert!(matches!(
            authenticate(Some(KNOWN.as_bytes())),
            Err(AuthError::Unauthenticated(Refusal::Malformed))
        ));
    }

    /// Seconds since the epoch that [`mock_now`] returns.
    static MOCK_SECONDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    fn mock_now() -> SystemTime {
        let seconds = MOCK_SECONDS.load(std::sync::atomic::Ordering::Relaxed);
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds)
    }

    fn authenticate_with(
        name: http::HeaderName,
        value: &[u8],
    ) -> Result<Arc<Principal>, AuthError> {
        let mut headers = HeaderMap::new();
        headers.insert(name, http::HeaderValue::from_bytes(value).unwrap());
        authenticator().authenticate(&headers, &http::Extensions::new())
    }

    #[test]
    fn the_token_header_carries_the_bare_token() {
        let principal = authenticate_with(TOKEN_HEADER, KNOWN.as_bytes()).unwrap();
        assert_eq!(principal.id(), "known");
        for (value, refusal) in [
            (format!("Bearer {KNOWN}"), Refusal::Malformed),
            (format!("{KNOWN} "), Refusal::Malformed),
            (String::new(), Refusal::Malformed),
            ("shoal_other".to_string(), Refusal::Unknown),
        ] {
            match authenticate_with(TOKEN_HEADER, value.as_bytes()) {
                Err(AuthError::Unauthenticated(got)) => assert_eq!(got, refusal, "{value:?}"),
                other => panic!("{value:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn both_headers_at_once_are_refused_even_when_they_agree() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {KNOWN}")).unwrap(),
        );
        headers.insert(TOKEN_HEADER, http::HeaderValue::from_static(KNOWN));
        assert!(matches!(
            authenticator().authenticate(&headers, &http::Extensions::new()),
            Err(AuthError::Unauthenticated(Refusal::Malformed))
        ));
    }

    #[test]
    fn a_memoised_token_still_expires() {
        let store = store_of(&format!(
            "[[token]]\nid = \"brief\"\nsha256 = \"{}\"\nexpires = \"2030-01-01T00:00:00Z\"\n\
             grants = [{{ namespaces = \"*\", role = \"read\" }}]\n",
            digest_hex(&secret_digest(KNOWN.as_bytes()))
        ));
        let authenticator = unlimited(Arc::clone(&store)).with_clock(mock_now);
        let expiry = crate::auth::parse_rfc3339("2030-01-01T00:00:00Z").unwrap();
        let expiry = expiry
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();

        let connection = ConnectionInfo::detached(None);
        let mut extensions = http::Extensions::new();
        extensions.insert(connection.clone());
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {KNOWN}")).unwrap(),
        );
        MOCK_SECONDS.store(expiry - 10, std::sync::atomic::Ordering::Relaxed);
        let principal = authenticator.authenticate(&headers, &extensions).unwrap();
        assert_eq!(principal.id(), "brief");
        let memo = connection.credentials();
        assert!(
            memo.token(KNOWN.as_bytes(), store.generation()).is_some(),
            "memoised"
        );
        assert!(authenticator.authenticate(&headers, &extensions).is_ok());

        MOCK_SECONDS.store(expiry, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(
            authenticator.authenticate(&headers, &extensions),
            Err(AuthError::Unauthenticated(Refusal::Expired))
        ));
    }

    proptest! {
        /// Any header a client can send is refused, without a panic.
        #[test]
        fn random_headers_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if http::HeaderValue::from_bytes(&bytes).is_ok() {
                prop_assert!(authenticate(Some(&bytes)).is_err());
            }
        }

        /// So is any token after a well-formed scheme.
        #[test]
        fn random_tokens_are_refused(token in "\\PC{0,200}", scheme in "(Bearer|bearer|BEARER|Basic) {0,3}") {
            let value = format!("{scheme}{token}");
            if value.trim() != format!("Bearer {KNOWN}")
                && http::HeaderValue::from_str(&value).is_ok()
            {
                prop_assert!(authenticate(Some(value.as_bytes())).is_err());
            }
        }
    }

    #[test]
    fn bearer_values_are_read_strictly() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer   abc  "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearer    "), None);
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearerabc"), None);
        assert_eq!(bearer(b"Bearer a b"), None);
        assert_eq!(bearer(b"Bearer  ab  c "), None);
        assert_eq!(bearer(b"Bearer ab\x7f"), None);
        assert_eq!(bearer(b"Bearer a\tb"), None);
        assert_eq!(bearer(&[b'x'; 2000]), None);
        assert_eq!(bearer(b""), None);
    }
}
