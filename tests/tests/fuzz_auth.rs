//! Random calls with random credentials through the real service stack,
//! and random text into the token file and grant parsers.
//!
//! The server reads a token file of five tokens: a reader (`catalog` and
//! `default`), a writer (`orders*`, and read on the glob `ot?er`), an admin
//! of everything, a token with no grant, and an expired admin. Each call
//! carries one of them in one of the header forms the server accepts, or
//! no header, a malformed one, an unknown or a near-miss secret, or the
//! expired token. A model of the rights and of what is stored predicts
//! every answer: UNAUTHENTICATED with the one message for every bad
//! credential, PERMISSION_DENIED naming the namespace and the role for a
//! missing right (per item in batches, per command in pipelines), a
//! refusal of the argument for a bad key or namespace, and otherwise the
//! stored values themselves. After every call the whole keyspace is read
//! back with the admin token and compared with the model, so a refused
//! call or item that changed anything fails the case. Failures of
//! authentication are not rate-limited here (`auth.failure_burst` is
//! huge): the limit has its own test in `auth.rs`.
//!
//! Bounded for `cargo test` (64 cases each); `SHOAL_FUZZ_CASES=N` runs N.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use shoal_proto::v1 as pb;
use shoal_server::Config;
use shoal_server::auth::{
    NamespacePattern, Refusal, Role, TokenSet, UNAUTHENTICATED_MESSAGE, digest_hex, parse_grant,
    parse_rfc3339, secret_digest, token_stanza,
};
use shoal_server::engine::KeyPattern;
use shoal_tests::{Raw, TestServer, raw};
use tokio_stream::StreamExt;
use tonic::Code;

/// Longest one call may take before the case fails: a guard against hangs.
const PATIENCE: Duration = Duration::from_secs(20);

fn cases() -> u32 {
    std::env::var("SHOAL_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(64)
}

fn runner() -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases: cases(),
        ..RunnerConfig::default()
    })
}

fn fail(message: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(message.into())
}

// ---------------------------------------------------------------------------
// Callers and their rights, written out by hand: the oracle the server's own
// pattern matching is checked against.

const READER: &str = "shoal_fuzz-reader-secret-for-tests-0001";
const WRITER: &str = "shoal_fuzz-writer-secret-for-tests-0002";
const ADMIN: &str = "shoal_fuzz-admin-secret-for-tests-0003";
const NOBODY: &str = "shoal_fuzz-nobody-secret-for-tests-0004";
const EXPIRED: &str = "shoal_fuzz-expired-secret-for-tests-0005";
const SECRETS: &[&str] = &[READER, WRITER, ADMIN, NOBODY, EXPIRED];

/// A role, as the model knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    Read,
    Write,
    Admin,
}

impl Need {
    fn name(self) -> &'static str {
        match self {
            Need::Read => "read",
            Need::Write => "write",
            Need::Admin => "admin",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// A listed token with no grant at all.
    Nobody,
    Reader,
    Writer,
    Admin,
}

impl Who {
    fn secret(self) -> &'static str {
        match self {
            Who::Nobody => NOBODY,
            Who::Reader => READER,
            Who::Writer => WRITER,
            Who::Admin => ADMIN,
        }
    }

    /// The role held in `namespace` (resolved: never empty).
    fn held(self, namespace: &str) -> Option<Need> {
        match self {
            Who::Nobody => None,
            Who::Reader => matches!(namespace, "catalog" | "default").then_some(Need::Read),
            Who::Writer if namespace.starts_with("orders") => Some(Need::Write),
            // `ot?er`: any one byte between `ot` and `er`.
            Who::Writer => {
                (namespace.len() == 5 && namespace.starts_with("ot") && namespace.ends_with("er"))
                    .then_some(Need::Read)
            }
            Who::Admin => Some(Need::Admin),
        }
    }

    fn may(self, namespace: &str, need: Need) -> bool {
        self.held(resolved(namespace))
            .is_some_and(|held| held >= need)
    }
}

/// The token file the server reads.
fn token_file() -> String {
    let stanza = |id: &str, secret: &str, grants: &[&str], expires: Option<&str>| {
        let grants: Vec<_> = grants
            .iter()
            .map(|grant| parse_grant(grant).expect("grant"))
            .collect();
        token_stanza(id, &secret_digest(secret.as_bytes()), &grants, expires).expect("stanza")
    };
    [
        stanza("reader", READER, &["catalog=read", "default=read"], None),
        stanza("writer", WRITER, &["orders*=write", "ot?er=read"], None),
        stanza("admin", ADMIN, &["*=admin"], None),
        stanza("nobody", NOBODY, &[], None),
        stanza("old", EXPIRED, &["*=admin"], Some("2001-01-01T00:00:00Z")),
    ]
    .join("\n")
}

/// What one call sends as credentials, and who the server should take it
/// for (`None`: refused as unauthenticated).
#[derive(Debug, Clone)]
struct Credential {
    header: Option<String>,
    who: Option<Who>,
}

fn credential() -> impl Strategy<Value = Credential> {
    let secret = || prop::sample::select(SECRETS);
    let who = prop_oneof![
        1 => Just(Who::Nobody),
        2 => Just(Who::Reader),
        3 => Just(Who::Writer),
        3 => Just(Who::Admin),
    ];
    let good = (
        who,
        prop::sample::select(&["Bearer ", "bearer ", "BEARER   ", "Bearer  "][..]),
        prop::sample::select(&["", " ", "   "][..]),
    )
        .prop_map(|(who, scheme, after)| Credential {
            header: Some(format!("{scheme}{}{after}", who.secret())),
            who: Some(who),
        });
    let bad = prop_oneof![
        // No credentials at all.
        Just(None),
        // Malformed.
        Just(Some("Basic dXNlcjpwYXNz".to_string())),
        Just(Some("Bearer".to_string())),
        Just(Some("Bearer    ".to_string())),
        Just(Some(String::new())),
        Just(Some(format!("Bearer {}", "x".repeat(2000)))),
        secret().prop_map(|secret| Some(secret.to_string())),
        secret().prop_map(|secret| Some(format!("Bearer {secret} extra"))),
        secret().prop_map(|secret| Some(format!("Bearer{secret}"))),
        secret().prop_map(|secret| Some(format!("Token {secret}"))),
        "[ -~]{0,80}".prop_map(Some),
        // Unknown, or a near miss of a known one.
        "shoal_[A-Za-z0-9_-]{0,48}".prop_map(|secret| Some(format!("Bearer {secret}"))),
        secret().prop_map(|secret| Some(format!("Bearer {secret}x"))),
        secret().prop_map(|secret| Some(format!("Bearer {}", &secret[..secret.len() - 1]))),
        secret().prop_map(|secret| Some(format!("Bearer {}", secret.to_uppercase()))),
        // Listed but expired.
        Just(Some(format!("Bearer {EXPIRED}"))),
    ]
    .prop_map(|header| Credential { header, who: None });
    prop_oneof![3 => good, 2 => bad]
}

/// `message` as a request carrying `credential`.
fn request<T>(credential: &Credential, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(header) = &credential.header {
        request.metadata_mut().insert(
            "authorization",
            header.parse().expect("a printable header value"),
        );
    }
    request
}

fn admin<T>(message: T) -> tonic::Request<T> {
    request(
        &Credential {
            header: Some(format!("Bearer {ADMIN}")),
            who: Some(Who::Admin),
        },
        message,
    )
}

// ---------------------------------------------------------------------------
// Namespaces, keys, and calls.

/// Names calls use: the empty name (`default`), exact and prefix matches,
/// near misses, a glob match, and two the engine refuses (one inside the
/// writer's `orders*`).
const NAMESPACES: &[&str] = &[
    "",
    "default",
    "catalog",
    "orders",
    "orders-eu",
    "order",
    "other",
    "otter",
    "orders bad",
    "cat*",
];
/// The valid names, resolved: where the model's keys live.
const STORED: &[&str] = &[
    "default",
    "catalog",
    "orders",
    "orders-eu",
    "order",
    "other",
    "otter",
];
/// Keys: any may hold a string or a hash; the empty one is refused.
const KEYS: &[&str] = &["a", "b", "n", "h", ""];

fn resolved(namespace: &str) -> &str {
    if namespace.is_empty() {
        "default"
    } else {
        namespace
    }
}

fn valid(namespace: &str) -> bool {
    !matches!(namespace, "orders bad" | "cat*")
}

/// One command that acts in one namespace: a unary call, a batch, or a
/// command of a pipeline.
#[derive(Debug, Clone)]
enum Cmd {
    Get {
        ns: &'static str,
        key: &'static str,
    },
    Set {
        ns: &'static str,
        key: &'static str,
        value: String,
    },
    Delete {
        ns: &'static str,
        keys: Vec<&'static str>,
    },
    Increment {
        ns: &'static str,
        key: &'static str,
        delta: i64,
    },
    HSet {
        ns: &'static str,
        key: &'static str,
        fields: Vec<(&'static str, String)>,
    },
    HGetAll {
        ns: &'static str,
        key: &'static str,
    },
    Count {
        ns: &'static str,
    },
    GetBatch {
        ns: &'static str,
        keys: Vec<&'static str>,
    },
    DeleteBatch {
        ns: &'static str,
        keys: Vec<&'static str>,
    },
    /// One SetBatch chunk: a pipeline command, or a chunk of a stream.
    SetBatch {
        ns: &'static str,
        items: Vec<(&'static str, String)>,
    },
}

impl Cmd {
    fn namespace(&self) -> &'static str {
        match self {
            Cmd::Get { ns, .. }
            | Cmd::Set { ns, .. }
            | Cmd::Delete { ns, .. }
            | Cmd::Increment { ns, .. }
            | Cmd::HSet { ns, .. }
            | Cmd::HGetAll { ns, .. }
            | Cmd::Count { ns }
            | Cmd::GetBatch { ns, .. }
            | Cmd::DeleteBatch { ns, .. }
            | Cmd::SetBatch { ns, .. } => ns,
        }
    }

    fn need(&self) -> Need {
        match self {
            Cmd::Get { .. } | Cmd::HGetAll { .. } | Cmd::Count { .. } | Cmd::GetBatch { .. } => {
                Need::Read
            }
            _ => Need::Write,
        }
    }
}

/// One call.
#[derive(Debug, Clone)]
enum Op {
    /// A unary call, or GetBatch, DeleteBatch or HGetAll as their streams.
    Call(Cmd),
    /// A SetBatch stream of chunks, each naming its namespace.
    SetBatch(Vec<Cmd>),
    Pipeline(Vec<Cmd>),
    Scan(&'static str),
    Flush(&'static str),
    DropNamespace(&'static str),
    Stats(Vec<&'static str>),
    ListNamespaces,
    Watch(&'static str),
}

fn namespace() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => prop::sample::select(&NAMESPACES[..8]),
        2 => prop::sample::select(&["orders", "orders-eu"][..]),
        1 => prop::sample::select(&NAMESPACES[8..]),
    ]
}

fn key() -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => prop::sample::select(&KEYS[..4]), 1 => Just("")]
}

fn keys() -> impl Strategy<Value = Vec<&'static str>> {
    prop::sample::subsequence(KEYS, 1..=3).prop_shuffle()
}

/// A string value: a word, or an integer Increment can add to.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..10u8).prop_map(|n| format!("v{n}")),
        (-20i64..20).prop_map(|n| n.to_string()),
    ]
}

fn items() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    prop::sample::subsequence(KEYS, 1..=3)
        .prop_shuffle()
        .prop_flat_map(|keys| {
            let n = keys.len();
            (Just(keys), proptest::collection::vec(value(), n))
        })
        .prop_map(|(keys, values)| keys.into_iter().zip(values).collect())
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        1 => (namespace(), key()).prop_map(|(ns, key)| Cmd::Get { ns, key }),
        3 => (namespace(), key(), value()).prop_map(|(ns, key, value)| Cmd::Set { ns, key, value }),
        1 => (namespace(), keys()).prop_map(|(ns, keys)| Cmd::Delete { ns, keys }),
        1 => (namespace(), key(), -5i64..5).prop_map(|(ns, key, delta)| Cmd::Increment { ns, key, delta }),
        1 => (
            namespace(),
            key(),
            prop::sample::subsequence(&["f", "g"][..], 1..=2),
            value()
        )
            .prop_map(|(ns, key, fields, value)| Cmd::HSet {
                ns,
                key,
                fields: fields.into_iter().map(|field| (field, value.clone())).collect(),
            }),
        1 => (namespace(), key()).prop_map(|(ns, key)| Cmd::HGetAll { ns, key }),
        1 => namespace().prop_map(|ns| Cmd::Count { ns }),
        1 => (namespace(), keys()).prop_map(|(ns, keys)| Cmd::GetBatch { ns, keys }),
        1 => (namespace(), keys()).prop_map(|(ns, keys)| Cmd::DeleteBatch { ns, keys }),
        2 => (namespace(), items()).prop_map(|(ns, items)| Cmd::SetBatch { ns, items }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => cmd().prop_map(|cmd| match cmd {
            // A lone chunk is sent as a stream of one.
            Cmd::SetBatch { .. } => Op::SetBatch(vec![cmd]),
            cmd => Op::Call(cmd),
        }),
        2 => proptest::collection::vec(
            (namespace(), items()).prop_map(|(ns, items)| Cmd::SetBatch { ns, items }),
            1..4
        )
        .prop_map(Op::SetBatch),
        3 => proptest::collection::vec(cmd(), 1..8).prop_map(Op::Pipeline),
        1 => namespace().prop_map(Op::Scan),
        1 => namespace().prop_map(Op::Flush),
        1 => namespace().prop_map(Op::DropNamespace),
        1 => proptest::collection::vec(namespace(), 0..3).prop_map(Op::Stats),
        1 => Just(Op::ListNamespaces),
        1 => namespace().prop_map(Op::Watch),
    ]
}

// ---------------------------------------------------------------------------
// Outcomes: what the model expects and what the server answered, in one
// shape so that they compare.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Expected: refused for its credentials, with the one message.
    Unauthenticated,
    /// Expected: refused for want of `need` in `namespace` (`None`:
    /// server-wide, admin on `*`).
    Denied {
        namespace: Option<String>,
        need: Need,
    },
    /// Expected: refused for its arguments (a bad key or namespace, a
    /// string where a hash is, ...), with any such code.
    Invalid,
    /// Answered: a failure, with its code and message.
    Status(Code, String),
    Value(Option<String>),
    Number(i64),
    Done,
    Fields(BTreeMap<String, String>),
    Keys(BTreeSet<String>),
    /// Per item (or per pipeline command), and how the stream ended if it
    /// ended with an error.
    Items(Vec<Outcome>, Option<Box<Outcome>>),
}

impl Outcome {
    /// A stream that failed before its first item failed as a call.
    fn normal(self) -> Outcome {
        match self {
            Outcome::Items(items, Some(end)) if items.is_empty() => end.normal(),
            other => other,
        }
    }

    /// Adds its leaves to `tally`: unauthenticated, denied, invalid, done.
    fn count(&self, tally: &mut [u64; 4]) {
        match self {
            Outcome::Unauthenticated => tally[0] += 1,
            Outcome::Denied { .. } => tally[1] += 1,
            Outcome::Invalid => tally[2] += 1,
            Outcome::Items(items, end) => {
                items.iter().for_each(|item| item.count(tally));
                if let Some(end) = end {
                    end.count(tally);
                }
            }
            _ => tally[3] += 1,
        }
    }

    /// Whether nothing of it was done: every item refused.
    fn refused(&self) -> bool {
        match self {
            Outcome::Unauthenticated | Outcome::Denied { .. } | Outcome::Invalid => true,
            Outcome::Items(items, _) => items.iter().all(Outcome::refused),
            _ => false,
        }
    }
}

fn status(status: &tonic::Status) -> Outcome {
    Outcome::Status(status.code(), status.message().to_string())
}

fn item_status(status: &tonic_types::Status) -> Outcome {
    Outcome::Status(Code::from(status.code), status.message.clone())
}

/// Whether `got` is what `want` predicts.
fn agrees(want: &Outcome, got: &Outcome) -> bool {
    match (want, got) {
        (Outcome::Unauthenticated, Outcome::Status(code, message)) => {
            *code == Code::Unauthenticated && message == UNAUTHENTICATED_MESSAGE
        }
        (Outcome::Denied { namespace, need }, Outcome::Status(code, message)) => {
            *code == Code::PermissionDenied
                && match namespace {
                    Some(namespace) => message.ends_with(&format!(
                        "namespace {namespace:?}: that needs role {}",
                        need.name()
                    )),
                    None => message.ends_with("that needs role admin on every namespace (\"*\")"),
                }
        }
        (Outcome::Invalid, Outcome::Status(code, _)) => !matches!(
            code,
            Code::Ok
                | Code::Unauthenticated
                | Code::PermissionDenied
                | Code::Internal
                | Code::Unknown
                | Code::Unavailable
                | Code::ResourceExhausted
                | Code::DeadlineExceeded
                | Code::Cancelled
        ),
        (Outcome::Items(want, want_end), Outcome::Items(got, got_end)) => {
            want.len() == got.len()
                && want.iter().zip(got).all(|(want, got)| agrees(want, got))
                && match (want_end, got_end) {
                    (None, None) => true,
                    (Some(want), Some(got)) => agrees(want, got),
                    _ => false,
                }
        }
        (want, got) => want == got,
    }
}

// ---------------------------------------------------------------------------
// The model.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Val {
    Str(String),
    Hash(BTreeMap<String, String>),
}

type Keyspace = BTreeMap<String, BTreeMap<String, Val>>;

#[derive(Debug, Clone, Default)]
struct Model {
    store: Keyspace,
    /// Namespaces that may exist: every one a write was let into, whether
    /// or not it stored anything. A refused call makes none.
    may_exist: BTreeSet<String>,
}

impl Model {
    /// The keyspace without empty namespaces, as a read-back sees it.
    fn stored(&self) -> Keyspace {
        self.store
            .iter()
            .filter(|(_, keys)| !keys.is_empty())
            .map(|(name, keys)| (name.clone(), keys.clone()))
            .collect()
    }

    fn count(&self, namespace: &str) -> i64 {
        self.store
            .get(resolved(namespace))
            .map_or(0, |keys| keys.len() as i64)
    }

    /// What `cmd` by `who` answers, applying it.
    fn eval(&mut self, who: Who, cmd: &Cmd) -> Outcome {
        let ns = cmd.namespace();
        let need = cmd.need();
        if !who.may(ns, need) {
            let denied = Outcome::Denied {
                namespace: Some(resolved(ns).to_string()),
                need,
            };
            return match cmd {
                Cmd::GetBatch { keys, .. } | Cmd::DeleteBatch { keys, .. } => {
                    Outcome::Items(vec![denied; keys.len()], None)
                }
                Cmd::SetBatch { items, .. } => Outcome::Items(vec![denied; items.len()], None),
                _ => denied,
            };
        }
        if !valid(ns) {
            return Outcome::Invalid;
        }
        if need == Need::Write {
            self.may_exist.insert(resolved(ns).to_string());
        }
        let space = self.store.entry(resolved(ns).to_string()).or_default();
        let read = |space: &BTreeMap<String, Val>, key: &str| match space.get(key) {
            _ if key.is_empty() => Outcome::Invalid,
            None => Outcome::Value(None),
            Some(Val::Str(value)) => Outcome::Value(Some(value.clone())),
            Some(Val::Hash(_)) => Outcome::Invalid,
        };
        match cmd {
            Cmd::Get { key, .. } => read(space, key),
            Cmd::Set { key, value, .. } => {
                if key.is_empty() {
                    return Outcome::Invalid;
                }
                space.insert(key.to_string(), Val::Str(value.clone()));
                Outcome::Done
            }
            Cmd::Delete { keys, .. } => {
                if keys.iter().any(|key| key.is_empty()) {
                    return Outcome::Invalid;
                }
                let removed = keys.iter().filter(|key| space.remove(**key).is_some());
                Outcome::Number(removed.count() as i64)
            }
            Cmd::Increment { key, delta, .. } => {
                let start = match space.get(*key) {
                    _ if key.is_empty() => return Outcome::Invalid,
                    None => 0,
                    Some(Val::Str(value)) => match value.parse::<i64>() {
                        Ok(start) => start,
                        Err(_) => return Outcome::Invalid,
                    },
                    Some(Val::Hash(_)) => return Outcome::Invalid,
                };
                let Some(sum) = start.checked_add(*delta) else {
                    return Outcome::Invalid;
                };
                space.insert(key.to_string(), Val::Str(sum.to_string()));
                Outcome::Number(sum)
            }
            Cmd::HSet { key, fields, .. } => {
                if key.is_empty() {
                    return Outcome::Invalid;
                }
                let hash = match space
                    .entry(key.to_string())
                    .or_insert_with(|| Val::Hash(BTreeMap::new()))
                {
                    Val::Hash(hash) => hash,
                    Val::Str(_) => return Outcome::Invalid,
                };
                let added = fields
                    .iter()
                    .filter(|(field, value)| {
                        hash.insert(field.to_string(), value.clone()).is_none()
                    })
                    .count();
                Outcome::Number(added as i64)
            }
            Cmd::HGetAll { key, .. } => match space.get(*key) {
                _ if key.is_empty() => Outcome::Invalid,
                None => Outcome::Fields(BTreeMap::new()),
                Some(Val::Str(_)) => Outcome::Invalid,
                Some(Val::Hash(hash)) => Outcome::Fields(hash.clone()),
            },
            Cmd::Count { .. } => Outcome::Number(space.len() as i64),
            Cmd::GetBatch { keys, .. } => {
                Outcome::Items(keys.iter().map(|key| read(space, key)).collect(), None)
            }
            Cmd::DeleteBatch { keys, .. } => Outcome::Items(
                keys.iter()
                    .map(|key| {
                        if key.is_empty() {
                            Outcome::Invalid
                        } else {
                            Outcome::Number(i64::from(space.remove(*key).is_some()))
                        }
                    })
                    .collect(),
                None,
            ),
            Cmd::SetBatch { items, .. } => Outcome::Items(
                items
                    .iter()
                    .map(|(key, value)| {
                        if key.is_empty() {
                            Outcome::Invalid
                        } else {
                            space.insert(key.to_string(), Val::Str(value.clone()));
                            Outcome::Done
                        }
                    })
                    .collect(),
                None,
            ),
        }
    }

    /// Refused for want of `need` in `ns`, for its name, or `None` when
    /// it may go on.
    fn gate(who: Who, ns: &str, need: Need) -> Option<Outcome> {
        if !who.may(ns, need) {
            return Some(Outcome::Denied {
                namespace: Some(resolved(ns).to_string()),
                need,
            });
        }
        (!valid(ns)).then_some(Outcome::Invalid)
    }

    /// What `op` by `who` (`None`: bad credentials) answers, applying it.
    /// ListNamespaces is checked apart.
    fn expect(&mut self, who: Option<Who>, op: &Op) -> Outcome {
        let Some(who) = who else {
            return Outcome::Unauthenticated;
        };
        match op {
            Op::Call(cmd) => self.eval(who, cmd),
            Op::SetBatch(chunks) => {
                let mut items = Vec::new();
                for chunk in chunks {
                    match self.eval(who, chunk) {
                        Outcome::Items(chunk_items, None) => items.extend(chunk_items),
                        // A chunk in a namespace the engine refuses ends
                        // the stream.
                        end => return Outcome::Items(items, Some(Box::new(end))).normal(),
                    }
                }
                Outcome::Items(items, None)
            }
            Op::Pipeline(cmds) => {
                Outcome::Items(cmds.iter().map(|cmd| self.eval(who, cmd)).collect(), None)
            }
            Op::Scan(ns) => Self::gate(who, ns, Need::Read).unwrap_or_else(|| {
                Outcome::Keys(
                    self.store
                        .get(resolved(ns))
                        .map(|keys| keys.keys().cloned().collect())
                        .unwrap_or_default(),
                )
            }),
            Op::Flush(ns) => Self::gate(who, ns, Need::Admin).unwrap_or_else(|| {
                let removed = self.count(ns);
                self.store.remove(resolved(ns));
                Outcome::Number(removed)
            }),
            Op::DropNamespace(ns) => Self::gate(who, ns, Need::Admin).unwrap_or_else(|| {
                let removed = self.count(ns);
                self.store.remove(resolved(ns));
                self.may_exist.remove(resolved(ns));
                Outcome::Number(removed)
            }),
            Op::Stats(names) => {
                if names.is_empty() && who != Who::Admin {
                    return Outcome::Denied {
                        namespace: None,
                        need: Need::Admin,
                    };
                }
                if let Some(name) = names.iter().find(|name| !who.may(name, Need::Read)) {
                    return Outcome::Denied {
                        namespace: Some(resolved(name).to_string()),
                        need: Need::Read,
                    };
                }
                if !names.iter().all(|name| valid(name)) {
                    return Outcome::Invalid;
                }
                // The total covers every namespace for a server admin, and
                // only the named ones for anyone else.
                let total = if who == Who::Admin {
                    STORED.iter().map(|ns| self.count(ns)).sum()
                } else {
                    let named: BTreeSet<&str> = names.iter().map(|name| resolved(name)).collect();
                    named.iter().map(|ns| self.count(ns)).sum()
                };
                Outcome::Number(total)
            }
            Op::Watch(ns) => Self::gate(who, ns, Need::Read).unwrap_or(Outcome::Done),
            Op::ListNamespaces => Outcome::Done,
        }
    }
}

// ---------------------------------------------------------------------------
// Calls, and their answers as outcomes.

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn get_outcome(reply: &pb::GetResponse) -> Outcome {
    Outcome::Value(reply.found.then(|| text(&reply.value)))
}

fn set_outcome(stored: bool) -> Outcome {
    if stored {
        Outcome::Done
    } else {
        Outcome::Status(Code::Ok, "answered but not stored".into())
    }
}

fn fields_outcome(entries: &[pb::FieldValue]) -> Outcome {
    Outcome::Fields(
        entries
            .iter()
            .map(|entry| (text(&entry.field), text(&entry.value)))
            .collect(),
    )
}

fn get_batch_items(items: &[pb::GetBatchItem]) -> Vec<Outcome> {
    use pb::get_batch_item::Result as Item;
    items
        .iter()
        .map(|item| match &item.result {
            Some(Item::Value(value)) => Outcome::Value(Some(text(value))),
            Some(Item::Miss(_)) => Outcome::Value(None),
            Some(Item::Error(error)) => item_status(error),
            None => Outcome::Status(Code::Ok, "an item without a result".into()),
        })
        .collect()
}

fn delete_batch_items(items: &[pb::DeleteBatchItem]) -> Vec<Outcome> {
    use pb::delete_batch_item::Result as Item;
    items
        .iter()
        .map(|item| match &item.result {
            Some(Item::Existed(existed)) => Outcome::Number(i64::from(*existed)),
            Some(Item::Error(error)) => item_status(error),
            None => Outcome::Status(Code::Ok, "an item without a result".into()),
        })
        .collect()
}

fn set_batch_items(results: &[pb::SetBatchResult]) -> Vec<Outcome> {
    use pb::set_batch_result::Result as Item;
    results
        .iter()
        .map(|result| match &result.result {
            Some(Item::Outcome(outcome)) => set_outcome(outcome.stored),
            Some(Item::Error(error)) => item_status(error),
            None => Outcome::Status(Code::Ok, "an item without a result".into()),
        })
        .collect()
}

/// A stream's items, gathered by `each`, and its error if it ended with one.
async fn gather<M>(
    stream: Result<tonic::Response<tonic::Streaming<M>>, tonic::Status>,
    mut each: impl FnMut(M, &mut Vec<Outcome>),
) -> Outcome {
    let mut stream = match stream {
        Ok(stream) => stream.into_inner(),
        Err(error) => return status(&error),
    };
    let mut items = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(message)) => each(message, &mut items),
            Ok(None) => return Outcome::Items(items, None),
            Err(error) => return Outcome::Items(items, Some(Box::new(status(&error)))),
        }
    }
}

/// A stream of one result (HGetAll, Scan) as one outcome.
fn whole(outcome: Outcome, merge: impl FnOnce(Vec<Outcome>) -> Outcome) -> Outcome {
    match outcome {
        Outcome::Items(items, None) => merge(items),
        Outcome::Items(_, Some(end)) => *end,
        other => other,
    }
}

fn get_request(ns: &str, key: &str) -> pb::GetRequest {
    pb::GetRequest {
        namespace: ns.into(),
        key: bytes(key),
        ..Default::default()
    }
}

fn set_batch_request(ns: &str, items: &[(&str, String)]) -> pb::SetBatchRequest {
    pb::SetBatchRequest {
        namespace: ns.into(),
        items: items
            .iter()
            .map(|(key, value)| pb::SetBatchItem {
                key: bytes(key),
                value: bytes(value),
                ..Default::default()
            })
            .collect(),
    }
}

fn keys_of(keys: &[&str]) -> Vec<Bytes> {
    keys.iter().map(|key| bytes(key)).collect()
}

fn pipeline_command(cmd: &Cmd) -> pb::pipeline_request::Command {
    use pb::pipeline_request::Command as C;
    match cmd.clone() {
        Cmd::Get { ns, key } => C::Get(get_request(ns, key)),
        Cmd::Set { ns, key, value } => C::Set(pb::SetRequest {
            namespace: ns.into(),
            key: bytes(key),
            value: bytes(&value),
            ..Default::default()
        }),
        Cmd::Delete { ns, keys } => C::Delete(pb::DeleteRequest {
            namespace: ns.into(),
            keys: keys_of(&keys),
        }),
        Cmd::Increment { ns, key, delta } => C::Increment(pb::IncrementRequest {
            namespace: ns.into(),
            key: bytes(key),
            delta,
            ..Default::default()
        }),
        Cmd::HSet { ns, key, fields } => C::HSet(pb::HSetRequest {
            namespace: ns.into(),
            key: bytes(key),
            fields: fields
                .iter()
                .map(|(field, value)| pb::FieldValue {
                    field: bytes(field),
                    value: bytes(value),
                })
                .collect(),
            ..Default::default()
        }),
        Cmd::HGetAll { ns, key } => C::HGetAll(pb::HGetAllRequest {
            namespace: ns.into(),
            key: bytes(key),
            ..Default::default()
        }),
        Cmd::Count { ns } => C::Count(pb::CountRequest {
            namespace: ns.into(),
        }),
        Cmd::GetBatch { ns, keys } => C::GetBatch(pb::GetBatchRequest {
            namespace: ns.into(),
            keys: keys_of(&keys),
            ..Default::default()
        }),
        Cmd::DeleteBatch { ns, keys } => C::DeleteBatch(pb::DeleteBatchRequest {
            namespace: ns.into(),
            keys: keys_of(&keys),
            ..Default::default()
        }),
        Cmd::SetBatch { ns, items } => C::SetBatch(set_batch_request(ns, &items)),
    }
}

fn pipeline_outcome(reply: pb::PipelineResponse) -> Outcome {
    use pb::pipeline_response::Result as Reply;
    match reply.result {
        Some(Reply::Error(error)) => item_status(&error),
        Some(Reply::Get(get)) => get_outcome(&get),
        Some(Reply::Set(set)) => set_outcome(set.stored),
        Some(Reply::Delete(delete)) => Outcome::Number(delete.deleted as i64),
        Some(Reply::Increment(increment)) => Outcome::Number(increment.value),
        Some(Reply::HSet(hset)) => Outcome::Number(hset.added as i64),
        Some(Reply::HGetAll(all)) => fields_outcome(&all.entries),
        Some(Reply::Count(count)) => Outcome::Number(count.keys as i64),
        Some(Reply::GetBatch(batch)) => Outcome::Items(get_batch_items(&batch.items), None),
        Some(Reply::DeleteBatch(batch)) => Outcome::Items(delete_batch_items(&batch.items), None),
        Some(Reply::SetBatch(batch)) => Outcome::Items(set_batch_items(&batch.results), None),
        other => Outcome::Status(Code::Ok, format!("an unexpected reply: {other:?}")),
    }
}

/// Runs one command as its own call.
async fn call(client: &mut Raw, credential: &Credential, cmd: &Cmd) -> Outcome {
    let unary = |result: Result<Outcome, tonic::Status>| result.unwrap_or_else(|e| status(&e));
    match cmd.clone() {
        Cmd::Get { ns, key } => unary(
            client
                .cache
                .get(request(credential, get_request(ns, key)))
                .await
                .map(|reply| get_outcome(reply.get_ref())),
        ),
        Cmd::Set { ns, key, value } => unary(
            client
                .cache
                .set(request(
                    credential,
                    pb::SetRequest {
                        namespace: ns.into(),
                        key: bytes(key),
                        value: bytes(&value),
                        ..Default::default()
                    },
                ))
                .await
                .map(|reply| set_outcome(reply.get_ref().stored)),
        ),
        Cmd::Delete { ns, keys } => unary(
            client
                .cache
                .delete(request(
                    credential,
                    pb::DeleteRequest {
                        namespace: ns.into(),
                        keys: keys_of(&keys),
                    },
                ))
                .await
                .map(|reply| Outcome::Number(reply.get_ref().deleted as i64)),
        ),
        Cmd::Increment { ns, key, delta } => unary(
            client
                .cache
                .increment(request(
                    credential,
                    pb::IncrementRequest {
                        namespace: ns.into(),
                        key: bytes(key),
                        delta,
                        ..Default::default()
                    },
                ))
                .await
                .map(|reply| Outcome::Number(reply.get_ref().value)),
        ),
        Cmd::HSet { .. } => {
            let pb::pipeline_request::Command::HSet(message) = pipeline_command(cmd) else {
                unreachable!()
            };
            unary(
                client
                    .collection
                    .h_set(request(credential, message))
                    .await
                    .map(|reply| Outcome::Number(reply.get_ref().added as i64)),
            )
        }
        Cmd::HGetAll { .. } => {
            let pb::pipeline_request::Command::HGetAll(message) = pipeline_command(cmd) else {
                unreachable!()
            };
            let stream = client
                .collection
                .h_get_all(request(credential, message))
                .await;
            let gathered = gather(stream, |chunk: pb::HGetAllResponse, items| {
                items.push(fields_outcome(&chunk.entries));
            })
            .await;
            whole(gathered, |chunks| {
                let mut all = BTreeMap::new();
                for chunk in chunks {
                    if let Outcome::Fields(fields) = chunk {
                        all.extend(fields);
                    }
                }
                Outcome::Fields(all)
            })
        }
        Cmd::Count { ns } => unary(
            client
                .cache
                .count(request(
                    credential,
                    pb::CountRequest {
                        namespace: ns.into(),
                    },
                ))
                .await
                .map(|reply| Outcome::Number(reply.get_ref().keys as i64)),
        ),
        Cmd::GetBatch { ns, keys } => {
            let message = pb::GetBatchRequest {
                namespace: ns.into(),
                keys: keys_of(&keys),
                ..Default::default()
            };
            let stream = client.batch.get_batch(request(credential, message)).await;
            gather(stream, |chunk: pb::GetBatchResponse, items| {
                items.extend(get_batch_items(&chunk.items));
            })
            .await
        }
        Cmd::DeleteBatch { ns, keys } => {
            let message = pb::DeleteBatchRequest {
                namespace: ns.into(),
                keys: keys_of(&keys),
                ..Default::default()
            };
            let stream = client
                .batch
                .delete_batch(request(credential, message))
                .await;
            gather(stream, |chunk: pb::DeleteBatchResponse, items| {
                items.extend(delete_batch_items(&chunk.items));
            })
            .await
        }
        Cmd::SetBatch { .. } => set_batch(client, credential, std::slice::from_ref(cmd)).await,
    }
}

async fn set_batch(client: &mut Raw, credential: &Credential, chunks: &[Cmd]) -> Outcome {
    let messages: Vec<pb::SetBatchRequest> = chunks
        .iter()
        .map(|chunk| match chunk {
            Cmd::SetBatch { ns, items } => set_batch_request(ns, items),
            other => unreachable!("not a chunk: {other:?}"),
        })
        .collect();
    let stream = client
        .batch
        .set_batch(request(credential, tokio_stream::iter(messages)))
        .await;
    gather(stream, |reply: pb::SetBatchResponse, items| {
        items.extend(set_batch_items(&reply.results));
    })
    .await
}

/// Runs `op` with `credential`; its outcome, and for ListNamespaces the
/// names listed.
async fn run(client: &mut Raw, credential: &Credential, op: &Op) -> (Outcome, Vec<String>) {
    let unary = |result: Result<Outcome, tonic::Status>| result.unwrap_or_else(|e| status(&e));
    let outcome = match op {
        Op::Call(cmd) => call(client, credential, cmd).await,
        Op::SetBatch(chunks) => set_batch(client, credential, chunks).await,
        Op::Pipeline(cmds) => {
            let requests: Vec<pb::PipelineRequest> = cmds
                .iter()
                .enumerate()
                .map(|(id, cmd)| pb::PipelineRequest {
                    id: id as u64,
                    command: Some(pipeline_command(cmd)),
                })
                .collect();
            let stream = client
                .batch
                .pipeline(request(credential, tokio_stream::iter(requests)))
                .await;
            gather(stream, |reply: pb::PipelineResponse, items| {
                items.push(pipeline_outcome(reply));
            })
            .await
        }
        Op::Scan(ns) => {
            let message = pb::ScanRequest {
                namespace: (*ns).into(),
                ..Default::default()
            };
            let stream = client.cache.scan(request(credential, message)).await;
            let gathered = gather(stream, |page: pb::ScanResponse, items| {
                items.push(Outcome::Keys(
                    page.keys.iter().map(|key| text(key)).collect(),
                ));
            })
            .await;
            whole(gathered, |pages| {
                let mut all = BTreeSet::new();
                for page in pages {
                    if let Outcome::Keys(keys) = page {
                        all.extend(keys);
                    }
                }
                Outcome::Keys(all)
            })
        }
        Op::Flush(ns) => unary(
            client
                .admin
                .flush(request(
                    credential,
                    pb::FlushRequest {
                        namespace: (*ns).into(),
                    },
                ))
                .await
                .map(|reply| Outcome::Number(reply.get_ref().removed as i64)),
        ),
        Op::DropNamespace(ns) => unary(
            client
                .admin
                .drop_namespace(request(
                    credential,
                    pb::DropNamespaceRequest {
                        namespace: (*ns).into(),
                    },
                ))
                .await
                .map(|reply| Outcome::Number(reply.get_ref().removed as i64)),
        ),
        Op::Stats(names) => unary(
            client
                .admin
                .stats(request(
                    credential,
                    pb::StatsRequest {
                        namespaces: names.iter().map(|name| (*name).to_string()).collect(),
                        local_only: false,
                    },
                ))
                .await
                .map(|reply| {
                    Outcome::Number(reply.get_ref().total.as_ref().map_or(-1, |t| t.keys as i64))
                }),
        ),
        Op::ListNamespaces => {
            match client
                .admin
                .list_namespaces(request(credential, pb::ListNamespacesRequest::default()))
                .await
            {
                Ok(reply) => return (Outcome::Done, reply.into_inner().namespaces),
                Err(error) => status(&error),
            }
        }
        Op::Watch(ns) => {
            let message = pb::WatchRequest {
                namespace: (*ns).into(),
                ..Default::default()
            };
            match client.watch.watch(request(credential, message)).await {
                Err(error) => status(&error),
                Ok(stream) => match stream.into_inner().message().await {
                    Ok(Some(pb::WatchEvent {
                        event: Some(pb::watch_event::Event::Subscribed(_)),
                        ..
                    })) => Outcome::Done,
                    Ok(other) => Outcome::Status(Code::Ok, format!("not subscribed: {other:?}")),
                    Err(error) => status(&error),
                },
            }
        }
    };
    (outcome.normal(), Vec::new())
}

/// Everything stored, read back with the admin token in one pipeline: per
/// namespace, its count and each key as a string and as a hash. Also the
/// namespaces that exist.
async fn read_back(client: &mut Raw) -> Result<(Keyspace, BTreeSet<String>), String> {
    use pb::pipeline_request::Command as C;
    let mut commands = Vec::new();
    for ns in STORED {
        commands.push(C::Count(pb::CountRequest {
            namespace: (*ns).into(),
        }));
        commands.push(C::GetBatch(pb::GetBatchRequest {
            namespace: (*ns).into(),
            keys: keys_of(&KEYS[..4]),
            ..Default::default()
        }));
        for key in &KEYS[..4] {
            commands.push(C::HGetAll(pb::HGetAllRequest {
                namespace: (*ns).into(),
                key: bytes(key),
                ..Default::default()
            }));
        }
    }
    let per_namespace = 2 + 4;
    let requests: Vec<pb::PipelineRequest> = commands
        .into_iter()
        .enumerate()
        .map(|(id, command)| pb::PipelineRequest {
            id: id as u64,
            command: Some(command),
        })
        .collect();
    let mut replies = client
        .batch
        .pipeline(admin(tokio_stream::iter(requests)))
        .await
        .map_err(|error| format!("read-back pipeline: {error:?}"))?
        .into_inner();
    let mut outcomes = Vec::new();
    while let Some(reply) = replies.next().await {
        let reply = reply.map_err(|error| format!("read-back reply: {error:?}"))?;
        outcomes.push(pipeline_outcome(reply));
    }
    if outcomes.len() != STORED.len() * per_namespace {
        return Err(format!("read-back: {} replies", outcomes.len()));
    }
    let mut keyspace = Keyspace::new();
    for (ns, replies) in STORED.iter().zip(outcomes.chunks(per_namespace)) {
        let Outcome::Number(count) = replies[0] else {
            return Err(format!("read-back count of {ns}: {:?}", replies[0]));
        };
        let Outcome::Items(strings, None) = &replies[1] else {
            return Err(format!("read-back strings of {ns}: {:?}", replies[1]));
        };
        let mut keys = BTreeMap::new();
        for (index, key) in KEYS[..4].iter().enumerate() {
            let as_string = &strings[index];
            let as_hash = &replies[2 + index];
            let value = match (as_string, as_hash) {
                (Outcome::Value(Some(value)), Outcome::Status(..)) => Some(Val::Str(value.clone())),
                (Outcome::Status(..), Outcome::Fields(fields)) if !fields.is_empty() => {
                    Some(Val::Hash(fields.clone()))
                }
                (Outcome::Value(None), Outcome::Fields(fields)) if fields.is_empty() => None,
                other => return Err(format!("read-back of {ns}/{key}: {other:?}")),
            };
            if let Some(value) = value {
                keys.insert((*key).to_string(), value);
            }
        }
        if count != keys.len() as i64 {
            return Err(format!(
                "read-back: {ns} counts {count} keys but holds {keys:?}"
            ));
        }
        if !keys.is_empty() {
            keyspace.insert((*ns).to_string(), keys);
        }
    }
    let listed = client
        .admin
        .list_namespaces(admin(pb::ListNamespacesRequest::default()))
        .await
        .map_err(|error| format!("read-back list: {error:?}"))?
        .into_inner()
        .namespaces
        .into_iter()
        .collect();
    Ok((keyspace, listed))
}

/// A runtime and a server reading [`token_file`], with failures of
/// authentication never held off.
struct Secured {
    runtime: tokio::runtime::Runtime,
    server: TestServer,
    _dir: tempfile::TempDir,
}

fn secured() -> Secured {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let path: PathBuf = dir.path().join("tokens.toml");
    std::fs::write(&path, token_file()).expect("write token file");
    let mut config = Config::default();
    config.admin.listen = None;
    config.auth.token_file = Some(path);
    // Thousands of failures on purpose, from one address.
    config.auth.failure_burst = u32::MAX;
    let server = runtime.block_on(TestServer::start_with(config));
    Secured {
        runtime,
        server,
        _dir: dir,
    }
}

/// Empties every namespace, then stores `seeds` with the admin token.
async fn reset(client: &mut Raw, seeds: &[Cmd]) -> Result<Model, TestCaseError> {
    let mut model = Model::default();
    for ns in STORED {
        client
            .admin
            .drop_namespace(admin(pb::DropNamespaceRequest {
                namespace: (*ns).into(),
            }))
            .await
            .map_err(|error| fail(format!("reset: {error:?}")))?;
    }
    for seed in seeds {
        let admin_credential = Credential {
            header: Some(format!("Bearer {ADMIN}")),
            who: Some(Who::Admin),
        };
        let want = model.eval(Who::Admin, seed);
        let got = call(client, &admin_credential, seed).await.normal();
        prop_assert!(
            agrees(&want, &got),
            "seed {:?}: {:?}, not {:?}",
            seed,
            got,
            want
        );
    }
    Ok(model)
}

#[test]
fn random_calls_with_random_credentials_get_the_modelled_answer_and_refusals_change_nothing() {
    let secured = secured();
    let client = secured.runtime.block_on(raw(&secured.server));
    let seed =
        (namespace(), key(), value()).prop_map(|(ns, key, value)| Cmd::Set { ns, key, value });
    let case = (
        proptest::collection::vec(seed, 0..8),
        proptest::collection::vec((credential(), op()), 1..16),
    );
    let started = Instant::now();
    let calls = Cell::new(0u64);
    let refused = Cell::new(0u64);
    let tally = Cell::new([0u64; 4]);
    runner()
        .run(&case, |(seeds, ops)| {
            let mut client = client.clone();
            secured.runtime.block_on(async {
                let mut model = reset(&mut client, &seeds).await?;
                for (credential, op) in &ops {
                    let before = model.clone();
                    let want = model.expect(credential.who, op);
                    let (got, listed) =
                        tokio::time::timeout(PATIENCE, run(&mut client, credential, op))
                            .await
                            .map_err(|_| fail(format!("{op:?}: no answer in time")))?;
                    calls.set(calls.get() + 1);
                    refused.set(refused.get() + u64::from(want.refused()));
                    let mut counted = tally.get();
                    want.count(&mut counted);
                    tally.set(counted);
                    prop_assert!(
                        agrees(&want, &got),
                        "{:?} with {:?} answered\n  {:?}\nbut the model expects\n  {:?}",
                        op,
                        credential.header,
                        got,
                        want
                    );
                    let (stored, existing) = read_back(&mut client).await.map_err(fail)?;
                    prop_assert_eq!(
                        &stored,
                        &model.stored(),
                        "after {:?} with {:?} ({}), what is stored is not what the model holds",
                        op,
                        credential.header,
                        if want.refused() {
                            "refused"
                        } else {
                            "let through"
                        }
                    );
                    if want.refused() {
                        prop_assert_eq!(&before.stored(), &model.stored());
                    }
                    // Namespaces: every one holding keys exists, and none
                    // exists that no write was let into.
                    for ns in model.stored().keys() {
                        prop_assert!(existing.contains(ns), "{} holds keys but is not listed", ns);
                    }
                    for ns in &existing {
                        prop_assert!(
                            model.may_exist.contains(ns) || ns == "default",
                            "{} exists though no write was let into it (after {:?} with {:?})",
                            ns,
                            op,
                            credential.header
                        );
                    }
                    if let (Op::ListNamespaces, Some(who)) = (op, credential.who) {
                        let listed: BTreeSet<String> = listed.into_iter().collect();
                        for ns in &listed {
                            prop_assert!(who.may(ns, Need::Read), "{:?} was listed {} ", who, ns);
                        }
                        for ns in model.stored().keys() {
                            prop_assert!(
                                !who.may(ns, Need::Read) || listed.contains(ns),
                                "{:?} may read {} but it was not listed",
                                who,
                                ns
                            );
                        }
                    }
                }
                Ok(())
            })
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    let elapsed = started.elapsed().as_secs_f64();
    let [unauthenticated, denied, invalid, done] = tally.get();
    eprintln!(
        "{} cases, {} calls ({} refused in whole) in {elapsed:.1}s: {:.0} calls/s; \
         items and calls: {unauthenticated} unauthenticated, {denied} denied, \
         {invalid} invalid, {done} done",
        cases(),
        calls.get(),
        refused.get(),
        calls.get() as f64 / elapsed
    );
}

// ---------------------------------------------------------------------------
// Raw gRPC messages of random bytes, with random credentials.

/// Methods of every shape, as raw HTTP/2 paths.
const PATHS: &[&str] = &[
    "/shoal.v1.CacheService/Get",
    "/shoal.v1.CacheService/Set",
    "/shoal.v1.CacheService/Delete",
    "/shoal.v1.CacheService/Increment",
    "/shoal.v1.CacheService/Scan",
    "/shoal.v1.CollectionService/HSet",
    "/shoal.v1.CollectionService/HGetAll",
    "/shoal.v1.BatchService/GetBatch",
    "/shoal.v1.BatchService/SetBatch",
    "/shoal.v1.BatchService/DeleteBatch",
    "/shoal.v1.BatchService/Pipeline",
    "/shoal.v1.AdminService/Flush",
    "/shoal.v1.AdminService/Stats",
    "/shoal.v1.WatchService/Watch",
    "/shoal.v1.Nothing/Here",
];

/// The status in `headers`, its message percent-decoded (tonic's reading).
fn header_status(headers: &http::HeaderMap) -> Option<(Code, String)> {
    tonic::Status::from_header_map(headers)
        .map(|status| (status.code(), status.message().to_owned()))
}

/// What a call ended with, read off its response headers or trailers.
async fn grpc_status(response: h2::client::ResponseFuture) -> Result<(Code, String), String> {
    let response = response
        .await
        .map_err(|error| format!("response: {error}"))?;
    if let Some(status) = header_status(response.headers()) {
        return Ok(status);
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.map_err(|error| format!("body: {error}"))?;
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body
        .trailers()
        .await
        .map_err(|error| format!("trailers: {error}"))?
        .ok_or("no trailers")?;
    header_status(&trailers).ok_or_else(|| "no grpc-status".to_string())
}

/// A request body: random bytes, or gRPC messages of random bytes behind
/// prefixes whose length may be the payload's, zero, short, long or huge,
/// with the compressed flag sometimes set.
fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    let message = (
        prop_oneof![Just(0u8), Just(0u8), Just(1u8), any::<u8>()],
        proptest::collection::vec(any::<u8>(), 0..120),
        prop_oneof![
            3 => Just(None),
            1 => Just(Some(0u32)),
            1 => Just(Some(u32::MAX)),
            1 => (0u32..300).prop_map(Some),
            1 => (16_000_000u32..20_000_000).prop_map(Some),
        ],
    )
        .prop_map(|(flag, payload, declared)| {
            let length = declared.unwrap_or(payload.len() as u32);
            let mut bytes = vec![flag];
            bytes.extend_from_slice(&length.to_be_bytes());
            bytes.extend_from_slice(&payload);
            bytes
        });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..16),
        proptest::collection::vec(message, 1..3).prop_map(|messages| messages.concat()),
    ]
}

#[test]
fn raw_messages_with_random_credentials_are_refused_before_their_body_is_read() {
    let secured = secured();
    let client = secured.runtime.block_on(raw(&secured.server));
    let case = proptest::collection::vec(
        (
            credential(),
            prop::sample::select(PATHS),
            hostile_body(),
            any::<bool>(),
        ),
        1..6,
    );
    runner()
        .run(&case, |calls| {
            let mut client = client.clone();
            secured.runtime.block_on(async {
                let (before, _) = read_back(&mut client).await.map_err(fail)?;
                let tcp = tokio::net::TcpStream::connect(secured.server.addr())
                    .await
                    .map_err(|error| fail(error.to_string()))?;
                let (send, connection) = h2::client::handshake(tcp)
                    .await
                    .map_err(|error| fail(error.to_string()))?;
                let driver = tokio::spawn(async move {
                    let _ = connection.await;
                });
                let mut refused_all = true;
                for (credential, path, body, end) in &calls {
                    let mut builder = http::Request::builder()
                        .method("POST")
                        .uri(format!("http://localhost{path}"))
                        .header("content-type", "application/grpc")
                        .header("te", "trailers");
                    if let Some(header) = &credential.header {
                        builder = builder.header("authorization", header.as_str());
                    }
                    let request = builder.body(()).expect("request");
                    let mut send = send
                        .clone()
                        .ready()
                        .await
                        .map_err(|error| fail(error.to_string()))?;
                    let (response, mut stream) = send
                        .send_request(request, false)
                        .map_err(|error| fail(error.to_string()))?;
                    let _ = stream.send_data(Bytes::from(body.clone()), *end);
                    // A refusal comes without waiting for the body; a call
                    // let through whose body does not end is cut off after
                    // a moment, as a client that gives up would.
                    let wait = if *end || credential.who.is_none() {
                        PATIENCE
                    } else {
                        Duration::from_millis(200)
                    };
                    let answered = tokio::time::timeout(wait, grpc_status(response)).await;
                    let (code, message) = match answered {
                        Ok(Ok(status)) => status,
                        Err(_) if !end && credential.who.is_some() => {
                            stream.send_reset(h2::Reason::CANCEL);
                            continue;
                        }
                        Err(_) => return Err(fail(format!("{path}: no answer in time"))),
                        Ok(Err(error)) if credential.who.is_some() => {
                            // The server may reset a stream it cannot parse.
                            if error.contains("stream no longer needed") {
                                continue;
                            }
                            return Err(fail(format!("{path}: {error}")));
                        }
                        Ok(Err(error)) => return Err(fail(format!("{path}: {error}"))),
                    };
                    if credential.who.is_none() {
                        prop_assert_eq!(
                            (code, message.as_str()),
                            (Code::Unauthenticated, UNAUTHENTICATED_MESSAGE),
                            "{} with {:?}",
                            path,
                            credential.header
                        );
                    } else {
                        // The one INTERNAL the gRPC spec requires: a message
                        // flagged compressed on a call with no grpc-encoding
                        // (in any frame of the body: a unary call's reader
                        // looks past the first message).
                        let compressed_flag = flags_compressed(body);
                        prop_assert!(
                            code != Code::Unknown
                                && code != Code::Unauthenticated
                                && (code != Code::Internal || compressed_flag),
                            "{} with {:?} answered {:?} {:?} to {:?}",
                            path,
                            credential.header,
                            code,
                            message,
                            body
                        );
                    }
                    refused_all &= code != Code::Ok;
                }
                driver.abort();
                let (after, _) = read_back(&mut client).await.map_err(fail)?;
                if refused_all {
                    prop_assert_eq!(&before, &after, "refused calls changed what is stored");
                }
                Ok(())
            })
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

/// Whether any gRPC message frame of `body` (a flag byte, a four-byte
/// length, the message) is flagged compressed.
fn flags_compressed(body: &[u8]) -> bool {
    let mut at = 0;
    while at + 5 <= body.len() {
        if body[at] == 1 {
            return true;
        }
        let length = u32::from_be_bytes([body[at + 1], body[at + 2], body[at + 3], body[at + 4]]);
        at = at.saturating_add(5).saturating_add(length as usize);
    }
    false
}

// ---------------------------------------------------------------------------
// The parsers.

/// A TOML basic string holding `text`.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Namespace patterns: names, globs of every shape, and broken ones.
fn pattern_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z.:_-]{0,8}",
        "[a-z*?]{0,6}",
        "[a-z]{0,3}\\*",
        "[a-z\\[\\]^*?\\\\-]{0,8}",
        "\\PC{0,10}",
    ]
}

fn role_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&["read", "write", "admin"][..]).prop_map(str::to_string),
        1 => prop::sample::select(&["Read", "owner", "", " read", "admin "][..]).prop_map(str::to_string),
        1 => "\\PC{0,6}",
    ]
}

/// Names the probes of a pattern match: the pattern's own text with its
/// glob characters filled in, and some plain names.
fn probes(patterns: &[String]) -> Vec<String> {
    let mut probes: Vec<String> = ["default", "orders", "orders-eu", "catalog", "a", "", "x[y"]
        .iter()
        .map(|probe| (*probe).to_string())
        .collect();
    for pattern in patterns {
        probes.push(pattern.clone());
        probes.push(pattern.replace(['*', '?', '[', ']', '\\', '^'], ""));
        probes.push(pattern.replace(['*', '?'], "z"));
        probes.push(format!("{pattern}-more"));
    }
    probes.retain(|probe| !probe.is_empty());
    probes
}

/// The highest role of `grants` matching `namespace`.
fn role_in(grants: &[(NamespacePattern, Role)], namespace: &str) -> Option<Role> {
    grants
        .iter()
        .filter(|(pattern, _)| pattern.matches(namespace))
        .map(|(_, role)| *role)
        .max()
}

#[test]
fn grants_parse_or_say_why_and_stanzas_parse_back_to_the_same_token() {
    let grant = (
        pattern_text(),
        prop::sample::select(&[" ", "", "  "][..]),
        role_text(),
    );
    let case = (
        proptest::collection::vec(grant, 0..5),
        "\\PC{0,16}",
        prop_oneof![
            Just(None),
            Just(Some("2099-01-01T00:00:00Z".to_string())),
            Just(Some("2001-01-01T00:00:00Z".to_string())),
            Just(Some("2030-06-01T12:30:00.25+02:00".to_string())),
            Just(Some("soon".to_string())),
            Just(Some("2030-06-01".to_string())),
        ],
        proptest::collection::vec(any::<u8>(), 1..48),
        proptest::collection::vec(any::<u8>(), 1..48),
    );
    runner()
        .run(&case, |(grants, id, expires, secret, stranger)| {
            let mut parsed = Vec::new();
            let mut pattern_texts = Vec::new();
            for (pattern, space, role) in &grants {
                if role.contains('=') {
                    continue;
                }
                let text = format!("{pattern}{space}={space}{role}");
                match parse_grant(&text) {
                    Ok((parsed_pattern, parsed_role)) => {
                        // What it prints parses back to itself.
                        let printed = format!("{parsed_pattern}={parsed_role}");
                        let (again, again_role) = parse_grant(&printed)
                            .map_err(|error| fail(format!("{printed:?} printed, then {error}")))?;
                        prop_assert_eq!(again.to_string(), parsed_pattern.to_string());
                        prop_assert_eq!(again_role, parsed_role);
                        prop_assert_eq!(parsed_role.name(), role.trim());
                        let written = pattern.trim();
                        prop_assert_eq!(parsed_pattern.as_str(), written, "as written");
                        prop_assert_eq!(parsed_pattern.to_string(), written);
                        // The fast shapes (`*`, names, `prefix*`) match as
                        // the general glob does.
                        if let Ok(glob) = KeyPattern::new(written) {
                            for probe in probes(&[written.to_string()]) {
                                prop_assert_eq!(
                                    parsed_pattern.matches(&probe),
                                    glob.matches(probe.as_bytes()),
                                    "{:?} against {:?}",
                                    written,
                                    probe
                                );
                            }
                        }
                        pattern_texts.push(pattern.trim().to_string());
                        parsed.push((parsed_pattern, parsed_role));
                    }
                    Err(error) => {
                        let pattern = pattern.trim();
                        let named = if pattern.is_empty() {
                            error.contains("must not be empty")
                        } else if error.contains("is not a glob") {
                            error.contains(&format!("{pattern:?}"))
                        } else {
                            error.contains(&format!("{:?} is not a role", role.trim()))
                        };
                        prop_assert!(named, "{:?} refused with {:?}", text, error);
                    }
                }
            }
            // No `=` at all.
            if let Some((pattern, _, _)) = grants.first()
                && !pattern.contains('=')
            {
                let error = parse_grant(pattern).expect_err("no =");
                prop_assert!(error.contains("is not PATTERN=ROLE"), "{}", error);
            }

            let digest = secret_digest(&secret);
            let hex = digest_hex(&digest);
            prop_assert_ne!(hex.as_bytes(), &secret[..]);
            let blank_id = id.trim().is_empty();
            let bad_expiry = matches!(expires.as_deref(), Some("soon" | "2030-06-01"));
            let stanza = match token_stanza(&id, &digest, &parsed, expires.as_deref()) {
                Ok(stanza) => stanza,
                Err(error) => {
                    let named = (blank_id && error.contains("id must not be empty"))
                        || (bad_expiry && error.contains("RFC 3339"));
                    prop_assert!(named, "{:?} / {:?} refused with {:?}", id, expires, error);
                    return Ok(());
                }
            };
            prop_assert!(
                !blank_id && !bad_expiry,
                "{:?} / {:?} accepted",
                id,
                expires
            );
            let set = TokenSet::parse(&stanza)
                .map_err(|error| fail(format!("{stanza} does not parse: {error}")))?;
            prop_assert_eq!(set.tokens(), 1);
            let now = SystemTime::now();
            let expired = expires
                .as_deref()
                .is_some_and(|expires| parse_rfc3339(expires).expect("checked") <= now);
            match set.authenticate(&secret, now) {
                Err(Refusal::Expired) => prop_assert!(expired),
                Err(other) => return Err(fail(format!("{stanza}: {other:?}"))),
                Ok(principal) => {
                    prop_assert!(!expired);
                    prop_assert_eq!(principal.id(), id.as_str());
                    for probe in probes(&pattern_texts) {
                        prop_assert_eq!(
                            principal.role_in(&probe),
                            role_in(&parsed, &probe),
                            "{:?} in {}",
                            probe,
                            stanza
                        );
                    }
                }
            }
            // The digest is no secret: holding the file lets nobody in, nor
            // does any other secret.
            prop_assert_eq!(
                set.authenticate(hex.as_bytes(), now).err(),
                Some(Refusal::Unknown)
            );
            if stranger != secret {
                prop_assert_eq!(
                    set.authenticate(&stranger, now).err(),
                    Some(Refusal::Unknown)
                );
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

/// One fault put into an otherwise valid token file, and what its error
/// must say.
#[derive(Debug, Clone, Copy)]
enum Fault {
    EmptyId,
    RepeatedId,
    ShortDigest,
    NotHexDigest,
    SharedDigest,
    MissingDigest,
    BadExpiry,
    DateOnlyExpiry,
    ExpiryBefore1970,
    IntegerExpiry,
    BadRole,
    EmptyPattern,
    BrokenGlob,
    UnknownField,
    EmptyIdentity,
    RepeatedIdentity,
    BrokenToml,
}

const FAULTS: &[Fault] = &[
    Fault::EmptyId,
    Fault::RepeatedId,
    Fault::ShortDigest,
    Fault::NotHexDigest,
    Fault::SharedDigest,
    Fault::MissingDigest,
    Fault::BadExpiry,
    Fault::DateOnlyExpiry,
    Fault::ExpiryBefore1970,
    Fault::IntegerExpiry,
    Fault::BadRole,
    Fault::EmptyPattern,
    Fault::BrokenGlob,
    Fault::UnknownField,
    Fault::EmptyIdentity,
    Fault::RepeatedIdentity,
    Fault::BrokenToml,
];

#[derive(Debug, Clone)]
struct TokenEntry {
    id: String,
    secret: Vec<u8>,
    expires: Option<String>,
    grants: Vec<(String, &'static str)>,
}

fn token_entry() -> impl Strategy<Value = TokenEntry> {
    (
        "\\PC{1,12}",
        proptest::collection::vec(any::<u8>(), 1..40),
        prop_oneof![
            Just(None),
            Just(Some("2099-01-01T00:00:00Z".to_string())),
            Just(Some("2001-01-01T00:00:00Z".to_string())),
        ],
        proptest::collection::vec(
            (
                prop_oneof![
                    "[a-z.:_-]{1,8}",
                    "[a-z]{0,4}\\*",
                    "[a-z]\\?[a-z]",
                    Just("*".into())
                ],
                prop::sample::select(&["read", "write", "admin"][..]),
            ),
            0..3,
        ),
    )
        .prop_map(|(id, secret, expires, grants)| TokenEntry {
            id,
            secret,
            expires,
            grants,
        })
}

/// A token file of `tokens` and `identities`, with `fault` put into entry
/// `at` (of the tokens, or of the identities for their faults); the text
/// and what its error must contain.
fn token_file_text(
    tokens: &[TokenEntry],
    identities: &[String],
    fault: Option<(Fault, usize)>,
) -> (String, Vec<String>) {
    let mut text = String::new();
    let mut expected = Vec::new();
    let fault_at = |index: usize| fault.filter(|(_, at)| *at == index).map(|(fault, _)| fault);
    for (index, token) in tokens.iter().enumerate() {
        let fault = fault_at(index);
        let named = format!("token {:?}", token.id);
        let mut id = token.id.clone();
        let mut digest = Some(digest_hex(&secret_digest(&token.secret)));
        let mut expires = token.expires.as_ref().map(|expires| toml_string(expires));
        let mut grants: Vec<(String, String)> = token
            .grants
            .iter()
            .map(|(pattern, role)| (pattern.clone(), (*role).to_string()))
            .collect();
        let mut extra = String::new();
        match fault {
            None => {}
            Some(Fault::EmptyId) => {
                id = " ".into();
                expected = vec![format!("token[{index}]: id must not be empty")];
            }
            Some(Fault::RepeatedId) => {
                id = tokens[index - 1].id.clone();
                expected = vec![format!("token[{index}]: id {id:?} appears twice")];
            }
            Some(Fault::ShortDigest) => {
                digest = digest.map(|digest| digest[..63].to_string());
                expected = vec![format!("{named}: sha256 must be 64 hex digits")];
            }
            Some(Fault::NotHexDigest) => {
                digest = Some("g".repeat(64));
                expected = vec![format!("{named}: sha256 must be 64 hex digits")];
            }
            Some(Fault::SharedDigest) => {
                digest = Some(digest_hex(&secret_digest(&tokens[index - 1].secret)));
                expected = vec![format!("{named}: its sha256 is another token's too")];
            }
            Some(Fault::MissingDigest) => {
                digest = None;
                expected = vec!["missing field `sha256`".into()];
            }
            Some(Fault::BadExpiry) => {
                expires = Some("\"tomorrow\"".into());
                expected = vec![format!("{named}: expires \"tomorrow\" is not an RFC 3339")];
            }
            Some(Fault::DateOnlyExpiry) => {
                expires = Some("\"2030-01-01\"".into());
                expected = vec![
                    format!("{named}: expires"),
                    "with a date, a time and an offset".into(),
                ];
            }
            Some(Fault::ExpiryBefore1970) => {
                expires = Some("\"1969-12-31T23:59:59Z\"".into());
                expected = vec![format!("{named}: expires"), "is before 1970".into()];
            }
            Some(Fault::IntegerExpiry) => {
                expires = Some("5".into());
                expected = vec![format!("{named}: expires is a integer")];
            }
            Some(Fault::BadRole) => {
                grants.push(("x".into(), "owner".into()));
                expected = vec![format!(
                    "{named}: grants[{}].role: \"owner\" is not a role",
                    grants.len() - 1
                )];
            }
            Some(Fault::EmptyPattern) => {
                grants.push((String::new(), "read".into()));
                expected = vec![format!(
                    "{named}: grants[{}].namespaces: a namespace pattern must not be empty",
                    grants.len() - 1
                )];
            }
            Some(Fault::BrokenGlob) => {
                grants.push(("x[".into(), "read".into()));
                expected = vec![format!(
                    "{named}: grants[{}].namespaces: \"x[\" is not a glob",
                    grants.len() - 1
                )];
            }
            Some(Fault::UnknownField) => {
                extra = "secret = \"oops\"\n".into();
                expected = vec!["unknown field `secret`".into()];
            }
            Some(Fault::BrokenToml) => {
                extra = "grants = [ { namespaces = \"x\", role = \"read\" \n".into();
                expected = vec!["TOML parse error".into()];
            }
            Some(Fault::EmptyIdentity | Fault::RepeatedIdentity) => {}
        }
        text.push_str("[[token]]\n");
        text.push_str(&format!("id = {}\n", toml_string(&id)));
        if let Some(digest) = digest {
            text.push_str(&format!("sha256 = \"{digest}\"\n"));
        }
        if let Some(expires) = expires {
            text.push_str(&format!("expires = {expires}\n"));
        }
        let grants: Vec<String> = grants
            .iter()
            .map(|(pattern, role)| {
                format!(
                    "{{ namespaces = {}, role = {} }}",
                    toml_string(pattern),
                    toml_string(role)
                )
            })
            .collect();
        text.push_str(&format!("grants = [ {} ]\n", grants.join(", ")));
        text.push_str(&extra);
        text.push('\n');
    }
    for (index, identity) in identities.iter().enumerate() {
        let mut identity = identity.clone();
        match fault {
            Some((Fault::EmptyIdentity, at)) if at == index => {
                identity = "  ".into();
                expected = vec![format!("certificate[{index}]: identity must not be empty")];
            }
            Some((Fault::RepeatedIdentity, at)) if at == index => {
                identity = identities[index - 1].clone();
                expected = vec![format!("certificate {identity:?} appears twice")];
            }
            _ => {}
        }
        text.push_str(&format!(
            "[[certificate]]\nidentity = {}\ngrants = [ {{ namespaces = \"*\", role = \"read\" }} ]\n\n",
            toml_string(&identity)
        ));
    }
    (text, expected)
}

#[test]
fn token_files_parse_to_what_they_list_or_name_their_fault() {
    let case = (
        proptest::collection::vec(token_entry(), 1..5),
        proptest::collection::vec("spiffe://shoal/[a-z]{1,8}", 0..3),
        proptest::option::of((prop::sample::select(FAULTS), any::<prop::sample::Index>())),
    );
    runner()
        .run(&case, |(tokens, identities, fault)| {
            // Distinct ids, secrets and identities unless a fault repeats one.
            let ids: BTreeSet<_> = tokens.iter().map(|token| token.id.trim()).collect();
            let secrets: BTreeSet<_> = tokens.iter().map(|token| &token.secret).collect();
            let names: BTreeSet<_> = identities.iter().collect();
            prop_assume!(ids.len() == tokens.len() && !ids.contains(""));
            prop_assume!(secrets.len() == tokens.len() && names.len() == identities.len());
            let fault = fault.and_then(|(fault, index)| {
                let on_identities = matches!(fault, Fault::EmptyIdentity | Fault::RepeatedIdentity);
                let repeats = matches!(
                    fault,
                    Fault::RepeatedId | Fault::SharedDigest | Fault::RepeatedIdentity
                );
                let len = if on_identities {
                    identities.len()
                } else {
                    tokens.len()
                };
                let at = index.index(len.max(1));
                (len > 0 && (!repeats || at > 0)).then_some((fault, at))
            });
            let (text, expected) = token_file_text(&tokens, &identities, fault);
            match (TokenSet::parse(&text), fault) {
                (Ok(set), None) => {
                    prop_assert_eq!(set.tokens(), tokens.len());
                    prop_assert_eq!(set.certificates(), identities.len());
                    let now = SystemTime::now();
                    for token in &tokens {
                        let expired = token.expires.as_deref() == Some("2001-01-01T00:00:00Z");
                        match set.authenticate(&token.secret, now) {
                            Ok(principal) => {
                                prop_assert!(!expired);
                                prop_assert_eq!(principal.id(), token.id.as_str());
                                let grants: Vec<(NamespacePattern, Role)> = token
                                    .grants
                                    .iter()
                                    .map(|(pattern, role)| {
                                        (
                                            NamespacePattern::parse(pattern).expect("pattern"),
                                            role.parse().expect("role"),
                                        )
                                    })
                                    .collect();
                                let patterns: Vec<String> =
                                    token.grants.iter().map(|(p, _)| p.clone()).collect();
                                for probe in probes(&patterns) {
                                    prop_assert_eq!(
                                        principal.role_in(&probe),
                                        role_in(&grants, &probe)
                                    );
                                }
                            }
                            Err(refusal) => {
                                prop_assert!(
                                    expired && refusal == Refusal::Expired,
                                    "{:?}",
                                    refusal
                                );
                            }
                        }
                    }
                    for identity in &identities {
                        prop_assert!(set.certificate(std::slice::from_ref(identity)).is_some());
                    }
                }
                (Err(error), Some(_)) => {
                    for part in &expected {
                        prop_assert!(
                            error.contains(part.as_str()),
                            "{:?} should say {:?}:\n{}",
                            error,
                            part,
                            text
                        );
                    }
                }
                (result, fault) => {
                    return Err(fail(format!(
                        "{fault:?} gave {:?} for\n{text}",
                        result.map(|set| set.tokens())
                    )));
                }
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

/// Fragments of token files, shuffled into text that is mostly not one.
const FRAGMENTS: &[&str] = &[
    "[[token]]",
    "[[certificate]]",
    "[token]",
    "id = ",
    "sha256 = ",
    "expires = ",
    "grants = [",
    "identity = ",
    "{ namespaces = ",
    ", role = ",
    "}",
    "]",
    "\"",
    "\"read\"",
    "\"*\"",
    "\"x[\"",
    "2027-06-01T00:00:00Z",
    "\"2027-06-01T00:00:00+99:99\"",
    "9999-12-31T23:59:59.999999999-23:59",
    "0000-01-01T00:00:00Z",
    "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"",
    "\n",
    " ",
    "=",
    "#",
    "'''",
    "\\u0000",
    "1e999",
    "-0",
    "true",
];

#[test]
fn hostile_token_files_and_times_never_panic() {
    let text = prop_oneof![
        "\\PC{0,200}",
        proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        proptest::collection::vec(prop::sample::select(FRAGMENTS), 0..40)
            .prop_map(|fragments| fragments.concat()),
    ];
    runner()
        .run(&text, |text| {
            if let Err(error) = TokenSet::parse(&text) {
                prop_assert!(!error.trim().is_empty());
            }
            for line in text.lines() {
                let _ = parse_grant(line);
                let _ = parse_rfc3339(line);
                let _ = NamespacePattern::parse(line);
            }
            let _ = parse_grant(&text);
            let _ = parse_rfc3339(&text);
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));

    // Every valid RFC 3339 time parses, its offset counts, and times
    // before 1970 are refused.
    let time = (
        1970i32..=9999,
        1u32..=12,
        1u32..=27,
        0u32..24,
        0u32..60,
        0u32..60,
        proptest::option::of(0u32..1_000_000_000),
        -1439i32..=1439,
    );
    runner()
        .run(
            &time,
            |(year, month, day, hour, minute, second, nanos, offset)| {
                let fraction = nanos.map_or(String::new(), |nanos| format!(".{nanos:09}"));
                let base = format!(
                    "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}"
                );
                let utc = parse_rfc3339(&format!("{base}Z"));
                let sign = if offset < 0 { '-' } else { '+' };
                let shifted = parse_rfc3339(&format!(
                    "{base}{sign}{:02}:{:02}",
                    offset.unsigned_abs() / 60,
                    offset.unsigned_abs() % 60
                ));
                let utc = utc.map_err(|error| fail(format!("{base}Z: {error}")))?;
                match shifted {
                    Ok(shifted) => {
                        let delta = Duration::from_secs(u64::from(offset.unsigned_abs()) * 60);
                        let expected = if offset < 0 {
                            utc.checked_add(delta)
                        } else {
                            utc.checked_sub(delta)
                        };
                        prop_assert_eq!(Some(shifted), expected);
                    }
                    Err(error) => {
                        // Only an offset that moves it before 1970.
                        prop_assert!(offset > 0, "{}: {}", base, error);
                        prop_assert!(error.contains("before 1970"), "{}", error);
                    }
                }
                let next_day = format!(
                    "{year:04}-{month:02}-{:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z",
                    day + 1
                );
                let next_day = parse_rfc3339(&next_day).map_err(fail)?;
                prop_assert_eq!(
                    next_day.duration_since(utc).ok(),
                    Some(Duration::from_secs(86_400))
                );
                Ok(())
            },
        )
        .unwrap_or_else(|failure| panic!("{failure}"));
}
