//! The server side of framed RPC: accept connections, accept one bidirectional stream per
//! request, read one frame, hand it to the [`Service`], write its response.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quiver_proto::frame::HEADER_BYTES;
use quiver_proto::{ErrorBody, ErrorCode, Frame, FrameHeader, encode_body};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, warn};

use crate::limits::{Budgets, NoRoom, ServerLimits};

use crate::tls::{Identity, Role, identity_of};

/// Bytes read at a time from a body that is dropped unkept.
const DRAIN_CHUNK_BYTES: usize = 64 << 10;

/// A request reading slower than this is dropped (slowloris guard).
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The remote end of a connection.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Remote UDP address.
    pub addr: SocketAddr,
    /// Verified client-certificate identity, if the client presented one.
    pub identity: Option<Identity>,
}

/// Handles decoded request frames.
pub trait Service: Send + Sync + 'static {
    /// Largest request body this service accepts; larger frames get `frame.too_large` without
    /// their body being read.
    fn request_bytes_max(&self) -> usize;

    /// Answers one request. `None` sends no response (oneway requests).
    fn handle(&self, peer: Arc<Peer>, request: Frame)
    -> impl Future<Output = Option<Frame>> + Send;
}

/// Serves `endpoint` until `shutdown` fires, then waits for in-flight requests to finish
/// (at most `limits.drain_timeout`, then every connection is closed).
pub async fn serve<S: Service>(
    endpoint: quinn::Endpoint,
    service: Arc<S>,
    shutdown: CancellationToken,
    limits: ServerLimits,
) {
    let budgets = Arc::new(Budgets::new(limits));
    let tracker = TaskTracker::new();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = shutdown.cancelled() => break,
        };
        let Some(incoming) = incoming else { break };
        let Ok(slot) = budgets.connections.clone().try_acquire_owned() else {
            debug!(
                remote = %incoming.remote_address(),
                connections_max = budgets.limits.connections_max,
                "connection refused: at the connection limit"
            );
            incoming.refuse();
            continue;
        };
        let service = service.clone();
        let shutdown = shutdown.clone();
        let conn_tracker = tracker.clone();
        let budgets = budgets.clone();
        tracker.spawn(async move {
            let _slot = slot;
            match incoming.await {
                Ok(conn) => serve_connection(conn, service, shutdown, conn_tracker, budgets).await,
                Err(err) => debug!(cause = %err, "handshake failed"),
            }
        });
    }
    endpoint.set_server_config(None);
    tracker.close();
    let drain = budgets.limits.drain_timeout;
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        warn!(
            drain_timeout_ms = drain.as_millis() as u64,
            requests = tracker.len(),
            "in-flight requests outlived the drain deadline; closing their connections"
        );
    }
    endpoint.close(VarIntZero::CODE, b"shutdown");
    // Closing is answered within a few round trips, or the peers are gone: bounded too.
    let _ = tokio::time::timeout(drain, endpoint.wait_idle()).await;
}

struct VarIntZero;
impl VarIntZero {
    const CODE: quinn::VarInt = quinn::VarInt::from_u32(0);
}

async fn serve_connection<S: Service>(
    conn: quinn::Connection,
    service: Arc<S>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    budgets: Arc<Budgets>,
) {
    let own_budget = budgets.connection_budget();
    let identity = conn
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|chain| identity_of(&chain));
    let peer = Arc::new(Peer {
        addr: conn.remote_address(),
        identity,
    });
    let span = tracing::debug_span!("conn", remote = %peer.addr);
    async move {
        loop {
            let stream = tokio::select! {
                stream = conn.accept_bi() => stream,
                () = shutdown.cancelled() => break,
            };
            let (send, recv) = match stream {
                Ok(pair) => pair,
                Err(err) => {
                    debug!(cause = %err, "connection ended");
                    return;
                }
            };
            let service = service.clone();
            let peer = peer.clone();
            let budgets = budgets.clone();
            let own_budget = own_budget.clone();
            tracker.spawn(async move {
                let budget = (budgets.as_ref(), &own_budget);
                serve_stream(send, recv, service, peer, budget).await;
            });
        }
    }
    .instrument(span)
    .await
}

async fn serve_stream<S: Service>(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    service: Arc<S>,
    peer: Arc<Peer>,
    budget: (&Budgets, &Arc<Semaphore>),
) {
    let read = tokio::time::timeout(
        REQUEST_READ_TIMEOUT,
        read_request(&mut recv, service.request_bytes_max(), budget),
    );
    // Held until the answer is written: the body's bytes stay counted while they live.
    let mut _reserved = None;
    let response = match read.await {
        Err(_elapsed) => {
            debug!("request read timed out");
            let _ = recv.stop(quinn::VarInt::from_u32(1));
            return;
        }
        Ok(Err(ReadFailure::Stream)) => return,
        Ok(Err(ReadFailure::Reject(frame))) => {
            let _ = recv.stop(quinn::VarInt::from_u32(0));
            Some(frame)
        }
        Ok(Err(ReadFailure::Busy(frame))) => {
            // Read and drop the body (no memory kept), so a sender blocked on flow control
            // finishes its write and reads the answer.
            let drain =
                async { while let Ok(Some(_)) = recv.read_chunk(DRAIN_CHUNK_BYTES, true).await {} };
            if tokio::time::timeout(REQUEST_READ_TIMEOUT, drain)
                .await
                .is_err()
            {
                let _ = recv.stop(quinn::VarInt::from_u32(1));
            }
            Some(frame)
        }
        Ok(Ok((frame, reserved))) => {
            _reserved = Some(reserved);
            service.handle(peer, frame).await
        }
    };
    if let Some(response) = response {
        if send
            .write_all_chunks(&mut response.to_parts())
            .await
            .is_ok()
        {
            let _ = send.finish();
        }
    } else {
        let _ = send.finish();
    }
}

enum ReadFailure {
    /// The stream broke; nothing to answer.
    Stream,
    /// No budget for the body: it is read and dropped, then this answer is sent.
    Busy(Frame),
    /// The request is refused with this response.
    Reject(Frame),
}

type Reserved = (OwnedSemaphorePermit, OwnedSemaphorePermit);

async fn read_request(
    recv: &mut quinn::RecvStream,
    body_max: usize,
    (budgets, own): (&Budgets, &Arc<Semaphore>),
) -> Result<(Frame, Reserved), ReadFailure> {
    let mut header_bytes = [0u8; HEADER_BYTES];
    recv.read_exact(&mut header_bytes)
        .await
        .map_err(|_| ReadFailure::Stream)?;
    let header = match FrameHeader::decode(&header_bytes) {
        Ok(header) => header,
        Err(err) => {
            let fake = FrameHeader {
                version: quiver_proto::frame::VERSION,
                flags: 0,
                code: u16::from_le_bytes([header_bytes[4], header_bytes[5]]),
                status: 0,
                request_id: u64::from_le_bytes(header_bytes[8..16].try_into().expect("8 bytes")),
                body_len: 0,
            };
            return Err(ReadFailure::Reject(error_frame(
                &fake,
                err.code(),
                err.to_string(),
            )));
        }
    };
    if header.is_response() {
        return Err(ReadFailure::Reject(error_frame(
            &header,
            ErrorCode::BadFrame,
            "a response frame was sent as a request".into(),
        )));
    }
    if header.body_len as usize > body_max {
        return Err(ReadFailure::Reject(error_frame(
            &header,
            ErrorCode::FrameTooLarge,
            format!(
                "request body is {} bytes: this server accepts at most {body_max}",
                header.body_len
            ),
        )));
    }
    let reserved = match budgets.reserve(own, header.body_len as usize).await {
        Ok(reserved) => reserved,
        Err(no_room) => {
            let message = match no_room {
                NoRoom::Connection(max) => format!(
                    "this connection already has {max} bytes of requests being handled: wait for their answers (or open another connection)"
                ),
                NoRoom::Server(max) => format!(
                    "the server already holds {max} bytes of requests from all clients: retry later"
                ),
            };
            return Err(ReadFailure::Busy(error_frame(
                &header,
                ErrorCode::Busy,
                message,
            )));
        }
    };
    // Into a buffer of exactly the declared size (the budget reserved above): collecting
    // chunks and joining them would hold the body twice.
    let body_len = header.body_len as usize;
    let mut body = Vec::with_capacity(body_len);
    while body.len() < body_len {
        match recv.read_chunk(body_len - body.len(), true).await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk.bytes),
            Ok(None) => break,
            Err(_) => return Err(ReadFailure::Stream),
        }
    }
    match recv.read_chunk(1, true).await {
        Ok(None) => {}
        Ok(Some(_)) => {
            return Err(ReadFailure::Reject(error_frame(
                &header,
                ErrorCode::BadFrame,
                "bytes after the frame body: send one frame per stream".into(),
            )));
        }
        Err(_) => return Err(ReadFailure::Stream),
    }
    if body.len() != header.body_len as usize {
        return Err(ReadFailure::Reject(error_frame(
            &header,
            ErrorCode::BadFrame,
            format!(
                "truncated frame: header declares {} body bytes, stream carried {}",
                header.body_len,
                body.len()
            ),
        )));
    }
    Ok((
        Frame {
            header,
            body: Bytes::from(body),
        },
        reserved,
    ))
}

/// Who may send what: a server's access policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Data-plane requests (`Access::Client`) without a client certificate.
    pub allow_anonymous: bool,
}

impl AccessPolicy {
    /// Why `peer` may not send `code`, or `None` when it may.
    pub fn denied(self, code: quiver_proto::RequestCode, peer: &Peer) -> Option<String> {
        use quiver_proto::Access;
        let role = peer.identity.as_ref().map(|id| id.role);
        let (needed, fix) = match code.access() {
            // Nodes too: a broker writes a function's emits to the brokers serving their topic.
            Access::Client if matches!(role, Some(Role::Client | Role::Admin | Role::Node)) => {
                return None;
            }
            Access::Client if role.is_none() && self.allow_anonymous => return None,
            Access::Admin if role == Some(Role::Admin) => return None,
            Access::Node if role == Some(Role::Node) => return None,
            Access::Client => (
                "a client certificate signed by the cluster CA",
                "pass --cert/--key of a client pair (the standalone makes ./quiver-data/tls/client.{pem,key}; `quiver certs init --client NAME` makes one), or run the server with allow_anonymous = true",
            ),
            Access::Admin => (
                "the admin role",
                "pass --cert/--key of an admin pair, e.g. made by `quiver certs init --client ops --admin`",
            ),
            Access::Node => (
                "a node certificate",
                "use a pair made by `quiver certs init --node NAME` with the cluster's CA",
            ),
        };
        let found = peer.identity.as_ref().map_or_else(
            || "none".to_owned(),
            |id| format!("{:?} {}", id.role, id.name),
        );
        Some(format!("{code} needs {needed} (found {found}): {fix}"))
    }

    /// Logs the policy at start: anonymous access is a warning.
    pub fn log_start(self, role: &str) {
        if self.allow_anonymous {
            tracing::warn!(
                role,
                "allow_anonymous = true: sends, pulls, queries and routes need no client certificate"
            );
        }
    }
}

/// Why a node certificate may not register `broker_name`, or `None` when it names it.
pub fn node_name_denied(peer: &Peer, broker_name: &str) -> Option<String> {
    match &peer.identity {
        Some(id) if id.role == Role::Node && id.name == broker_name => None,
        Some(id) => Some(format!(
            "the node certificate is issued to {:?}, not to broker {broker_name:?}: a node may only register itself (make a pair with `quiver certs init --node {broker_name}`)",
            id.name
        )),
        None => Some("registration needs a node certificate".into()),
    }
}

/// An error response to `request` with a message saying what to fix.
pub fn error_frame(request: &FrameHeader, code: ErrorCode, message: String) -> Frame {
    Frame::response(
        request,
        code,
        Bytes::from(encode_body(&ErrorBody { message })),
    )
}
