//! Remoting: one request code → one handler. Decodes bodies, checks the admin role, maps
//! every error to its stable code and a message that says what to fix. No storage layout
//! logic lives here.

mod handlers;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use quiver_namesrv::RouteTable;
use quiver_net::server::error_frame;
use quiver_net::{Peer, Service};
use quiver_proto::requests::route::DataVersion;
use quiver_proto::{ErrorCode, Frame, RequestCode, WireError};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug};

use crate::store::{Store, StoreError};

/// Request-path settings.
#[derive(Clone, Debug)]
pub struct RemotingConfig {
    /// Cluster name.
    pub cluster: String,
    /// This broker's name in routes.
    pub broker_name: String,
    /// The address clients use to reach this broker.
    pub advertise: String,
    /// Create unknown topics on first send.
    pub auto_create_topics: bool,
    /// Queue count of auto-created topics.
    pub default_queues: u32,
    /// Long-polls waiting at once (`broker.long_polls_max`).
    pub long_polls_max: usize,
    /// Who may send what.
    pub access: quiver_net::server::AccessPolicy,
}

/// The broker's request handler state.
pub struct Broker {
    pub(crate) store: Arc<Store>,
    pub(crate) config: RemotingConfig,
    // RwLock: read by every route query, written by topic admin requests.
    pub(crate) routes: RwLock<RouteTable>,
    pub(crate) shutdown: CancellationToken,
    /// Bumped when a topic is created, changed or deleted, so the registrar heartbeats at
    /// once (a watch: every name-server loop sees every change).
    pub(crate) topics_version: tokio::sync::watch::Sender<DataVersion>,
    /// One permit per waiting long-poll; none left: the pull is answered at once.
    pub(crate) long_polls: Arc<tokio::sync::Semaphore>,
}

impl Broker {
    /// A broker serving `store`, answering routes for its own topics.
    pub fn new(store: Arc<Store>, config: RemotingConfig, shutdown: CancellationToken) -> Self {
        let mut routes = RouteTable::new();
        routes.upsert_broker(&config.broker_name, &config.advertise);
        let topics: Vec<(String, u32)> = store
            .topics()
            .into_iter()
            .map(|(name, meta)| (name, meta.queues))
            .collect();
        routes.set_broker_topics(&config.broker_name, &topics);
        Broker {
            store,
            long_polls: Arc::new(tokio::sync::Semaphore::new(config.long_polls_max)),
            config,
            routes: RwLock::new(routes),
            shutdown,
            topics_version: tokio::sync::watch::channel(DataVersion {
                timestamp_ms: crate::clock::now_ms(),
                counter: 0,
            })
            .0,
        }
    }

    /// Changes on every topic change.
    pub fn topics_changed(&self) -> tokio::sync::watch::Receiver<DataVersion> {
        self.topics_version.subscribe()
    }

    pub(crate) fn bump_topics(&self) {
        self.topics_version.send_modify(|version| {
            version.counter += 1;
            version.timestamp_ms = crate::clock::now_ms();
        });
    }

    async fn dispatch(
        &self,
        code: RequestCode,
        peer: &Peer,
        body: &Bytes,
    ) -> Result<Bytes, Failure> {
        if let Some(reason) = self.config.access.denied(code, peer) {
            return Err(Failure::new(ErrorCode::PermissionDenied, reason));
        }
        match code {
            RequestCode::TopicCreate => handlers::topic::create(self, body).await,
            RequestCode::TopicUpdate => handlers::topic::update(self, body).await,
            RequestCode::TopicDelete => handlers::topic::delete(self, body).await,
            RequestCode::TopicList => handlers::topic::list(self, body).await,
            RequestCode::TopicDescribe => handlers::topic::describe(self, body).await,
            RequestCode::MsgSend => handlers::msg::send(self, body).await,
            RequestCode::MsgPull => handlers::msg::pull(self, body).await,
            RequestCode::MsgQueryId => handlers::msg::query_id(self, body).await,
            RequestCode::MsgQueryKey => handlers::msg::query_key(self, body).await,
            RequestCode::QueueOffsets => handlers::msg::queue_offsets(self, body).await,
            RequestCode::RouteGet => handlers::route::get(self, body).await,
            RequestCode::ClusterList => handlers::route::cluster_list(self, body).await,
            RequestCode::BrokerRegister
            | RequestCode::BrokerHeartbeat
            | RequestCode::BrokerUnregister => Err(Failure::new(
                ErrorCode::InvalidArgument,
                format!(
                    "{code} goes to a name server: this is broker {}",
                    self.config.broker_name
                ),
            )),
            RequestCode::BrokerStats => handlers::admin::stats(self, body).await,
        }
    }
}

impl Service for Broker {
    fn request_bytes_max(&self) -> usize {
        let config = self.store.config();
        // A full batch plus the envelope; anything bigger is refused unread.
        config.batch_bytes_max.as_u64() as usize
            + config.message_bytes_max.as_u64() as usize
            + (1 << 20)
    }

    async fn handle(&self, peer: Arc<Peer>, request: Frame) -> Option<Frame> {
        let header = request.header;
        let oneway = header.is_oneway();
        let Some(code) = RequestCode::from_u16(header.code) else {
            let err = WireError::UnknownCode { code: header.code };
            return (!oneway).then(|| {
                error_frame(
                    &header,
                    err.code(),
                    format!("{err}: upgrade the client or check the request"),
                )
            });
        };
        let span = tracing::debug_span!("request", code = code.name(), req_id = header.request_id);
        let result = self
            .dispatch(code, &peer, &request.body)
            .instrument(span)
            .await;
        if oneway {
            if let Err(failure) = &result {
                debug!(code = code.name(), status = %failure.code, "oneway request failed");
            }
            return None;
        }
        Some(match result {
            Ok(body) => Frame::response(&header, ErrorCode::Ok, body),
            Err(failure) => error_frame(&header, failure.code, failure.message),
        })
    }
}

/// A failed request: its code and what to fix.
#[derive(Debug)]
pub struct Failure {
    code: ErrorCode,
    message: String,
}

impl Failure {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure::new(err.code(), err.to_string())
    }
}

impl From<WireError> for Failure {
    fn from(err: WireError) -> Self {
        Failure::new(
            err.code(),
            format!("{err}: the request body does not match its code"),
        )
    }
}

/// The advertised address for a bound socket: the explicit one, or the bound address when it
/// is not a wildcard.
pub fn advertise_addr(bound: SocketAddr, explicit: Option<&str>) -> Result<String, String> {
    match explicit {
        Some(addr) => Ok(addr.to_owned()),
        None if bound.ip().is_unspecified() => Err(format!(
            "listening on the wildcard address {bound} needs --advertise HOST:PORT (the address clients connect to and that the TLS certificate names)"
        )),
        None => Ok(bound.to_string()),
    }
}
