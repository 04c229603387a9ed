//! The storage trait under the commit log, and its file-system implementation.
//!
//! Every byte of the log goes through [`Storage`] and [`LogFile`], so tests can swap in
//! [`crate::store::log::fault::FaultStorage`], which keeps the synced and the unsynced image apart and
//! crashes at a chosen write or sync.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

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
}

/// Segment files in a directory of the real file system.
#[derive(Debug)]
pub struct FsStorage {
    dir: PathBuf,
}

impl FsStorage {
    /// Uses (and creates) `dir`.
    pub fn new(dir: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        Ok(FsStorage { dir })
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
        Ok(Arc::new(FsFile { file }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.dir.join(name))?;
        self.sync_dir()
    }
}

struct FsFile {
    file: File,
}

impl LogFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn write_at(&self, pos: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, pos)
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, pos)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()
    }
}
