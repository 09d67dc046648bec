//! Arguments of the hash, list and set subcommands, named as in Redis.

use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Subcommand};
use shoal_client::{Expiry, PushOptions};

use super::Cli;

/// Hash, list and set subcommands. Collections print their elements one
/// per line; hashes, sets and their combinations sorted, lists in order.
#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Set fields of a hash; prints how many are new.
    Hset(HSetArgs),
    /// Print the value of a hash field, or (nil).
    Hget {
        /// Hash key.
        key: String,
        /// Field to read.
        field: String,
    },
    /// Print the values of hash fields, one line each, (nil) for a missing
    /// one.
    Hmget {
        /// Hash key.
        key: String,
        /// Fields to read.
        #[arg(required = true)]
        fields: Vec<String>,
    },
    /// Print every field and value of a hash, sorted by field: one line
    /// each, the field and the value separated by a tab.
    Hgetall {
        /// Hash key.
        key: String,
    },
    /// Print the fields of a hash, sorted.
    Hkeys {
        /// Hash key.
        key: String,
    },
    /// Print the values of a hash, sorted.
    Hvals {
        /// Hash key.
        key: String,
    },
    /// Delete fields of a hash; prints how many existed.
    Hdel {
        /// Hash key.
        key: String,
        /// Fields to delete.
        #[arg(required = true)]
        fields: Vec<String>,
    },
    /// Print the number of fields of a hash.
    Hlen {
        /// Hash key.
        key: String,
    },
    /// Print 1 when a hash field exists, 0 when it does not.
    Hexists {
        /// Hash key.
        key: String,
        /// Field to look for.
        field: String,
    },
    /// Add to an integer hash field, creating it at 0; prints the new value.
    Hincrby {
        /// Hash key.
        key: String,
        /// Counter field.
        field: String,
        /// Amount to add; may be negative.
        #[arg(allow_negative_numbers = true)]
        delta: i64,
    },
    /// Insert values at the head of a list (the last one ends up first);
    /// prints the new length.
    Lpush(PushArgs),
    /// Append values at the tail of a list; prints the new length.
    Rpush(PushArgs),
    /// Remove and print the first element (or (nil)), or the first COUNT.
    Lpop(PopArgs),
    /// Remove and print the last element (or (nil)), or the last COUNT.
    Rpop(PopArgs),
    /// Print the elements between two indexes, both included; negative
    /// indexes count from the end (0 -1 is the whole list).
    Lrange {
        /// List key.
        key: String,
        /// First index.
        #[arg(allow_negative_numbers = true)]
        start: i64,
        /// Last index, included.
        #[arg(allow_negative_numbers = true)]
        stop: i64,
    },
    /// Print the length of a list.
    Llen {
        /// List key.
        key: String,
    },
    /// Keep only the elements between two indexes, both included (-100 -1
    /// keeps the last 100); prints the length left.
    Ltrim {
        /// List key.
        key: String,
        /// First index kept.
        #[arg(allow_negative_numbers = true)]
        start: i64,
        /// Last index kept.
        #[arg(allow_negative_numbers = true)]
        stop: i64,
    },
    /// Print the element at an index (negative counts from the end), or
    /// (nil).
    Lindex {
        /// List key.
        key: String,
        /// Index.
        #[arg(allow_negative_numbers = true)]
        index: i64,
    },
    /// Replace the element at an index; prints OK.
    Lset {
        /// List key.
        key: String,
        /// Index (negative counts from the end).
        #[arg(allow_negative_numbers = true)]
        index: i64,
        /// New element.
        #[arg(allow_negative_numbers = true)]
        value: String,
    },
    /// Remove occurrences of a value: COUNT > 0 from the head, < 0 from the
    /// tail, 0 all; prints how many were removed.
    Lrem {
        /// List key.
        key: String,
        /// How many occurrences, and from which end.
        #[arg(allow_negative_numbers = true)]
        count: i64,
        /// Value to remove.
        #[arg(allow_negative_numbers = true)]
        value: String,
    },
    /// Add members to a set; prints how many are new.
    Sadd(SAddArgs),
    /// Remove members from a set; prints how many were in it.
    Srem {
        /// Set key.
        key: String,
        /// Members to remove.
        #[arg(required = true, allow_negative_numbers = true)]
        members: Vec<String>,
    },
    /// Print the members of a set, sorted.
    Smembers {
        /// Set key.
        key: String,
    },
    /// Print 1 when a value is a member of a set, 0 when it is not.
    Sismember {
        /// Set key.
        key: String,
        /// Value to look for.
        #[arg(allow_negative_numbers = true)]
        member: String,
    },
    /// Print 1 or 0 for each value, one line each: whether it is a member.
    Smismember {
        /// Set key.
        key: String,
        /// Values to look for.
        #[arg(required = true, allow_negative_numbers = true)]
        members: Vec<String>,
    },
    /// Print the number of members of a set.
    Scard {
        /// Set key.
        key: String,
    },
    /// Remove and print a random member (or (nil)), or COUNT of them.
    Spop(PopArgs),
    /// Print a random member (or (nil)), or COUNT of them: distinct when
    /// COUNT is positive, possibly repeated when negative.
    Srandmember {
        /// Set key.
        key: String,
        /// How many members.
        #[arg(allow_negative_numbers = true)]
        count: Option<i64>,
    },
    /// Print the members in every one of the sets, sorted.
    Sinter {
        /// Set keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Print the members in any of the sets, sorted.
    Sunion {
        /// Set keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Print the members of the first set that are in none of the others,
    /// sorted.
    Sdiff {
        /// Set keys; the first minus the others.
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

impl CollectionCommand {
    /// Checks what the argument definitions cannot say: `hset` takes a
    /// value for every field.
    pub fn check(&self) -> Result<(), clap::Error> {
        match self {
            Self::Hset(hset) if hset.fields.len() % 2 != 0 => Err(usage_error(
                "hset",
                ErrorKind::WrongNumberOfValues,
                "every FIELD needs a VALUE",
            )),
            _ => Ok(()),
        }
    }
}

/// A usage error of `subcommand`, shown with its usage line like the
/// errors clap finds itself.
pub(super) fn usage_error(subcommand: &str, kind: ErrorKind, message: &str) -> clap::Error {
    let mut cli = Cli::command();
    cli.build();
    match cli.find_subcommand_mut(subcommand) {
        Some(command) => command.error(kind, message),
        None => cli.error(kind, message),
    }
}

/// Expiry flag of collection writes.
#[derive(Debug, Args)]
pub struct CollectionExpiry {
    /// Expire the key this many milliseconds after the write [default: keep
    /// its expiry].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub ttl: Option<u64>,
}

impl CollectionExpiry {
    /// The expiry the flag asks for: the key's current one without it.
    pub fn expiry(&self) -> Expiry {
        self.ttl
            .map_or(Expiry::Keep, |ms| Expiry::After(Duration::from_millis(ms)))
    }
}

/// Arguments of `hset`.
#[derive(Debug, Args)]
pub struct HSetArgs {
    /// Hash key.
    pub key: String,
    /// Fields and their values, in pairs.
    #[arg(
        required = true,
        num_args = 2..,
        value_names = ["FIELD", "VALUE"],
        allow_negative_numbers = true
    )]
    pub fields: Vec<String>,
    /// When the key expires.
    #[command(flatten)]
    pub expiry: CollectionExpiry,
}

impl HSetArgs {
    /// The (field, value) pairs; [`CollectionCommand::check`] makes sure
    /// none is left without a value.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, String)> {
        self.fields
            .chunks_exact(2)
            .map(|pair| (pair[0].as_str(), pair[1].clone()))
    }
}

/// Arguments of `lpush` and `rpush`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// List key.
    pub key: String,
    /// Values to push.
    #[arg(required = true, allow_negative_numbers = true)]
    pub values: Vec<String>,
    /// Push only if the list exists (Redis LPUSHX, RPUSHX); prints 0 when it
    /// does not.
    #[arg(long, visible_alias = "x")]
    pub xx: bool,
    /// When the key expires.
    #[command(flatten)]
    pub expiry: CollectionExpiry,
}

impl PushArgs {
    /// The client options these flags ask for.
    pub fn options(&self) -> PushOptions {
        PushOptions {
            only_if_exists: self.xx,
            expiry: self.expiry.expiry(),
        }
    }
}

/// Arguments of `lpop`, `rpop` and `spop`.
#[derive(Debug, Args)]
pub struct PopArgs {
    /// Key to pop from.
    pub key: String,
    /// How many to pop; without it, one, printed as (nil) when there is
    /// none.
    #[arg(value_parser = clap::value_parser!(u32).range(1..))]
    pub count: Option<u32>,
}

/// Arguments of `sadd`.
#[derive(Debug, Args)]
pub struct SAddArgs {
    /// Set key.
    pub key: String,
    /// Members to add.
    #[arg(required = true, allow_negative_numbers = true)]
    pub members: Vec<String>,
    /// When the key expires.
    #[command(flatten)]
    pub expiry: CollectionExpiry,
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::super::Command;
    use super::*;

    fn parse(args: &[&str]) -> Result<CollectionCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("shoal").chain(args.iter().copied()))
            .and_then(Cli::validated)?;
        match cli.command {
            Command::Collection(command) => Ok(command),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn hset_takes_field_value_pairs() {
        let CollectionCommand::Hset(hset) =
            parse(&["hset", "k", "f1", "v1", "f2", "-2", "--ttl", "500"]).unwrap()
        else {
            panic!("not hset");
        };
        let pairs: Vec<_> = hset.pairs().collect();
        assert_eq!(pairs, [("f1", "v1".to_owned()), ("f2", "-2".to_owned())]);
        assert_eq!(
            hset.expiry.expiry(),
            Expiry::After(Duration::from_millis(500))
        );
    }

    #[test]
    fn hset_without_a_value_is_rejected() {
        for args in [
            &["hset", "k", "f"][..],
            &["hset", "k", "f1", "v1", "f2"],
            &["hset", "k"],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
            assert!(
                matches!(
                    error.kind(),
                    ErrorKind::WrongNumberOfValues
                        | ErrorKind::TooFewValues
                        | ErrorKind::MissingRequiredArgument
                ),
                "{args:?}: {:?}",
                error.kind()
            );
        }
        let error = parse(&["hset", "k", "f1", "v1", "f2"]).unwrap_err();
        assert!(error.to_string().contains("VALUE"), "{error}");
    }

    #[test]
    fn writes_keep_the_expiry_unless_given_one() {
        let CollectionCommand::Sadd(sadd) = parse(&["sadd", "s", "a", "b"]).unwrap() else {
            panic!("not sadd");
        };
        assert_eq!(sadd.members, ["a", "b"]);
        assert_eq!(sadd.expiry.expiry(), Expiry::Keep);
        let CollectionCommand::Hset(hset) = parse(&["hset", "h", "f", "v"]).unwrap() else {
            panic!("not hset");
        };
        assert_eq!(hset.expiry.expiry(), Expiry::Keep);
    }

    #[test]
    fn list_indexes_may_be_negative() {
        let CollectionCommand::Lrange { key, start, stop } =
            parse(&["lrange", "k", "-100", "-1"]).unwrap()
        else {
            panic!("not lrange");
        };
        assert_eq!((key.as_str(), start, stop), ("k", -100, -1));
        assert!(matches!(
            parse(&["ltrim", "k", "-3", "-1"]).unwrap(),
            CollectionCommand::Ltrim {
                start: -3,
                stop: -1,
                ..
            }
        ));
        assert!(matches!(
            parse(&["lindex", "k", "-1"]).unwrap(),
            CollectionCommand::Lindex { index: -1, .. }
        ));
        assert!(matches!(
            parse(&["lrem", "k", "-2", "v"]).unwrap(),
            CollectionCommand::Lrem { count: -2, .. }
        ));
        assert!(matches!(
            parse(&["srandmember", "s", "-5"]).unwrap(),
            CollectionCommand::Srandmember {
                count: Some(-5),
                ..
            }
        ));
        assert!(matches!(
            parse(&["hincrby", "h", "f", "-7"]).unwrap(),
            CollectionCommand::Hincrby { delta: -7, .. }
        ));
        assert!(parse(&["lrange", "k", "0"]).is_err());
        assert!(parse(&["lrange", "k", "a", "1"]).is_err());
    }

    #[test]
    fn push_flags_become_options() {
        let CollectionCommand::Rpush(push) =
            parse(&["rpush", "k", "a", "b", "--xx", "--ttl", "1000"]).unwrap()
        else {
            panic!("not rpush");
        };
        assert_eq!(push.values, ["a", "b"]);
        assert_eq!(
            push.options(),
            PushOptions::ttl(Duration::from_secs(1)).if_exists()
        );
        let CollectionCommand::Lpush(push) = parse(&["lpush", "k", "a", "--x"]).unwrap() else {
            panic!("not lpush");
        };
        assert_eq!(push.options(), PushOptions::default().if_exists());
        assert!(parse(&["lpush", "k"]).is_err());
    }

    #[test]
    fn pop_counts_are_optional_and_positive() {
        assert!(matches!(
            parse(&["lpop", "k"]).unwrap(),
            CollectionCommand::Lpop(PopArgs { count: None, .. })
        ));
        assert!(matches!(
            parse(&["spop", "k", "3"]).unwrap(),
            CollectionCommand::Spop(PopArgs { count: Some(3), .. })
        ));
        assert!(parse(&["rpop", "k", "0"]).is_err());
        assert!(parse(&["rpop", "k", "-1"]).is_err());
    }

    #[test]
    fn multi_key_commands_need_a_key() {
        for command in ["sinter", "sunion", "sdiff", "hmget", "hdel", "smismember"] {
            assert!(parse(&[command]).is_err(), "{command}");
        }
        assert!(matches!(
            parse(&["sinter", "a", "b"]).unwrap(),
            CollectionCommand::Sinter { keys } if keys == ["a", "b"]
        ));
    }
}
