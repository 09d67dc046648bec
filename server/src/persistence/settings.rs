//! The `[persistence]` settings, parsed and checked; the server's
//! configuration does not read them yet (see the Status in [`super`]).
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
}

impl Default for PersistenceSettings {
    fn default() -> Self {
        Self {
            mode: PersistenceMode::Off,
            fsync: FsyncPolicy::Everysec,
            data_dir: None,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
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
        for text in ["mode = \"aof\"", "fsync = \"sometimes\"", "dir = \"/d\""] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
