//! The token file, and the set of callers it describes.
//!
//! ```toml
//! [[token]]
//! id = "orders-service"
//! sha256 = "<hex of the secret's SHA-256>"
//! expires = "2027-06-01T00:00:00Z"   # optional, RFC 3339
//! grants = [ { namespaces = "orders*", role = "write" }, { namespaces = "catalog", role = "read" } ]
//!
//! [[certificate]]            # rights for a verified mTLS client identity
//! identity = "spiffe://shoal/dev-client"
//! grants = [ { namespaces = "*", role = "read" } ]
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::Refusal;
use super::principal::{NamespacePattern, Principal, PrincipalKind, Role};
use super::secret::{parse_digest_hex, secret_digest};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    #[serde(default)]
    token: Vec<TokenText>,
    #[serde(default)]
    certificate: Vec<CertificateText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenText {
    id: String,
    sha256: String,
    expires: Option<toml::Value>,
    #[serde(default)]
    grants: Vec<GrantText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateText {
    identity: String,
    #[serde(default)]
    grants: Vec<GrantText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantText {
    namespaces: String,
    role: String,
}

/// A token's digest and its caller.
type ListedToken = ([u8; 32], Arc<Principal>);

/// The callers one token file lists, ready to authenticate against.
#[derive(Debug, Default)]
pub struct TokenSet {
    /// Tokens by the first 8 bytes of their digest; the whole digest is
    /// then compared in constant time.
    tokens: HashMap<u64, Vec<ListedToken>>,
    token_count: usize,
    certificates: HashMap<String, Arc<Principal>>,
}

impl TokenSet {
    /// Parses a token file's text.
    ///
    /// # Errors
    /// A message naming the entry at fault: bad TOML, an unknown key, an
    /// empty or repeated id, a digest that is not 64 hex digits or that two
    /// tokens share, a bad expiry, role or namespace pattern.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: FileText = toml::from_str(text).map_err(|error| error.to_string())?;
        let mut set = TokenSet::default();
        let mut ids = std::collections::HashSet::new();
        for (index, token) in file.token.into_iter().enumerate() {
            let at = format!("token[{index}]");
            if token.id.trim().is_empty() {
                return Err(format!("{at}: id must not be empty"));
            }
            if !ids.insert(token.id.clone()) {
                return Err(format!("{at}: id {:?} appears twice", token.id));
            }
            let at = format!("token {:?}", token.id);
            let digest = parse_digest_hex(token.sha256.trim()).ok_or_else(|| {
                format!("{at}: sha256 must be 64 hex digits (the SHA-256 of the secret)")
            })?;
            let expires = token
                .expires
                .map(|value| expiry(&value).map_err(|reason| format!("{at}: expires {reason}")))
                .transpose()?;
            let grants = grants(token.grants).map_err(|reason| format!("{at}: {reason}"))?;
            let principal = Arc::new(Principal::new(
                token.id,
                PrincipalKind::Token,
                grants,
                expires,
            ));
            let bucket = set.tokens.entry(digest_key(&digest)).or_default();
            if bucket.iter().any(|(other, _)| *other == digest) {
                return Err(format!("{at}: its sha256 is another token's too"));
            }
            bucket.push((digest, principal));
            set.token_count += 1;
        }
        for (index, certificate) in file.certificate.into_iter().enumerate() {
            let identity = certificate.identity.trim().to_string();
            if identity.is_empty() {
                return Err(format!("certificate[{index}]: identity must not be empty"));
            }
            let at = format!("certificate {identity:?}");
            let grants = grants(certificate.grants).map_err(|reason| format!("{at}: {reason}"))?;
            let principal = Arc::new(Principal::new(
                identity.clone(),
                PrincipalKind::Certificate,
                grants,
                None,
            ));
            if set.certificates.insert(identity, principal).is_some() {
                return Err(format!("{at} appears twice"));
            }
        }
        Ok(set)
    }

    /// Tokens listed.
    pub fn tokens(&self) -> usize {
        self.token_count
    }

    /// Certificate identities listed.
    pub fn certificates(&self) -> usize {
        self.certificates.len()
    }

    /// The caller whose token is `secret`, if it is listed and not expired
    /// at `now`.
    ///
    /// # Errors
    /// [`Refusal::Unknown`] or [`Refusal::Expired`].
    pub fn authenticate(&self, secret: &[u8], now: SystemTime) -> Result<&Arc<Principal>, Refusal> {
        let digest = secret_digest(secret);
        let found = self.tokens.get(&digest_key(&digest)).and_then(|bucket| {
            bucket
                .iter()
                .find(|(listed, _)| bool::from(listed.ct_eq(&digest)))
        });
        let Some((_, principal)) = found else {
            return Err(Refusal::Unknown);
        };
        if principal.is_expired(now) {
            Err(Refusal::Expired)
        } else {
            Ok(principal)
        }
    }

    /// The caller of the first of `identities` (a verified client
    /// certificate's) that the file lists.
    pub fn certificate(&self, identities: &[String]) -> Option<&Arc<Principal>> {
        identities
            .iter()
            .find_map(|identity| self.certificates.get(identity))
    }
}

fn digest_key(digest: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

fn grants(texts: Vec<GrantText>) -> Result<Vec<(NamespacePattern, Role)>, String> {
    texts
        .into_iter()
        .enumerate()
        .map(|(index, grant)| {
            let pattern = NamespacePattern::parse(&grant.namespaces)
                .map_err(|reason| format!("grants[{index}].namespaces: {reason}"))?;
            let role = grant
                .role
                .parse()
                .map_err(|reason| format!("grants[{index}].role: {reason}"))?;
            Ok((pattern, role))
        })
        .collect()
}

/// An expiry written as an RFC 3339 string or a TOML date-time.
fn expiry(value: &toml::Value) -> Result<SystemTime, String> {
    match value {
        toml::Value::String(text) => parse_rfc3339(text),
        toml::Value::Datetime(datetime) => parse_rfc3339(&datetime.to_string()),
        other => Err(format!(
            "is a {}, not an RFC 3339 time such as \"2027-06-01T00:00:00Z\"",
            other.type_str()
        )),
    }
}

/// Parses an RFC 3339 time with its offset, such as
/// `2027-06-01T00:00:00Z` or `2027-06-01T02:00:00.5+02:00`.
///
/// # Errors
/// A message when the text is not one, or lacks the date, time or offset.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    let bad = || format!("{text:?} is not an RFC 3339 time such as \"2027-06-01T00:00:00Z\"");
    let datetime: toml::value::Datetime = text.trim().parse().map_err(|_| bad())?;
    let (Some(date), Some(time), Some(offset)) = (datetime.date, datetime.time, datetime.offset)
    else {
        return Err(format!("{} (with a date, a time and an offset)", bad()));
    };
    let offset_minutes = match offset {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let seconds = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second)
        - offset_minutes * 60;
    let nanos = time.nanosecond;
    let since_epoch = u64::try_from(seconds)
        .map_err(|_| format!("{text:?} is before 1970"))
        .map(|seconds| Duration::new(seconds, nanos))?;
    UNIX_EPOCH
        .checked_add(since_epoch)
        .ok_or_else(|| format!("{text:?} is too far in the future"))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::secret::digest_hex;

    fn hex_of(secret: &str) -> String {
        digest_hex(&secret_digest(secret.as_bytes()))
    }

    fn file(entries: &str) -> Result<TokenSet, String> {
        TokenSet::parse(entries)
    }

    #[test]
    fn parses_the_documented_example() {
        let text = format!(
            r#"
[[token]]
id = "orders-service"
sha256 = "{}"
expires = "2027-06-01T00:00:00Z"
grants = [ {{ namespaces = "orders*", role = "write" }}, {{ namespaces = "catalog", role = "read" }} ]

[[certificate]]
identity = "spiffe://shoal/dev-client"
grants = [ {{ namespaces = "*", role = "read" }} ]
"#,
            hex_of("s1")
        );
        let set = file(&text).unwrap();
        assert_eq!((set.tokens(), set.certificates()), (1, 1));
        let before = parse_rfc3339("2027-05-31T23:59:59Z").unwrap();
        let principal = set.authenticate(b"s1", before).unwrap();
        assert_eq!(principal.id(), "orders-service");
        assert_eq!(principal.role_in("orders-eu"), Some(Role::Write));
        assert_eq!(principal.role_in("catalog"), Some(Role::Read));
        assert_eq!(principal.role_in("other"), None);
        let after = parse_rfc3339("2027-06-01T00:00:00Z").unwrap();
        assert_eq!(set.authenticate(b"s1", after).err(), Some(Refusal::Expired));
        assert_eq!(
            set.authenticate(b"s2", before).err(),
            Some(Refusal::Unknown)
        );
        let identities = [
            "dns:other".to_string(),
            "spiffe://shoal/dev-client".to_string(),
        ];
        assert_eq!(
            set.certificate(&identities).map(|p| p.kind()),
            Some(PrincipalKind::Certificate)
        );
        assert!(set.certificate(&[]).is_none());
    }

    #[test]
    fn an_empty_file_lists_nobody() {
        let set = file("").unwrap();
        assert_eq!(set.tokens(), 0);
        assert_eq!(
            set.authenticate(b"x", SystemTime::now()).err(),
            Some(Refusal::Unknown)
        );
    }

    #[test]
    fn bad_entries_are_refused_naming_them() {
        let digest = hex_of("a");
        let cases = [
            (
                "[[token]]\nid = \"\"\nsha256 = \"x\"",
                "token[0]: id must not be empty",
            ),
            (
                "[[token]]\nid = \"a\"\nsha256 = \"abc\"",
                "token \"a\": sha256 must be 64 hex",
            ),
            (
                &format!(
                    "[[token]]\nid = \"a\"\nsha256 = \"{digest}\"\n[[token]]\nid = \"a\"\nsha256 = \"{digest}\""
                ),
                "token[1]: id \"a\" appears twice",
            ),
            (
                &format!(
                    "[[token]]\nid = \"a\"\nsha256 = \"{digest}\"\n[[token]]\nid = \"b\"\nsha256 = \"{digest}\""
                ),
                "token \"b\": its sha256 is another token's too",
            ),
            (
                &format!("[[token]]\nid = \"a\"\nsha256 = \"{digest}\"\nexpires = \"tomorrow\""),
                "token \"a\": expires \"tomorrow\" is not an RFC 3339",
            ),
            (
                &format!("[[token]]\nid = \"a\"\nsha256 = \"{digest}\"\nexpires = 5"),
                "token \"a\": expires is a integer",
            ),
            (
                &format!(
                    "[[token]]\nid = \"a\"\nsha256 = \"{digest}\"\ngrants = [{{ namespaces = \"x\", role = \"owner\" }}]"
                ),
                "token \"a\": grants[0].role: \"owner\" is not a role",
            ),
            (
                &format!(
                    "[[token]]\nid = \"a\"\nsha256 = \"{digest}\"\ngrants = [{{ namespaces = \"x[\", role = \"read\" }}]"
                ),
                "token \"a\": grants[0].namespaces: \"x[\" is not a glob",
            ),
            (
                &format!("[[token]]\nid = \"a\"\nsha256 = \"{digest}\"\nsecret = \"oops\""),
                "unknown field `secret`",
            ),
            (
                "[[certificate]]\nidentity = \" \"",
                "certificate[0]: identity must not be empty",
            ),
        ];
        for (text, expected) in cases {
            let error = file(text).unwrap_err();
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn expiries_take_offsets_fractions_and_toml_datetimes() {
        let z = parse_rfc3339("2027-06-01T00:00:00Z").unwrap();
        assert_eq!(
            z.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_811_808_000
        );
        assert_eq!(parse_rfc3339("2027-06-01T02:00:00+02:00").unwrap(), z);
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00.5Z").unwrap(),
            UNIX_EPOCH + Duration::from_millis(500)
        );
        assert!(parse_rfc3339("2027-06-01").is_err());
        assert!(parse_rfc3339("2027-06-01T00:00:00").is_err());
        assert!(parse_rfc3339("1969-12-31T23:59:59Z").is_err());
        let digest = hex_of("a");
        let text =
            format!("[[token]]\nid = \"a\"\nsha256 = \"{digest}\"\nexpires = 2027-06-01T00:00:00Z");
        let set = file(&text).unwrap();
        assert_eq!(
            set.authenticate(b"a", z).err(),
            Some(Refusal::Expired),
            "a bare TOML date-time works too"
        );
    }
}
