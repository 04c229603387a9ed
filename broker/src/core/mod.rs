//! The broker core: the broker's state and every domain operation (auto-create, send, the
//! one consume API `pull(spec, wait)` with its long-poll and tag filter, queries, topic
//! admin). Remoting decodes a request, calls the core and encodes the answer; push
//! consumers, function runners and replication will call the core too, never a handler.
//!
//! # Layout
//! - [`Core`] (here): state and construction.
//! - `send.rs`: sends, with topic auto-creation.
//! - `pull.rs`: [`PullSpec`] and `pull`: read-your-writes, long-poll, tag filter.
//! - `query.rs`: lookups by message id and by key.
//! - `tags.rs`: [`TagExpr`], the `*` / `A || B` subscription expression.
//! - `topics.rs`: topic admin and the topic-table version heartbeats carry.
//! - `timers.rs`: delayed messages: stored in `%SCHEDULE%`, delivered when due.
//! - `groups/`: consumer groups: membership, queue leases, reads through a lease, offsets.

pub mod groups;
mod pull;
mod query;
mod send;
mod tags;
mod timers;
mod topics;

use std::sync::Arc;
use std::time::Duration;

use quiver_proto::requests::route::DataVersion;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

use self::groups::Groups;

pub use pull::{PullSpec, Pulled};
pub use tags::{TagExpr, TagExprError};
pub use topics::TopicChange;
pub(crate) use topics::blocking;

/// What the core needs to know of its broker.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Create unknown topics on first send.
    pub auto_create_topics: bool,
    /// Queue count of auto-created topics.
    pub default_queues: u32,
    /// Long-polls waiting at once (`broker.long_polls_max`); past it a pull answers at once.
    pub long_polls_max: usize,
    /// This broker's name (each broker assigns its own queues among a group's members).
    pub broker_name: String,
    /// How long a group member and its leases last past its last heartbeat.
    pub group_session: Duration,
}

/// The broker's state and operations.
pub struct Core {
    store: Arc<Store>,
    config: CoreConfig,
    /// Bumped on every topic change, so the registrar heartbeats at once (a watch: every
    /// name-server loop sees every change).
    topics_version: watch::Sender<DataVersion>,
    /// One permit per waiting long-poll.
    long_polls: Arc<Semaphore>,
    /// Ends every long-poll at shutdown.
    shutdown: CancellationToken,
    /// The topic-table version the name servers acknowledged, when a topic change waits for
    /// it (the standalone: its own name server answers routes).
    registered: Option<watch::Receiver<u64>>,
    /// Consumer groups: members, leases, epochs.
    groups: Groups,
}

impl Core {
    /// A core over `store`. Raises the broker's start counter (lease epochs rise across
    /// restarts).
    pub fn new(
        store: Arc<Store>,
        config: CoreConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        let generation = store.catalog().next_generation()?;
        Ok(Core {
            groups: Groups::new(&config.broker_name, config.group_session, generation),
            store,
            long_polls: Arc::new(Semaphore::new(config.long_polls_max)),
            config,
            topics_version: watch::channel(DataVersion {
                timestamp_ms: crate::clock::now_ms(),
                counter: 0,
            })
            .0,
            shutdown,
            registered: None,
        })
    }

    /// Makes topic changes return only once the name servers acknowledged them (at most
    /// `REGISTRATION_WAIT`), so a route asked right after a change has it.
    pub fn wait_for_registration(&mut self, acked: watch::Receiver<u64>) {
        self.registered = Some(acked);
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The settings.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Completes when the broker starts to shut down.
    pub async fn shutting_down(&self) {
        self.shutdown.cancelled().await;
    }
}

#[cfg(test)]
mod tests;
