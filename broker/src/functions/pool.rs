//! The threads that run function calls: tokio runtimes of their own, so a busy function
//! never runs on the threads that serve QUIC. Calls yield every epoch tick (10 ms), so the
//! functions of a broker share these threads fairly; each function also has its own cap on
//! calls at once (`instances`).
//!
//! Two sets of threads: calls of well-behaved functions run at the broker's priority, so
//! they start at once; a function whose last call failed (a trap, a loop out of fuel or
//! time) or ran long (past [`SLOW_CALL`]: heavy work) has its next call run on threads of
//! the lowest priority (nice 19), which get the CPU when the broker's own threads do not
//! want it. A call there that runs past its wall-clock deadline (which counts waiting for
//! the CPU) runs again at the broker's priority before anything is charged, so a busy
//! machine does not dead-letter healthy messages (a loop still ends by fuel). On one core, beside a looping
//! function, W1's p99 was 0.6-0.7 ms without it, 4.5 ms with it at the broker's priority,
//! 2.3-2.8 ms at nice 10 and 0.84-0.99 ms at nice 19; but all calls at nice 19 took an
//! in-broker handler's latency at 10k msg/s from 2.4 to 69 ms (p50), hence two sets
//! (2026-12-03).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};

/// A call longer than this sends its function's next calls to the low-priority threads.
pub const SLOW_CALL: Duration = Duration::from_millis(10);
/// Nice value of the low-priority threads.
const SLOW_THREAD_NICE: i32 = 19;

/// The call threads.
pub struct CallPool {
    fast: Handle,
    slow: Handle,
    runtimes: Mutex<Vec<Runtime>>,
}

fn runtime(threads: usize, name: &str, nice: Option<i32>) -> Result<Runtime, String> {
    let mut builder = Builder::new_multi_thread();
    builder
        .worker_threads(threads)
        .max_blocking_threads(threads)
        .thread_name(name)
        .enable_time();
    if let Some(nice) = nice {
        builder.on_thread_start(move || {
            if let Err(err) = quiver_net::process::lower_thread_priority(nice) {
                tracing::warn!("cannot lower a function thread's priority: {err}");
            }
        });
    }
    builder
        .build()
        .map_err(|err| format!("cannot start the function threads: {err}"))
}

impl CallPool {
    /// `threads` threads of each priority (0: one per core).
    pub fn new(threads: usize) -> Result<Self, String> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        let fast = runtime(threads, "quiver-fn", None)?;
        let slow = runtime(threads, "quiver-fn-slow", Some(SLOW_THREAD_NICE))?;
        Ok(CallPool {
            fast: fast.handle().clone(),
            slow: slow.handle().clone(),
            runtimes: Mutex::new(vec![fast, slow]),
        })
    }

    /// Runs `call` on the pool (the low-priority threads when `slow`) and waits for it.
    /// `None` when the pool is stopped or the call panicked (a host bug: the runner treats
    /// it as a failed call).
    pub async fn run<T: Send + 'static>(
        &self,
        slow: bool,
        call: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let handle = if slow { &self.slow } else { &self.fast };
        handle.spawn(call).await.ok()
    }

    /// Stops the threads without waiting for calls in progress (each is bounded by its
    /// deadline; nothing waits on their results any more).
    pub fn stop(&self) {
        let runtimes =
            std::mem::take(&mut *self.runtimes.lock().unwrap_or_else(|p| p.into_inner()));
        for runtime in runtimes {
            runtime.shutdown_background();
        }
    }
}

impl Drop for CallPool {
    fn drop(&mut self) {
        self.stop();
    }
}
