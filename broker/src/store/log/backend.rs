//! The storage trait under the commit log, and its file-system implementation.
//!
//! Every byte of the log goes through [`Storage`] and [`LogFile`], so tests can swap in
//! [`crate::store::log::fault::FaultStorage`], which keeps the synced and the unsynced image apart and
//! crashes at a chosen write or sync.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::warn;

use crate::store::log::direct::DirectAppender;

/// A directory of log segment files.
pub trait Storage: Send + Sync + 'static {
    /// Names of the files present.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Opens a file, creating it when `create` is set (the directory entry is made durable
    /// before this returns).
    fn open(&self, name: &str, create: bool) -> io::Result<Arc<dyn LogFile>>;
    /// Removes a file.
    fn remove(&self, name: &str) -> io::Result<()>;
}

/// One segment file, addressed by byte position.
#[allow(clippy::len_without_is_empty)] // a length that can fail has no useful is_empty
pub trait LogFile: Send + Sync + 'static {
    /// Current length.
    fn len(&self) -> io::Result<u64>;
    /// Writes all of `buf` at `pos`.
    fn write_at(&self, pos: u64, buf: &[u8]) -> io::Result<()>;
    /// Fills `buf` from `pos`; fails if the file ends first.
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Makes every write so far durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Cuts the file to `len` and makes that durable.
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// Called once the segment is full and synced, before the next one starts: cuts what
    /// lies past the written length (direct writes pad the last block) and makes that
    /// durable. A sealed segment is only read.
    fn seal(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Segment files in a directory of the real file system.
#[derive(Debug)]
pub struct FsStorage {
    dir: PathBuf,
    direct: bool,
}

impl FsStorage {
    /// Uses (and creates) `dir`; writes go through the page cache.
    pub fn new(dir: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        Ok(FsStorage { dir, direct: false })
    }

    /// Writes with `O_DIRECT` when `on` (see [`crate::store::log::direct`]); a file system
    /// that refuses it gets buffered writes, with a warning.
    pub fn with_direct_writes(mut self, on: bool) -> Self {
        self.direct = on;
        self
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

impl Storage for FsStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn open(&self, name: &str, create: bool) -> io::Result<Arc<dyn LogFile>> {
        let path = self.dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&path)?;
        if create {
            self.sync_dir()?;
        }
        let direct = self.direct.then(|| Direct {
            len: AtomicU64::new(0),
            state: Mutex::new(DirectState::Unopened),
        });
        if let Some(direct) = &direct {
            direct.len.store(file.metadata()?.len(), Ordering::Release);
        }
        Ok(Arc::new(FsFile { file, path, direct }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.dir.join(name))?;
        self.sync_dir()
    }
}

struct FsFile {
    /// Buffered descriptor: reads, buffered writes, length, sync.
    file: File,
    path: PathBuf,
    /// Set when writes go direct.
    direct: Option<Direct>,
}

/// A segment written with `O_DIRECT`: the file may end in padding, so its length is kept.
struct Direct {
    /// Bytes written (the file's length less the padding of its last block).
    len: AtomicU64,
    state: Mutex<DirectState>,
}

enum DirectState {
    /// No write yet: the `O_DIRECT` descriptor is opened by the first one.
    Unopened,
    Open(DirectAppender),
    /// The file system refused `O_DIRECT`: this file is written through the page cache.
    Refused,
    /// Sealed: no more writes.
    Sealed,
}

impl FsFile {
    fn write_direct(&self, direct: &Direct, pos: u64, buf: &[u8]) -> io::Result<()> {
        let mut state = direct.state.lock().unwrap_or_else(|p| p.into_inner());
        if let DirectState::Unopened = *state {
            *state = match OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(&self.path)
            {
                Ok(fd) => DirectState::Open(DirectAppender::new(fd)),
                Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                    warn!(file = %self.path.display(), "the file system refuses O_DIRECT; writing this segment through the page cache");
                    DirectState::Refused
                }
                Err(err) => return Err(err),
            };
        }
        match &mut *state {
            DirectState::Open(appender) => {
                appender.write_at(pos, buf, |at, out| self.file.read_exact_at(out, at))?
            }
            DirectState::Refused => self.file.write_all_at(buf, pos)?,
            DirectState::Unopened | DirectState::Sealed => {
                return Err(io::Error::other("write to a sealed segment"));
            }
        }
        direct
            .len
            .fetch_max(pos + buf.len() as u64, Ordering::AcqRel);
        Ok(())
    }
}

impl LogFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        match &self.direct {
            Some(direct) => Ok(direct.len.load(Ordering::Acquire)),
            None => Ok(self.file.metadata()?.len()),
        }
    }

    fn write_at(&self, pos: u64, buf: &[u8]) -> io::Result<()> {
        match &self.direct {
            Some(direct) => self.write_direct(direct, pos, buf),
            None => self.file.write_all_at(buf, pos),
        }
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, pos)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()?;
        if let Some(direct) = &self.direct {
            direct.len.store(len, Ordering::Release);
            let mut state = direct.state.lock().unwrap_or_else(|p| p.into_inner());
            if let DirectState::Open(appender) = &mut *state {
                appender.forget_tail();
            }
        }
        Ok(())
    }

    fn seal(&self) -> io::Result<()> {
        let Some(direct) = &self.direct else {
            return Ok(());
        };
        let len = direct.len.load(Ordering::Acquire);
        if self.file.metadata()?.len() != len {
            self.file.set_len(len)?;
            self.file.sync_all()?;
        }
        // Frees the aligned buffer and closes the direct descriptor.
        *direct.state.lock().unwrap_or_else(|p| p.into_inner()) = DirectState::Sealed;
        Ok(())
    }
}
