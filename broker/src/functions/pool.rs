//! The threads that run function calls: a tokio runtime of their own, so a busy function
//! never runs on the threads that serve QUIC. Calls yield every epoch tick (10 ms), so the
//! functions of a broker share these threads fairly; each function also has its own cap on
//! calls at once (`instances`).

use std::future::Future;
use std::sync::Mutex;

use tokio::runtime::{Builder, Handle, Runtime};

/// The call threads.
pub struct CallPool {
    handle: Handle,
    runtime: Mutex<Option<Runtime>>,
}

impl CallPool {
    /// `threads` threads (0: one per core).
    pub fn new(threads: usize) -> Result<Self, String> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads)
            .max_blocking_threads(threads)
            .thread_name("quiver-fn")
            .enable_time()
            .build()
            .map_err(|err| format!("cannot start the function threads: {err}"))?;
        Ok(CallPool {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
        })
    }

    /// Runs `call` on the pool and waits for it. `None` when the pool is stopped or the
    /// call panicked (a host bug: the runner treats it as a failed call).
    pub async fn run<T: Send + 'static>(
        &self,
        call: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        self.handle.spawn(call).await.ok()
    }

    /// Stops the threads without waiting for calls in progress (each is bounded by its
    /// deadline; nothing waits on their results any more).
    pub fn stop(&self) {
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }
}

impl Drop for CallPool {
    fn drop(&mut self) {
        self.stop();
    }
}
