//! The client side of framed RPC: one reconnecting QUIC connection to one server, one
//! bidirectional stream per request.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quiver_proto::{ErrorBody, ErrorCode, Frame, RequestCode, decode_body};
use tokio::sync::Mutex;

use crate::tls::ClientTls;

/// How long a QUIC + TLS handshake may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest request timeout honoured; a longer one waits this long (a deadline must fit the
/// clock).
pub const REQUEST_TIMEOUT_MAX: Duration = Duration::from_secs(24 * 3600);

/// Why a request failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The server could not be reached.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The request did not complete in time.
    #[error("request {code} to {addr} timed out after {timeout:?}")]
    Timeout {
        /// The request.
        code: RequestCode,
        /// The server.
        addr: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The connection or stream broke mid-request; the request may or may not have taken
    /// effect.
    #[error("connection to {addr} failed during {code}: {reason}")]
    Io {
        /// The request.
        code: RequestCode,
        /// The server.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{message} [{code}]")]
    Server {
        /// Stable code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The response did not decode.
    #[error("bad response from {addr}: {reason}")]
    BadResponse {
        /// The server.
        addr: String,
        /// What was wrong.
        reason: String,
    },
    /// TLS material or endpoint set-up failed.
    #[error("{0}")]
    Setup(String),
}

impl NetError {
    /// Whether the request may be retried, possibly on another broker. Indeterminate failures
    /// (timeouts, broken connections) are retryable: a send keeps its message id, so a retry
    /// that duplicates is visible as two copies of one id.
    pub fn is_retryable(&self) -> bool {
        match self {
            NetError::Connect { .. } | NetError::Timeout { .. } | NetError::Io { .. } => true,
            NetError::Server { code, .. } => code.is_retryable(),
            NetError::BadResponse { .. } | NetError::Setup(_) => false,
        }
    }

    /// The server's error code, if the server answered.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            NetError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A connection to one server, re-established on demand.
#[derive(Debug)]
pub struct RpcClient {
    endpoint: quinn::Endpoint,
    addr_text: String,
    addr: SocketAddr,
    server_name: String,
    // A tokio mutex: connecting awaits the handshake while holding it, so concurrent callers
    // wait for one handshake instead of starting many.
    conn: Mutex<Option<quinn::Connection>>,
    next_request_id: AtomicU64,
}

impl RpcClient {
    /// A client for `addr` (`host:port`); the host part is the TLS server name. Does not
    /// connect until the first request.
    pub fn new(endpoint: quinn::Endpoint, addr: &str) -> Result<Self, NetError> {
        let resolved = addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| NetError::Connect {
                addr: addr.to_owned(),
                reason: "not a host:port address".into(),
            })?;
        let host = addr
            .rsplit_once(':')
            .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'))
            .unwrap_or(addr);
        Ok(RpcClient {
            endpoint,
            addr_text: addr.to_owned(),
            addr: resolved,
            server_name: host.to_owned(),
            conn: Mutex::new(None),
            next_request_id: AtomicU64::new(1),
        })
    }

    /// A client endpoint for `tls`, shared by every `RpcClient` of one process.
    pub fn endpoint(tls: &ClientTls) -> Result<quinn::Endpoint, NetError> {
        crate::endpoint::client(tls).map_err(|err| NetError::Setup(err.to_string()))
    }

    /// The server address as given.
    pub fn addr(&self) -> &str {
        &self.addr_text
    }

    async fn connection(&self) -> Result<quinn::Connection, NetError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref()
            && conn.close_reason().is_none()
        {
            return Ok(conn.clone());
        }
        let connecting = self
            .endpoint
            .connect(self.addr, &self.server_name)
            .map_err(|err| self.connect_err(err.to_string()))?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| self.connect_err(format!("no QUIC handshake within {CONNECT_TIMEOUT:?}")))?
            .map_err(|err| self.connect_err(err.to_string()))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    fn connect_err(&self, reason: String) -> NetError {
        NetError::Connect {
            addr: self.addr_text.clone(),
            reason,
        }
    }

    /// Sends a request and waits for its response body (status `Ok`), or the server's error.
    ///
    /// A request that does not complete within `timeout` (connecting included) cancels its
    /// own stream only: the connection, which other requests share, is dropped only when the
    /// peer has sent nothing at all since the request started (a dead, frozen or restarted
    /// peer: a live one acknowledges the request's packets within milliseconds, however long
    /// it takes to answer). A peer that goes silent later is caught by QUIC's idle timeout,
    /// which keep-alives hold off while it lives.
    pub async fn call(
        &self,
        code: RequestCode,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, NetError> {
        let deadline = tokio::time::Instant::now() + timeout.min(REQUEST_TIMEOUT_MAX);
        let timed_out = || NetError::Timeout {
            code,
            addr: self.addr_text.clone(),
            timeout,
        };
        let conn = tokio::time::timeout_at(deadline, self.connection())
            .await
            .map_err(|_| timed_out())??;
        let heard_before = conn.stats().udp_rx.datagrams;
        let exchange = self.exchange_on(&conn, code, body, false);
        let frame = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(frame) => frame?.expect("a two-way request returns a frame"),
            Err(_) => {
                // The exchange future is dropped: its streams reset and stop (`Streams`).
                if conn.stats().udp_rx.datagrams == heard_before {
                    tracing::debug!(addr = %self.addr_text, %code, "peer silent during a timed-out request; reconnecting");
                    self.drop_connection(&conn).await;
                }
                return Err(timed_out());
            }
        };
        let status = frame.header.status;
        if status == ErrorCode::Ok as u16 {
            return Ok(frame.body);
        }
        let code = ErrorCode::from_u16(status).ok_or_else(|| NetError::BadResponse {
            addr: self.addr_text.clone(),
            reason: format!("unknown status {status}"),
        })?;
        let message = decode_body::<ErrorBody>(&frame.body)
            .map(|body| body.message)
            .unwrap_or_else(|_| code.name().to_owned());
        Err(NetError::Server { code, message })
    }

    /// Sends a request without waiting for any response (oneway).
    pub async fn send_oneway(&self, code: RequestCode, body: Bytes) -> Result<(), NetError> {
        self.exchange(code, body, true).await.map(|_| ())
    }

    /// Sends raw bytes as a request stream and returns the raw response bytes; for tests of
    /// malformed input.
    pub async fn call_raw(&self, bytes: Bytes, timeout: Duration) -> Result<Bytes, NetError> {
        let code = RequestCode::BrokerStats;
        let attempt = async {
            let conn = self.connection().await?;
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| self.io_err(code, e))?;
            send.write_all(&bytes)
                .await
                .map_err(|e| self.io_err(code, e))?;
            let _ = send.finish();
            let data = recv
                .read_to_end(quiver_proto::frame::FRAME_BYTES_MAX)
                .await
                .map_err(|e| self.io_err(code, e))?;
            Ok(Bytes::from(data))
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| NetError::Timeout {
                code,
                addr: self.addr_text.clone(),
                timeout,
            })?
    }

    async fn exchange(
        &self,
        code: RequestCode,
        body: Bytes,
        oneway: bool,
    ) -> Result<Option<Frame>, NetError> {
        let conn = self.connection().await?;
        self.exchange_on(&conn, code, body, oneway).await
    }

    async fn exchange_on(
        &self,
        conn: &quinn::Connection,
        code: RequestCode,
        body: Bytes,
        oneway: bool,
    ) -> Result<Option<Frame>, NetError> {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let frame = Frame::request(code as u16, request_id, oneway, body);
        let (send, recv) = conn.open_bi().await.map_err(|e| self.io_err(code, e))?;
        let mut streams = Streams {
            send,
            recv,
            done: false,
        };
        if let Err(err) = streams.send.write_all_chunks(&mut frame.to_parts()).await {
            // A server that refuses a request unread stops the stream and answers why: read
            // that answer rather than report the stop.
            let answer = streams
                .recv
                .read_to_end(quiver_proto::frame::FRAME_BYTES_MAX)
                .await
                .ok()
                .and_then(|data| Frame::decode_exact(&Bytes::from(data)).ok())
                .filter(|f| f.header.is_response() && f.header.request_id == request_id);
            streams.done = true;
            return match answer {
                Some(frame) => Ok(Some(frame)),
                None => Err(self.io_err(code, err)),
            };
        }
        streams.send.finish().map_err(|e| self.io_err(code, e))?;
        if oneway {
            // Keep the stream's send side alive until the data is acknowledged by QUIC, so
            // the request is delivered even though nobody reads a response.
            let _ = streams.send.stopped().await;
            streams.done = true;
            return Ok(None);
        }
        let data = streams
            .recv
            .read_to_end(quiver_proto::frame::FRAME_BYTES_MAX)
            .await
            .map_err(|e| self.io_err(code, e))?;
        streams.done = true;
        let frame =
            Frame::decode_exact(&Bytes::from(data)).map_err(|err| NetError::BadResponse {
                addr: self.addr_text.clone(),
                reason: err.to_string(),
            })?;
        if !frame.header.is_response() || frame.header.request_id != request_id {
            return Err(NetError::BadResponse {
                addr: self.addr_text.clone(),
                reason: "response does not answer the request".into(),
            });
        }
        Ok(Some(frame))
    }

    fn io_err(&self, code: RequestCode, err: impl std::fmt::Display) -> NetError {
        NetError::Io {
            code,
            addr: self.addr_text.clone(),
            reason: err.to_string(),
        }
    }

    /// Drops `conn` if it is still the current connection (another caller may have replaced
    /// it already), so the next request reconnects.
    async fn drop_connection(&self, conn: &quinn::Connection) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().map(quinn::Connection::stable_id) == Some(conn.stable_id()) {
            conn.close(quinn::VarInt::from_u32(0), b"peer silent");
            *slot = None;
        }
    }

    /// Sends a request, reads the answer's 20-byte header (so the server is known to be
    /// answering) and no more: the rest stays unread until the returned handle is dropped
    /// (tests of a peer that stops reading).
    pub async fn call_unread(&self, code: RequestCode, body: Bytes) -> Result<Unread, NetError> {
        let conn = self.connection().await?;
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let frame = Frame::request(code as u16, request_id, false, body);
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| self.io_err(code, e))?;
        send.write_all_chunks(&mut frame.to_parts())
            .await
            .map_err(|e| self.io_err(code, e))?;
        send.finish().map_err(|e| self.io_err(code, e))?;
        let mut header = [0u8; quiver_proto::frame::HEADER_BYTES];
        recv.read_exact(&mut header)
            .await
            .map_err(|e| self.io_err(code, e))?;
        Ok(Unread {
            _recv: recv,
            _conn: conn,
        })
    }

    /// Closes the connection, if open.
    pub async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            conn.close(quinn::VarInt::from_u32(0), b"bye");
        }
    }
}

/// Why a request's stream was abandoned (the application error code of its `RESET_STREAM`
/// and `STOP_SENDING`).
pub const REQUEST_CANCELLED: u32 = 1;

/// One request's streams. Dropped before the exchange is `done` (a timeout, a caller that
/// went away), they reset the request and stop the answer, so only that stream ends: quinn's
/// own drop would finish a half-written request instead.
struct Streams {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    done: bool,
}

impl Drop for Streams {
    fn drop(&mut self) {
        if !self.done {
            let code = quinn::VarInt::from_u32(REQUEST_CANCELLED);
            // Either side may be closed already; there is nothing left to cancel then.
            let _ = self.send.reset(code);
            let _ = self.recv.stop(code);
        }
    }
}

/// A request whose answer is left unread (see [`RpcClient::call_unread`]).
pub struct Unread {
    _recv: quinn::RecvStream,
    _conn: quinn::Connection,
}
