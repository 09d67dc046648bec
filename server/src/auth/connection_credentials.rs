//! The credential last verified on one connection, so that the calls after
//! the first skip the token file.
//!
//! A client sends the same token on every call of a connection. Looking it
//! up each time means a SHA-256, a read lock on the token set shared by
//! every core, and a reference count on a principal shared by every
//! connection of that token. Instead each connection keeps the last
//! credential it verified: the secret as it came, the token set's
//! generation it was verified against, and a principal of its own. A call
//! whose secret is the same bytes (compared in constant time), under the
//! same generation, is that caller again; anything else takes the full path
//! and replaces the entry. A reload of the token file bumps the generation,
//! so a removed or changed token stops working at once, as it does without
//! the memo. Expiry is checked on every call.
//!
//! Keeping the secret rather than a keyed hash of it costs a comparison of
//! about 50 bytes instead of a SipHash of them (some 300 instructions on
//! every call), and leaves no chance at all of another secret passing for
//! it. The secret then lives in memory while the connection is
//! open; so does the copy in the connection's HTTP/2 header table, which
//! holds a `shoal-token` header for the connection's life, and both go
//! with the connection. It is never written out or logged (`Debug` prints
//! its length only).

use std::sync::Arc;

use parking_lot::Mutex;

use super::principal::Principal;

/// What identified the caller of a memoised verification.
enum Credential {
    /// A token's secret.
    Token(Box<[u8]>),
    /// The connection's client certificate (fixed for its life).
    Certificate,
}

impl Credential {
    /// Whether this is the token `secret`, in time that depends on the
    /// lengths only.
    fn is_token(&self, secret: &[u8]) -> bool {
        match self {
            Credential::Token(known) => same_bytes(known, secret),
            Credential::Certificate => false,
        }
    }
}

/// Whether `a` and `b` hold the same bytes, in time that depends on their
/// lengths only: the differences of whole words are folded together with
/// no early exit, and the optimiser is kept from reasoning about the fold.
/// (`subtle`'s slice comparison is as safe but works byte by byte behind a
/// barrier each, several times slower on a 50-byte secret.)
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_rest, b_rest) = (a_words.remainder(), b_words.remainder());
    let word = |bytes: &[u8]| u64::from_ne_bytes(bytes.try_into().unwrap_or_default());
    let mut difference = a_words
        .zip(b_words)
        .fold(0u64, |difference, (x, y)| difference | (word(x) ^ word(y)));
    for (x, y) in a_rest.iter().zip(b_rest) {
        difference |= u64::from(x ^ y);
    }
    std::hint::black_box(difference) == 0
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(secret) => write!(f, "Token(<{} bytes>)", secret.len()),
            Credential::Certificate => f.write_str("Certificate"),
        }
    }
}

#[derive(Debug)]
struct Verified {
    credential: Credential,
    generation: u64,
    principal: Arc<Principal>,
}

/// The credential last verified on one connection; see the module docs.
#[derive(Debug, Default)]
pub struct ConnectionCredentials {
    last: Mutex<Option<Verified>>,
}

impl ConnectionCredentials {
    /// The principal of `secret` if it is the one last verified here under
    /// token set `generation`.
    pub(super) fn token(&self, secret: &[u8], generation: u64) -> Option<Arc<Principal>> {
        self.find(|credential| credential.is_token(secret), generation)
    }

    /// Remembers that `secret` was verified as `principal` under
    /// `generation`.
    pub(super) fn remember_token(&self, secret: &[u8], generation: u64, principal: &Principal) {
        self.remember(Credential::Token(secret.into()), generation, principal);
    }

    /// The principal of the connection's client certificate if it was
    /// verified under `generation`.
    pub(super) fn certificate(&self, generation: u64) -> Option<Arc<Principal>> {
        self.find(
            |credential| matches!(credential, Credential::Certificate),
            generation,
        )
    }

    /// Remembers the principal of the connection's client certificate.
    pub(super) fn remember_certificate(&self, generation: u64, principal: &Principal) {
        self.remember(Credential::Certificate, generation, principal);
    }

    fn find(
        &self,
        is_caller: impl FnOnce(&Credential) -> bool,
        generation: u64,
    ) -> Option<Arc<Principal>> {
        let last = self.last.lock();
        let verified = last.as_ref()?;
        (verified.generation == generation && is_caller(&verified.credential))
            .then(|| Arc::clone(&verified.principal))
    }

    fn remember(&self, credential: Credential, generation: u64, principal: &Principal) {
        // A copy of its own, so that the calls of this connection count
        // references on a line no other connection writes.
        *self.last.lock() = Some(Verified {
            credential,
            generation,
            principal: Arc::new(principal.clone()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{PrincipalKind, parse_grant};

    fn principal(id: &str) -> Principal {
        let grant = parse_grant("orders=write").expect("grant");
        Principal::new(id, PrincipalKind::Token, vec![grant], None)
    }

    #[test]
    fn only_the_same_secret_under_the_same_generation_is_recognised() {
        let credentials = ConnectionCredentials::default();
        assert!(credentials.token(b"shoal_one", 1).is_none());
        credentials.remember_token(b"shoal_one", 1, &principal("one"));
        assert_eq!(
            credentials.token(b"shoal_one", 1).expect("memo").id(),
            "one"
        );
        assert!(
            credentials.token(b"shoal_onf", 1).is_none(),
            "another secret"
        );
        assert!(credentials.token(b"shoal_one", 2).is_none(), "a reload");
        assert!(credentials.certificate(1).is_none(), "not a certificate");
    }

    #[test]
    fn a_new_credential_replaces_the_last() {
        let credentials = ConnectionCredentials::default();
        credentials.remember_token(b"shoal_one", 1, &principal("one"));
        credentials.remember_certificate(1, &principal("spiffe://app"));
        assert!(credentials.token(b"shoal_one", 1).is_none());
        assert_eq!(
            credentials.certificate(1).expect("memo").id(),
            "spiffe://app"
        );
    }

    #[test]
    fn the_memo_holds_its_own_principal() {
        let shared = Arc::new(principal("one"));
        let credentials = ConnectionCredentials::default();
        credentials.remember_token(b"shoal_one", 1, &shared);
        let memo = credentials.token(b"shoal_one", 1).expect("memo");
        assert!(!Arc::ptr_eq(&memo, &shared));
        assert_eq!(Arc::strong_count(&shared), 1);
    }

    #[test]
    fn same_bytes_is_equality() {
        for (a, b) in [
            (&b""[..], &b""[..]),
            (b"a", b"a"),
            (b"shoal_0123456789abcdef", b"shoal_0123456789abcdef"),
            (b"12345678", b"12345679"),
            (b"123456789", b"123456780"),
            (b"abc", b"abcd"),
            (b"x", b""),
        ] {
            assert_eq!(same_bytes(a, b), a == b, "{a:?} {b:?}");
        }
    }

    #[test]
    fn secrets_are_compared_whole_and_never_printed() {
        let credentials = ConnectionCredentials::default();
        credentials.remember_token(b"shoal_one", 1, &principal("one"));
        for other in [&b"shoal_on"[..], b"shoal_one1", b"", b"shoal_onE"] {
            assert!(credentials.token(other, 1).is_none(), "{other:?}");
        }
        let printed = format!("{credentials:?}");
        assert!(!printed.contains("shoal_one"), "{printed}");
        assert!(printed.contains("9 bytes"), "{printed}");
    }
}
