//! The name server's requests over QUIC, and the task that expires silent brokers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quiver_net::Failure;
use quiver_net::server::{AccessPolicy, node_name_denied};
use quiver_net::{Peer, Service};
use quiver_proto::requests::route::{
    BrokerRegistration, BrokerUnregister, ClusterList, ClusterListing, RegistrationAck, RouteGet,
};
use quiver_proto::{ErrorCode, Frame, Name, RequestCode, WireError, decode_body, encode_body};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::registry::{Registry, RegistryError};

/// Largest request a name server reads (a registration lists every topic of a broker).
const REQUEST_BYTES_MAX: usize = 8 << 20;

/// A name server.
pub struct NameServer {
    // Mutex: every request touches the registry briefly; no await while held.
    registry: Mutex<Registry>,
    // The registry's clock: milliseconds since this process started (monotonic).
    started: Instant,
    policy: AccessPolicy,
}

impl NameServer {
    /// A name server that drops brokers silent for `expiry`.
    pub fn new(expiry: Duration, policy: AccessPolicy) -> Arc<Self> {
        Arc::new(NameServer {
            registry: Mutex::new(Registry::new(expiry.as_millis() as u64)),
            started: Instant::now(),
            policy,
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Expires silent brokers as their deadlines pass, until `shutdown`.
    pub async fn drive_expiry(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let next = self.registry().poll_timeout();
            let wait = next.map_or(Duration::from_secs(1), |at| {
                Duration::from_millis(at.saturating_sub(self.now_ms()))
            });
            tokio::select! {
                () = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
                () = shutdown.cancelled() => return,
            }
            let now = self.now_ms();
            for broker in self.registry().poll_expired(now) {
                warn!(broker, "broker expired: no heartbeat within the expiry");
            }
        }
    }

    fn dispatch(
        &self,
        code: RequestCode,
        peer: &Peer,
        body: &Bytes,
    ) -> Result<Vec<u8>, (ErrorCode, String)> {
        let now = self.now_ms();
        match code {
            RequestCode::RouteGet => {
                let request: RouteGet = decode(body)?;
                Name::readable(&request.topic)
                    .map_err(|e| (ErrorCode::InvalidName, format!("topic {e}")))?;
                match self.registry().route(now, &request.topic) {
                    Some(route) => Ok(encode_body(&route)),
                    None => Err((
                        ErrorCode::TopicNotFound,
                        format!(
                            "topic {} not found: no live broker serves it (create it with `quiver topic create {}`)",
                            request.topic, request.topic
                        ),
                    )),
                }
            }
            RequestCode::BrokerRegister | RequestCode::BrokerHeartbeat => {
                let registration: BrokerRegistration = decode(body)?;
                check_node(peer, &registration.broker_name)?;
                let (name, addr) = (registration.broker_name.clone(), registration.addr.clone());
                let mut registry = self.registry();
                match registry.handle_register(now, registration) {
                    Ok(fresh) => {
                        if fresh {
                            info!(broker = %name, addr = %addr, "broker registered");
                        }
                        Ok(encode_body(&RegistrationAck {
                            expiry_ms: registry.expiry_ms(),
                        }))
                    }
                    Err(err @ RegistryError::Conflict { .. }) => {
                        Err((ErrorCode::BrokerConflict, err.to_string()))
                    }
                    Err(err @ RegistryError::Invalid { .. }) => {
                        Err((ErrorCode::InvalidArgument, err.to_string()))
                    }
                }
            }
            RequestCode::BrokerUnregister => {
                let request: BrokerUnregister = decode(body)?;
                check_node(peer, &request.broker_name)?;
                if self.registry().handle_unregister(&request) {
                    info!(broker = %request.broker_name, "broker unregistered");
                }
                Ok(encode_body(&RegistrationAck {
                    expiry_ms: self.registry().expiry_ms(),
                }))
            }
            RequestCode::ClusterList => {
                let _: ClusterList = decode(body)?;
                Ok(encode_body(&ClusterListing {
                    brokers: self.registry().list(now),
                }))
            }
            other => Err((
                ErrorCode::InvalidArgument,
                format!(
                    "{other} goes to a broker, not a name server: clients find brokers with route.get"
                ),
            )),
        }
    }
}

fn check_node(peer: &Peer, broker_name: &str) -> Result<(), (ErrorCode, String)> {
    match node_name_denied(peer, broker_name) {
        Some(reason) => Err((ErrorCode::PermissionDenied, reason)),
        None => Ok(()),
    }
}

fn decode<T: for<'a> serde::Deserialize<'a>>(body: &Bytes) -> Result<T, (ErrorCode, String)> {
    decode_body(body).map_err(|err: WireError| {
        (
            err.code(),
            format!("{err}: the request body does not match its code"),
        )
    })
}

impl Service for NameServer {
    fn request_bytes_max(&self) -> usize {
        REQUEST_BYTES_MAX
    }

    async fn handle(&self, peer: Arc<Peer>, request: Frame) -> Option<Frame> {
        let caller = &peer;
        quiver_net::envelope::answer(self.policy, &peer, request, |code, body| async move {
            self.dispatch(code, caller, &body)
                .map(Bytes::from)
                .map_err(|(code, message)| Failure::new(code, message))
        })
        .await
    }
}
