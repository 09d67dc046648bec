//! The commands the test sends, and the random generator of their sequences.

use super::*;

pub(super) type Key = &'static str;

#[derive(Debug, Clone, Copy)]
pub(super) enum Condition {
    Always,
    Nx,
    Xx,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum SetExpiry {
    /// No expiry (plain SET clears a TTL).
    Clear,
    Ex(i64),
    Px(i64),
    KeepTtl,
    /// PXAT 1: the key is written already expired.
    PxAtPast,
}

/// The `expiry` of a collection write. Redis has none: there the write is
/// followed by PEXPIRE when it succeeded.
#[derive(Debug, Clone, Copy)]
pub(super) enum WriteExpiry {
    Keep,
    Px(i64),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Projection {
    All,
    Fields,
    Values,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Combine {
    Inter,
    Union,
    Diff,
}

#[derive(Debug, Clone)]
pub(super) enum Op {
    Set {
        key: Key,
        value: &'static str,
        condition: Condition,
        expiry: SetExpiry,
        get: bool,
    },
    Get {
        key: Key,
    },
    Del {
        keys: Vec<Key>,
    },
    /// INCRBY, or DECRBY of `-delta` when `as_decr`.
    IncrBy {
        key: Key,
        delta: i64,
        as_decr: bool,
    },
    /// PEXPIRE, or EXPIRE in whole seconds when `in_seconds`.
    Expire {
        key: Key,
        ms: i64,
        in_seconds: bool,
    },
    Persist {
        key: Key,
    },
    /// PEXPIREAT 1: deletes the key.
    ExpireAtPast {
        key: Key,
    },
    /// EXISTS, TYPE and PTTL of each key.
    Describe {
        keys: Vec<Key>,
    },
    HSet {
        key: Key,
        pairs: Vec<(&'static str, &'static str)>,
        expiry: WriteExpiry,
    },
    HGet {
        key: Key,
        field: &'static str,
    },
    HMGet {
        key: Key,
        fields: Vec<&'static str>,
    },
    HGetAll {
        key: Key,
        projection: Projection,
        chunk: u32,
    },
    HDel {
        key: Key,
        fields: Vec<&'static str>,
    },
    HLen {
        key: Key,
    },
    HExists {
        key: Key,
        field: &'static str,
    },
    HIncrBy {
        key: Key,
        field: &'static str,
        delta: i64,
        expiry: WriteExpiry,
    },
    Push {
        key: Key,
        left: bool,
        only_if_exists: bool,
        values: Vec<&'static str>,
        expiry: WriteExpiry,
    },
    Pop {
        key: Key,
        left: bool,
        count: Option<u32>,
    },
    LRange {
        key: Key,
        start: i64,
        stop: i64,
        chunk: u32,
    },
    LLen {
        key: Key,
    },
    LTrim {
        key: Key,
        start: i64,
        stop: i64,
    },
    LIndex {
        key: Key,
        index: i64,
    },
    LSet {
        key: Key,
        index: i64,
        value: &'static str,
    },
    LRem {
        key: Key,
        count: i64,
        value: &'static str,
    },
    SAdd {
        key: Key,
        members: Vec<&'static str>,
        expiry: WriteExpiry,
    },
    SRem {
        key: Key,
        members: Vec<&'static str>,
    },
    SMembers {
        key: Key,
        chunk: u32,
    },
    SIsMember {
        key: Key,
        member: &'static str,
    },
    SMIsMember {
        key: Key,
        members: Vec<&'static str>,
    },
    SCard {
        key: Key,
    },
    SCombine {
        kind: Combine,
        keys: Vec<Key>,
        chunk: u32,
    },
    SPop {
        key: Key,
        count: Option<u32>,
    },
    SRandMember {
        key: Key,
        count: Option<i64>,
    },
    /// Compare every key: type, TTL set or not, full contents.
    Snapshot,
}

/// `count` commands from `seed`, with a [`Op::Snapshot`] after every
/// [`SNAPSHOT_EVERY`] of them and at the end.
pub(super) fn generate(seed: u64, count: usize) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ops = Vec::with_capacity(count + count / SNAPSHOT_EVERY + 1);
    for i in 1..=count {
        ops.push(random_op(&mut rng));
        if i % SNAPSHOT_EVERY == 0 {
            ops.push(Op::Snapshot);
        }
    }
    if !matches!(ops.last(), Some(Op::Snapshot)) {
        ops.push(Op::Snapshot);
    }
    ops
}

pub(super) fn random_op(rng: &mut StdRng) -> Op {
    match rng.random_range(0..100) {
        0..24 => string_op(rng),
        24..36 => expiry_op(rng),
        36..58 => hash_op(rng),
        58..80 => list_op(rng),
        _ => set_op(rng),
    }
}

/// One of `home`, or any key with probability `elsewhere`.
pub(super) fn key_in(rng: &mut StdRng, home: &[Key], elsewhere: f64) -> Key {
    if rng.random_bool(elsewhere) {
        pick(rng, &KEYS)
    } else {
        pick(rng, home)
    }
}

pub(super) fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    *items.choose(rng).expect("non-empty alphabet")
}

/// 1 to `max` items, repeats allowed.
pub(super) fn some_of<T: Copy>(rng: &mut StdRng, items: &[T], max: usize) -> Vec<T> {
    let n = rng.random_range(1..=max);
    (0..n).map(|_| pick(rng, items)).collect()
}

pub(super) fn delta(rng: &mut StdRng) -> i64 {
    match rng.random_range(0..4) {
        0 | 1 => rng.random_range(-3..=3),
        2 => rng.random_range(-1000..=1000),
        _ => pick(rng, &EXTREME_DELTAS),
    }
}

pub(super) fn write_expiry(rng: &mut StdRng) -> WriteExpiry {
    if rng.random_bool(0.15) {
        WriteExpiry::Px(pick(rng, &TTLS_MS))
    } else {
        WriteExpiry::Keep
    }
}

pub(super) fn index(rng: &mut StdRng) -> i64 {
    if rng.random_bool(0.85) {
        rng.random_range(-6..=6)
    } else {
        pick(rng, &EXTREME_INDEXES)
    }
}

pub(super) fn string_op(rng: &mut StdRng) -> Op {
    let kind = rng.random_range(0..10);
    // A string written over a collection stays until deleted: rarely.
    let writes = matches!(kind, 0..4 | 7..10);
    let key = key_in(rng, &STRING_KEYS, if writes { 0.04 } else { 0.2 });
    match kind {
        0..4 => Op::Set {
            key,
            value: pick(rng, &STRINGS),
            condition: match rng.random_range(0..10) {
                0..6 => Condition::Always,
                6..8 => Condition::Nx,
                _ => Condition::Xx,
            },
            expiry: match rng.random_range(0..20) {
                0..10 => SetExpiry::Clear,
                10..13 => SetExpiry::Ex(pick(rng, &TTLS_MS) / 1000),
                13..16 => SetExpiry::Px(pick(rng, &TTLS_MS)),
                16..19 => SetExpiry::KeepTtl,
                _ => SetExpiry::PxAtPast,
            },
            get: rng.random_bool(0.3),
        },
        4..6 => Op::Get { key },
        6 => Op::Del {
            keys: some_of(rng, &KEYS, 3),
        },
        _ => {
            let delta = delta(rng);
            Op::IncrBy {
                key,
                delta,
                as_decr: delta != i64::MIN && rng.random_bool(0.5),
            }
        }
    }
}

pub(super) fn expiry_op(rng: &mut StdRng) -> Op {
    let key = pick(rng, &KEYS);
    match rng.random_range(0..10) {
        0..4 => Op::Expire {
            key,
            ms: pick(rng, &TTLS_MS),
            in_seconds: rng.random_bool(0.5),
        },
        4..6 => Op::Persist { key },
        6 => Op::ExpireAtPast { key },
        _ => Op::Describe {
            keys: some_of(rng, &KEYS, 3),
        },
    }
}

pub(super) fn hash_op(rng: &mut StdRng) -> Op {
    let key = key_in(rng, &HASH_KEYS, 0.2);
    let field = pick(rng, &FIELDS);
    match rng.random_range(0..100) {
        0..25 => {
            let n = rng.random_range(1..=3);
            let pairs = (0..n)
                .map(|_| (pick(rng, &FIELDS), pick(rng, &HASH_VALUES)))
                .collect();
            Op::HSet {
                key,
                pairs,
                expiry: write_expiry(rng),
            }
        }
        25..37 => Op::HGet { key, field },
        37..47 => Op::HMGet {
            key,
            fields: some_of(rng, &FIELDS, 3),
        },
        47..57 => Op::HGetAll {
            key,
            projection: pick(
                rng,
                &[Projection::All, Projection::Fields, Projection::Values],
            ),
            chunk: pick(rng, &CHUNKS),
        },
        57..70 => Op::HDel {
            key,
            fields: some_of(rng, &FIELDS, 3),
        },
        70..78 => Op::HLen { key },
        78..86 => Op::HExists { key, field },
        _ => Op::HIncrBy {
            key,
            field,
            delta: delta(rng),
            expiry: write_expiry(rng),
        },
    }
}

pub(super) fn list_op(rng: &mut StdRng) -> Op {
    let key = key_in(rng, &LIST_KEYS, 0.2);
    match rng.random_range(0..100) {
        0..30 => Op::Push {
            key,
            left: rng.random_bool(0.5),
            only_if_exists: rng.random_bool(0.2),
            values: some_of(rng, &ELEMENTS, 4),
            expiry: write_expiry(rng),
        },
        30..48 => Op::Pop {
            key,
            left: rng.random_bool(0.5),
            count: match rng.random_range(0..10) {
                0..5 => None,
                5..9 => Some(rng.random_range(1..=4)),
                _ => Some(rng.random_range(5..=20)),
            },
        },
        48..60 => Op::LRange {
            key,
            start: index(rng),
            stop: index(rng),
            chunk: pick(rng, &CHUNKS),
        },
        60..66 => Op::LLen { key },
        66..74 => Op::LTrim {
            key,
            start: index(rng),
            stop: index(rng),
        },
        74..82 => Op::LIndex {
            key,
            index: index(rng),
        },
        82..90 => Op::LSet {
            key,
            index: if rng.random_bool(0.9) {
                rng.random_range(-4..=4)
            } else {
                pick(rng, &EXTREME_INDEXES)
            },
            value: pick(rng, &["z", "a", "1"]),
        },
        _ => Op::LRem {
            key,
            count: if rng.random_bool(0.9) {
                rng.random_range(-3..=3)
            } else {
                pick(rng, &[-100, 100])
            },
            value: pick(rng, &ELEMENTS),
        },
    }
}

pub(super) fn set_op(rng: &mut StdRng) -> Op {
    let key = key_in(rng, &SET_KEYS, 0.2);
    match rng.random_range(0..100) {
        0..25 => Op::SAdd {
            key,
            members: some_of(rng, &MEMBERS, 4),
            expiry: write_expiry(rng),
        },
        25..40 => Op::SRem {
            key,
            members: some_of(rng, &MEMBERS, 3),
        },
        40..48 => Op::SMembers {
            key,
            chunk: pick(rng, &CHUNKS),
        },
        48..56 => Op::SIsMember {
            key,
            member: pick(rng, &MEMBERS),
        },
        56..62 => Op::SMIsMember {
            key,
            members: some_of(rng, &MEMBERS, 3),
        },
        62..68 => Op::SCard { key },
        68..82 => Op::SCombine {
            kind: pick(rng, &[Combine::Inter, Combine::Union, Combine::Diff]),
            keys: (0..rng.random_range(1..=3))
                .map(|_| key_in(rng, &SET_KEYS, 0.2))
                .collect(),
            chunk: pick(rng, &CHUNKS),
        },
        82..92 => Op::SPop {
            key,
            count: if rng.random_bool(0.5) {
                None
            } else {
                Some(rng.random_range(1..=4))
            },
        },
        _ => Op::SRandMember {
            key,
            count: if rng.random_bool(0.3) {
                None
            } else {
                Some(rng.random_range(-5..=5))
            },
        },
    }
}

/// The data type a command works on, which says in which file each side
/// applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpKind {
    /// Strings, counters, deletes, expiry and key metadata.
    Strings,
    /// Hash commands.
    Hashes,
    /// List commands.
    Lists,
    /// Set commands.
    Sets,
    /// A comparison of the whole keyspace.
    Snapshot,
}

impl Op {
    /// The data type this command works on.
    pub(super) fn kind(&self) -> OpKind {
        match self {
            Op::Set { .. }
            | Op::Get { .. }
            | Op::Del { .. }
            | Op::IncrBy { .. }
            | Op::Expire { .. }
            | Op::Persist { .. }
            | Op::ExpireAtPast { .. }
            | Op::Describe { .. } => OpKind::Strings,
            Op::HSet { .. }
            | Op::HGet { .. }
            | Op::HMGet { .. }
            | Op::HGetAll { .. }
            | Op::HDel { .. }
            | Op::HLen { .. }
            | Op::HExists { .. }
            | Op::HIncrBy { .. } => OpKind::Hashes,
            Op::Push { .. }
            | Op::Pop { .. }
            | Op::LRange { .. }
            | Op::LLen { .. }
            | Op::LTrim { .. }
            | Op::LIndex { .. }
            | Op::LSet { .. }
            | Op::LRem { .. } => OpKind::Lists,
            Op::SAdd { .. }
            | Op::SRem { .. }
            | Op::SMembers { .. }
            | Op::SIsMember { .. }
            | Op::SMIsMember { .. }
            | Op::SCard { .. }
            | Op::SCombine { .. }
            | Op::SPop { .. }
            | Op::SRandMember { .. } => OpKind::Sets,
            Op::Snapshot => OpKind::Snapshot,
        }
    }
}
