//! Secrets: making them, and the digest the server keeps instead.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::principal::{NamespacePattern, Role};

/// What every secret starts with, so that a leaked one is recognisable (by
/// a person or a secret scanner).
pub const SECRET_PREFIX: &str = "shoal_";
/// Random bytes in a secret.
const SECRET_BYTES: usize = 32;

/// The SHA-256 of `secret`, as the token file holds it (in hex).
pub fn secret_digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// `digest` in lowercase hex.
pub fn digest_hex(digest: &[u8; 32]) -> String {
    use fmt::Write as _;
    digest
        .iter()
        .fold(String::with_capacity(64), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

/// Parses 64 hex digits.
pub(crate) fn parse_digest_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (out, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
        let high = (pair[0] as char).to_digit(16)?;
        let low = (pair[1] as char).to_digit(16)?;
        *out = (high * 16 + low) as u8;
    }
    Some(digest)
}

/// A freshly made token: its secret, shown once, and its digest.
pub struct NewToken {
    /// `shoal_` and 32 random bytes in base64url.
    pub secret: String,
    /// The SHA-256 of the secret.
    pub digest: [u8; 32],
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("secret", &"<redacted>")
            .field("digest", &digest_hex(&self.digest))
            .finish()
    }
}

/// Makes a token from 32 bytes of the operating system's RNG.
///
/// # Errors
/// When the OS RNG cannot be read.
pub fn generate_token() -> Result<NewToken, getrandom::Error> {
    let mut random = [0u8; SECRET_BYTES];
    getrandom::fill(&mut random)?;
    let secret = format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    );
    let digest = secret_digest(secret.as_bytes());
    Ok(NewToken { secret, digest })
}

/// Parses a grant written `PATTERN=ROLE`, such as `orders*=write`.
///
/// # Errors
/// A message when the text has no `=`, or the pattern or role is bad.
pub fn parse_grant(text: &str) -> Result<(NamespacePattern, Role), String> {
    let (pattern, role) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("{text:?} is not PATTERN=ROLE, such as 'orders*=write'"))?;
    Ok((
        NamespacePattern::parse(pattern.trim())?,
        role.trim().parse()?,
    ))
}

/// The token file stanza of a token: its id, the digest of its secret,
/// its grants and expiry. Checked by parsing it back, so that what it
/// prints is what a server will accept.
///
/// # Errors
/// A message when the stanza would not be a valid token file entry (an
/// empty id, a bad expiry).
pub fn token_stanza(
    id: &str,
    digest: &[u8; 32],
    grants: &[(NamespacePattern, Role)],
    expires: Option<&str>,
) -> Result<String, String> {
    let quoted = |text: &str| toml::Value::String(text.to_string()).to_string();
    let mut stanza = format!(
        "[[token]]\nid = {}\nsha256 = \"{}\"\n",
        quoted(id),
        digest_hex(digest)
    );
    if let Some(expires) = expires {
        super::parse_rfc3339(expires)?;
        stanza.push_str(&format!("expires = {}\n", quoted(expires)));
    }
    let grants: Vec<String> = grants
        .iter()
        .map(|(pattern, role)| {
            format!(
                "{{ namespaces = {}, role = \"{role}\" }}",
                quoted(&pattern.to_string())
            )
        })
        .collect();
    stanza.push_str(&format!("grants = [ {} ]\n", grants.join(", ")));
    super::TokenSet::parse(&stanza)?;
    Ok(stanza)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_in_hex() {
        let digest = secret_digest(b"abc");
        assert_eq!(
            digest_hex(&digest),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_digest_hex(&digest_hex(&digest)), Some(digest));
        assert_eq!(
            parse_digest_hex(&digest_hex(&digest).to_uppercase()),
            Some(digest)
        );
        assert_eq!(parse_digest_hex("ab"), None);
        assert_eq!(parse_digest_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn tokens_are_prefixed_random_and_redacted() {
        let first = generate_token().unwrap();
        let second = generate_token().unwrap();
        assert!(first.secret.starts_with(SECRET_PREFIX));
        assert_eq!(first.secret.len(), SECRET_PREFIX.len() + 43);
        assert_ne!(first.secret, second.secret);
        assert_eq!(first.digest, secret_digest(first.secret.as_bytes()));
        assert!(!format!("{first:?}").contains(&first.secret));
    }

    #[test]
    fn stanzas_parse_back_to_the_same_token() {
        let token = generate_token().unwrap();
        let grants = ["orders*=write", "catalog = read"].map(|text| parse_grant(text).unwrap());
        let stanza = token_stanza(
            "orders \"svc\"",
            &token.digest,
            &grants,
            Some("2099-01-01T00:00:00Z"),
        )
        .unwrap();
        assert!(!stanza.contains(&token.secret));
        let set = super::super::TokenSet::parse(&stanza).unwrap();
        let principal = set
            .authenticate(token.secret.as_bytes(), std::time::SystemTime::now())
            .unwrap();
        assert_eq!(principal.id(), "orders \"svc\"");
        assert_eq!(principal.role_in("orders-eu"), Some(Role::Write));
        assert_eq!(principal.role_in("catalog"), Some(Role::Read));
        assert!(token_stanza("", &token.digest, &[], None).is_err());
        assert!(token_stanza("a", &token.digest, &[], Some("soon")).is_err());
        assert!(parse_grant("orders").is_err());
        assert!(parse_grant("orders=owner").is_err());
    }
}
