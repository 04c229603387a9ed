//! An in-memory [`Storage`] for crash tests: every file keeps its live image (what reads see)
//! and its synced image (what survives a crash) apart, and the storage can be told to crash
//! at its N-th write or sync. After a crash every operation fails, and [`FaultStorage::crash_image`]
//! gives the files as a power loss would leave them: the synced image, optionally followed by
//! a torn prefix of the unsynced bytes.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::backend::{LogFile, Storage};

#[derive(Default)]
struct FileImage {
    live: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Default)]
struct State {
    files: BTreeMap<String, Arc<Mutex<FileImage>>>,
    /// Operations (writes and syncs) left before the crash; `None` never crashes.
    ops_until_crash: Option<u64>,
    crashed: bool,
}

/// In-memory storage with crash injection.
#[derive(Clone, Default)]
pub struct FaultStorage {
    state: Arc<Mutex<State>>,
    ops: Arc<AtomicU64>,
}

impl FaultStorage {
    /// Empty storage that never crashes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Crash at the `n`-th write or sync from now (0 = the next one).
    pub fn crash_after(&self, n: u64) {
        self.lock().ops_until_crash = Some(n);
    }

    /// Writes and syncs performed so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Whether the injected crash happened.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// The files as a crash leaves them: each file's synced bytes, plus the first
    /// `torn_bytes` of its unsynced tail (as if some pages reached the disk).
    pub fn crash_image(&self, torn_bytes: usize) -> FaultStorage {
        let state = self.lock();
        let files = state
            .files
            .iter()
            .map(|(name, image)| {
                let image = image.lock().expect("file image lock");
                let mut bytes = image.synced.clone();
                if image.live.len() > bytes.len() && image.live.starts_with(&bytes) {
                    let extra = (image.live.len() - bytes.len()).min(torn_bytes);
                    bytes.extend_from_slice(
                        &image.live[image.synced.len()..image.synced.len() + extra],
                    );
                }
                let file = FileImage {
                    live: bytes.clone(),
                    synced: bytes,
                };
                (name.clone(), Arc::new(Mutex::new(file)))
            })
            .collect();
        FaultStorage {
            state: Arc::new(Mutex::new(State {
                files,
                ..State::default()
            })),
            ops: Arc::new(AtomicU64::new(0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fault storage lock")
    }

    /// Counts one operation; fails if it is the crash point or after it.
    fn tick(&self) -> io::Result<()> {
        let mut state = self.lock();
        if state.crashed {
            return Err(crash_error());
        }
        self.ops.fetch_add(1, Ordering::Relaxed);
        match state.ops_until_crash {
            Some(0) => {
                state.crashed = true;
                Err(crash_error())
            }
            Some(n) => {
                state.ops_until_crash = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.lock().crashed {
            Err(crash_error())
        } else {
            Ok(())
        }
    }
}

fn crash_error() -> io::Error {
    io::Error::other("injected crash")
}

impl Storage for FaultStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        self.check_alive()?;
        Ok(self.lock().files.keys().cloned().collect())
    }

    fn open(&self, name: &str, create: bool) -> io::Result<Arc<dyn LogFile>> {
        self.check_alive()?;
        let mut state = self.lock();
        let image = match state.files.get(name) {
            Some(image) => image.clone(),
            None if create => {
                let image = Arc::new(Mutex::new(FileImage::default()));
                state.files.insert(name.to_owned(), image.clone());
                image
            }
            None => return Err(io::Error::new(io::ErrorKind::NotFound, name.to_owned())),
        };
        Ok(Arc::new(FaultFile {
            storage: self.clone(),
            image,
        }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.check_alive()?;
        self.lock().files.remove(name);
        Ok(())
    }
}

struct FaultFile {
    storage: FaultStorage,
    image: Arc<Mutex<FileImage>>,
}

impl FaultFile {
    fn image(&self) -> std::sync::MutexGuard<'_, FileImage> {
        self.image.lock().expect("file image lock")
    }
}

impl LogFile for FaultFile {
    fn len(&self) -> io::Result<u64> {
        self.storage.check_alive()?;
        Ok(self.image().live.len() as u64)
    }

    fn write_at(&self, pos: u64, buf: &[u8]) -> io::Result<()> {
        let result = self.storage.tick();
        let mut image = self.image();
        let pos = pos as usize;
        // A crashing write lands half of its bytes in the live image (a torn write).
        let len = if result.is_err() {
            buf.len() / 2
        } else {
            buf.len()
        };
        if image.live.len() < pos + len {
            image.live.resize(pos + len, 0);
        }
        image.live[pos..pos + len].copy_from_slice(&buf[..len]);
        result
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        self.storage.check_alive()?;
        let image = self.image();
        let pos = pos as usize;
        let end = pos
            .checked_add(buf.len())
            .filter(|end| *end <= image.live.len());
        match end {
            Some(end) => {
                buf.copy_from_slice(&image.live[pos..end]);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past end",
            )),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        self.storage.tick()?;
        let mut image = self.image();
        image.synced = image.live.clone();
        Ok(())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.storage.check_alive()?;
        let mut image = self.image();
        image.live.truncate(len as usize);
        image.synced.truncate(len as usize);
        Ok(())
    }
}
