//! The `[persistence]` settings, parsed and checked; the server's
//! [`Config`](crate::config::Config) holds them as `persistence`.
//!
//! ```
//! use shoal_server::persistence::settings::{PersistenceMode, PersistenceSettings};
//! use shoal_server::persistence::FsyncPolicy;
//!
//! let settings: PersistenceSettings =
//!     toml::from_str("mode = \"log\"\nfsync = \"always\"\ndata_dir = \"/var/lib/shoal\"").unwrap();
//! assert_eq!(settings.mode, PersistenceMode::Log);
//! assert_eq!(settings.fsync, FsyncPolicy::Always);
//! settings.validate().unwrap();
//! assert_eq!(PersistenceSettings::default().mode, PersistenceMode::Off);
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::writer::{DEFAULT_SEGMENT_BYTES, FsyncPolicy};
use crate::config::ConfigError;

/// What survives a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersistenceMode {
    /// Nothing: a restart starts empty, as the README's first command
    /// expects.
    #[default]
    Off,
    /// Snapshots only: a restart loses the writes since the last one.
    Snapshot,
    /// Snapshots and the log: a write is answered once its record reached
    /// the kernel, or the disk with `fsync = "always"`.
    Log,
}

/// The `[persistence]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PersistenceSettings {
    /// What survives a restart.
    pub mode: PersistenceMode,
    /// When the log reaches the disk (with `mode = "log"`).
    pub fsync: FsyncPolicy,
    /// Where the files live; required unless `mode = "off"`.
    pub data_dir: Option<PathBuf>,
    /// Size at which a log segment is closed and the next begun.
    pub segment_bytes: u64,
    /// Time between snapshots, written `"30s"`, `"5m"` or `"1h"` (a bare
    /// number is seconds); `"0"` takes none on a timer.
    #[serde(deserialize_with = "interval_setting")]
    pub snapshot_interval: Duration,
    /// Log bytes written since the last snapshot that trigger the next one
    /// (with `mode = "log"`; a snapshot is what lets old segments go); 0
    /// for none on log growth.
    pub snapshot_log_bytes: u64,
}

/// Default [`PersistenceSettings::snapshot_interval`]: a restart in
/// snapshot mode loses at most about this much.
pub const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(300);
/// Default [`PersistenceSettings::snapshot_log_bytes`]: the log a restart
/// replays beyond the snapshot stays around this size.
pub const DEFAULT_SNAPSHOT_LOG_BYTES: u64 = 256 * 1024 * 1024;

/// Parses an interval such as `"90s"`, `"5m"`, `"1h"` or `"300"` (seconds).
///
/// ```
/// use std::time::Duration;
/// use shoal_server::persistence::settings::parse_interval;
///
/// assert_eq!(parse_interval("5m"), Ok(Duration::from_secs(300)));
/// assert_eq!(parse_interval("0"), Ok(Duration::ZERO));
/// assert!(parse_interval("5 minutes").is_err());
/// ```
///
/// # Errors
/// A message saying the form expected.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(count) if scale > 0 => Ok(Duration::from_secs(count.saturating_mul(scale))),
        _ => Err(format!(
            "{text:?} is not an interval: write a whole number of seconds, minutes or hours \
             such as \"30s\", \"5m\" or \"1h\""
        )),
    }
}

fn interval_setting<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Interval {
        Seconds(u64),
        Text(String),
    }
    match Interval::deserialize(deserializer)? {
        Interval::Seconds(secs) => Ok(Duration::from_secs(secs)),
        Interval::Text(text) => parse_interval(&text)
            .map_err(|error| serde::de::Error::custom(format!("snapshot_interval: {error}"))),
    }
}

impl Default for PersistenceSettings {
    fn default() -> Self {
        Self {
            mode: PersistenceMode::Off,
            fsync: FsyncPolicy::Everysec,
            data_dir: None,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            snapshot_interval: DEFAULT_SNAPSHOT_INTERVAL,
            snapshot_log_bytes: DEFAULT_SNAPSHOT_LOG_BYTES,
        }
    }
}

/// Smallest segment size accepted: below it a segment holds a handful of
/// records and the log spends its time creating files.
pub const MIN_SEGMENT_BYTES: u64 = 64 * 1024;

impl PersistenceSettings {
    /// Checks the settings together.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the setting: a mode other than off
    /// without a data directory, an empty directory, or a segment size
    /// under [`MIN_SEGMENT_BYTES`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| {
            Err(ConfigError::Invalid {
                setting,
                reason: reason.to_string(),
            })
        };
        match &self.data_dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                return invalid(
                    "persistence.data_dir",
                    "must not be empty; leave it out with mode = \"off\"",
                );
            }
            None if self.mode != PersistenceMode::Off => {
                return invalid(
                    "persistence.data_dir",
                    "is required when persistence.mode is snapshot or log",
                );
            }
            _ => {}
        }
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            return invalid("persistence.segment_bytes", "must be at least 65536");
        }
        if self.snapshot_interval > Duration::from_secs(7 * 24 * 3600) {
            return invalid(
                "persistence.snapshot_interval",
                "must be at most 168h (a week)",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PersistenceSettings, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn off_by_default_and_everysec() {
        let settings = parse("").expect("empty section");
        assert_eq!(settings, PersistenceSettings::default());
        assert_eq!(settings.mode, PersistenceMode::Off);
        assert_eq!(settings.fsync, FsyncPolicy::Everysec);
        settings.validate().expect("valid");
    }

    #[test]
    fn bad_settings_name_themselves() {
        for (text, setting) in [
            ("mode = \"log\"", "persistence.data_dir"),
            (
                "mode = \"snapshot\"\ndata_dir = \"\"",
                "persistence.data_dir",
            ),
            (
                "mode = \"log\"\ndata_dir = \"/d\"\nsegment_bytes = 10",
                "persistence.segment_bytes",
            ),
        ] {
            match parse(text).expect("parses").validate() {
                Err(ConfigError::Invalid { setting: named, .. }) => assert_eq!(named, setting),
                other => panic!("{text}: {other:?}"),
            }
        }
        let settings =
            parse("snapshot_interval = \"90s\"\nsnapshot_log_bytes = 0").expect("parses");
        assert_eq!(settings.snapshot_interval, Duration::from_secs(90));
        assert_eq!(
            parse("snapshot_interval = 60")
                .expect("parses")
                .snapshot_interval
                .as_secs(),
            60
        );
        for text in [
            "mode = \"aof\"",
            "fsync = \"sometimes\"",
            "dir = \"/d\"",
            "snapshot_interval = \"5 minutes\"",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
