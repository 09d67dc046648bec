//! The credential last verified on one connection, so that the calls after
//! the first skip the token file.
//!
//! A client sends the same `authorization` value on every call of a
//! connection. Looking it up each time means a SHA-256, a read lock on the
//! token set shared by every core, and a reference count on a principal
//! shared by every connection of that token. Instead each connection keeps
//! the last credential it verified: a keyed fingerprint of the secret (never
//! the secret itself), the token set's generation it was verified against,
//! and a principal of its own. A call whose secret has the same fingerprint,
//! under the same generation, is that caller again; anything else takes the
//! full path and replaces the entry. A reload of the token file bumps the
//! generation, so a removed or changed token stops working at once, as it
//! does without the memo. Expiry is checked on every call.
//!
//! The fingerprint is a SipHash of the secret under a key drawn from the OS
//! at start-up: a caller who does not know the key has one chance in 2^64
//! to make another secret match a verified one, and each miss is an
//! authentication failure, which the per-address limit holds to a few a
//! minute (and a caller on the same connection who knows the verified
//! secret has its rights anyway).

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::principal::Principal;

/// What identified the caller of a memoised verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    /// A bearer token, by its fingerprint.
    Token(u64),
    /// The connection's client certificate (fixed for its life).
    Certificate,
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
        self.find(Credential::Token(fingerprint(secret)), generation)
    }

    /// Remembers that `secret` was verified as `principal` under
    /// `generation`.
    pub(super) fn remember_token(&self, secret: &[u8], generation: u64, principal: &Principal) {
        self.remember(
            Credential::Token(fingerprint(secret)),
            generation,
            principal,
        );
    }

    /// The principal of the connection's client certificate if it was
    /// verified under `generation`.
    pub(super) fn certificate(&self, generation: u64) -> Option<Arc<Principal>> {
        self.find(Credential::Certificate, generation)
    }

    /// Remembers the principal of the connection's client certificate.
    pub(super) fn remember_certificate(&self, generation: u64, principal: &Principal) {
        self.remember(Credential::Certificate, generation, principal);
    }

    fn find(&self, credential: Credential, generation: u64) -> Option<Arc<Principal>> {
        let last = self.last.lock();
        let verified = last.as_ref()?;
        (verified.credential == credential && verified.generation == generation)
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

/// SipHash-1-3 of `secret` under the process's key.
fn fingerprint(secret: &[u8]) -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new).hash_one(secret)
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
    fn fingerprints_differ_by_secret() {
        let one = fingerprint(b"shoal_one");
        assert_eq!(one, fingerprint(b"shoal_one"));
        assert_ne!(one, fingerprint(b"shoal_two"));
    }
}
