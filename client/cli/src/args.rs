//! Command-line arguments, and their translation into client options.

pub mod batches;
pub mod bench;
pub mod collections;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use shoal_client::{Condition, Expiry, KeyType, ScanOptions, SetOptions};

use crate::args::batches::BatchCommand;
use crate::args::bench::BenchArgs;
use crate::args::collections::CollectionCommand;

/// Command-line client for the shoal cache.
///
/// Keys and values are taken as UTF-8 text. Output is text for people, or
/// one JSON document per command with --json. Values that are not printable
/// UTF-8 are shown quoted, with escapes such as \x00 and \n.
/// The address of a server started with its defaults. Without a scheme, so
/// that a --tls-* option makes it https:// and no option http://.
const DEFAULT_ADDR: &str = "127.0.0.1:50051";

#[derive(Debug, Parser)]
#[command(name = "shoal", version, about, long_about)]
pub struct Cli {
    /// Server address; http:// is assumed when no scheme is given (https://
    /// with a --tls-* option).
    #[arg(
        long,
        env = "SHOAL_ADDR",
        default_value = DEFAULT_ADDR,
        global = true,
        help_heading = "Global options"
    )]
    pub addr: String,

    /// Namespace to work in [default: default].
    #[arg(
        short,
        long,
        env = "SHOAL_NAMESPACE",
        default_value = "",
        hide_default_value = true,
        global = true,
        help_heading = "Global options"
    )]
    pub namespace: String,

    /// Access token, sent on every call (see `shoal-server token`)
    /// [default: none].
    #[arg(
        long,
        env = "SHOAL_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    pub token: Option<Token>,

    /// Header the token travels in: `shoal-token` (sent in full once per
    /// connection) or `authorization` (`Bearer <token>`, in full on every
    /// call; for proxies that only pass that one).
    #[arg(
        long,
        env = "SHOAL_TOKEN_HEADER",
        value_enum,
        default_value_t = TokenHeaderArg::ShoalToken,
        global = true,
        help_heading = "Global options"
    )]
    pub token_header: TokenHeaderArg,

    /// Deadline of each call, in milliseconds; 0 for none.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 5000,
        global = true,
        help_heading = "Global options"
    )]
    pub timeout: u64,

    /// Print one JSON document per command instead of text.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// CA certificate (PEM) to verify the server with, instead of the
    /// system's roots; implies TLS.
    #[arg(long, env = "SHOAL_TLS_CA", global = true, help_heading = "TLS")]
    pub tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for a server that asks for one (mTLS). Its
    /// variable is not SHOAL_TLS_CERT, which is the server's own certificate.
    #[arg(
        long,
        env = "SHOAL_CLIENT_CERT",
        global = true,
        requires = "tls_key",
        help_heading = "TLS"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(
        long,
        env = "SHOAL_CLIENT_KEY",
        global = true,
        requires = "tls_cert",
        help_heading = "TLS"
    )]
    pub tls_key: Option<PathBuf>,

    /// Name to verify the server's certificate against, instead of the
    /// address's host.
    #[arg(long, env = "SHOAL_TLS_DOMAIN", global = true, help_heading = "TLS")]
    pub tls_domain: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The header `--token` travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenHeaderArg {
    /// `shoal-token: <token>`.
    ShoalToken,
    /// `authorization: Bearer <token>`.
    Authorization,
}

/// An access token as given; never printed.
#[derive(Clone)]
pub struct Token(pub String);

impl std::str::FromStr for Token {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_string()))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Cli {
    /// `builder` with this command line's token, if any.
    pub fn with_token(&self, builder: shoal_client::ClientBuilder) -> shoal_client::ClientBuilder {
        match &self.token {
            Some(token) => builder
                .token(&token.0)
                .token_header(match self.token_header {
                    TokenHeaderArg::ShoalToken => shoal_client::TokenHeader::ShoalToken,
                    TokenHeaderArg::Authorization => shoal_client::TokenHeader::Authorization,
                }),
            None => builder,
        }
    }

    /// A client builder for `--addr` with the TLS options, if any.
    pub fn client_builder(&self) -> shoal_client::ClientBuilder {
        let builder = shoal_client::Client::builder().endpoint(&self.addr);
        if self.tls_ca.is_none() && self.tls_cert.is_none() && self.tls_domain.is_none() {
            return builder;
        }
        let mut tls = shoal_client::TlsConfig::new();
        if let Some(ca) = &self.tls_ca {
            tls = tls.ca_file(ca);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.identity_files(cert, key);
        }
        if let Some(domain) = &self.tls_domain {
            tls = tls.domain_name(domain);
        }
        builder.tls(tls)
    }

    /// The per-call deadline, `None` for `--timeout 0`.
    pub fn deadline(&self) -> Option<Duration> {
        (self.timeout > 0).then(|| Duration::from_millis(self.timeout))
    }

    /// These arguments, after the checks clap cannot express (such as a
    /// value for every field of `hset`).
    pub fn validated(self) -> Result<Self, clap::Error> {
        match &self.command {
            Command::Collection(command) => command.check()?,
            Command::Bench(bench) => bench.check()?,
            Command::Batch(command) => command.check()?,
            _ => {}
        }
        Ok(self)
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the value of a string key, or (nil) when it does not exist.
    Get {
        /// Key to read.
        key: String,
        /// Write the value's bytes exactly as stored: no escaping, no
        /// newline.
        #[arg(long, conflicts_with = "json")]
        raw: bool,
    },
    /// Store a string value; prints OK, or (nil) when a condition was not met.
    Set(SetArgs),
    /// Delete keys of any type; prints how many existed.
    #[command(visible_alias = "delete")]
    Del {
        /// Keys to delete.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Add to an integer counter, creating it when absent; prints the new
    /// value.
    Incr(IncrArgs),
    /// Subtract from an integer counter, creating it when absent; prints the
    /// new value.
    Decr(IncrArgs),
    /// Print a key's time to live in milliseconds: -1 when it never expires,
    /// -2 when it does not exist.
    Ttl {
        /// Key to inspect.
        key: String,
    },
    /// Set a key's expiry; prints 1 when the key exists, 0 when it does not.
    Expire(ExpireArgs),
    /// Remove a key's expiry; prints 1 when the key exists, 0 when it does
    /// not.
    Persist {
        /// Key to make permanent.
        key: String,
    },
    /// Show type, time to live, version and size of keys, as a table.
    Describe {
        /// Keys to describe.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// List the keys matching a glob pattern, one per line.
    Scan(ScanArgs),
    /// Hashes, lists and sets: hset, lpush, sadd, ...
    #[command(flatten)]
    Collection(CollectionCommand),
    /// Batches and the change feed: mget, mset, watch.
    #[command(flatten)]
    Batch(BatchCommand),
    /// Print the number of keys in the namespace.
    Count,
    /// Delete every key of the namespace; prints how many there were.
    Flush {
        /// Confirm: without it nothing is deleted.
        #[arg(long)]
        yes: bool,
    },
    /// Drop the namespace (-n): its keys go and its slot under the
    /// server's namespace limit is free; prints how many keys it held.
    DropNamespace {
        /// Confirm: without it nothing is dropped.
        #[arg(long)]
        yes: bool,
    },
    /// Show per-namespace counters, per-RPC call counts and the
    /// persistence status; of the whole cluster when the server is a
    /// cluster member.
    Stats {
        /// Only the member at --addr, not every member added up.
        #[arg(long)]
        member: bool,
    },
    /// Take a snapshot now (the server needs --persistence snapshot or
    /// log); prints its file name, keys, bytes and time.
    Snapshot,
    /// List the namespaces the server knows, one per line.
    Namespaces,
    /// Show the members of the server's cluster: id, address and whether
    /// each owns keys now (a single server is a cluster of one).
    Cluster,
    /// Generate load and report throughput and latency per test, as
    /// redis-benchmark does.
    ///
    /// Each test sends -n requests with -c in flight over --connections
    /// HTTP/2 connections and prints requests per second (and items per
    /// second for batches) with the p50, p99, p99.9 and maximum latency.
    /// Before get, mget, pipeline and hget it writes the whole key space
    /// (-r keys of -d bytes), so reads hit. With --json, one object per test.
    /// --timeout bounds the wait for the server to be up; the requests
    /// themselves have no deadline.
    Bench(BenchArgs),
}

/// Arguments of `set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// Key to write.
    pub key: String,
    /// Value to store.
    pub value: String,
    /// When the key expires (default: never).
    #[command(flatten)]
    pub expiry: SetExpiry,
    /// When to write at all (default: always).
    #[command(flatten)]
    pub condition: SetCondition,
    /// Print the previous value (or (nil)) instead of OK.
    #[arg(long)]
    pub get: bool,
}

/// Expiry flags of `set`; at most one.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct SetExpiry {
    /// Expire after this many milliseconds.
    #[arg(long, visible_alias = "px", value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub ttl: Option<u64>,
    /// Expire after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub ex: Option<u64>,
    /// Expire at this Unix time, in milliseconds.
    #[arg(long, visible_alias = "pxat", value_name = "UNIX_MS")]
    pub at: Option<u64>,
    /// Keep the key's current expiry.
    #[arg(long)]
    pub keep_ttl: bool,
}

/// Condition flags of `set`; at most one.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct SetCondition {
    /// Write only if the key does not exist.
    #[arg(long)]
    pub nx: bool,
    /// Write only if the key exists.
    #[arg(long)]
    pub xx: bool,
    /// Write only if the key exists at this version (compare-and-set).
    #[arg(long, value_name = "VERSION")]
    pub if_version: Option<u64>,
}

impl SetArgs {
    /// The client options these flags ask for.
    pub fn options(&self) -> SetOptions {
        let e = &self.expiry;
        let expiry = if let Some(ms) = e.ttl {
            Expiry::After(Duration::from_millis(ms))
        } else if let Some(secs) = e.ex {
            Expiry::After(Duration::from_secs(secs))
        } else if let Some(at) = e.at {
            Expiry::At(unix_ms(at))
        } else if e.keep_ttl {
            Expiry::Keep
        } else {
            Expiry::Never
        };
        let c = &self.condition;
        let condition = if c.nx {
            Condition::IfAbsent
        } else if c.xx {
            Condition::IfPresent
        } else if let Some(version) = c.if_version {
            Condition::IfVersion(version)
        } else {
            Condition::Always
        };
        SetOptions {
            expiry,
            condition,
            return_previous: self.get,
        }
    }
}

/// Arguments of `incr` and `decr`.
#[derive(Debug, Args)]
pub struct IncrArgs {
    /// Counter key.
    pub key: String,
    /// Amount to add (incr) or subtract (decr).
    #[arg(default_value_t = 1, allow_negative_numbers = true)]
    pub delta: i64,
    /// Value the counter starts from when it does not exist.
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub initial: Option<i64>,
    /// Expiry in milliseconds, given to the counter only when this command
    /// creates it.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub ttl: Option<u64>,
}

impl IncrArgs {
    /// The expiry for a counter this command creates.
    pub fn expiry(&self) -> Expiry {
        self.ttl
            .map_or(Expiry::Never, |ms| Expiry::After(Duration::from_millis(ms)))
    }
}

/// Arguments of `expire`.
#[derive(Debug, Args)]
pub struct ExpireArgs {
    /// Key whose expiry changes.
    pub key: String,
    /// Time to live in milliseconds.
    #[arg(
        value_name = "MS",
        required_unless_present = "at",
        conflicts_with = "at",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub ms: Option<u64>,
    /// Expire at this Unix time in milliseconds instead; a time in the past
    /// deletes the key.
    #[arg(long, value_name = "UNIX_MS")]
    pub at: Option<u64>,
}

impl ExpireArgs {
    /// The expiry these arguments ask for.
    pub fn expiry(&self) -> Expiry {
        match (self.ms, self.at) {
            (Some(ms), _) => Expiry::After(Duration::from_millis(ms)),
            (None, Some(at)) => Expiry::At(unix_ms(at)),
            // clap requires one of the two.
            (None, None) => Expiry::Never,
        }
    }
}

/// Arguments of `scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Glob pattern as Redis MATCH: *, ?, classes such as [a-z] and [^a], \ escapes
    /// [default: every key].
    pub pattern: Option<String>,
    /// Only keys of this type.
    #[arg(long = "type", value_name = "TYPE")]
    pub key_type: Option<TypeArg>,
    /// Keys fetched per page, 1 to 10000 [default: chosen by the server].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub count: Option<u32>,
    /// Stop after this many keys.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

impl ScanArgs {
    /// The scan these arguments ask for.
    pub fn options(&self) -> ScanOptions {
        ScanOptions {
            pattern: self.pattern.clone(),
            key_type: self.key_type.map(KeyType::from),
            page_size: self.count.unwrap_or(0),
            cursor: None,
            limit: self.limit.unwrap_or(0),
        }
    }
}

/// Key types accepted by `scan --type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TypeArg {
    /// Strings and counters.
    String,
    /// Hashes.
    Hash,
    /// Lists.
    List,
    /// Sets.
    Set,
}

impl From<TypeArg> for KeyType {
    fn from(arg: TypeArg) -> Self {
        match arg {
            TypeArg::String => Self::String,
            TypeArg::Hash => Self::Hash,
            TypeArg::List => Self::List,
            TypeArg::Set => Self::Set,
        }
    }
}

fn unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("shoal").chain(args.iter().copied()))
            .and_then(Cli::validated)
    }

    fn set_options(args: &[&str]) -> SetOptions {
        match parse(args).unwrap().command {
            Command::Set(set) => set.options(),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn set_flags_become_options() {
        assert_eq!(
            set_options(&["set", "k", "v", "--ttl", "1000", "--nx"]),
            SetOptions {
                expiry: Expiry::After(Duration::from_millis(1000)),
                condition: Condition::IfAbsent,
                return_previous: false
            }
        );
        assert_eq!(
            set_options(&["set", "k", "v", "--px", "5"]).expiry,
            Expiry::After(Duration::from_millis(5))
        );
        assert_eq!(
            set_options(&["set", "k", "v", "--ex", "2"]).expiry,
            Expiry::After(Duration::from_secs(2))
        );
        assert_eq!(
            set_options(&["set", "k", "v", "--at", "1500"]).expiry,
            Expiry::At(unix_ms(1500))
        );
        assert_eq!(
            set_options(&["set", "k", "v", "--keep-ttl", "--xx"]).expiry,
            Expiry::Keep
        );
        assert_eq!(
            set_options(&["set", "k", "v", "--xx"]).condition,
            Condition::IfPresent
        );
        assert_eq!(
            set_options(&["set", "k", "v", "--if-version", "7"]).condition,
            Condition::IfVersion(7)
        );
        let plain = set_options(&["set", "k", "v", "--get"]);
        assert_eq!(
            (plain.expiry, plain.condition, plain.return_previous),
            (Expiry::Never, Condition::Always, true)
        );
    }

    #[test]
    fn conflicting_set_flags_are_rejected() {
        for args in [
            &["set", "k", "v", "--nx", "--xx"][..],
            &["set", "k", "v", "--nx", "--if-version", "3"],
            &["set", "k", "v", "--ttl", "10", "--ex", "1"],
            &["set", "k", "v", "--ttl", "10", "--keep-ttl"],
        ] {
            assert_eq!(
                parse(args).unwrap_err().kind(),
                ErrorKind::ArgumentConflict,
                "{args:?}"
            );
        }
        assert_eq!(
            parse(&["set", "k", "v", "--ttl", "0"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = parse(&[
            "get",
            "k",
            "-n",
            "prices",
            "--json",
            "--timeout",
            "0",
            "--addr",
            "cache:1",
        ])
        .unwrap();
        assert_eq!(cli.namespace, "prices");
        assert!(cli.json);
        assert_eq!(cli.deadline(), None);
        assert_eq!(cli.addr, "cache:1");
    }

    #[test]
    fn incr_takes_negative_deltas() {
        let Command::Incr(incr) = parse(&["incr", "c", "-5", "--initial", "-10", "--ttl", "100"])
            .unwrap()
            .command
        else {
            panic!("not incr");
        };
        assert_eq!((incr.delta, incr.initial), (-5, Some(-10)));
        assert_eq!(incr.expiry(), Expiry::After(Duration::from_millis(100)));
        let Command::Decr(decr) = parse(&["decr", "c"]).unwrap().command else {
            panic!("not decr")
        };
        assert_eq!(decr.delta, 1);
    }

    #[test]
    fn expire_needs_a_ttl_or_a_time() {
        let Command::Expire(e) = parse(&["expire", "k", "250"]).unwrap().command else {
            panic!("not expire")
        };
        assert_eq!(e.expiry(), Expiry::After(Duration::from_millis(250)));
        let Command::Expire(e) = parse(&["expire", "k", "--at", "99"]).unwrap().command else {
            panic!("not expire")
        };
        assert_eq!(e.expiry(), Expiry::At(unix_ms(99)));
        assert!(parse(&["expire", "k"]).is_err());
        assert!(parse(&["expire", "k", "5", "--at", "99"]).is_err());
    }

    #[test]
    fn scan_flags_become_options() {
        let Command::Scan(scan) = parse(&[
            "scan", "user:*", "--type", "hash", "--count", "50", "--limit", "7",
        ])
        .unwrap()
        .command
        else {
            panic!("not scan");
        };
        assert_eq!(
            scan.options(),
            ScanOptions {
                pattern: Some("user:*".into()),
                key_type: Some(KeyType::Hash),
                page_size: 50,
                cursor: None,
                limit: 7
            }
        );
        assert!(parse(&["scan", "--type", "zset"]).is_err());
        let Command::Scan(all) = parse(&["scan"]).unwrap().command else {
            panic!("not scan")
        };
        assert_eq!(all.options(), ScanOptions::default());
    }

    #[test]
    fn del_and_describe_need_a_key() {
        assert!(parse(&["del"]).is_err());
        assert!(parse(&["describe"]).is_err());
        assert!(
            matches!(parse(&["delete", "a", "b"]).unwrap().command, Command::Del { keys } if keys.len() == 2)
        );
    }
}
