//! Differential test against a real `redis-server`: the same random command
//! sequences run on shoal and on Redis, every reply is compared, and every
//! [`SNAPSHOT_EVERY`] commands the whole keyspace is compared too (type,
//! contents and whether a TTL is set, for every key).
//!
//! The test starts its own `redis-server` on a free loopback port. When none
//! is installed it prints that it was skipped, unless `SHOAL_REQUIRE_REDIS=1`,
//! which turns a missing `redis-server` into a failure.
//!
//! Scale: seeds `0..SHOAL_DIFF_SEEDS` (default 20) with `SHOAL_DIFF_OPS`
//! commands each (default 2000); `SHOAL_DIFF_SEED=N` adds seed N.
//!
//! On a divergence the test replays the seed from an empty keyspace up to the
//! first differing reply, cuts that prefix down to a short sequence that
//! still diverges, prints both with every reply, and fails.
//!
//! Translations where the API differs from Redis on purpose (as the protos
//! document): `UpdateTtl` says whether the key existed, so PERSIST is
//! compared as "EXISTS before PERSIST"; LTRIM's reply is compared with the
//! length shoal returns; LSET's NOT_FOUND and OUT_OF_RANGE stand for Redis's
//! "no such key" and "index out of range"; a collection write with an
//! `expiry` is the Redis command followed by PEXPIRE when it succeeded.
//! SPOP and SRANDMEMBER are random: shoal answers first and Redis checks the
//! answer against its own state (SPOP's members are then removed from Redis
//! with SREM).

use std::collections::{BTreeSet, VecDeque};
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use shoal_proto::v1 as pb;
use shoal_tests::{Raw, TestServer, raw};
use tonic::{Code, Status};

// ---------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------

/// Few keys, so that commands meet each other's keys and types often.
const KEYS: [&str; 6] = ["k0", "k1", "k2", "k3", "k4", "k5"];
/// The keys each family of commands mostly works on; the others' keys now
/// and then, so that types collide often while collections live long enough
/// to grow.
const STRING_KEYS: [&str; 1] = ["k0"];
const HASH_KEYS: [&str; 2] = ["k1", "k2"];
const LIST_KEYS: [&str; 1] = ["k3"];
const SET_KEYS: [&str; 2] = ["k4", "k5"];
/// String values: integers (some at the i64 limits), and strings Redis does
/// not take as integers (leading zero, sign, spaces, out of range, empty).
const STRINGS: [&str; 15] = [
    "0",
    "1",
    "42",
    "-7",
    "9223372036854775806",
    "9223372036854775807",
    "-9223372036854775808",
    "007",
    "-0",
    "+3",
    "1.5",
    " 1",
    "99999999999999999999",
    "abc",
    "",
];
const FIELDS: [&str; 5] = ["f0", "f1", "f2", "f3", "f4"];
const HASH_VALUES: [&str; 8] = [
    "0",
    "5",
    "-2",
    "9223372036854775807",
    "-9223372036854775808",
    "007",
    "x",
    "",
];
const ELEMENTS: [&str; 5] = ["a", "b", "c", "1", "22"];
const MEMBERS: [&str; 6] = ["a", "b", "c", "d", "e", ""];
/// TTLs of hours: nothing expires by time during a run, however long.
const TTLS_MS: [i64; 3] = [10_000_000, 20_000_000, 30_000_000];
const EXTREME_DELTAS: [i64; 5] = [
    i64::MAX,
    i64::MIN,
    i64::MAX - 1,
    i64::MIN + 1,
    9_223_372_036_854_775_000,
];
const EXTREME_INDEXES: [i64; 6] = [
    i64::MIN,
    i64::MAX,
    -1_000_000_000_000,
    1_000_000_000_000,
    -100,
    100,
];
/// Chunk sizes for streaming reads; the result must not depend on them.
const CHUNKS: [u32; 5] = [0, 1, 2, 3, 1000];
/// A whole-keyspace comparison after this many commands.
const SNAPSHOT_EVERY: usize = 50;
/// How far apart the remaining TTLs of one key may be on the two servers.
const TTL_TOLERANCE_MS: i64 = 2_000;
/// Time allowed for cutting a failing sequence down.
const SHRINK_BUDGET: Duration = Duration::from_secs(60);
/// Seeds run this many at a time, each worker with its own shoal namespace
/// and Redis database: round trips, not CPU, bound a worker.
const WORKERS: usize = 4;

// ---------------------------------------------------------------------------
// Operations and their generator
// ---------------------------------------------------------------------------

type Key = &'static str;

#[derive(Debug, Clone, Copy)]
enum Condition {
    Always,
    Nx,
    Xx,
}

#[derive(Debug, Clone, Copy)]
enum SetExpiry {
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
enum WriteExpiry {
    Keep,
    Px(i64),
}

#[derive(Debug, Clone, Copy)]
enum Projection {
    All,
    Fields,
    Values,
}

#[derive(Debug, Clone, Copy)]
enum Combine {
    Inter,
    Union,
    Diff,
}

#[derive(Debug, Clone)]
enum Op {
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
fn generate(seed: u64, count: usize) -> Vec<Op> {
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

fn random_op(rng: &mut StdRng) -> Op {
    match rng.random_range(0..100) {
        0..24 => string_op(rng),
        24..36 => expiry_op(rng),
        36..58 => hash_op(rng),
        58..80 => list_op(rng),
        _ => set_op(rng),
    }
}

/// One of `home`, or any key with probability `elsewhere`.
fn key_in(rng: &mut StdRng, home: &[Key], elsewhere: f64) -> Key {
    if rng.random_bool(elsewhere) {
        pick(rng, &KEYS)
    } else {
        pick(rng, home)
    }
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    *items.choose(rng).expect("non-empty alphabet")
}

/// 1 to `max` items, repeats allowed.
fn some_of<T: Copy>(rng: &mut StdRng, items: &[T], max: usize) -> Vec<T> {
    let n = rng.random_range(1..=max);
    (0..n).map(|_| pick(rng, items)).collect()
}

fn delta(rng: &mut StdRng) -> i64 {
    match rng.random_range(0..4) {
        0 | 1 => rng.random_range(-3..=3),
        2 => rng.random_range(-1000..=1000),
        _ => pick(rng, &EXTREME_DELTAS),
    }
}

fn write_expiry(rng: &mut StdRng) -> WriteExpiry {
    if rng.random_bool(0.15) {
        WriteExpiry::Px(pick(rng, &TTLS_MS))
    } else {
        WriteExpiry::Keep
    }
}

fn index(rng: &mut StdRng) -> i64 {
    if rng.random_bool(0.85) {
        rng.random_range(-6..=6)
    } else {
        pick(rng, &EXTREME_INDEXES)
    }
}

fn string_op(rng: &mut StdRng) -> Op {
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

fn expiry_op(rng: &mut StdRng) -> Op {
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

fn hash_op(rng: &mut StdRng) -> Op {
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

fn list_op(rng: &mut StdRng) -> Op {
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

fn set_op(rng: &mut StdRng) -> Op {
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

// ---------------------------------------------------------------------------
// Normalised replies
// ---------------------------------------------------------------------------

/// One reply, in a form both servers' answers are translated into.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Reply {
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
enum ErrorKind {
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
fn agree(a: &Reply, b: &Reply) -> bool {
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

fn bytes(value: impl AsRef<[u8]>) -> Reply {
    Reply::Bytes(value.as_ref().to_vec())
}

fn bool_int(value: bool) -> Reply {
    Reply::Int(i64::from(value))
}

fn count(value: u64) -> Reply {
    Reply::Int(i64::try_from(value).expect("count fits in i64"))
}

/// An array of items the API documents as unordered: sorted.
fn unordered(mut items: Vec<Reply>) -> Reply {
    items.sort();
    Reply::Array(items)
}

fn type_name(kind: pb::KeyType) -> Reply {
    bytes(match kind {
        pb::KeyType::String => "string",
        pb::KeyType::Hash => "hash",
        pb::KeyType::List => "list",
        pb::KeyType::Set => "set",
        pb::KeyType::Unspecified => "unspecified",
    })
}

/// The members in a SPOP/SRANDMEMBER reply, or `None` for an error.
fn members_of(reply: &Reply) -> Option<Vec<Vec<u8>>> {
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

// ---------------------------------------------------------------------------
// Redis executor
// ---------------------------------------------------------------------------

/// A `redis-server` child process, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` on a free port, or `None` when it is not
    /// installed.
    fn start() -> Option<Self> {
        const CANDIDATES: [&str; 3] = [
            "redis-server",
            "/usr/bin/redis-server",
            "/usr/local/bin/redis-server",
        ];
        let mut log = PathBuf::new();
        for attempt in 1..=5 {
            let port = free_port();
            log = std::env::temp_dir().join(format!("shoal-differential-redis-{port}.log"));
            let mut spawned = None;
            for binary in CANDIDATES {
                match Command::new(binary)
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                    .arg("--logfile")
                    .arg(&log)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                {
                    Ok(child) => {
                        spawned = Some(child);
                        break;
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => panic!("cannot start {binary}: {error}"),
                }
            }
            let child = spawned?;
            let mut server = RedisServer {
                child,
                port,
                log: log.clone(),
            };
            if server.wait_until_ready() {
                return Some(server);
            }
            eprintln!("redis-server did not start on port {port} (attempt {attempt}); retrying");
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("redis-server failed to start five times; its last log:\n{text}");
    }

    /// Polls until this child answers; false when it exited (for example
    /// because another process took the port meanwhile).
    fn wait_until_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(con) = self.connect(0) {
                // Whoever answers on the port must be our child.
                let pid = RedisSide { con }.info("process_id");
                if pid == self.child.id().to_string() {
                    return true;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} never answered PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A connection to database `db` (each worker has its own).
    fn connect(&self, db: usize) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/{db}", self.port))?;
        let con = client.get_connection_with_timeout(Duration::from_secs(2))?;
        con.set_read_timeout(Some(Duration::from_secs(10)))?;
        con.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(con)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Runs operations on Redis and normalises the replies.
struct RedisSide {
    con: redis::Connection,
}

impl RedisSide {
    fn call(&mut self, command: &redis::Cmd) -> Reply {
        match command.query::<redis::Value>(&mut self.con) {
            Ok(value) => from_redis(value),
            Err(error) => redis_error(&error),
        }
    }

    /// Empties this worker's database.
    fn flush(&mut self) {
        assert_eq!(self.call(&redis::cmd("FLUSHDB")), Reply::Ok, "FLUSHDB");
    }

    /// A field of INFO's server section, such as `redis_version`; empty
    /// when the server does not answer.
    fn info(&mut self, field: &str) -> String {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut self.con)
            .unwrap_or_default();
        info.lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// The reply Redis gives to `op`. Random commands check `shoal`'s reply
    /// instead of drawing Redis's own random answer.
    fn apply(&mut self, op: &Op, shoal: &Reply) -> Reply {
        match op {
            Op::Set {
                key,
                value,
                condition,
                expiry,
                get,
            } => {
                let mut c = cmd("SET", key);
                c.arg(*value);
                match condition {
                    Condition::Always => {}
                    Condition::Nx => {
                        c.arg("NX");
                    }
                    Condition::Xx => {
                        c.arg("XX");
                    }
                }
                match expiry {
                    SetExpiry::Clear => {}
                    SetExpiry::Ex(seconds) => {
                        c.arg("EX").arg(*seconds);
                    }
                    SetExpiry::Px(ms) => {
                        c.arg("PX").arg(*ms);
                    }
                    SetExpiry::KeepTtl => {
                        c.arg("KEEPTTL");
                    }
                    SetExpiry::PxAtPast => {
                        c.arg("PXAT").arg(1);
                    }
                }
                if *get {
                    c.arg("GET");
                }
                self.call(&c)
            }
            Op::Get { key } => self.call(&cmd("GET", key)),
            Op::Del { keys } => self.call(redis::cmd("DEL").arg(keys)),
            Op::IncrBy {
                key,
                delta,
                as_decr,
            } => {
                if *as_decr {
                    self.call(cmd("DECRBY", key).arg(-delta))
                } else {
                    self.call(cmd("INCRBY", key).arg(*delta))
                }
            }
            Op::Expire {
                key,
                ms,
                in_seconds,
            } => {
                if *in_seconds {
                    self.call(cmd("EXPIRE", key).arg(ms / 1000))
                } else {
                    self.call(cmd("PEXPIRE", key).arg(*ms))
                }
            }
            Op::Persist { key } => {
                // UpdateTtl says whether the key existed; PERSIST whether it
                // had a TTL.
                let existed = self.call(&cmd("EXISTS", key));
                match self.call(&cmd("PERSIST", key)) {
                    Reply::Int(_) => existed,
                    other => other,
                }
            }
            Op::ExpireAtPast { key } => self.call(cmd("PEXPIREAT", key).arg(1)),
            Op::Describe { keys } => Reply::Array(
                keys.iter()
                    .map(|key| {
                        Reply::Array(vec![
                            self.call(&cmd("EXISTS", key)),
                            self.call(&cmd("TYPE", key)),
                            self.ttl(key),
                        ])
                    })
                    .collect(),
            ),
            Op::HSet { key, pairs, expiry } => {
                let mut c = cmd("HSET", key);
                for (field, value) in pairs {
                    c.arg(*field).arg(*value);
                }
                self.write(&c, key, *expiry)
            }
            Op::HGet { key, field } => self.call(cmd("HGET", key).arg(*field)),
            Op::HMGet { key, fields } => self.call(cmd("HMGET", key).arg(fields)),
            Op::HGetAll {
                key, projection, ..
            } => match projection {
                Projection::All => self.hgetall(key),
                Projection::Fields => sort_array(self.call(&cmd("HKEYS", key))),
                Projection::Values => sort_array(self.call(&cmd("HVALS", key))),
            },
            Op::HDel { key, fields } => self.call(cmd("HDEL", key).arg(fields)),
            Op::HLen { key } => self.call(&cmd("HLEN", key)),
            Op::HExists { key, field } => self.call(cmd("HEXISTS", key).arg(*field)),
            Op::HIncrBy {
                key,
                field,
                delta,
                expiry,
            } => self.write(cmd("HINCRBY", key).arg(*field).arg(*delta), key, *expiry),
            Op::Push {
                key,
                left,
                only_if_exists,
                values,
                expiry,
            } => {
                let name = match (left, only_if_exists) {
                    (true, false) => "LPUSH",
                    (true, true) => "LPUSHX",
                    (false, false) => "RPUSH",
                    (false, true) => "RPUSHX",
                };
                self.write(cmd(name, key).arg(values), key, *expiry)
            }
            Op::Pop { key, left, count } => {
                let mut c = cmd(if *left { "LPOP" } else { "RPOP" }, key);
                if let Some(count) = count {
                    c.arg(*count);
                }
                self.call(&c)
            }
            Op::LRange {
                key, start, stop, ..
            } => self.call(cmd("LRANGE", key).arg(*start).arg(*stop)),
            Op::LLen { key } => self.call(&cmd("LLEN", key)),
            Op::LTrim { key, start, stop } => {
                // Shoal also returns the length after trimming.
                match self.call(cmd("LTRIM", key).arg(*start).arg(*stop)) {
                    Reply::Ok => Reply::Array(vec![Reply::Ok, self.call(&cmd("LLEN", key))]),
                    other => other,
                }
            }
            Op::LIndex { key, index } => self.call(cmd("LINDEX", key).arg(*index)),
            Op::LSet { key, index, value } => self.call(cmd("LSET", key).arg(*index).arg(*value)),
            Op::LRem { key, count, value } => self.call(cmd("LREM", key).arg(*count).arg(*value)),
            Op::SAdd {
                key,
                members,
                expiry,
            } => self.write(cmd("SADD", key).arg(members), key, *expiry),
            Op::SRem { key, members } => self.call(cmd("SREM", key).arg(members)),
            Op::SMembers { key, .. } => sort_array(self.call(&cmd("SMEMBERS", key))),
            Op::SIsMember { key, member } => self.call(cmd("SISMEMBER", key).arg(*member)),
            Op::SMIsMember { key, members } => self.call(cmd("SMISMEMBER", key).arg(members)),
            Op::SCard { key } => self.call(&cmd("SCARD", key)),
            Op::SCombine { kind, keys, .. } => {
                let name = match kind {
                    Combine::Inter => "SINTER",
                    Combine::Union => "SUNION",
                    Combine::Diff => "SDIFF",
                };
                sort_array(self.call(redis::cmd(name).arg(keys)))
            }
            Op::SPop { key, count } => self.check_spop(key, *count, shoal),
            Op::SRandMember { key, count } => self.check_srandmember(key, *count, shoal),
            Op::Snapshot => Reply::Array(KEYS.iter().map(|key| self.snapshot(key)).collect()),
        }
    }

    /// A collection write, then PEXPIRE when it asks for an expiry and
    /// succeeded.
    fn write(&mut self, command: &redis::Cmd, key: &str, expiry: WriteExpiry) -> Reply {
        let reply = self.call(command);
        if let (WriteExpiry::Px(ms), Reply::Int(_)) = (expiry, &reply) {
            self.call(cmd("PEXPIRE", key).arg(ms));
        }
        reply
    }

    fn ttl(&mut self, key: &str) -> Reply {
        match self.call(&cmd("PTTL", key)) {
            Reply::Int(ms) => Reply::Ttl(ms),
            other => other,
        }
    }

    /// HGETALL as a sorted array of `[field, value]` pairs.
    fn hgetall(&mut self, key: &str) -> Reply {
        match self.call(&cmd("HGETALL", key)) {
            Reply::Array(flat) => unordered(
                flat.chunks(2)
                    .map(|pair| Reply::Array(pair.to_vec()))
                    .collect(),
            ),
            other => other,
        }
    }

    /// Type, TTL and contents of `key`.
    fn snapshot(&mut self, key: &str) -> Reply {
        let kind = self.call(&cmd("TYPE", key));
        let contents = match &kind {
            Reply::Bytes(name) => match name.as_slice() {
                b"string" => self.call(&cmd("GET", key)),
                b"hash" => self.hgetall(key),
                b"list" => self.call(cmd("LRANGE", key).arg(0).arg(-1)),
                b"set" => sort_array(self.call(&cmd("SMEMBERS", key))),
                _ => Reply::Nil,
            },
            _ => Reply::Nil,
        };
        Reply::Array(vec![bytes(key), kind, self.ttl(key), contents])
    }

    /// Checks the members shoal popped against Redis's set, then removes
    /// them from it so that both keep the same state.
    fn check_spop(&mut self, key: &str, count: Option<u32>, shoal: &Reply) -> Reply {
        let Some(popped) = members_of(shoal) else {
            return self.real_random(cmd("SPOP", key), count.map(i64::from));
        };
        let cardinality = match self.call(&cmd("SCARD", key)) {
            Reply::Int(n) => n,
            other => return other,
        };
        let expected = cardinality.min(i64::from(count.unwrap_or(1)));
        let removed = if popped.is_empty() {
            0
        } else {
            match self.call(cmd("SREM", key).arg(&popped)) {
                Reply::Int(n) => n,
                other => return other,
            }
        };
        let len = i64::try_from(popped.len()).expect("small");
        if len == expected && removed == len {
            shoal.clone()
        } else {
            Reply::Inconsistent(format!(
                "the set had {cardinality} members, {expected} should be popped; \
                 {removed} of those shoal popped were in it"
            ))
        }
    }

    /// Checks shoal's random members against Redis's set.
    fn check_srandmember(&mut self, key: &str, count: Option<i64>, shoal: &Reply) -> Reply {
        let Some(chosen) = members_of(shoal) else {
            return self.real_random(cmd("SRANDMEMBER", key), count);
        };
        let set: BTreeSet<Vec<u8>> = match self.call(&cmd("SMEMBERS", key)) {
            Reply::Array(items) => items
                .into_iter()
                .filter_map(|item| match item {
                    Reply::Bytes(member) => Some(member),
                    _ => None,
                })
                .collect(),
            other => return other,
        };
        let cardinality = set.len();
        let (expected, distinct) = match count {
            None => (cardinality.min(1), true),
            Some(n) if n >= 0 => (cardinality.min(usize::try_from(n).expect("small")), true),
            Some(_) if cardinality == 0 => (0, false),
            Some(n) => (usize::try_from(n.unsigned_abs()).expect("small"), false),
        };
        let all_members = chosen.iter().all(|member| set.contains(member));
        let unique = chosen.iter().collect::<BTreeSet<_>>().len() == chosen.len();
        if chosen.len() == expected && all_members && (unique || !distinct) {
            shoal.clone()
        } else {
            Reply::Inconsistent(format!(
                "the set has {cardinality} members, {expected} expected; all members: \
                 {all_members}; distinct: {unique}"
            ))
        }
    }

    /// Redis's own answer to a random command, when shoal failed.
    fn real_random(&mut self, mut command: redis::Cmd, count: Option<i64>) -> Reply {
        if let Some(count) = count {
            command.arg(count);
        }
        match self.call(&command) {
            Reply::Array(items) => unordered(items),
            other => other,
        }
    }
}

fn cmd(name: &str, key: &str) -> redis::Cmd {
    let mut command = redis::cmd(name);
    command.arg(key);
    command
}

fn sort_array(reply: Reply) -> Reply {
    match reply {
        Reply::Array(items) => unordered(items),
        other => other,
    }
}

fn from_redis(value: redis::Value) -> Reply {
    match value {
        redis::Value::Nil => Reply::Nil,
        redis::Value::Okay => Reply::Ok,
        redis::Value::Int(n) => Reply::Int(n),
        redis::Value::BulkString(data) => Reply::Bytes(data),
        redis::Value::SimpleString(text) if text == "OK" => Reply::Ok,
        redis::Value::SimpleString(text) => Reply::Bytes(text.into_bytes()),
        redis::Value::Array(items) => Reply::Array(items.into_iter().map(from_redis).collect()),
        other => panic!("unexpected RESP value from redis-server: {other:?}"),
    }
}

fn redis_error(error: &redis::RedisError) -> Reply {
    let Some(code) = error.code() else {
        panic!("redis-server connection failed: {error}");
    };
    let detail = error.detail().unwrap_or_default();
    let kind = match code {
        "WRONGTYPE" => ErrorKind::WrongType,
        "ERR" if detail.contains("not an integer") => ErrorKind::NotInteger,
        "ERR" if detail.contains("would overflow") => ErrorKind::Overflow,
        "ERR" if detail.contains("no such key") => ErrorKind::NoSuchKey,
        "ERR" if detail.contains("index out of range") => ErrorKind::OutOfRange,
        _ => ErrorKind::Unexpected(format!("{code} {detail}")),
    };
    Reply::Error(kind)
}

// ---------------------------------------------------------------------------
// Shoal executor
// ---------------------------------------------------------------------------

/// Runs operations on shoal over gRPC and normalises the replies.
struct ShoalSide {
    raw: Raw,
    /// This worker's namespace.
    namespace: String,
}

fn key_bytes(key: &str) -> Bytes {
    Bytes::copy_from_slice(key.as_bytes())
}

fn many(items: &[&str]) -> Vec<Bytes> {
    items.iter().map(|item| key_bytes(item)).collect()
}

fn ttl_expiry(ms: i64) -> Option<pb::Expiry> {
    Some(pb::Expiry {
        kind: Some(pb::expiry::Kind::TtlMs(ms)),
    })
}

fn write_expiry_pb(expiry: WriteExpiry) -> Option<pb::Expiry> {
    match expiry {
        WriteExpiry::Keep => None,
        WriteExpiry::Px(ms) => ttl_expiry(ms),
    }
}

fn status_reply(status: &Status) -> Reply {
    let message = status.message();
    let kind = match status.code() {
        Code::FailedPrecondition if message.starts_with("WRONGTYPE") => ErrorKind::WrongType,
        Code::FailedPrecondition if message.contains("not a 64-bit integer") => {
            ErrorKind::NotInteger
        }
        Code::FailedPrecondition if message.contains("overflow") => ErrorKind::Overflow,
        Code::NotFound => ErrorKind::NoSuchKey,
        Code::OutOfRange => ErrorKind::OutOfRange,
        code => ErrorKind::Unexpected(format!("{code:?}: {message}")),
    };
    Reply::Error(kind)
}

/// The reply built from a unary response, or the error.
fn unary<T>(result: Result<tonic::Response<T>, Status>, reply: impl FnOnce(T) -> Reply) -> Reply {
    match result {
        Ok(response) => reply(response.into_inner()),
        Err(status) => status_reply(&status),
    }
}

/// Every message of a streaming response, or the error as a reply.
async fn streamed<T>(
    result: Result<tonic::Response<tonic::Streaming<T>>, Status>,
) -> Result<Vec<T>, Reply> {
    let mut stream = result.map_err(|status| status_reply(&status))?.into_inner();
    let mut messages = Vec::new();
    while let Some(message) = stream
        .message()
        .await
        .map_err(|status| status_reply(&status))?
    {
        messages.push(message);
    }
    Ok(messages)
}

/// A pop reply: one value (or nil) without a count, an array (or nil when
/// the key does not exist) with one, as Redis answers.
fn popped(values: Vec<Bytes>, with_count: bool) -> Reply {
    match (values.len(), with_count) {
        (0, _) => Reply::Nil,
        (1, false) => bytes(&values[0]),
        _ => Reply::Array(values.iter().map(bytes).collect()),
    }
}

fn members_reply<T>(result: Result<Vec<T>, Reply>, members: impl Fn(T) -> Vec<Bytes>) -> Reply {
    match result {
        Ok(messages) => unordered(
            messages
                .into_iter()
                .flat_map(members)
                .map(|member| bytes(&member))
                .collect(),
        ),
        Err(error) => error,
    }
}

impl ShoalSide {
    async fn flush(&mut self) {
        self.raw
            .admin
            .flush(pb::FlushRequest {
                namespace: self.namespace.clone(),
            })
            .await
            .expect("flush");
    }

    async fn apply(&mut self, op: &Op) -> Reply {
        let cache = &mut self.raw.cache;
        let coll = &mut self.raw.collection;
        match op {
            Op::Set {
                key,
                value,
                condition,
                expiry,
                get,
            } => {
                let condition = match condition {
                    Condition::Always => None,
                    Condition::Nx => Some(pb::condition::Kind::IfAbsent(pb::IfAbsent {})),
                    Condition::Xx => Some(pb::condition::Kind::IfPresent(pb::IfPresent {})),
                };
                let expiry = match expiry {
                    SetExpiry::Clear => None,
                    SetExpiry::Ex(seconds) => ttl_expiry(seconds * 1000),
                    SetExpiry::Px(ms) => ttl_expiry(*ms),
                    SetExpiry::KeepTtl => Some(pb::Expiry {
                        kind: Some(pb::expiry::Kind::Keep(pb::KeepExpiry {})),
                    }),
                    SetExpiry::PxAtPast => Some(pb::Expiry {
                        kind: Some(pb::expiry::Kind::AtUnixMs(1)),
                    }),
                };
                let request = pb::SetRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    value: key_bytes(value),
                    expiry,
                    condition: condition.map(|kind| pb::Condition { kind: Some(kind) }),
                    return_previous: *get,
                };
                unary(cache.set(request).await, |response| {
                    if *get {
                        response.previous.map_or(Reply::Nil, bytes)
                    } else if response.stored {
                        Reply::Ok
                    } else {
                        Reply::Nil
                    }
                })
            }
            Op::Get { key } => self.get(key).await,
            Op::Del { keys } => {
                let request = pb::DeleteRequest {
                    namespace: self.namespace.clone(),
                    keys: many(keys),
                };
                unary(cache.delete(request).await, |response| {
                    count(response.deleted)
                })
            }
            Op::IncrBy { key, delta, .. } => {
                let request = pb::IncrementRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    delta: *delta,
                    ..Default::default()
                };
                unary(cache.increment(request).await, |response| {
                    Reply::Int(response.value)
                })
            }
            Op::Expire {
                key,
                ms,
                in_seconds,
            } => {
                let ms = if *in_seconds { ms / 1000 * 1000 } else { *ms };
                self.update_ttl(key, pb::expiry::Kind::TtlMs(ms)).await
            }
            Op::Persist { key } => {
                self.update_ttl(key, pb::expiry::Kind::Never(pb::NoExpiry {}))
                    .await
            }
            Op::ExpireAtPast { key } => self.update_ttl(key, pb::expiry::Kind::AtUnixMs(1)).await,
            Op::Describe { keys } => match self.describe(keys).await {
                Ok(descriptions) => Reply::Array(
                    descriptions
                        .into_iter()
                        .map(|(exists, kind, ttl)| Reply::Array(vec![bool_int(exists), kind, ttl]))
                        .collect(),
                ),
                Err(error) => error,
            },
            Op::HSet { key, pairs, expiry } => {
                let request = pb::HSetRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    fields: pairs
                        .iter()
                        .map(|(field, value)| pb::FieldValue {
                            field: key_bytes(field),
                            value: key_bytes(value),
                        })
                        .collect(),
                    expiry: write_expiry_pb(*expiry),
                };
                unary(coll.h_set(request).await, |response| count(response.added))
            }
            Op::HGet { key, field } => {
                let request = pb::HGetRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    field: key_bytes(field),
                };
                unary(coll.h_get(request).await, |response| {
                    if response.found {
                        bytes(&response.value)
                    } else {
                        Reply::Nil
                    }
                })
            }
            Op::HMGet { key, fields } => {
                let request = pb::HmGetRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    fields: many(fields),
                };
                unary(coll.hm_get(request).await, |response| {
                    Reply::Array(
                        response
                            .values
                            .iter()
                            .map(|value| {
                                if value.found {
                                    bytes(&value.value)
                                } else {
                                    Reply::Nil
                                }
                            })
                            .collect(),
                    )
                })
            }
            Op::HGetAll {
                key,
                projection,
                chunk,
            } => self.hgetall(key, *projection, *chunk).await,
            Op::HDel { key, fields } => {
                let request = pb::HDelRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    fields: many(fields),
                };
                unary(coll.h_del(request).await, |response| {
                    count(response.removed)
                })
            }
            Op::HLen { key } => {
                let request = pb::HLenRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                };
                unary(coll.h_len(request).await, |response| count(response.length))
            }
            Op::HExists { key, field } => {
                let request = pb::HExistsRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    field: key_bytes(field),
                };
                unary(coll.h_exists(request).await, |response| {
                    bool_int(response.exists)
                })
            }
            Op::HIncrBy {
                key,
                field,
                delta,
                expiry,
            } => {
                let request = pb::HIncrByRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    field: key_bytes(field),
                    delta: *delta,
                    expiry: write_expiry_pb(*expiry),
                };
                unary(coll.h_incr_by(request).await, |response| {
                    Reply::Int(response.value)
                })
            }
            Op::Push {
                key,
                left,
                only_if_exists,
                values,
                expiry,
            } => {
                if *left {
                    let request = pb::LPushRequest {
                        namespace: self.namespace.clone(),
                        key: key_bytes(key),
                        values: many(values),
                        only_if_exists: *only_if_exists,
                        expiry: write_expiry_pb(*expiry),
                    };
                    unary(coll.l_push(request).await, |response| {
                        count(response.length)
                    })
                } else {
                    let request = pb::RPushRequest {
                        namespace: self.namespace.clone(),
                        key: key_bytes(key),
                        values: many(values),
                        only_if_exists: *only_if_exists,
                        expiry: write_expiry_pb(*expiry),
                    };
                    unary(coll.r_push(request).await, |response| {
                        count(response.length)
                    })
                }
            }
            Op::Pop {
                key,
                left,
                count: n,
            } => {
                if *left {
                    let request = pb::LPopRequest {
                        namespace: self.namespace.clone(),
                        key: key_bytes(key),
                        count: *n,
                    };
                    unary(coll.l_pop(request).await, |response| {
                        popped(response.values, n.is_some())
                    })
                } else {
                    let request = pb::RPopRequest {
                        namespace: self.namespace.clone(),
                        key: key_bytes(key),
                        count: *n,
                    };
                    unary(coll.r_pop(request).await, |response| {
                        popped(response.values, n.is_some())
                    })
                }
            }
            Op::LRange {
                key,
                start,
                stop,
                chunk,
            } => self.lrange(key, *start, *stop, *chunk).await,
            Op::LLen { key } => {
                let request = pb::LLenRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                };
                unary(coll.l_len(request).await, |response| count(response.length))
            }
            Op::LTrim { key, start, stop } => {
                let request = pb::LTrimRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    start: *start,
                    stop: *stop,
                };
                unary(coll.l_trim(request).await, |response| {
                    Reply::Array(vec![Reply::Ok, count(response.length)])
                })
            }
            Op::LIndex { key, index } => {
                let request = pb::LIndexRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    index: *index,
                };
                unary(coll.l_index(request).await, |response| {
                    if response.found {
                        bytes(&response.value)
                    } else {
                        Reply::Nil
                    }
                })
            }
            Op::LSet { key, index, value } => {
                let request = pb::LSetRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    index: *index,
                    value: key_bytes(value),
                };
                unary(coll.l_set(request).await, |_| Reply::Ok)
            }
            Op::LRem {
                key,
                count: n,
                value,
            } => {
                let request = pb::LRemRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    count: *n,
                    value: key_bytes(value),
                };
                unary(coll.l_rem(request).await, |response| {
                    count(response.removed)
                })
            }
            Op::SAdd {
                key,
                members,
                expiry,
            } => {
                let request = pb::SAddRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    members: many(members),
                    expiry: write_expiry_pb(*expiry),
                };
                unary(coll.s_add(request).await, |response| count(response.added))
            }
            Op::SRem { key, members } => {
                let request = pb::SRemRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    members: many(members),
                };
                unary(coll.s_rem(request).await, |response| {
                    count(response.removed)
                })
            }
            Op::SMembers { key, chunk } => self.smembers(key, *chunk).await,
            Op::SIsMember { key, member } => {
                let request = pb::SIsMemberRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    member: key_bytes(member),
                };
                unary(coll.s_is_member(request).await, |response| {
                    bool_int(response.is_member)
                })
            }
            Op::SMIsMember { key, members } => {
                let request = pb::SmIsMemberRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    members: many(members),
                };
                unary(coll.sm_is_member(request).await, |response| {
                    Reply::Array(response.is_member.into_iter().map(bool_int).collect())
                })
            }
            Op::SCard { key } => {
                let request = pb::SCardRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                };
                unary(coll.s_card(request).await, |response| {
                    count(response.cardinality)
                })
            }
            Op::SCombine { kind, keys, chunk } => {
                let (namespace, keys, chunk_size) = (self.namespace.clone(), many(keys), *chunk);
                match kind {
                    Combine::Inter => {
                        let request = pb::SInterRequest {
                            namespace,
                            keys,
                            chunk_size,
                        };
                        members_reply(streamed(coll.s_inter(request).await).await, |m| m.members)
                    }
                    Combine::Union => {
                        let request = pb::SUnionRequest {
                            namespace,
                            keys,
                            chunk_size,
                        };
                        members_reply(streamed(coll.s_union(request).await).await, |m| m.members)
                    }
                    Combine::Diff => {
                        let request = pb::SDiffRequest {
                            namespace,
                            keys,
                            chunk_size,
                        };
                        members_reply(streamed(coll.s_diff(request).await).await, |m| m.members)
                    }
                }
            }
            Op::SPop { key, count: n } => {
                let request = pb::SPopRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    count: *n,
                };
                unary(coll.s_pop(request).await, |response| {
                    random_members(response.members, n.is_some())
                })
            }
            Op::SRandMember { key, count: n } => {
                let request = pb::SRandMemberRequest {
                    namespace: self.namespace.clone(),
                    key: key_bytes(key),
                    count: *n,
                };
                unary(coll.s_rand_member(request).await, |response| {
                    random_members(response.members, n.is_some())
                })
            }
            Op::Snapshot => self.snapshot().await,
        }
    }

    async fn get(&mut self, key: &str) -> Reply {
        let request = pb::GetRequest {
            namespace: self.namespace.clone(),
            key: key_bytes(key),
            include_meta: false,
        };
        unary(self.raw.cache.get(request).await, |response| {
            if response.found {
                bytes(&response.value)
            } else {
                Reply::Nil
            }
        })
    }

    async fn update_ttl(&mut self, key: &str, kind: pb::expiry::Kind) -> Reply {
        let request = pb::UpdateTtlRequest {
            namespace: self.namespace.clone(),
            key: key_bytes(key),
            expiry: Some(pb::Expiry { kind: Some(kind) }),
        };
        unary(self.raw.cache.update_ttl(request).await, |response| {
            bool_int(response.existed)
        })
    }

    /// Whether each key exists, its type name ("none" when missing) and its
    /// TTL as PTTL reports it.
    async fn describe(&mut self, keys: &[&str]) -> Result<Vec<(bool, Reply, Reply)>, Reply> {
        let request = pb::DescribeRequest {
            namespace: self.namespace.clone(),
            keys: many(keys),
        };
        let response = self
            .raw
            .cache
            .describe(request)
            .await
            .map_err(|status| status_reply(&status))?
            .into_inner();
        Ok(response
            .keys
            .into_iter()
            .map(|description| match (description.exists, description.meta) {
                (true, Some(meta)) => {
                    let ttl = meta
                        .ttl_ms
                        .map_or(-1, |ms| i64::try_from(ms).expect("TTL fits in i64"));
                    (true, type_name(meta.r#type()), Reply::Ttl(ttl))
                }
                (true, None) => (true, bytes("exists-without-meta"), Reply::Ttl(-2)),
                (false, _) => (false, bytes("none"), Reply::Ttl(-2)),
            })
            .collect())
    }

    async fn hgetall(&mut self, key: &str, projection: Projection, chunk: u32) -> Reply {
        let request = pb::HGetAllRequest {
            namespace: self.namespace.clone(),
            key: key_bytes(key),
            projection: match projection {
                Projection::All => pb::HashProjection::Unspecified,
                Projection::Fields => pb::HashProjection::Fields,
                Projection::Values => pb::HashProjection::Values,
            } as i32,
            chunk_size: chunk,
        };
        match streamed(self.raw.collection.h_get_all(request).await).await {
            Ok(messages) => unordered(
                messages
                    .into_iter()
                    .flat_map(|message| message.entries)
                    .map(|entry| match projection {
                        Projection::All => {
                            Reply::Array(vec![bytes(&entry.field), bytes(&entry.value)])
                        }
                        Projection::Fields => bytes(&entry.field),
                        Projection::Values => bytes(&entry.value),
                    })
                    .collect(),
            ),
            Err(error) => error,
        }
    }

    async fn lrange(&mut self, key: &str, start: i64, stop: i64, chunk: u32) -> Reply {
        let request = pb::LRangeRequest {
            namespace: self.namespace.clone(),
            key: key_bytes(key),
            start,
            stop,
            chunk_size: chunk,
        };
        match streamed(self.raw.collection.l_range(request).await).await {
            Ok(messages) => Reply::Array(
                messages
                    .into_iter()
                    .flat_map(|message| message.values)
                    .map(|value| bytes(&value))
                    .collect(),
            ),
            Err(error) => error,
        }
    }

    async fn smembers(&mut self, key: &str, chunk: u32) -> Reply {
        let request = pb::SMembersRequest {
            namespace: self.namespace.clone(),
            key: key_bytes(key),
            chunk_size: chunk,
        };
        members_reply(
            streamed(self.raw.collection.s_members(request).await).await,
            |message| message.members,
        )
    }

    /// Type, TTL and contents of every key, as [`RedisSide::snapshot`].
    async fn snapshot(&mut self) -> Reply {
        let descriptions = match self.describe(&KEYS).await {
            Ok(descriptions) => descriptions,
            Err(error) => return error,
        };
        let mut keys = Vec::with_capacity(KEYS.len());
        for (key, (_, kind, ttl)) in KEYS.iter().zip(descriptions) {
            let contents = match &kind {
                Reply::Bytes(name) => match name.as_slice() {
                    b"string" => self.get(key).await,
                    b"hash" => self.hgetall(key, Projection::All, 0).await,
                    b"list" => self.lrange(key, 0, -1, 0).await,
                    b"set" => self.smembers(key, 0).await,
                    _ => Reply::Nil,
                },
                _ => Reply::Nil,
            };
            keys.push(Reply::Array(vec![bytes(key), kind, ttl, contents]));
        }
        Reply::Array(keys)
    }
}

/// SPOP/SRANDMEMBER: as a pop, but an array is unordered.
fn random_members(members: Vec<Bytes>, with_count: bool) -> Reply {
    if with_count {
        unordered(members.iter().map(bytes).collect())
    } else {
        popped(members, false)
    }
}

// ---------------------------------------------------------------------------
// Running, comparing, shrinking
// ---------------------------------------------------------------------------

struct Harness {
    redis: RedisSide,
    shoal: ShoalSide,
}

struct Step {
    op: Op,
    shoal: Reply,
    redis: Reply,
}

/// The steps of one run, up to and including the first divergence.
struct Run {
    steps: Vec<Step>,
    diverged_at: Option<usize>,
}

impl Harness {
    /// Runs `ops` from an empty keyspace, stopping at the first divergence.
    async fn run(&mut self, ops: &[Op]) -> Run {
        self.redis.flush();
        self.shoal.flush().await;
        let mut steps = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let shoal = self.shoal.apply(op).await;
            let redis = self.redis.apply(op, &shoal);
            let same = agree(&shoal, &redis);
            steps.push(Step {
                op: op.clone(),
                shoal,
                redis,
            });
            if !same {
                return Run {
                    steps,
                    diverged_at: Some(i),
                };
            }
        }
        Run {
            steps,
            diverged_at: None,
        }
    }

    /// Removes chunks of `ops` (halving the chunk size down to single
    /// commands) while the rest still diverges, within [`SHRINK_BUDGET`].
    async fn shrink(&mut self, ops: Vec<Op>) -> Vec<Op> {
        let deadline = Instant::now() + SHRINK_BUDGET;
        let mut current = ops;
        let mut chunk = current.len().div_ceil(2);
        while chunk > 0 && Instant::now() < deadline {
            let mut start = 0;
            while start < current.len() && Instant::now() < deadline {
                let end = (start + chunk).min(current.len());
                let candidate: Vec<Op> = current[..start]
                    .iter()
                    .chain(&current[end..])
                    .cloned()
                    .collect();
                if !candidate.is_empty()
                    && let Some(at) = self.run(&candidate).await.diverged_at
                {
                    current = candidate[..=at].to_vec();
                    continue;
                }
                start += chunk;
            }
            chunk /= 2;
        }
        current
    }

    /// Replays the failing prefix of seed `seed`, shrinks it and panics with
    /// both.
    async fn report(&mut self, seed: u64, ops_per_seed: usize, ops: &[Op], first: Run) -> ! {
        let at = first.diverged_at.expect("a divergence to report");
        let prefix = &ops[..=at];
        let replay = self.run(prefix).await;
        let reproduced = replay.diverged_at.is_some();
        let mut text = format!(
            "shoal and redis-server diverge: seed {seed}, command #{at} of {} \
             (rerun with SHOAL_DIFF_SEED={seed} SHOAL_DIFF_SEEDS=0 SHOAL_DIFF_OPS={ops_per_seed})\n",
            ops.len(),
        );
        let steps = if reproduced {
            replay.steps
        } else {
            text.push_str(
                "the divergence did NOT reproduce on a replay from an empty keyspace \
                 (random commands may have chosen differently); first run shown\n",
            );
            first.steps
        };
        text.push_str(&format!(
            "\nshortest failing prefix ({} commands):\n",
            steps.len()
        ));
        text.push_str(&render(&steps));
        if reproduced {
            let reduced = self.shrink(prefix.to_vec()).await;
            let run = self.run(&reduced).await;
            text.push_str(&format!(
                "\nreduced to {} commands that still diverge:\n",
                run.steps.len()
            ));
            text.push_str(&render(&run.steps));
        }
        eprintln!("{text}");
        panic!("shoal and redis-server diverge (seed {seed}); see above");
    }
}

fn render(steps: &[Step]) -> String {
    let mut text = String::new();
    for (i, step) in steps.iter().enumerate() {
        let mark = if agree(&step.shoal, &step.redis) {
            ""
        } else {
            "   <<< DIFFERS"
        };
        let _ = writeln!(text, "{i:5}: {:?}{mark}", step.op);
        if mark.is_empty() {
            let _ = writeln!(text, "         both:  {:?}", step.shoal);
        } else {
            let _ = writeln!(text, "         shoal: {:?}", step.shoal);
            let _ = writeln!(text, "         redis: {:?}", step.redis);
        }
    }
    text
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shoal_answers_random_command_sequences_as_redis_does() {
    let Some(redis_server) = RedisServer::start() else {
        assert!(
            std::env::var("SHOAL_REQUIRE_REDIS").as_deref() != Ok("1"),
            "redis-server is not installed, and SHOAL_REQUIRE_REDIS=1 requires it \
             (Debian: apt-get install redis-server)"
        );
        eprintln!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !! SKIPPED the differential test: redis-server is not installed.     !!\n\
             !! Install it (apt-get install redis-server) or set                  !!\n\
             !! SHOAL_REQUIRE_REDIS=1 to make its absence a failure.              !!\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
        return;
    };
    let seed_count = env_number("SHOAL_DIFF_SEEDS").unwrap_or(20);
    let ops_per_seed = env_number("SHOAL_DIFF_OPS").map_or(2000, |n| {
        usize::try_from(n).expect("SHOAL_DIFF_OPS fits in usize")
    });
    let mut seeds: Vec<u64> = (0..seed_count).collect();
    if let Some(extra) = env_number("SHOAL_DIFF_SEED") {
        seeds.push(extra);
    }
    let workers = WORKERS.min(seeds.len()).max(1);

    let server = TestServer::start().await;
    let version = {
        let con = redis_server.connect(0).expect("connect to redis-server");
        RedisSide { con }.info("redis_version")
    };
    let started = Instant::now();
    let queue = Arc::new(Mutex::new(seeds.iter().copied().collect::<VecDeque<u64>>()));
    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers {
        let mut harness = Harness {
            redis: RedisSide {
                con: redis_server
                    .connect(worker)
                    .expect("connect to redis-server"),
            },
            shoal: ShoalSide {
                raw: raw(&server).await,
                namespace: format!("differential-{worker}"),
            },
        };
        let queue = Arc::clone(&queue);
        tasks.push(tokio::spawn(async move {
            let mut commands = 0;
            loop {
                let Some(seed) = queue.lock().expect("seed queue").pop_front() else {
                    return commands;
                };
                let ops = generate(seed, ops_per_seed);
                let run = harness.run(&ops).await;
                if run.diverged_at.is_some() {
                    // Let the other workers stop at their next seed.
                    queue.lock().expect("seed queue").clear();
                    harness.report(seed, ops_per_seed, &ops, run).await;
                }
                commands += ops.len();
            }
        }));
    }
    let mut commands = 0;
    for task in tasks {
        match task.await {
            Ok(done) => commands += done,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    eprintln!(
        "differential: {} seeds, {commands} commands (snapshots included) agreed with \
         redis-server {version} in {:.1?} ({workers} workers)",
        seeds.len(),
        started.elapsed()
    );
}
