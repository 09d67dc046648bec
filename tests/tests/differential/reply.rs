//! Replies normalised so that what shoal and Redis answer can be compared.

use super::*;

/// One reply, in a form both servers' answers are translated into.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Reply {
    Nil,
    Ok,
    Int(i64),
    Bytes(Vec<u8>),
    Array(Vec<Reply>),
    /// Remaining time to live in ms, as PTTL: -1 none, -2 no such key.
    /// Compared with a tolerance of [`TTL_TOLERANCE_MS`].
    Ttl(i64),
    Error(ErrorKind),
    /// Shoal's answer to a random command that Redis's state contradicts.
    Inconsistent(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum ErrorKind {
    WrongType,
    NotInteger,
    Overflow,
    NoSuchKey,
    OutOfRange,
    /// An error the test does not expect from either server; never agrees.
    Unexpected(String),
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Nil => f.write_str("nil"),
            Reply::Ok => f.write_str("OK"),
            Reply::Int(n) => write!(f, "{n}"),
            Reply::Bytes(bytes) => write!(f, "\"{}\"", bytes.escape_ascii()),
            Reply::Array(items) => f.debug_list().entries(items).finish(),
            Reply::Ttl(-2) => f.write_str("ttl:no-key"),
            Reply::Ttl(-1) => f.write_str("ttl:none"),
            Reply::Ttl(ms) => write!(f, "ttl:{ms}ms"),
            Reply::Error(kind) => write!(f, "error:{kind:?}"),
            Reply::Inconsistent(why) => write!(f, "inconsistent:{why}"),
        }
    }
}

/// Whether two replies say the same thing.
pub(super) fn agree(a: &Reply, b: &Reply) -> bool {
    match (a, b) {
        (Reply::Array(x), Reply::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| agree(x, y))
        }
        (Reply::Ttl(x), Reply::Ttl(y)) if *x >= 0 && *y >= 0 => (x - y).abs() <= TTL_TOLERANCE_MS,
        (Reply::Error(ErrorKind::Unexpected(_)), _)
        | (_, Reply::Error(ErrorKind::Unexpected(_)))
        | (Reply::Inconsistent(_), _)
        | (_, Reply::Inconsistent(_)) => false,
        _ => a == b,
    }
}

pub(super) fn bytes(value: impl AsRef<[u8]>) -> Reply {
    Reply::Bytes(value.as_ref().to_vec())
}

pub(super) fn bool_int(value: bool) -> Reply {
    Reply::Int(i64::from(value))
}

pub(super) fn count(value: u64) -> Reply {
    Reply::Int(i64::try_from(value).expect("count fits in i64"))
}

/// An array of items the API documents as unordered: sorted.
pub(super) fn unordered(mut items: Vec<Reply>) -> Reply {
    items.sort();
    Reply::Array(items)
}

pub(super) fn type_name(kind: pb::KeyType) -> Reply {
    bytes(match kind {
        pb::KeyType::String => "string",
        pb::KeyType::Hash => "hash",
        pb::KeyType::List => "list",
        pb::KeyType::Set => "set",
        pb::KeyType::Unspecified => "unspecified",
    })
}

/// The members in a SPOP/SRANDMEMBER reply, or `None` for an error.
pub(super) fn members_of(reply: &Reply) -> Option<Vec<Vec<u8>>> {
    match reply {
        Reply::Nil => Some(Vec::new()),
        Reply::Bytes(member) => Some(vec![member.clone()]),
        Reply::Array(items) => items
            .iter()
            .map(|item| match item {
                Reply::Bytes(member) => Some(member.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}
