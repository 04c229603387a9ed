//! The log writer's I/O loop: one thread that drains every waiting send, has the
//! [`Assembler`] encode them, writes them with one append and one `fdatasync` (group
//! commit), then acknowledges them and hands their index entries to the dispatcher. In sync
//! mode nothing is acknowledged before its bytes are synced.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Instant;

use quiver_proto::SendMessage;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tracing::error;

use crate::clock::now_ms;
use crate::store::config::FlushMode;
use crate::store::index::dispatcher::DispatchMsg;
use crate::store::log::assemble::Assembler;
use crate::store::log::backend::LogFile;
use crate::store::log::gate::{AckGate, Positions};
use crate::store::{Appended, Shared, StoreError};

/// Most bytes one group commit gathers before writing.
const GROUP_BYTES_MAX: usize = 8 << 20;
/// Most sends one group commit gathers.
const GROUP_JOBS_MAX: usize = 4096;

/// One send request waiting for the writer.
pub(in crate::store) struct Job {
    pub(in crate::store) topic_id: u32,
    pub(in crate::store) queue_id: u32,
    pub(in crate::store) messages: Vec<SendMessage>,
    pub(in crate::store) bytes: usize,
    pub(in crate::store) reply: oneshot::Sender<Result<Appended, StoreError>>,
    /// Holds the job's share of the in-flight byte budget until it is answered.
    pub(in crate::store) _permit: OwnedSemaphorePermit,
}

/// What the writer thread receives.
pub(in crate::store) enum WriterMsg {
    Append(Job),
    /// Sync what is written, then stop.
    Shutdown(oneshot::Sender<()>),
}

pub(in crate::store) struct Writer {
    pub(in crate::store) shared: Arc<Shared>,
    pub(in crate::store) rx: Receiver<WriterMsg>,
    pub(in crate::store) dispatch: SyncSender<DispatchMsg>,
    pub(in crate::store) assembler: Assembler,
    /// Acknowledgements wait here until their send's end is durable.
    pub(in crate::store) gate: AckGate<Pending>,
    /// How far the log is written and synced.
    pub(in crate::store) positions: Positions,
    pub(in crate::store) active_base: u64,
    pub(in crate::store) active: Arc<dyn LogFile>,
    pub(in crate::store) active_len: u64,
    pub(in crate::store) unsynced_since: Option<Instant>,
    pub(in crate::store) buf: Vec<u8>,
    /// Broker time of the newest record this writer put in the active segment (`None`
    /// before the first one, e.g. right after a restart: retention then reads the segment).
    pub(in crate::store) active_newest_ms: Option<u64>,
}

pub(in crate::store) struct Pending {
    reply: oneshot::Sender<Result<Appended, StoreError>>,
    response: Appended,
}

impl Writer {
    pub(in crate::store) fn run(mut self) {
        loop {
            let msg = match self.unsynced_since {
                Some(since) => {
                    let deadline = since + self.shared.config.flush_interval;
                    match self
                        .rx
                        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    {
                        Ok(msg) => msg,
                        Err(RecvTimeoutError::Timeout) => {
                            self.sync_async_mode();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match self.rx.recv() {
                    Ok(msg) => msg,
                    Err(_) => break,
                },
            };
            let mut jobs = Vec::new();
            let mut shutdown = None;
            match msg {
                WriterMsg::Append(job) => jobs.push(job),
                WriterMsg::Shutdown(done) => shutdown = Some(done),
            }
            let mut bytes = jobs.iter().map(|j| j.bytes).sum::<usize>();
            while shutdown.is_none() && bytes < GROUP_BYTES_MAX && jobs.len() < GROUP_JOBS_MAX {
                match self.rx.try_recv() {
                    Ok(WriterMsg::Append(job)) => {
                        bytes += job.bytes;
                        jobs.push(job);
                    }
                    Ok(WriterMsg::Shutdown(done)) => shutdown = Some(done),
                    Err(_) => break,
                }
            }
            if !jobs.is_empty() {
                self.commit_group(jobs);
            }
            // A saturated writer never waits, so the interval is also checked here: async
            // mode syncs at least every `flush_interval` whatever the load.
            if self
                .unsynced_since
                .is_some_and(|since| since.elapsed() >= self.shared.config.flush_interval)
            {
                self.sync_async_mode();
            }
            if let Some(done) = shutdown {
                self.close();
                let _ = done.send(());
                return;
            }
        }
        self.close();
    }

    /// Syncs what is written and cuts direct writes' padding, so a clean restart finds no
    /// torn tail.
    fn close(&mut self) {
        self.sync_async_mode();
        if self.shared.log_fence.get().is_none()
            && let Err(err) = self.active.seal()
        {
            self.fence(&err.into());
        }
    }

    /// Appends every job as one write, syncs (sync mode), acknowledges, dispatches.
    fn commit_group(&mut self, jobs: Vec<Job>) {
        if let Some(reason) = self.shared.fenced() {
            for job in jobs {
                let _ = job.reply.send(Err(StoreError::Fenced(reason.clone())));
            }
            return;
        }
        let stored_ms = now_ms();
        let mut entries = Vec::new();
        let mut pending: Vec<Pending> = Vec::with_capacity(jobs.len());
        let mut n_msgs = 0u64;
        self.buf.clear();
        let mut result = Ok(());
        let mut unplaced = Vec::new();
        let mut jobs = jobs.into_iter();
        for job in jobs.by_ref() {
            let job_bytes = job.bytes; // the records' encoded length, summed when the send was checked
            let segment_bytes = self.shared.config.segment_bytes.as_u64();
            let used = self.active_len + self.buf.len() as u64;
            if used > 0 && used + job_bytes as u64 > segment_bytes {
                // A failed roll may have written part of the group: stop here, and answer
                // this job and the ones before it "outcome unknown".
                if let Err(err) = self.roll() {
                    result = Err(err);
                    unplaced.push(job);
                    break;
                }
            }
            let out_pos = self.active_base + self.active_len;
            let response = self.assembler.place(
                (job.topic_id, job.queue_id),
                &job.messages,
                stored_ms,
                (&mut self.buf, out_pos),
                &mut entries,
            );
            self.active_newest_ms = Some(stored_ms);
            n_msgs += job.messages.len() as u64;
            pending.push(Pending {
                reply: job.reply,
                response,
            });
        }
        if result.is_ok() {
            result = self.write_buf();
        }
        let end = self.active_base + self.active_len;
        if result.is_ok() {
            self.positions.written = end;
            for p in pending.drain(..) {
                self.gate.hold(end, p);
            }
            // The gate decides: async flush answers here, sync flush after the sync below.
            self.answer_durable();
            if self.shared.config.flush == FlushMode::Sync {
                result = self.sync();
            }
        }
        if let Err(err) = result {
            self.fence(&err);
            let reason = err.to_string();
            for p in self.gate.drain().into_iter().chain(pending) {
                let _ = p
                    .reply
                    .send(Err(StoreError::OutcomeUnknown(reason.clone())));
            }
            // Jobs from a failed roll on were never written.
            let fence = self.shared.fenced().unwrap_or_default();
            for job in unplaced.into_iter().chain(jobs) {
                let _ = job.reply.send(Err(StoreError::Fenced(fence.clone())));
            }
            return;
        }
        self.answer_durable();
        let stats = &self.shared.stats;
        stats.msgs_appended.fetch_add(n_msgs, Ordering::Relaxed);
        stats.appends.fetch_add(1, Ordering::Relaxed);
        // Blocks when the dispatcher is far behind: back-pressure instead of unbounded memory.
        let _ = self.dispatch.send(DispatchMsg::Batch { end, entries });
    }

    /// Answers every acknowledgement the gate releases. The acknowledged end moves first, so
    /// a read that starts after an answer waits for the index to cover that send.
    fn answer_durable(&mut self) {
        let released = self.gate.release(&self.positions);
        if released.is_empty() {
            return;
        }
        let durable = self.gate.durable_upto(&self.positions);
        self.shared
            .stats
            .log_end
            .fetch_max(durable, Ordering::Release);
        for p in released {
            let _ = p.reply.send(Ok(p.response));
        }
    }

    /// After a failed write or sync nothing more reaches the log until restart: after a failed
    /// `fdatasync` the kernel may have dropped the dirty pages, so a later sync that succeeds
    /// proves nothing about them.
    fn fence(&mut self, err: &StoreError) {
        error!(cause = %err, "commit log write or sync failed; refusing writes until restart");
        self.shared.fence_log(err.to_string());
    }

    fn write_buf(&mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.active.write_at(self.active_len, &self.buf)?;
        self.shared
            .log
            .remember(self.active_base + self.active_len, &self.buf);
        self.active_len += self.buf.len() as u64;
        self.shared
            .stats
            .bytes_written
            .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        self.buf.clear();
        if self.unsynced_since.is_none() {
            self.unsynced_since = Some(Instant::now());
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.active.sync_data()?;
        self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.unsynced_since = None;
        // Everything written is durable now; a roll syncs before the next segment starts.
        self.positions.synced = self.active_base + self.active_len;
        self.shared.synced.send_replace(self.positions.synced);
        Ok(())
    }

    /// Writes what is buffered, syncs the full segment, starts the next one.
    fn roll(&mut self) -> Result<(), StoreError> {
        self.write_buf()?;
        self.sync()?;
        self.active.seal()?;
        if let Some(newest_ms) = self.active_newest_ms.take() {
            self.shared
                .set_segment_newest_ms(self.active_base, newest_ms);
        }
        let base = self.active_base + self.active_len;
        self.active = self.shared.log.create_segment(base)?;
        self.active_base = base;
        self.active_len = 0;
        Ok(())
    }

    fn sync_async_mode(&mut self) {
        if self.unsynced_since.is_some()
            && self.shared.log_fence.get().is_none()
            && let Err(err) = self.sync()
        {
            self.fence(&err);
        }
    }
}
