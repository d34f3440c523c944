//! Upstream connection pools: one hyper client per (cluster, worker), keyed by the cluster's
//! identity so pools survive snapshot swaps that leave the cluster unchanged. The client keeps
//! idle keep-alive connections per endpoint (bounded by `pool.max_idle_per_endpoint`, closed
//! after `pool.idle_timeout`), speaks HTTP/1.1 or HTTP/2 (`http2: true`), and dials plain TCP
//! or rustls TLS ([`UpstreamConnector`]).

use super::ClusterState;
use crate::http::{BoxError, ProxyBody};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// The pooled client of one cluster on one worker.
pub type UpstreamClient = Client<UpstreamConnector, ProxyBody>;

/// Upstream TLS settings prepared at snapshot build.
#[derive(Clone)]
pub struct UpstreamTls {
    pub config: Arc<rustls::ClientConfig>,
    /// SNI / verified name; the endpoint host when `None`.
    pub sni: Option<ServerName<'static>>,
}

/// Dials an endpoint: TCP (with connect timeout and TCP_NODELAY), then TLS when configured.
#[derive(Clone)]
pub struct UpstreamConnector {
    http: HttpConnector,
    tls: Option<UpstreamTls>,
}

impl UpstreamConnector {
    pub fn new(connect_timeout: std::time::Duration, tls: Option<UpstreamTls>) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        UpstreamConnector { http, tls }
    }
}

impl tower_service::Service<http::Uri> for UpstreamConnector {
    type Response = UpstreamStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let mut http = self.http.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = http.call(uri.clone()).await?;
            let Some(tls) = tls else {
                return Ok(UpstreamStream::Plain(tcp));
            };
            let name = match tls.sni {
                Some(n) => n,
                None => {
                    let host = uri.host().unwrap_or("localhost").trim_matches(['[', ']']);
                    ServerName::try_from(host.to_string())?
                }
            };
            let stream = tokio_rustls::TlsConnector::from(tls.config)
                .connect(name, tcp.into_inner())
                .await?;
            Ok(UpstreamStream::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

/// A dialed upstream connection.
pub enum UpstreamStream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        match self {
            UpstreamStream::Plain(s) => s.connected(),
            UpstreamStream::Tls(s) => {
                let (tcp, conn) = s.inner().get_ref();
                let c = tcp.connected();
                if conn.alpn_protocol() == Some(b"h2") {
                    c.negotiated_h2()
                } else {
                    c
                }
            }
        }
    }
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

/// Builds the pooled client for one cluster (called once per worker per cluster).
pub fn build_client(cluster: &ClusterState) -> UpstreamClient {
    let cfg = &cluster.config;
    let connector = UpstreamConnector::new(cfg.connect_timeout.get(), cluster.tls.clone());
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(cfg.pool.idle_timeout.get())
        .pool_max_idle_per_host(cfg.pool.max_idle_per_endpoint)
        .http2_only(cfg.http2);
    builder.build(connector)
}

/// The pools of one worker: cluster identity → client. `!Sync`, lives on its worker thread.
#[derive(Default)]
pub struct WorkerPools {
    clients: RefCell<HashMap<u64, UpstreamClient>>,
    seen_version: std::cell::Cell<u64>,
}

impl WorkerPools {
    /// The client for `cluster`, created on first use on this worker.
    pub fn client(&self, cluster: &ClusterState) -> UpstreamClient {
        let mut map = self.clients.borrow_mut();
        map.entry(cluster.id)
            .or_insert_with(|| build_client(cluster))
            .clone()
    }

    /// Drops pools of clusters no longer in the running snapshot (called when a worker first
    /// sees a new snapshot version).
    pub fn retain_for(&self, version: u64, live: &dyn Fn(u64) -> bool) {
        if self.seen_version.get() == version {
            return;
        }
        self.seen_version.set(version);
        self.clients.borrow_mut().retain(|id, _| live(*id));
    }
}
