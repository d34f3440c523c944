//! Upstream clusters: endpoints, load balancers, connection pools, health checks and
//! outlier ejection. A [`ClusterState`] is built once per snapshot (and reused by the next
//! snapshot when its config is unchanged, so pools, ejections and health survive swaps).

pub mod balancer;
pub mod h1;
pub mod health;
pub mod limits;
pub mod outlier;
pub mod pool;
pub mod ring_hash;

use crate::config;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

static NEXT_CLUSTER_ID: AtomicU64 = AtomicU64::new(1);

/// One upstream endpoint.
#[derive(Clone)]
pub struct Endpoint {
    /// As written in the config (`127.0.0.1:9001`, `orders.local:80`).
    pub address: String,
    /// Resolved at build time (for health checks and the access log).
    pub socket: Option<SocketAddr>,
    /// The URI authority requests to this endpoint use.
    pub authority: http::uri::Authority,
    /// Upstream responses of this endpoint, by code.
    pub stats: Arc<crate::metrics::CodeCounters>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster {cluster}: {message}")]
    Invalid { cluster: String, message: String },
    #[error("cluster {cluster}: {source}")]
    Tls {
        cluster: String,
        source: crate::tls::TlsError,
    },
}

/// A cluster as the request path sees it: immutable config plus shared atomic state.
pub struct ClusterState {
    /// Identity of this build of the cluster; per-worker pools are keyed by it.
    pub id: u64,
    /// Shared with every request's filter stream (`cluster_name`) without a copy.
    pub name: Arc<str>,
    pub config: config::Cluster,
    pub endpoints: Vec<Endpoint>,
    pub balancer: balancer::Balancer,
    pub outlier: Option<outlier::OutlierDetector>,
    pub health: Option<Arc<health::HealthState>>,
    health_task: Option<tokio::task::JoinHandle<()>>,
    pub tls: Option<pool::UpstreamTls>,
    pub scheme: http::uri::Scheme,
    /// Requests in flight (circuit breaker `limits.max_requests`).
    pub active: AtomicU32,
    /// Open connections and waiting requests (`limits.max_connections`, `limits.max_pending`).
    pub conn_limits: Arc<limits::ConnLimits>,
    /// `weir_upstream_ejections_total`, shared with the metrics registry.
    pub ejections: Arc<AtomicU64>,
}

impl Drop for ClusterState {
    fn drop(&mut self) {
        if let Some(t) = self.health_task.take() {
            t.abort();
        }
    }
}

impl ClusterState {
    /// Builds a cluster; `base_dir` resolves relative TLS paths. Health checking starts when a
    /// tokio runtime is current.
    pub fn build(
        cfg: &config::Cluster,
        base_dir: &std::path::Path,
        metrics: &crate::metrics::Registry,
    ) -> Result<Self, ClusterError> {
        let invalid = |message: String| ClusterError::Invalid {
            cluster: cfg.name.clone(),
            message,
        };
        if cfg.endpoints.is_empty() {
            return Err(invalid("no endpoints".into()));
        }
        let mut endpoints = Vec::with_capacity(cfg.endpoints.len());
        for a in &cfg.endpoints {
            let authority = a
                .parse::<http::uri::Authority>()
                .map_err(|e| invalid(format!("endpoint {a:?}: {e}")))?;
            endpoints.push(Endpoint {
                address: a.clone(),
                socket: std::net::ToSocketAddrs::to_socket_addrs(a.as_str())
                    .ok()
                    .and_then(|mut i| i.next()),
                authority,
                stats: metrics.upstream_stats(&cfg.name, a),
            });
        }
        let balancer =
            balancer::Balancer::new_with_ids(cfg.lb, &cfg.endpoints, cfg.hash_on.as_deref())
                .map_err(invalid)?;
        let tls = match &cfg.tls {
            None => None,
            Some(t) => {
                let p = |s: &String| crate::config::resolve_path(base_dir, s);
                let ca = t.ca.as_ref().map(p);
                let cert = t.cert.as_ref().map(p);
                let key = t.key.as_ref().map(p);
                let ck = match (&cert, &key) {
                    (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                    _ => None,
                };
                let config =
                    crate::tls::client_config(ca.as_deref(), ck, cfg.http2).map_err(|e| {
                        ClusterError::Tls {
                            cluster: cfg.name.clone(),
                            source: e,
                        }
                    })?;
                let sni = match &t.sni {
                    Some(s) => Some(
                        rustls::pki_types::ServerName::try_from(s.clone())
                            .map_err(|e| invalid(format!("sni {s:?}: {e}")))?,
                    ),
                    None => None,
                };
                Some(pool::UpstreamTls { config, sni })
            }
        };
        let outlier = cfg
            .outlier
            .as_ref()
            .map(|o| outlier::OutlierDetector::new(o, endpoints.len()));
        let (health, health_task) = match &cfg.health_check {
            Some(hc) if tokio::runtime::Handle::try_current().is_ok() => {
                let state = health::HealthState::new(endpoints.len());
                let addrs: Vec<SocketAddr> = endpoints
                    .iter()
                    .map(|e| {
                        e.socket
                            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
                    })
                    .collect();
                let task = health::spawn_health_checker(hc.clone(), addrs, state.clone());
                (Some(state), Some(task))
            }
            _ => (None, None),
        };
        Ok(ClusterState {
            id: NEXT_CLUSTER_ID.fetch_add(1, Ordering::Relaxed),
            name: cfg.name.as_str().into(),
            config: cfg.clone(),
            endpoints,
            balancer,
            outlier,
            health,
            health_task,
            scheme: if cfg.tls.is_some() {
                http::uri::Scheme::HTTPS
            } else {
                http::uri::Scheme::HTTP
            },
            tls,
            active: AtomicU32::new(0),
            conn_limits: limits::ConnLimits::new(
                cfg.limits.max_connections,
                cfg.limits.max_pending,
            ),
            ejections: metrics.ejections.clone(),
        })
    }

    /// Whether endpoint `ep` may receive traffic now (not ejected, not failing health checks).
    pub fn available(&self, ep: usize, now: Instant) -> bool {
        if let Some(h) = &self.health {
            if !h.is_healthy(ep) {
                return false;
            }
        }
        if let Some(o) = &self.outlier {
            if o.is_ejected(ep, now) {
                return false;
            }
        }
        true
    }

    /// Feeds an upstream result to outlier detection.
    pub fn record_result(&self, ep: usize, status: Option<u16>) {
        if let Some(o) = &self.outlier {
            if o.record(ep, status, Instant::now()) {
                self.ejections.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(cluster = %self.name, endpoint = %self.endpoints[ep].address, "endpoint ejected");
            }
        }
    }

    /// The URI of a request to endpoint `ep`: the origin form (path and query) for HTTP/1.1
    /// clusters (the pool sets `Host` from the endpoint when the request has none); for HTTP/2
    /// the absolute URI (cluster scheme, endpoint authority), which `:scheme` and `:authority`
    /// come from.
    pub fn endpoint_uri(
        &self,
        ep: usize,
        path: http::uri::PathAndQuery,
    ) -> Result<http::Uri, http::Error> {
        if !self.config.http2 {
            return Ok(http::Uri::from(path));
        }
        http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.endpoints[ep].authority.clone())
            .path_and_query(path)
            .build()
    }

    /// The HTTP version requests to this cluster use.
    pub fn http_version(&self) -> http::Version {
        if self.config.http2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        }
    }

    /// Whether active health checking finds no endpoint healthy (the request gets 503 UH).
    /// Outlier ejection never empties a cluster (`max_ejection_percent`), and when every
    /// remaining endpoint is ejected the balancer falls back to all of them (Envoy's panic mode).
    pub fn none_healthy(&self) -> bool {
        match &self.health {
            Some(h) => (0..self.endpoints.len()).all(|ep| !h.is_healthy(ep)),
            None => false,
        }
    }
}
