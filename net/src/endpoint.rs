//! quinn endpoints with every transport limit set explicitly (quinn's defaults leave the
//! connection receive window unlimited).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};

use crate::tls::{ClientTls, ServerTls, TlsError};

/// Most concurrent request streams one connection may open (async sends keep many in flight).
pub const STREAMS_PER_CONNECTION_MAX: u32 = 4096;
/// Bytes a single stream may have unread (one request frame is read whole).
pub const STREAM_WINDOW_BYTES: u32 = 16 << 20;
/// Bytes a connection may have unread across its streams.
pub const CONNECTION_WINDOW_BYTES: u32 = 64 << 20;
/// Connections whose peer is silent this long close (so a dead peer is noticed).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients ping this often so live idle connections stay open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(3);
/// Most connection attempts a server handles at once.
pub const INCOMING_MAX: usize = 4096;
/// UDP socket buffer size asked for (the kernel caps it at `net.core.rmem_max`/`wmem_max`).
/// The Linux default (~208 KiB) drops datagrams of a 1 MiB batch burst on loopback while the
/// receiver is busy, and every drop costs QUIC a loss-recovery round.
pub const SOCKET_BUFFER_BYTES: usize = 8 << 20;
/// Largest UDP payload MTU discovery may probe for. quinn's default (1452) fits Ethernet;
/// loopback and jumbo-frame links carry far larger datagrams, and every datagram costs a
/// decrypt and a syscall share, so bulk transfers there get much cheaper. Probing is safe on
/// any path: a lost probe only ends the search.
pub const MTU_UPPER_BOUND: u16 = 65_527;

fn transport(client: bool) -> TransportConfig {
    let mut transport = TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(STREAMS_PER_CONNECTION_MAX))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW_BYTES))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW_BYTES))
        .send_window(u64::from(CONNECTION_WINDOW_BYTES))
        .max_idle_timeout(Some(
            IdleTimeout::try_from(IDLE_TIMEOUT).expect("10 s fits a QUIC idle timeout"),
        ));
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_UPPER_BOUND);
    transport.mtu_discovery_config(Some(mtu));
    if client {
        transport.keep_alive_interval(Some(KEEP_ALIVE));
    }
    transport
}

/// The client endpoint type (a quinn endpoint; named here so other crates need not name quinn).
pub type ClientEndpoint = quinn::Endpoint;

/// A bound server endpoint.
pub fn server(addr: SocketAddr, tls: &ServerTls) -> Result<quinn::Endpoint, EndpointError> {
    let crypto = QuicServerConfig::try_from(tls.rustls_config()?)
        .map_err(|err| EndpointError::Quic(err.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config
        .transport_config(Arc::new(transport(false)))
        .max_incoming(INCOMING_MAX)
        .incoming_buffer_size(1 << 20)
        .incoming_buffer_size_total(64 << 20);
    let socket = bind_udp(addr)?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| EndpointError::Bind { addr, source })
}

/// A client endpoint on an ephemeral local port, with its default client config set.
pub fn client(tls: &ClientTls) -> Result<quinn::Endpoint, EndpointError> {
    let crypto = QuicClientConfig::try_from(tls.rustls_config()?)
        .map_err(|err| EndpointError::Quic(err.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport(true)));
    let bind: SocketAddr = "0.0.0.0:0".parse().expect("literal address");
    let socket = bind_udp(bind)?;
    let mut endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| EndpointError::Bind { addr: bind, source })?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// A UDP socket with large buffers, bound to `addr`. Buffer sizes are best effort: the kernel
/// may cap them, which costs speed, not correctness.
fn bind_udp(addr: SocketAddr) -> Result<std::net::UdpSocket, EndpointError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind_err = |source| EndpointError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(bind_err)?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.bind(&addr.into()).map_err(bind_err)?;
    tracing::debug!(
        recv_buffer = socket.recv_buffer_size().unwrap_or(0),
        send_buffer = socket.send_buffer_size().unwrap_or(0),
        "udp socket bound"
    );
    Ok(socket.into())
}

/// Endpoint set-up errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// TLS material was unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// quinn refused the crypto config.
    #[error("QUIC crypto config: {0}")]
    Quic(String),
    /// The UDP socket could not be bound.
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}
