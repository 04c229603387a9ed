//! What a server lets its peers hold: connections, request bytes per connection and in all,
//! and how long a shutdown waits for in-flight requests.
//!
//! QUIC flow control bounds the bytes in flight, not the bodies already read and waiting for a
//! handler; so a request's declared body length is counted against both budgets before its
//! body is read, and given back when its answer is written.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Server limits, with their config keys' defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// Connections at once; the next one is refused.
    pub connections_max: usize,
    /// Request bytes (declared bodies) one connection may have read and not yet answered.
    pub connection_request_bytes_max: bytesize::ByteSize,
    /// Request bytes all connections together may have read and not yet answered.
    pub request_bytes_max_total: bytesize::ByteSize,
    /// How long a request waits for room in the server-wide budget before `broker.busy`.
    #[serde(with = "humantime_serde")]
    pub budget_wait: Duration,
    /// How long shutdown waits for in-flight requests (a peer that stops reading its answer
    /// cannot hold it longer) before closing every connection.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            connections_max: 10_000,
            connection_request_bytes_max: bytesize::ByteSize::mib(64),
            request_bytes_max_total: bytesize::ByteSize::mib(128),
            budget_wait: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl ServerLimits {
    /// Checks the settings against a service's largest request; the error names the key.
    pub fn validate(&self, request_bytes_max: usize) -> Result<(), String> {
        if self.connections_max == 0 {
            return Err("limits.connections_max must be at least 1".into());
        }
        for (key, value) in [
            (
                "connection_request_bytes_max",
                self.connection_request_bytes_max,
            ),
            ("request_bytes_max_total", self.request_bytes_max_total),
        ] {
            if (value.as_u64() as usize) < request_bytes_max {
                return Err(format!(
                    "limits.{key} = {value} is smaller than the largest request ({request_bytes_max} bytes): raise it or lower store.batch_bytes_max"
                ));
            }
        }
        Ok(())
    }
}

/// The budgets of one running server.
pub(crate) struct Budgets {
    pub(crate) limits: ServerLimits,
    pub(crate) connections: Arc<Semaphore>,
    total: Arc<Semaphore>,
}

/// Why a request found no room.
pub(crate) enum NoRoom {
    /// Its connection's budget is spent.
    Connection(usize),
    /// The server-wide budget stayed spent for `budget_wait`.
    Server(usize),
}

impl Budgets {
    pub(crate) fn new(limits: ServerLimits) -> Self {
        Budgets {
            connections: Arc::new(Semaphore::new(limits.connections_max)),
            total: Arc::new(Semaphore::new(permits(limits.request_bytes_max_total))),
            limits,
        }
    }

    /// A connection's own budget.
    pub(crate) fn connection_budget(&self) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(permits(
            self.limits.connection_request_bytes_max,
        )))
    }

    /// Reserves `bytes` in the connection's budget (at once, or refused) and in the
    /// server's (waiting up to `budget_wait`). The permits go back when dropped.
    pub(crate) async fn reserve(
        &self,
        connection: &Arc<Semaphore>,
        bytes: usize,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), NoRoom> {
        let n = bytes.clamp(1, u32::MAX as usize) as u32;
        let own = connection
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| NoRoom::Connection(permits(self.limits.connection_request_bytes_max)))?;
        let wait = tokio::time::timeout(
            self.limits.budget_wait,
            self.total.clone().acquire_many_owned(n),
        );
        match wait.await {
            Ok(Ok(total)) => Ok((own, total)),
            _ => Err(NoRoom::Server(permits(self.limits.request_bytes_max_total))),
        }
    }
}

fn permits(bytes: bytesize::ByteSize) -> usize {
    (bytes.as_u64() as usize).min(Semaphore::MAX_PERMITS)
}
