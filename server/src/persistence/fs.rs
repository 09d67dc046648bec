//! The file operations persistence needs, behind a trait so that tests can
//! put a faulty file system underneath (see [`super::fault_fs`]).
//!
//! The set is small on purpose: appending, syncing data, whole-file and
//! sequential reads, atomic renames, directory syncs, truncation and
//! removal are all the log, snapshots and manifest do, and each has one
//! meaning a fault model can reproduce.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

/// A file open for appending.
pub trait AppendFile: Send {
    /// Appends `bytes` (to the kernel's cache; nothing is durable yet).
    ///
    /// # Errors
    /// As `write_all`.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable (fdatasync).
    ///
    /// # Errors
    /// As `fdatasync`; after an error the file's unsynced bytes may be
    /// lost whatever a retry reports.
    fn sync_data(&mut self) -> io::Result<()>;
}

/// A file system: the real one ([`OsFileSystem`]) or a test double.
pub trait FileSystem: Send + Sync + 'static {
    /// Creates `path` empty (replacing any file there) for appending. The
    /// new name is durable only after [`FileSystem::sync_dir`].
    ///
    /// # Errors
    /// As `open`.
    fn create(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// The whole content of `path`.
    ///
    /// # Errors
    /// As `read`; `NotFound` when it does not exist.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// `path` opened for reading from its start, so that a large file is
    /// read piece by piece. By default it reads the whole file first, which
    /// a test double, whose files are in memory anyway, can keep.
    ///
    /// # Errors
    /// As [`FileSystem::read`].
    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(io::Cursor::new(self.read(path)?)))
    }
    /// The names of the files in `dir`.
    ///
    /// # Errors
    /// As `read_dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Renames `from` to `to`, replacing `to` atomically; durable after
    /// [`FileSystem::sync_dir`].
    ///
    /// # Errors
    /// As `rename`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes `path`.
    ///
    /// # Errors
    /// As `remove_file`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Cuts `path` to `len` bytes and makes that durable.
    ///
    /// # Errors
    /// As `set_len` and `fdatasync`.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Makes the directory's entries (created, renamed, removed files)
    /// durable (fsync of the directory).
    ///
    /// # Errors
    /// As `fsync`.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates `dir` and its parents if needed.
    ///
    /// # Errors
    /// As `create_dir_all`.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFileSystem;

struct OsFile(File);

impl AppendFile for OsFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl FileSystem for OsFileSystem {
    fn create(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        Ok(Box::new(OsFile(file)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(File::open(path)?))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_data()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
}
