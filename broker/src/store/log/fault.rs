//! An in-memory [`Storage`] for crash tests: every file keeps its live image (what reads see)
//! and its synced image (what survives a crash) apart, and the storage can be told to crash
//! at its N-th write or sync. After a crash every operation fails, and [`FaultStorage::crash_image`]
//! gives the files as a power loss would leave them: the synced image, optionally followed by
//! a torn prefix of the unsynced bytes.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::store::log::backend::{LogFile, Storage};

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
    /// Operations left before one that fails while the disk keeps working.
    ops_until_failure: Option<u64>,
    crashed: bool,
}

/// Holds writes and syncs at their start while set (see [`FaultStorage::hold`]).
#[derive(Default)]
struct Gate {
    held: Mutex<GateState>,
    released: Condvar,
}

#[derive(Default)]
struct GateState {
    held: bool,
    waiting: u64,
}

/// In-memory storage with crash injection.
#[derive(Clone, Default)]
pub struct FaultStorage {
    state: Arc<Mutex<State>>,
    ops: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
    gate: Arc<Gate>,
    /// Microseconds each write takes (a slow disk); 0 = none.
    write_latency_us: Arc<AtomicU64>,
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

    /// Fail the `n`-th write or sync from now (0 = the next one) once, without a crash:
    /// the operation changes nothing and every later one works, like a transient EIO.
    pub fn fail_once_after(&self, n: u64) {
        self.lock().ops_until_failure = Some(n);
    }

    /// Makes every write and sync wait at its start until [`FaultStorage::release`].
    pub fn hold(&self) {
        self.gate.held.lock().expect("gate lock").held = true;
    }

    /// Lets held writes and syncs go on.
    pub fn release(&self) {
        self.gate.held.lock().expect("gate lock").held = false;
        self.gate.released.notify_all();
    }

    /// Writes and syncs waiting at the gate now.
    pub fn waiting(&self) -> u64 {
        self.gate.held.lock().expect("gate lock").waiting
    }

    /// Makes every write take `latency`, like a slow disk.
    pub fn set_write_latency(&self, latency: std::time::Duration) {
        self.write_latency_us
            .store(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// Reads performed so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
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
            reads: Arc::new(AtomicU64::new(0)),
            gate: Arc::new(Gate::default()),
            write_latency_us: Arc::new(AtomicU64::new(0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fault storage lock")
    }

    /// Counts one operation; fails if it is the crash point or after it, or the one
    /// injected failure.
    fn tick(&self) -> io::Result<()> {
        self.pass_gate();
        let mut state = self.lock();
        if state.crashed {
            return Err(crash_error());
        }
        self.ops.fetch_add(1, Ordering::Relaxed);
        match state.ops_until_failure {
            Some(0) => {
                state.ops_until_failure = None;
                return Err(io::Error::other("injected I/O error"));
            }
            Some(n) => state.ops_until_failure = Some(n - 1),
            None => {}
        }
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

    fn pass_gate(&self) {
        let mut gate = self.gate.held.lock().expect("gate lock");
        if gate.held {
            gate.waiting += 1;
            while gate.held {
                gate = self.gate.released.wait(gate).expect("gate lock");
            }
            gate.waiting -= 1;
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
        let latency = self.storage.write_latency_us.load(Ordering::Relaxed);
        if latency > 0 {
            std::thread::sleep(std::time::Duration::from_micros(latency));
        }
        let result = self.storage.tick();
        if result.is_err() && !self.storage.crashed() {
            return result; // an injected failure: nothing written
        }
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
        self.storage.reads.fetch_add(1, Ordering::Relaxed);
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

/// An in-memory redb backend whose writes and syncs fail once told to, for tests of a
/// failing index database.
#[derive(Debug, Default)]
pub struct FailingIndex {
    inner: redb::backends::InMemoryBackend,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl FailingIndex {
    /// A working backend and the switch that makes it fail.
    pub fn new() -> (Self, Arc<std::sync::atomic::AtomicBool>) {
        let index = FailingIndex::default();
        let switch = index.failing.clone();
        (index, switch)
    }

    fn check(&self) -> io::Result<()> {
        if self.failing.load(Ordering::Relaxed) {
            Err(io::Error::other("injected index I/O error"))
        } else {
            Ok(())
        }
    }
}

impl redb::StorageBackend for FailingIndex {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }
}
