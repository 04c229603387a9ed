//! [`Client`]: one QUIC endpoint, one connection per server address, a route cache, and
//! typed calls.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quiver_net::endpoint::ClientEndpoint;
use quiver_net::tls::ClientTls;
use quiver_net::{NetError, RpcClient};
use quiver_proto::requests::route::{RouteGet, TopicRoute};
use quiver_proto::{RequestCode, decode_body, encode_body};

use crate::error::ClientError;

/// How to reach and trust a cluster.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Name servers (or the standalone) as `host:port`; tried in order.
    pub namesrv: Vec<String>,
    /// The cluster CA.
    pub ca: PathBuf,
    /// Client certificate pair: servers refuse requests without one (unless they allow
    /// anonymous access); admin requests need an admin pair.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Cached routes are fetched again after this long (and at once after a routing error).
    pub route_refresh: Duration,
}

impl ClientOptions {
    /// Options for `namesrv` trusting `ca`, with the client pair beside the CA
    /// (`client.{pem,key}` in the CA's directory, as `quiver certs init` and the standalone
    /// lay them out) when it exists; set `identity` for another pair, or `None` for none.
    pub fn new(namesrv: impl Into<String>, ca: PathBuf) -> Self {
        let identity = ca
            .parent()
            .and_then(|dir| quiver_net::tls::pair_in(dir, "client"));
        ClientOptions {
            namesrv: vec![namesrv.into()],
            ca,
            identity,
            timeout: Duration::from_secs(10),
            route_refresh: ROUTE_REFRESH_DEFAULT,
        }
    }
}

/// How long a name server may take before the next one is asked as well.
pub const NAMESRV_STAGGER: Duration = Duration::from_millis(250);

/// Default age after which a cached route is fetched again.
pub const ROUTE_REFRESH_DEFAULT: Duration = Duration::from_secs(30);

/// Whether a failure means "nobody answered" (as opposed to an answer that says no).
fn is_unreachable(err: &ClientError) -> bool {
    matches!(
        err,
        ClientError::Net(NetError::Connect { .. } | NetError::Timeout { .. } | NetError::Io { .. })
    )
}

/// Whether a name server answered that it knows no live broker serving the topic.
fn is_not_found(err: &ClientError) -> bool {
    err.code() == Some(quiver_proto::ErrorCode::TopicNotFound)
}

/// A connection manager shared by producers, consumers and admin handles.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    options: ClientOptions,
    endpoint: ClientEndpoint,
    // Mutex: connections are looked up once per call and created rarely.
    conns: Mutex<HashMap<String, Arc<RpcClient>>>,
    routes: Mutex<HashMap<String, CachedRoute>>,
    // Index of the name server that answered last.
    namesrv_preferred: AtomicUsize,
}

/// A cached route, when it was fetched (or last tried), and whether a refresh is under way.
struct CachedRoute {
    route: Arc<TopicRoute>,
    fetched: Instant,
    refreshing: bool,
}

impl Client {
    /// A client; no connection is made until the first call.
    pub fn new(options: ClientOptions) -> Result<Self, ClientError> {
        if options.namesrv.is_empty() {
            return Err(ClientError::Invalid("no name server address given".into()));
        }
        let tls = ClientTls {
            ca: options.ca.clone(),
            identity: options.identity.clone(),
        };
        let endpoint = RpcClient::endpoint(&tls)?;
        Ok(Client {
            inner: Arc::new(Inner {
                options,
                endpoint,
                conns: Mutex::new(HashMap::new()),
                routes: Mutex::new(HashMap::new()),
                namesrv_preferred: AtomicUsize::new(0),
            }),
        })
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The connection to `addr`, made on first use.
    pub fn connection(&self, addr: &str) -> Result<Arc<RpcClient>, ClientError> {
        let mut conns = self.inner.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = conns.get(addr) {
            return Ok(conn.clone());
        }
        let conn = Arc::new(RpcClient::new(self.inner.endpoint.clone(), addr)?);
        conns.insert(addr.to_owned(), conn.clone());
        Ok(conn)
    }

    /// Calls `addr` and decodes the response, within the request timeout.
    pub async fn call<Req, Resp>(
        &self,
        addr: &str,
        code: RequestCode,
        request: &Req,
    ) -> Result<Resp, ClientError>
    where
        Req: serde::Serialize,
        Resp: for<'a> serde::Deserialize<'a>,
    {
        self.call_within(addr, code, request, self.inner.options.timeout)
            .await
    }

    /// Calls `addr` and decodes the response, within `timeout` (a long-poll's is its wait
    /// plus the request timeout).
    pub async fn call_within<Req, Resp>(
        &self,
        addr: &str,
        code: RequestCode,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClientError>
    where
        Req: serde::Serialize,
        Resp: for<'a> serde::Deserialize<'a>,
    {
        let conn = self.connection(addr)?;
        let body = conn
            .call(code, Bytes::from(encode_body(request)), timeout)
            .await?;
        Ok(decode_body(&body)?)
    }

    /// Calls `addr` with an encoded body; returns the response body.
    pub async fn call_raw(
        &self,
        addr: &str,
        code: RequestCode,
        body: Bytes,
    ) -> Result<Bytes, ClientError> {
        let conn = self.connection(addr)?;
        Ok(conn.call(code, body, self.inner.options.timeout).await?)
    }

    /// Sends a oneway request to `addr`.
    pub async fn oneway<Req: serde::Serialize>(
        &self,
        addr: &str,
        code: RequestCode,
        request: &Req,
    ) -> Result<(), ClientError> {
        let conn = self.connection(addr)?;
        Ok(conn
            .send_oneway(code, Bytes::from(encode_body(request)))
            .await?)
    }

    /// Calls the name servers until one answers (a server's error answer is final). The one
    /// that answered last is asked first; when it has not answered within
    /// [`NAMESRV_STAGGER`] (or has failed), the next is asked as well, and the first answer
    /// wins. A dead or frozen name server so costs a caller a fraction of a second, not a
    /// request timeout.
    pub async fn call_namesrv<Req, Resp>(
        &self,
        code: RequestCode,
        request: &Req,
    ) -> Result<Resp, ClientError>
    where
        Req: serde::Serialize,
        Resp: for<'a> serde::Deserialize<'a>,
    {
        let namesrvs = &self.inner.options.namesrv;
        let first = self.inner.namesrv_preferred.load(Ordering::Relaxed);
        let mut order: VecDeque<usize> = (0..namesrvs.len())
            .map(|i| (first + i) % namesrvs.len())
            .collect();
        let body = Bytes::from(encode_body(request));
        let mut asked = tokio::task::JoinSet::new();
        let ask = |asked: &mut tokio::task::JoinSet<_>, index: usize| {
            let (client, body) = (self.clone(), body.clone());
            asked.spawn(async move {
                let addr = &client.inner.options.namesrv[index];
                (index, client.call_raw(addr, code, body).await)
            });
        };
        ask(
            &mut asked,
            order.pop_front().expect("at least one name server"),
        );
        let mut last = None;
        loop {
            let more = !order.is_empty();
            let answer = tokio::select! {
                answer = asked.join_next() => answer,
                () = tokio::time::sleep(NAMESRV_STAGGER), if more => {
                    ask(&mut asked, order.pop_front().expect("more name servers"));
                    continue;
                }
            };
            match answer {
                None => break,
                // Name servers share nothing: one that just restarted does not know a topic
                // until the brokers' next heartbeats, so "not found" asks the others too, and
                // is the answer only when none knows better.
                Some(Ok((_, Err(err)))) if is_unreachable(&err) || is_not_found(&err) => {
                    if last.as_ref().is_none_or(|last| !is_not_found(last)) {
                        last = Some(err);
                    }
                    if let Some(index) = order.pop_front() {
                        ask(&mut asked, index);
                    }
                }
                Some(Ok((index, answer))) => {
                    self.inner.namesrv_preferred.store(index, Ordering::Relaxed);
                    return Ok(decode_body(&answer?)?);
                }
                Some(Err(join)) => {
                    last = Some(ClientError::Invalid(format!(
                        "name server call failed: {join}"
                    )));
                }
            }
        }
        Err(last.expect("every name server was asked"))
    }

    /// A topic's route. A cached route is returned at once; once it is older than
    /// `route_refresh`, one background task fetches it again (so sends never wait on the name
    /// servers, and a name server outage costs nothing while the brokers are up). Without a
    /// cached route the name servers are asked and the caller waits.
    pub async fn route(&self, topic: &str) -> Result<Arc<TopicRoute>, ClientError> {
        let stale = {
            let mut routes = self.inner.routes.lock().unwrap_or_else(|p| p.into_inner());
            match routes.get_mut(topic) {
                Some(cached) => {
                    let stale = !cached.refreshing
                        && cached.fetched.elapsed() >= self.inner.options.route_refresh;
                    cached.refreshing |= stale;
                    Some((cached.route.clone(), stale))
                }
                None => None,
            }
        };
        match stale {
            Some((route, true)) => {
                let client = self.clone();
                let topic = topic.to_owned();
                tokio::spawn(async move { client.refresh_in_background(&topic).await });
                Ok(route)
            }
            Some((route, false)) => Ok(route),
            None => self.refresh_route(topic).await,
        }
    }

    /// The background half of [`Client::route`]: a name server's route replaces the cached
    /// one; any failure keeps the cached route, tried again one refresh interval later.
    async fn refresh_in_background(&self, topic: &str) {
        let result = self.refresh_route(topic).await;
        let mut routes = self.inner.routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(err) = result {
            // Unreachable name servers, or restarted ones that have not heard from the brokers
            // yet: the brokers decide. A broker that no longer serves the topic says so on the
            // next send, which drops the route (see `forget_route`).
            tracing::debug!(topic, cause = %err, "route refresh failed; keeping the cached route");
            if let Some(cached) = routes.get_mut(topic) {
                cached.fetched = Instant::now();
                cached.refreshing = false;
            }
        }
    }

    /// Fetches a topic's route from the name servers now, and caches it.
    pub async fn refresh_route(&self, topic: &str) -> Result<Arc<TopicRoute>, ClientError> {
        let request = RouteGet {
            topic: topic.to_owned(),
        };
        let route: Arc<TopicRoute> =
            Arc::new(self.call_namesrv(RequestCode::RouteGet, &request).await?);
        let cached = CachedRoute {
            route: route.clone(),
            fetched: Instant::now(),
            refreshing: false,
        };
        self.inner
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_owned(), cached);
        Ok(route)
    }

    /// Forgets a cached route (after a routing error).
    pub fn forget_route(&self, topic: &str) {
        self.inner
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(topic);
    }

    /// Closes every connection, waiting briefly for unacknowledged data to drain.
    pub async fn close(&self) {
        let conns: Vec<_> = self
            .inner
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, c)| c)
            .collect();
        for conn in conns {
            conn.close().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.endpoint.wait_idle()).await;
    }
}
