//! Upstream connection pools: one [`ClusterPool`] per (cluster, worker), keyed by the cluster's
//! identity so pools survive snapshot swaps that leave the cluster unchanged.
//!
//! A pool lives on its worker thread (`!Send`, no locks). Connections are of two kinds:
//! - plain-TCP HTTP/1.1 connections that carry body-less requests are driven by the request's own
//!   task ([`super::h1`]: no connection task, no channels);
//! - every other connection is a `hyper::client::conn` handshake whose connection task is a
//!   local task of the worker's runtime. A request with a body that finds an idle plain
//!   connection hands it to hyper.
//! - HTTP/1.1 clusters keep a LIFO stack of idle connections per endpoint, at most
//!   `pool.max_idle_per_endpoint`. A connection goes back to its stack when its response body
//!   has been read to the end ([`UpstreamBody`]); one whose response was abandoned is closed.
//! - HTTP/2 clusters (`http2: true`) share one multiplexed
//!   connection per endpoint; a new one is dialed (once, however many requests wait) when it
//!   closes.
//! - Idle connections close `pool.idle_timeout` after their last use (a timer per pool that
//!   sleeps until the oldest idle connection expires).
//! - A pooled connection the upstream closed is never handed out; when the upstream closes it
//!   while a request is being handed to it (before any byte is written), the request is sent
//!   on another connection instead — never a spurious 502.
//!
//! Dialing is TCP (connect timeout, `TCP_NODELAY`), then rustls TLS when the cluster has `tls:`.

use super::h1::{self, RawConn};
use super::limits::{ConnLimits, ConnSlot};
use super::ClusterState;
use crate::http::server::LocalExec;
use crate::http::{BoxError, ProxyBody};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Upstream TLS settings prepared at snapshot build.
#[derive(Clone)]
pub struct UpstreamTls {
    pub config: Arc<rustls::ClientConfig>,
    /// SNI / verified name; the endpoint host when `None`.
    pub sni: Option<ServerName<'static>>,
}

/// Why a request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection could be established (TCP, TLS or the HTTP/2 handshake).
    #[error("connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    /// The connection failed after the request was handed to it.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// The same, on a connection driven by the request's task.
    #[error(transparent)]
    Upstream(#[from] h1::H1Error),
    /// `max_connections` are open and `max_pending` requests already wait for one.
    #[error("circuit breaker: max_connections open and max_pending requests waiting")]
    Overflow,
}

// === impl dialing ===

/// A dialed upstream connection.
pub enum UpstreamStream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>),
}

impl hyper::rt::Read for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(s) => s.is_write_vectored(),
            UpstreamStream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Dials endpoint `ep` of `cluster`: TCP with the connect timeout, then TLS when configured.
async fn dial(cluster: &ClusterState, ep: usize) -> Result<UpstreamStream, PoolError> {
    let endpoint = &cluster.endpoints[ep];
    let fail = |reason: String| PoolError::Connect {
        endpoint: endpoint.address.clone(),
        reason,
    };
    let connect = async {
        match endpoint.socket {
            Some(addr) => TcpStream::connect(addr).await,
            None => TcpStream::connect(endpoint.address.as_str()).await,
        }
    };
    let timeout = cluster.config.connect_timeout.get();
    let tcp = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(fail(e.to_string())),
        Err(_) => return Err(fail(format!("timed out after {timeout:?}"))),
    };
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &cluster.tls else {
        return Ok(UpstreamStream::Plain(TokioIo::new(tcp)));
    };
    let name = match &tls.sni {
        Some(n) => n.clone(),
        None => {
            let host = endpoint.authority.host().trim_matches(['[', ']']);
            ServerName::try_from(host.to_string()).map_err(|e| fail(e.to_string()))?
        }
    };
    let handshake = tokio_rustls::TlsConnector::from(tls.config.clone()).connect(name, tcp);
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(s)) => Ok(UpstreamStream::Tls(Box::new(TokioIo::new(s)))),
        Ok(Err(e)) => Err(fail(format!("TLS: {e}"))),
        Err(_) => Err(fail(format!("TLS handshake timed out after {timeout:?}"))),
    }
}

/// A fresh connection to `ep`, its connection task spawned on this worker; the task holds the
/// connection's `slot` under `max_connections` until the connection ends.
async fn connect(cluster: &ClusterState, ep: usize, slot: ConnSlot) -> Result<Conn, PoolError> {
    let io = dial(cluster, ep).await?;
    handshake(cluster, ep, io, slot).await
}

/// A plain connection to `ep` that the request's own task drives ([`h1`]).
async fn connect_raw(cluster: &ClusterState, ep: usize, slot: ConnSlot) -> Result<Conn, PoolError> {
    match dial(cluster, ep).await? {
        UpstreamStream::Plain(tcp) => Ok(Conn::Raw(RawConn::new(tcp.into_inner(), slot))),
        tls => handshake(cluster, ep, tls, slot).await,
    }
}

/// Starts hyper's client on a dialed connection.
async fn handshake(
    cluster: &ClusterState,
    ep: usize,
    io: UpstreamStream,
    slot: ConnSlot,
) -> Result<Conn, PoolError> {
    let fail = |e: hyper::Error| PoolError::Connect {
        endpoint: cluster.endpoints[ep].address.clone(),
        reason: e.to_string(),
    };
    // The cluster's `http2` decides: its TLS config offers ALPN `h2` only then.
    if cluster.config.http2 {
        let (tx, conn) = http2::Builder::new(LocalExec)
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(fail)?;
        tokio::task::spawn_local(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream h2 connection ended");
            }
        });
        Ok(Conn::H2(tx))
    } else {
        let (tx, conn) = http1::Builder::new().handshake(io).await.map_err(fail)?;
        tokio::task::spawn_local(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(Conn::H1(tx))
    }
}

/// An HTTP/1.1 request as it goes on the wire to `endpoint` (its target is already the origin
/// form, see [`ClusterState::endpoint_uri`]): `Host` is required, so a request without one (an
/// HTTP/1.0 client's, a filter's `proxy_http_call` without `:authority`) gets the endpoint's.
fn http1_request(
    mut req: http::Request<ProxyBody>,
    endpoint: &http::uri::Authority,
) -> http::Request<ProxyBody> {
    if !req.headers().contains_key(http::header::HOST) {
        if let Ok(v) = http::HeaderValue::from_str(endpoint.as_str()) {
            req.headers_mut().insert(http::header::HOST, v);
        }
    }
    *req.version_mut() = http::Version::HTTP_11;
    req
}

/// A copy of a body-less idempotent request, to send again when a reused connection turns out
/// to be closed (`None` for other requests).
fn replayable(req: &http::Request<ProxyBody>) -> Option<http::Request<ProxyBody>> {
    if !req.method().is_idempotent() || !req.body().is_end_stream() {
        return None;
    }
    let mut copy = http::Request::new(crate::http::error::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// What [`ClusterPool::reserve`] got.
enum Reserved {
    Slot(ConnSlot),
    Pooled(Conn),
}

/// Whether `req` can go on a connection driven by its own task ([`h1`]): a body-less,
/// non-upgrade request to a plain-TCP HTTP/1.1 cluster.
fn direct(cluster: &ClusterState, req: &http::Request<ProxyBody>) -> bool {
    cluster.tls.is_none()
        && !cluster.config.http2
        && req.body().is_end_stream()
        && req.method() != http::Method::CONNECT
        && !req.headers().contains_key(http::header::UPGRADE)
        && req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
}

/// A connection handed to one request.
enum Conn {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
    Raw(RawConn),
}

// === impl ClusterPool ===

/// An idle HTTP/1.1 connection.
struct Idle {
    conn: IdleConn,
    since: Instant,
}

enum IdleConn {
    Hyper(http1::SendRequest<ProxyBody>),
    Raw(RawConn),
}

impl IdleConn {
    /// Whether the upstream closed it (or broke the protocol) while it was idle.
    fn is_closed(&self) -> bool {
        match self {
            IdleConn::Hyper(tx) => tx.is_closed(),
            IdleConn::Raw(c) => !c.is_usable(),
        }
    }
}

/// The connections of one endpoint.
#[derive(Default)]
struct EndpointConns {
    /// Idle HTTP/1.1 connections, most recently used last.
    idle: Vec<Idle>,
    /// The shared HTTP/2 connection and when a request last used it.
    h2: Option<(http2::SendRequest<ProxyBody>, Instant)>,
    /// Serialises HTTP/2 dials: requests arriving while one is underway wait for it.
    h2_dial: Rc<tokio::sync::Mutex<()>>,
}

/// The upstream connections of one cluster on one worker.
pub struct ClusterPool {
    endpoints: RefCell<Vec<EndpointConns>>,
    /// The cluster's connection breakers (shared with its pools on other workers).
    limits: Arc<ConnLimits>,
    max_idle: usize,
    idle_timeout: Duration,
    /// Wakes the idle reaper: a connection became idle, or the pool is dropped.
    reaper: Rc<tokio::sync::Notify>,
}

impl Drop for ClusterPool {
    fn drop(&mut self) {
        self.reaper.notify_one();
    }
}

impl ClusterPool {
    fn new(cluster: &ClusterState) -> Rc<ClusterPool> {
        let pool = Rc::new(ClusterPool {
            endpoints: RefCell::new(
                (0..cluster.endpoints.len())
                    .map(|_| EndpointConns::default())
                    .collect(),
            ),
            limits: cluster.conn_limits.clone(),
            max_idle: cluster.config.pool.max_idle_per_endpoint,
            idle_timeout: cluster.config.pool.idle_timeout.get(),
            reaper: Rc::new(tokio::sync::Notify::new()),
        });
        tokio::task::spawn_local(reap_idle(Rc::downgrade(&pool), pool.reaper.clone()));
        pool
    }

    /// Sends `req` to endpoint `ep` on a pooled connection (or a new one). The response body
    /// returns the connection to the pool when it has been read to the end. `queued` is true
    /// while the request waits for the cluster's breaker to allow a connection: a request that
    /// times out then never reached the endpoint, which is not the endpoint's failure.
    pub async fn send(
        self: &Rc<Self>,
        cluster: &ClusterState,
        ep: usize,
        mut req: http::Request<ProxyBody>,
        queued: &Cell<bool>,
    ) -> Result<http::Response<UpstreamBody>, PoolError> {
        let mut replayed = false;
        let direct = direct(cluster, &req);
        loop {
            let (conn, reused) = match self.checkout(ep).await {
                Some(c) => (c, true),
                None => self.connect(cluster, ep, direct, queued).await?,
            };
            let conn = match conn {
                Conn::Raw(raw) if direct => {
                    match raw.send(&req, &cluster.endpoints[ep].authority).await {
                        Ok(resp) => return Ok(self.attach_direct(resp, ep)),
                        // The same race as below; `req` is still ours to send again. Each
                        // try takes another pooled connection, and a new one is not retried.
                        Err(f) if reused && f.may_resend => {
                            tracing::debug!(error = %f.error, "reused upstream connection closed; sending again");
                            continue;
                        }
                        Err(f) => return Err(PoolError::Upstream(f.error)),
                    }
                }
                // A request with a body hands the idle plain connection to hyper.
                Conn::Raw(raw) => {
                    let (tcp, slot) = raw.into_parts();
                    let io = UpstreamStream::Plain(TokioIo::new(tcp));
                    handshake(cluster, ep, io, slot).await?
                }
                conn => conn,
            };
            let (mut err, replay) = match conn {
                Conn::H1(mut tx) => {
                    // An upstream may close an idle keep-alive connection just as a request is
                    // written to it (its FIN not seen yet). A body-less idempotent request that
                    // fails that way on a reused connection, before any response, is sent once
                    // more on another connection (RFC 9110 §9.2.2; nginx's and Envoy's pools do
                    // the same), so it never turns into a 502.
                    let replay = (reused && !replayed).then(|| replayable(&req)).flatten();
                    let req = http1_request(req, &cluster.endpoints[ep].authority);
                    match tx.try_send_request(req).await {
                        Ok(resp) => return Ok(self.attach(resp, ep, Some(tx))),
                        Err(e) => (e, replay),
                    }
                }
                // A closed shared connection is forgotten by the next checkout.
                Conn::H2(mut tx) => match tx.try_send_request(req).await {
                    Ok(resp) => return Ok(self.attach(resp, ep, None)),
                    Err(e) => (e, None),
                },
                Conn::Raw(_) => unreachable!("plain connections were dispatched above"),
            };
            match (err.take_message(), replay) {
                // Never written: try another connection (a brand-new one that would not take
                // it fails the request).
                (Some(m), _) if reused => req = m,
                (None, Some(again)) => {
                    tracing::debug!(error = %err.error(), "reused upstream connection closed; sending again");
                    replayed = true;
                    req = again;
                }
                _ => return Err(PoolError::Http(err.into_error())),
            }
        }
    }

    /// A pooled connection to `ep` that is ready for a request, if one is open.
    async fn checkout(&self, ep: usize) -> Option<Conn> {
        loop {
            if let Some(shared) = self.shared_h2(ep) {
                return Some(shared);
            }
            let mut tx = match self.endpoints.borrow_mut()[ep].idle.pop()?.conn {
                IdleConn::Raw(c) if c.is_usable() => return Some(Conn::Raw(c)),
                IdleConn::Raw(_) => continue, // dropping it closes it
                IdleConn::Hyper(tx) => tx,
            };
            if tx.is_closed() {
                continue;
            }
            // Usually ready already: the connection task went idle when it read the end of
            // the previous response. Otherwise it is about to (or is closing: skip it).
            if tx.is_ready() || tx.ready().await.is_ok() {
                return Some(Conn::H1(tx));
            }
        }
    }

    /// Dials `ep` (the bool: false) once the cluster has room for one more connection, or
    /// hands over a pooled one that became free meanwhile (true). HTTP/2 dials are shared: one
    /// connection per endpoint.
    async fn connect(
        &self,
        cluster: &ClusterState,
        ep: usize,
        direct: bool,
        queued: &Cell<bool>,
    ) -> Result<(Conn, bool), PoolError> {
        if !cluster.config.http2 {
            return match self.reserve(ep, queued).await? {
                Reserved::Slot(slot) if direct => {
                    Ok((connect_raw(cluster, ep, slot).await?, false))
                }
                Reserved::Slot(slot) => Ok((connect(cluster, ep, slot).await?, false)),
                Reserved::Pooled(c) => Ok((c, true)),
            };
        }
        let lock = self.endpoints.borrow()[ep].h2_dial.clone();
        let _dialing = lock.lock().await;
        if let Some(c) = self.shared_h2(ep) {
            return Ok((c, true)); // dialed by the request we waited for
        }
        let slot = match self.reserve(ep, queued).await? {
            Reserved::Slot(slot) => slot,
            Reserved::Pooled(c) => return Ok((c, true)),
        };
        let conn = connect(cluster, ep, slot).await?;
        if let Conn::H2(tx) = &conn {
            self.endpoints.borrow_mut()[ep].h2 = Some((tx.clone(), Instant::now()));
        }
        Ok((conn, false))
    }

    /// Room for one more connection under `max_connections`, waiting (as one of at most
    /// `max_pending`) while the cluster is full; a connection of this pool that goes idle
    /// meanwhile is taken instead.
    /// `queued` is set while it waits, and cleared when it stops waiting (a timeout that drops
    /// the wait leaves it set).
    async fn reserve(&self, ep: usize, queued: &Cell<bool>) -> Result<Reserved, PoolError> {
        let r = self.reserve_waiting(ep, queued).await;
        queued.set(false);
        r
    }

    async fn reserve_waiting(&self, ep: usize, queued: &Cell<bool>) -> Result<Reserved, PoolError> {
        let mut waiting = None;
        loop {
            let freed = self.limits.freed_signal();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = self.limits.try_open() {
                return Ok(Reserved::Slot(slot));
            }
            if waiting.is_none() {
                waiting = Some(self.limits.try_wait().ok_or(PoolError::Overflow)?);
                queued.set(true);
                // An idle connection of this pool to another endpoint holds a slot nobody is
                // using: close it (its task ends and frees the slot) rather than wait for its
                // idle timeout.
                self.close_one_idle();
            }
            freed.await;
            if let Some(c) = self.checkout(ep).await {
                return Ok(Reserved::Pooled(c));
            }
        }
    }

    /// The endpoint's shared HTTP/2 connection while it is open (a closed one is forgotten).
    fn shared_h2(&self, ep: usize) -> Option<Conn> {
        let slot = &mut self.endpoints.borrow_mut()[ep].h2;
        match slot {
            Some((tx, used)) if !tx.is_closed() => {
                *used = Instant::now();
                Some(Conn::H2(tx.clone()))
            }
            _ => {
                *slot = None;
                None
            }
        }
    }

    fn attach(
        self: &Rc<Self>,
        resp: http::Response<Incoming>,
        ep: usize,
        tx: Option<http1::SendRequest<ProxyBody>>,
    ) -> http::Response<UpstreamBody> {
        let (parts, body) = resp.into_parts();
        let mut body = UpstreamBody {
            checkin: tx.is_some().then(|| Checkin {
                pool: Rc::downgrade(self),
                ep,
            }),
            inner: Inner::Hyper { body, tx },
        };
        if body.inner.is_end_stream() {
            body.finish();
        }
        http::Response::from_parts(parts, body)
    }

    fn attach_direct(
        self: &Rc<Self>,
        resp: http::Response<h1::ResponseBody>,
        ep: usize,
    ) -> http::Response<UpstreamBody> {
        let (parts, body) = resp.into_parts();
        let mut body = UpstreamBody {
            inner: Inner::Direct(body),
            checkin: Some(Checkin {
                pool: Rc::downgrade(self),
                ep,
            }),
        };
        // A response read whole with its head frees its connection before it is forwarded.
        body.finish();
        http::Response::from_parts(parts, body)
    }

    /// Closes the longest-idle HTTP/1.1 connection of this pool, if any (dropping its handle
    /// ends its connection task).
    fn close_one_idle(&self) {
        let mut eps = self.endpoints.borrow_mut();
        let oldest = eps
            .iter_mut()
            .filter(|e| !e.idle.is_empty())
            .min_by_key(|e| e.idle[0].since);
        if let Some(e) = oldest {
            drop(e.idle.remove(0));
        }
    }

    /// Takes back an HTTP/1.1 connection whose response is complete.
    fn checkin(&self, ep: usize, conn: IdleConn) {
        if matches!(&conn, IdleConn::Hyper(tx) if tx.is_closed()) || self.max_idle == 0 {
            return;
        }
        let mut eps = self.endpoints.borrow_mut();
        let Some(e) = eps.get_mut(ep) else { return };
        if e.idle.len() >= self.max_idle {
            return; // dropping `tx` closes the connection
        }
        let first = e.idle.is_empty();
        e.idle.push(Idle {
            conn,
            since: Instant::now(),
        });
        drop(eps);
        if first {
            self.reaper.notify_one();
        }
        self.limits.freed();
    }

    /// Closes connections idle for `idle_timeout`; returns when the next one expires.
    fn reap(&self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut earliest = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for e in self.endpoints.borrow_mut().iter_mut() {
            e.idle
                .retain(|i| !i.conn.is_closed() && now.duration_since(i.since) < self.idle_timeout);
            if let Some(oldest) = e.idle.first() {
                earliest(oldest.since + self.idle_timeout);
            }
            if let Some((tx, used)) = &e.h2 {
                if tx.is_closed() || now.duration_since(*used) >= self.idle_timeout {
                    // In-flight streams keep the connection until they finish.
                    e.h2 = None;
                } else {
                    earliest(*used + self.idle_timeout);
                }
            }
        }
        next
    }
}

/// The idle reaper of one pool; ends with the pool. It holds no strong reference while it
/// waits (`Notify::notify_one` keeps a wake-up sent while it is not waiting).
async fn reap_idle(pool: Weak<ClusterPool>, wake: Rc<tokio::sync::Notify>) {
    loop {
        let next = {
            let Some(p) = pool.upgrade() else { return };
            p.reap(Instant::now())
        };
        match next {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => wake.notified().await,
        }
    }
}

/// Where a connection goes back when its response body ends.
struct Checkin {
    pool: Weak<ClusterPool>,
    ep: usize,
}

// === impl UpstreamBody ===

/// An upstream response body; reading it to the end returns its connection to the pool.
pub struct UpstreamBody {
    inner: Inner,
    checkin: Option<Checkin>,
}

enum Inner {
    /// From hyper's client; `tx` is the HTTP/1.1 connection to give back.
    Hyper {
        body: Incoming,
        tx: Option<http1::SendRequest<ProxyBody>>,
    },
    /// Read by the request's task; the body hands its connection back when reusable.
    Direct(h1::ResponseBody),
}

impl Inner {
    fn is_end_stream(&self) -> bool {
        match self {
            Inner::Hyper { body, .. } => body.is_end_stream(),
            Inner::Direct(b) => b.is_end_stream(),
        }
    }
}

impl UpstreamBody {
    /// Returns the connection to its pool once it is free: at the end of the body, or (for a
    /// direct body read whole with its head) as soon as the response arrived.
    fn finish(&mut self) {
        let conn = match &mut self.inner {
            Inner::Hyper { tx, .. } => tx.take().map(IdleConn::Hyper),
            Inner::Direct(b) => match b.take_conn() {
                Some(c) => Some(IdleConn::Raw(c)),
                None if b.is_end_stream() => None,
                None => return, // not free yet
            },
        };
        let Some(c) = self.checkin.take() else { return };
        if let (Some(conn), Some(pool)) = (conn, c.pool.upgrade()) {
            pool.checkin(c.ep, conn);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = match &mut self.inner {
            Inner::Hyper { body, .. } => Pin::new(body)
                .poll_frame(cx)
                .map_err(|e| Box::new(e) as BoxError),
            Inner::Direct(b) => Pin::new(b)
                .poll_frame(cx)
                .map_err(|e| Box::new(e) as BoxError),
        };
        match &r {
            Poll::Ready(None) => self.finish(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.finish(),
            // An error leaves the connection in an unknown state: it is not reused.
            Poll::Ready(Some(Err(_))) => self.checkin = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Hyper { body, .. } => body.size_hint(),
            Inner::Direct(b) => b.size_hint(),
        }
    }
}

// === impl WorkerPools ===

/// The pools of one worker: cluster identity → pool. `!Sync`, lives on its worker thread.
#[derive(Default)]
pub struct WorkerPools {
    /// cluster id → pool; looked up per request (foldhash: the ids are the proxy's own).
    pools: RefCell<foldhash::HashMap<u64, Rc<ClusterPool>>>,
    seen_version: std::cell::Cell<u64>,
}

impl WorkerPools {
    /// The pool for `cluster`, created on first use on this worker.
    pub fn pool(&self, cluster: &ClusterState) -> Rc<ClusterPool> {
        if let Some(p) = self.pools.borrow().get(&cluster.id) {
            return p.clone();
        }
        let p = ClusterPool::new(cluster);
        self.pools.borrow_mut().insert(cluster.id, p.clone());
        p
    }

    /// Drops pools of clusters no longer in the running snapshot (called when a worker first
    /// sees a new snapshot version).
    pub fn retain_for(&self, version: u64, live: &dyn Fn(u64) -> bool) {
        if self.seen_version.get() == version {
            return;
        }
        self.seen_version.set(version);
        self.pools.borrow_mut().retain(|id, _| live(*id));
    }
}
