//! Arguments of the batch and watch subcommands.

use clap::error::ErrorKind;
use clap::{CommandFactory, Subcommand};

use super::Cli;

/// Many keys per call, and the change feed.
#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Print the values of string keys, one line each, (nil) for a missing
    /// one and (error) for a key that cannot be read; over GetBatch.
    Mget {
        /// Keys to read.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Store string values that never expire; prints OK, or the failures.
    /// Over SetBatch.
    Mset {
        /// Keys and values, alternating: KEY VALUE [KEY VALUE ...].
        #[arg(required = true, value_name = "KEY VALUE")]
        pairs: Vec<String>,
    },
    /// Follow the namespace's changes, one line per event: KIND KEY
    /// VERSION. Runs until interrupted, or until --count events.
    Watch {
        /// Only keys starting with this prefix (repeat for more).
        #[arg(long = "prefix", value_name = "PREFIX")]
        prefixes: Vec<String>,
        /// Stop after this many events (heartbeats included).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Heartbeat interval in milliseconds when the feed is quiet.
        #[arg(long, value_name = "MS")]
        heartbeat: Option<u64>,
    },
}

impl BatchCommand {
    /// Checks clap cannot make: `mset` needs a value for every key.
    pub fn check(&self) -> Result<(), clap::Error> {
        if let Self::Mset { pairs } = self
            && pairs.len() % 2 != 0
        {
            return Err(Cli::command().error(
                ErrorKind::WrongNumberOfValues,
                "mset takes KEY VALUE pairs: the last key has no value",
            ));
        }
        Ok(())
    }
}
