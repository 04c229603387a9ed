//! The standalone's front: a name server and a broker behind one endpoint, routed by
//! request family. The broker registers with this name server the normal way (its
//! registrar, the same requests through the same handler, in process), so the standalone's
//! `route.get` and `cluster.list` are the name server's.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quiver_broker::registration::NamesrvLink;
use quiver_broker::remoting::Broker;
use quiver_broker::server::Front;
use quiver_namesrv::RouteTable;
use quiver_namesrv::service::NameServer;
use quiver_net::server::AccessPolicy;
use quiver_net::{Identity, NetError, Peer, Role, Service};
use quiver_proto::requests::route::RouteGet;
use quiver_proto::{ErrorBody, ErrorCode, Frame, RequestCode, decode_body, encode_body};
use tokio_util::sync::CancellationToken;

/// The standalone's front: its name server, and the broker's handlers beside it.
pub struct Standalone {
    namesrv: Arc<NameServer>,
    broker_name: String,
}

impl Standalone {
    /// A name server that expires brokers silent for `expiry`, answering under `policy`,
    /// for the broker `broker_name`.
    pub fn new(expiry: Duration, policy: AccessPolicy, broker_name: &str) -> Self {
        Standalone {
            namesrv: NameServer::new(expiry, policy),
            broker_name: broker_name.to_owned(),
        }
    }
}

impl Front for Standalone {
    type Service = Composed;

    fn front(self, broker: Arc<Broker>, shutdown: &CancellationToken) -> Arc<Composed> {
        tokio::spawn(self.namesrv.clone().drive_expiry(shutdown.clone()));
        Arc::new(Composed {
            namesrv: self.namesrv,
            broker,
        })
    }

    fn namesrv(&self) -> Option<Arc<dyn NamesrvLink>> {
        Some(Arc::new(InProcess {
            namesrv: self.namesrv.clone(),
            peer: Arc::new(Peer {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                identity: Some(Identity {
                    name: self.broker_name.clone(),
                    role: Role::Node,
                }),
            }),
            request_id: AtomicU64::new(1),
        }))
    }
}

/// The broker's registrar calling the name server in the same process: the same requests
/// and the same handler (access check included), without a loopback connection, which
/// would take one of the endpoint's connection slots.
struct InProcess {
    namesrv: Arc<NameServer>,
    /// The broker itself, as a node.
    peer: Arc<Peer>,
    request_id: AtomicU64,
}

impl NamesrvLink for InProcess {
    fn addr(&self) -> &str {
        "in-process"
    }

    fn call(
        &self,
        code: RequestCode,
        body: Bytes,
        _timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, NetError>> + Send + '_>> {
        let request_id = self.request_id.fetch_add(1, Ordering::Relaxed);
        let frame = Frame::request(code as u16, request_id, false, body);
        Box::pin(async move {
            let answer = self
                .namesrv
                .handle(self.peer.clone(), frame)
                .await
                .ok_or_else(|| NetError::BadResponse {
                    addr: "in-process".into(),
                    reason: "no answer to a two-way request".into(),
                })?;
            let status = answer.header.status;
            if status == ErrorCode::Ok as u16 {
                return Ok(answer.body);
            }
            let code = ErrorCode::from_u16(status).unwrap_or(ErrorCode::Internal);
            let message = decode_body::<ErrorBody>(&answer.body)
                .map(|body| body.message)
                .unwrap_or_else(|_| code.name().to_owned());
            Err(NetError::Server { code, message })
        })
    }
}

/// A name server and a broker on one endpoint.
pub struct Composed {
    namesrv: Arc<NameServer>,
    broker: Arc<Broker>,
}

/// Name-server requests: the 3xx family (`route.*`, `broker.register|heartbeat|unregister`,
/// `cluster.list`).
fn is_namesrv_code(code: u16) -> bool {
    code / 100 == RequestCode::RouteGet as u16 / 100
}

impl Service for Composed {
    fn request_bytes_max(&self) -> usize {
        self.broker
            .request_bytes_max()
            .max(self.namesrv.request_bytes_max())
    }

    async fn handle(&self, peer: Arc<Peer>, request: Frame) -> Option<Frame> {
        if !is_namesrv_code(request.header.code) {
            return self.broker.handle(peer, request).await;
        }
        let route_get = request.header.code == RequestCode::RouteGet as u16;
        let body = request.body.clone();
        let header = request.header;
        let answer = self.namesrv.handle(peer, request).await?;
        if route_get && answer.header.status == ErrorCode::TopicNotFound as u16 {
            return Some(self.auto_create_route(&header, &body).unwrap_or(answer));
        }
        Some(answer)
    }
}

impl Composed {
    /// With auto-creation on, an unknown topic's route is the one its first send creates:
    /// this broker with the default queue count.
    fn auto_create_route(&self, header: &quiver_proto::FrameHeader, body: &Bytes) -> Option<Frame> {
        let core = self.broker.core();
        if !core.config().auto_create_topics {
            return None;
        }
        let request: RouteGet = decode_body(body).ok()?;
        let config = self.broker.config();
        let mut table = RouteTable::new();
        table.upsert_broker(&config.broker_name, &config.advertise);
        table.set_topic(
            &config.broker_name,
            &request.topic,
            core.config().default_queues,
        );
        let route = table.route(&request.topic)?;
        Some(Frame::response(
            header,
            ErrorCode::Ok,
            Bytes::from(encode_body(&route)),
        ))
    }
}
