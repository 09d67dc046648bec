//! Callers, their grants, and the one decision: may this caller act in
//! this namespace with this role?

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use super::AuthError;
use crate::engine::{DEFAULT_NAMESPACE, KeyPattern};
use crate::limits::connections::ConnectionInfo;

/// What a grant allows in the namespaces it matches; each role includes
/// the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads: Get, Describe, Scan, Count, Watch, collection reads, Stats of
    /// the namespace.
    Read,
    /// Reads and writes.
    Write,
    /// Everything, including Flush and DropNamespace.
    Admin,
}

impl Role {
    /// The role's name in token files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    /// The verb of messages about it.
    fn action(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "administer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "{other:?} is not a role: use \"read\", \"write\" or \"admin\""
            )),
        }
    }
}

/// The namespaces a grant covers: a Redis-style glob over namespace names.
/// The common shapes (`*`, a plain name, `prefix*`) are matched without the
/// regex the general case compiles to.
#[derive(Debug, Clone)]
pub enum NamespacePattern {
    /// `*`: every namespace.
    Any,
    /// A name without glob characters.
    Exact(String),
    /// `prefix*` with no other glob character, as written (with its `*`).
    Prefix(String),
    /// Anything else, matched as Scan patterns are.
    Glob(String, KeyPattern),
}

impl NamespacePattern {
    /// Parses a pattern; the empty name and `default` are the same
    /// namespace.
    ///
    /// # Errors
    /// A message when the glob is malformed or empty.
    pub fn parse(text: &str) -> Result<Self, String> {
        const GLOB: &[char] = &['*', '?', '[', ']', '\\'];
        if text.is_empty() {
            return Err(
                "a namespace pattern must not be empty (the default namespace is \"default\")"
                    .into(),
            );
        }
        if text == "*" {
            return Ok(Self::Any);
        }
        if !text.contains(GLOB) {
            return Ok(Self::Exact(text.to_string()));
        }
        if let Some(prefix) = text.strip_suffix('*')
            && !prefix.contains(GLOB)
        {
            return Ok(Self::Prefix(text.to_string()));
        }
        KeyPattern::new(text)
            .map(|pattern| Self::Glob(text.to_string(), pattern))
            .map_err(|error| format!("{text:?} is not a glob: {error}"))
    }

    /// Whether the pattern covers `namespace` (already resolved: never
    /// empty).
    pub fn matches(&self, namespace: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(name) => name == namespace,
            // The `*` is one byte.
            Self::Prefix(text) => namespace.starts_with(&text[..text.len() - 1]),
            Self::Glob(_, pattern) => pattern.matches(namespace.as_bytes()),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Any => "*",
            Self::Exact(text) | Self::Prefix(text) | Self::Glob(text, _) => text,
        }
    }
}

impl fmt::Display for NamespacePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a principal was authenticated by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A bearer token.
    Token,
    /// A verified client certificate.
    Certificate,
}

/// An authenticated caller: a token or a certificate identity, with its
/// grants. Holds no secret.
#[derive(Debug, Clone)]
pub struct Principal {
    id: String,
    kind: PrincipalKind,
    grants: Vec<(NamespacePattern, Role)>,
    expires: Option<SystemTime>,
}

impl Principal {
    /// A caller named `id` with `grants`, valid until `expires` if set.
    pub fn new(
        id: impl Into<String>,
        kind: PrincipalKind,
        grants: Vec<(NamespacePattern, Role)>,
        expires: Option<SystemTime>,
    ) -> Self {
        Self {
            id: id.into(),
            kind,
            grants,
            expires,
        }
    }

    /// The token's id or the certificate's identity.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What the caller was authenticated by.
    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    /// When a token stops being accepted.
    pub fn expires(&self) -> Option<SystemTime> {
        self.expires
    }

    /// Whether the caller's credential is no longer accepted at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|expires| now >= expires)
    }

    /// The highest role the caller holds in `namespace` (already resolved).
    pub fn role_in(&self, namespace: &str) -> Option<Role> {
        self.grants
            .iter()
            .filter(|(pattern, _)| pattern.matches(namespace))
            .map(|&(_, role)| role)
            .max()
    }

    /// Whether the caller holds `admin` on `*`.
    pub fn is_server_admin(&self) -> bool {
        self.grants
            .iter()
            .any(|(pattern, role)| matches!(pattern, NamespacePattern::Any) && *role == Role::Admin)
    }

    /// How messages name the caller.
    fn describe(&self) -> String {
        match self.kind {
            PrincipalKind::Token => format!("token {:?}", self.id),
            PrincipalKind::Certificate => format!("certificate {:?}", self.id),
        }
    }
}

/// What one call may do, as the handlers see it; the
/// [`AuthLayer`](super::AuthLayer) puts it in each authenticated request's
/// [`ConnectionInfo`] (or, for a request that has none, such as a
/// pipeline's commands, in an extension of its own).
#[derive(Debug, Clone)]
pub enum Access {
    /// Auth is off: everything is allowed.
    Open,
    /// An authenticated caller, held to its grants.
    Caller(Arc<Principal>),
    /// Auth is on but the request carries no caller (it did not come
    /// through the layer): nothing is allowed.
    Nobody,
}

impl Access {
    /// The access of a request with `extensions`, on a server where auth is
    /// `enabled`.
    pub fn of(extensions: &http::Extensions, enabled: bool) -> &Access {
        static OPEN: Access = Access::Open;
        static NOBODY: Access = Access::Nobody;
        let caller = extensions
            .get::<ConnectionInfo>()
            .and_then(ConnectionInfo::caller);
        match caller.or_else(|| extensions.get::<Access>()) {
            Some(access) => access,
            None if enabled => &NOBODY,
            None => &OPEN,
        }
    }

    /// Whether `role` is allowed in `namespace` (empty for `default`).
    pub fn allows(&self, namespace: &str, role: Role) -> bool {
        match self {
            Access::Open => true,
            Access::Nobody => false,
            Access::Caller(principal) => principal
                .role_in(resolved(namespace))
                .is_some_and(|held| held >= role),
        }
    }

    /// Allows `role` in `namespace`, or says why not.
    ///
    /// # Errors
    /// [`AuthError::Denied`] naming the namespace and the role needed.
    pub fn check(&self, namespace: &str, role: Role) -> Result<(), AuthError> {
        if self.allows(namespace, role) {
            return Ok(());
        }
        Err(AuthError::Denied {
            caller: self.describe(),
            action: role.action(),
            namespace: resolved(namespace).to_string(),
            needed: role,
        })
    }

    /// Whether the caller may do anything anywhere, server-wide figures
    /// included.
    pub fn is_server_admin(&self) -> bool {
        match self {
            Access::Open => true,
            Access::Nobody => false,
            Access::Caller(principal) => principal.is_server_admin(),
        }
    }

    /// Allows a server-wide operation, or says why not.
    ///
    /// # Errors
    /// [`AuthError::NotServerAdmin`].
    pub fn check_server_admin(&self, what: &'static str) -> Result<(), AuthError> {
        if self.is_server_admin() {
            return Ok(());
        }
        Err(AuthError::NotServerAdmin {
            caller: self.describe(),
            what,
        })
    }

    fn describe(&self) -> String {
        match self {
            Access::Open => "anyone".to_string(),
            Access::Nobody => "a caller without credentials".to_string(),
            Access::Caller(principal) => principal.describe(),
        }
    }
}

/// The name a grant is matched against: the empty name is `default`. A name
/// the engine would refuse is matched as written; the handler refuses it
/// after the check.
fn resolved(namespace: &str) -> &str {
    if namespace.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        namespace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(grants: &[(&str, Role)]) -> Access {
        let grants = grants
            .iter()
            .map(|(pattern, role)| (NamespacePattern::parse(pattern).unwrap(), *role))
            .collect();
        Access::Caller(Arc::new(Principal::new(
            "t",
            PrincipalKind::Token,
            grants,
            None,
        )))
    }

    #[test]
    fn patterns_take_the_fast_shapes_and_globs() {
        assert!(matches!(
            NamespacePattern::parse("*"),
            Ok(NamespacePattern::Any)
        ));
        assert!(matches!(
            NamespacePattern::parse("catalog"),
            Ok(NamespacePattern::Exact(_))
        ));
        assert!(matches!(
            NamespacePattern::parse("orders*"),
            Ok(NamespacePattern::Prefix(_))
        ));
        let glob = NamespacePattern::parse("team-[ab]-*").unwrap();
        assert!(glob.matches("team-a-x"));
        assert!(!glob.matches("team-c-x"));
        assert_eq!(glob.to_string(), "team-[ab]-*");
        let prefix = NamespacePattern::parse("orders*").unwrap();
        assert_eq!(prefix.to_string(), "orders*");
        assert_eq!(
            prefix.as_str(),
            "orders*",
            "as written, not the bare prefix"
        );
        assert!(prefix.matches("orders") && prefix.matches("orders-eu"));
        assert!(!prefix.matches("order"));
        assert!(NamespacePattern::parse("").is_err());
        assert!(NamespacePattern::parse("bad[").is_err());
    }

    #[test]
    fn the_highest_matching_grant_wins() {
        let access = principal(&[
            ("orders*", Role::Write),
            ("catalog", Role::Read),
            ("orders-admin", Role::Admin),
        ]);
        assert!(access.allows("orders", Role::Write));
        assert!(access.allows("orders-eu", Role::Read));
        assert!(!access.allows("orders-eu", Role::Admin));
        assert!(access.allows("orders-admin", Role::Admin));
        assert!(access.allows("catalog", Role::Read));
        assert!(!access.allows("catalog", Role::Write));
        assert!(!access.allows("catalogue", Role::Read));
        assert!(!access.allows("", Role::Read));
        assert!(!access.is_server_admin());
    }

    #[test]
    fn the_empty_name_is_the_default_namespace() {
        let access = principal(&[("default", Role::Read)]);
        assert!(access.allows("", Role::Read));
        assert!(access.allows("default", Role::Read));
        let error = access.check("", Role::Write).unwrap_err();
        assert_eq!(
            error.to_string(),
            "token \"t\" may not write namespace \"default\": that needs role write"
        );
    }

    #[test]
    fn only_admin_on_everything_is_server_admin() {
        assert!(principal(&[("*", Role::Admin)]).is_server_admin());
        assert!(!principal(&[("*", Role::Write)]).is_server_admin());
        assert!(!principal(&[("a*", Role::Admin)]).is_server_admin());
        assert!(Access::Open.is_server_admin());
        assert!(!Access::Nobody.allows("x", Role::Read));
    }

    #[test]
    fn denials_become_permission_denied_naming_namespace_and_role() {
        let status = tonic::Status::from(
            principal(&[("a", Role::Read)])
                .check("b", Role::Admin)
                .unwrap_err(),
        );
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(status.message().contains("\"b\""));
        assert!(status.message().contains("role admin"));
    }
}
