//! Why a command failed, and how that reads on the terminal.

use std::{fmt, io};

use shoal_client::Error;

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The server or the connection failed.
    Client(Error),
    /// The command was refused before anything was sent.
    Usage(String),
    /// Writing the output failed.
    Io(io::Error),
    /// A benchmark could not run, or some of its requests failed.
    Bench(String),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::Client(error)
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Client(error) => {
                let mut message = error.to_string();
                let mut source = std::error::Error::source(error);
                while let Some(cause) = source {
                    let cause_text = cause.to_string();
                    if !message.contains(&cause_text) {
                        message.push_str(": ");
                        message.push_str(&cause_text);
                    }
                    source = cause.source();
                }
                let code = format!("{:?}", error.code());
                if message.starts_with(&code) {
                    f.write_str(&message)
                } else {
                    write!(f, "{message} ({code})")
                }
            }
            Self::Usage(message) | Self::Bench(message) => f.write_str(message),
            Self::Io(error) => write!(f, "cannot write output: {error}"),
        }
    }
}
