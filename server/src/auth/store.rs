//! The token file in force, read again when it changes or on SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};

use super::AuthError;
use super::token_file::TokenSet;

/// What tells a changed file from the one last read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(Self {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(&metadata),
        })
    }
}

/// The tokens of one file, swapped whole when the file is read again.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    current: RwLock<Arc<TokenSet>>,
    /// How many times a file was put in force; what a verification
    /// memoised on a connection was made against.
    generation: AtomicU64,
    /// The stamp of the file last tried, good or bad, so that a bad file
    /// is reported once rather than at every poll.
    tried: Mutex<Option<FileStamp>>,
}

impl TokenStore {
    /// Reads the token file at `path`.
    ///
    /// # Errors
    /// [`AuthError::Read`] or [`AuthError::Invalid`]: a server must not
    /// start with a token file it cannot use.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, AuthError> {
        let path = path.into();
        let stamp = FileStamp::of(&path);
        let set = read(&path)?;
        Ok(Self {
            path,
            current: RwLock::new(Arc::new(set)),
            generation: AtomicU64::new(0),
            tried: Mutex::new(stamp),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` over the tokens in force.
    pub fn with_current<R>(&self, f: impl FnOnce(&TokenSet) -> R) -> R {
        f(&self.current.read())
    }

    /// The generation of the tokens in force: it changes whenever a file is
    /// put in force, so a result computed under an older one is stale.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Runs `f` over the tokens in force and their generation.
    pub fn with_current_generation<R>(&self, f: impl FnOnce(&TokenSet, u64) -> R) -> R {
        let current = self.current.read();
        f(&current, self.generation.load(Ordering::Acquire))
    }

    /// Reads the file again and puts its tokens in force; on failure, keeps
    /// the tokens in force and logs one line saying why.
    ///
    /// # Errors
    /// Why the file could not be used.
    pub fn reload(&self) -> Result<(), AuthError> {
        *self.tried.lock() = FileStamp::of(&self.path);
        match read(&self.path) {
            Ok(set) => {
                tracing::info!(
                    path = %self.path.display(),
                    tokens = set.tokens(),
                    certificates = set.certificates(),
                    "token file read"
                );
                let mut current = self.current.write();
                *current = Arc::new(set);
                self.generation.fetch_add(1, Ordering::AcqRel);
                drop(current);
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "token file not reloaded; the previous tokens stay in force");
                Err(error)
            }
        }
    }

    /// Reloads if the file changed since it was last tried.
    pub fn reload_if_changed(&self) {
        let stamp = FileStamp::of(&self.path);
        if *self.tried.lock() != stamp {
            let _ = self.reload();
        }
    }
}

fn read(path: &Path) -> Result<TokenSet, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    TokenSet::parse(&text).map_err(|reason| AuthError::Invalid {
        path: path.to_path_buf(),
        reason,
    })
}

/// Reloads `store` when its file changes (checked every `interval`) and on
/// SIGHUP, until the task is aborted.
pub async fn watch_token_file(store: Arc<TokenStore>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    #[cfg(unix)]
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; the token file is only polled");
            None
        }
    };
    loop {
        #[cfg(unix)]
        {
            let hangup = async {
                match hangups.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = ticks.tick() => store.reload_if_changed(),
                _ = hangup => {
                    let _ = store.reload();
                }
            }
        }
        #[cfg(not(unix))]
        {
            ticks.tick().await;
            store.reload_if_changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::secret::{digest_hex, secret_digest};

    fn stanza(id: &str, secret: &str) -> String {
        format!(
            "[[token]]\nid = \"{id}\"\nsha256 = \"{}\"\n",
            digest_hex(&secret_digest(secret.as_bytes()))
        )
    }

    #[test]
    fn reloads_keep_the_old_tokens_when_the_file_is_bad() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, stanza("a", "secret-a")).unwrap();
        let store = TokenStore::load(&path).unwrap();
        let known = |secret: &str| {
            store.with_current(|set| {
                set.authenticate(secret.as_bytes(), SystemTime::now())
                    .is_ok()
            })
        };
        assert!(known("secret-a"));

        std::fs::write(&path, stanza("b", "secret-b")).unwrap();
        store.reload().unwrap();
        assert!(known("secret-b"));
        assert!(!known("secret-a"), "a removed token stops working");

        std::fs::write(&path, "[[token]]\nid = 5").unwrap();
        assert!(store.reload().is_err());
        assert!(known("secret-b"), "a bad file changes nothing");

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(store.reload(), Err(AuthError::Read { .. })));
        assert!(known("secret-b"));
    }

    #[test]
    fn a_server_does_not_start_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, "[[token]]\nid = \"a\"\nsha256 = \"short\"").unwrap();
        let error = TokenStore::load(&path).unwrap_err();
        assert!(error.to_string().contains("sha256 must be 64 hex digits"));
        assert!(TokenStore::load(dir.path().join("missing.toml")).is_err());
    }
}
