//! Active HTTP health checks (`health_check: { path, interval, timeout, unhealthy, healthy }`).
//!
//! [`spawn_health_checker`] runs one task per cluster (with one child task per endpoint): every
//! `interval` it sends `GET path` over plain HTTP/1.1 on a fresh connection (`Connection: close`)
//! and waits at most `timeout` for the response head. A 2xx is a success; anything else
//! (other status, refused connection, timeout, protocol error) a failure. `unhealthy`
//! consecutive failures mark the endpoint unhealthy, `healthy` consecutive successes mark it
//! healthy again. Endpoints start healthy, and the first check runs at once.
//!
//! The result lives in a [`HealthState`] (atomics, `Send + Sync`) the balancer's `available`
//! callback reads on the hot path. Aborting the returned handle stops every check of the
//! cluster (the endpoint tasks live in a `JoinSet` owned by the parent task).

use crate::config::HealthCheck;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

// === impl HealthState ===

/// Health of every endpoint of one cluster.
#[derive(Debug)]
pub struct HealthState {
    healthy: Box<[AtomicBool]>,
    transitions: AtomicU64,
    changed: Notify,
}

impl HealthState {
    /// All `endpoints` start healthy.
    pub fn new(endpoints: usize) -> Arc<Self> {
        Arc::new(HealthState {
            healthy: (0..endpoints).map(|_| AtomicBool::new(true)).collect(),
            transitions: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    /// Whether `ep` is healthy (out-of-range endpoints count as healthy).
    pub fn is_healthy(&self, ep: usize) -> bool {
        self.healthy
            .get(ep)
            .is_none_or(|h| h.load(Ordering::Relaxed))
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.healthy.len()
    }

    /// True when there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.healthy.is_empty()
    }

    /// Sets the health of `ep`; returns true when it changed (waiters are then woken).
    pub fn set_healthy(&self, ep: usize, healthy: bool) -> bool {
        let Some(h) = self.healthy.get(ep) else {
            return false;
        };
        let changed = h.swap(healthy, Ordering::Relaxed) != healthy;
        if changed {
            self.transitions.fetch_add(1, Ordering::Relaxed);
            self.changed.notify_waiters();
        }
        changed
    }

    /// How many healthy↔unhealthy transitions happened so far.
    pub fn transitions(&self) -> u64 {
        self.transitions.load(Ordering::Relaxed)
    }

    /// Waits until `ep`'s health equals `healthy`, at most `timeout`; returns whether it did.
    pub async fn wait_for(&self, ep: usize, healthy: bool, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register before checking, so a change between the check and the await is not lost.
            notified.as_mut().enable();
            if self.is_healthy(ep) == healthy {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_healthy(ep) == healthy;
            }
        }
    }
}

// === checker ===

/// Starts health-checking `endpoints` (index i of `state` is `endpoints[i]`) per `cfg`.
/// Runs until the returned handle is aborted. Must be called within a tokio runtime.
pub fn spawn_health_checker(
    cfg: HealthCheck,
    endpoints: Vec<SocketAddr>,
    state: Arc<HealthState>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let cfg = Arc::new(cfg);
        let mut set = tokio::task::JoinSet::new();
        for (ep, addr) in endpoints.into_iter().enumerate() {
            set.spawn(check_loop(cfg.clone(), ep, addr, state.clone()));
        }
        // Dropping the JoinSet (when this task is aborted) aborts every endpoint loop.
        while set.join_next().await.is_some() {}
    })
}

async fn check_loop(cfg: Arc<HealthCheck>, ep: usize, addr: SocketAddr, state: Arc<HealthState>) {
    let period = cfg.interval.get().max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        ticker.tick().await;
        let ok = check_once(addr, &cfg.path, cfg.timeout.get()).await.is_ok();
        if ok {
            successes = successes.saturating_add(1);
            failures = 0;
            if !state.is_healthy(ep) && successes >= cfg.healthy.max(1) {
                state.set_healthy(ep, true);
                tracing::info!(endpoint = %addr, "health check: endpoint healthy");
            }
        } else {
            failures = failures.saturating_add(1);
            successes = 0;
            if state.is_healthy(ep) && failures >= cfg.unhealthy.max(1) {
                state.set_healthy(ep, false);
                tracing::warn!(endpoint = %addr, "health check: endpoint unhealthy");
            }
        }
    }
}

/// Why one check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("timed out")]
    Timeout,
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("bad request: {0}")]
    Request(#[from] http::Error),
    #[error("status {0}")]
    Status(u16),
    #[error("connection closed before the response")]
    Closed,
}

/// One health check of `addr`: `GET path`, 2xx within `timeout` is Ok.
pub async fn check_once(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), CheckError> {
    match tokio::time::timeout(timeout, check_inner(addr, path)).await {
        Ok(r) => r,
        Err(_) => Err(CheckError::Timeout),
    }
}

async fn check_inner(addr: SocketAddr, path: &str) -> Result<(), CheckError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(CheckError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    let req = http::Request::get(if path.is_empty() { "/" } else { path })
        .header(http::header::HOST, addr.to_string())
        .header(http::header::USER_AGENT, "weir-health-check")
        .header(http::header::CONNECTION, "close")
        .body(Empty::new())?;
    let send = sender.send_request(req);
    tokio::pin!(send);
    tokio::pin!(conn);
    let resp = tokio::select! {
        biased;
        r = &mut send => r?,
        c = &mut conn => {
            // With `Connection: close` the connection may finish right after delivering the
            // response; the response (or the error) is then already waiting in `send`.
            c?;
            send.await.map_err(|_| CheckError::Closed)?
        }
    };
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(CheckError::Status(status.as_u16()))
    }
}

// === tests ===

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;
    use http_body_util::Full;
    use std::sync::atomic::AtomicU16;

    /// A tiny HTTP/1.1 server on 127.0.0.1:0 answering every request with `status`.
    async fn server(status: Arc<AtomicU16>) -> (SocketAddr, JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let status = status.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                        let code = status.load(Ordering::Relaxed);
                        let path_ok = req.uri().path() == "/healthz";
                        async move {
                            let code = if path_ok { code } else { 404 };
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(code)
                                    .body(Full::new(Bytes::from_static(b"ok")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (addr, task)
    }

    fn hc(interval_ms: u64) -> HealthCheck {
        HealthCheck {
            path: "/healthz".into(),
            interval: Dur::from_millis(interval_ms),
            timeout: Dur::from_millis(1000),
            unhealthy: 2,
            healthy: 2,
        }
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flips_between_healthy_and_unhealthy() {
        let status = Arc::new(AtomicU16::new(200));
        let (addr, srv) = server(status.clone()).await;
        check_once(addr, "/healthz", WAIT).await.unwrap();
        assert!(matches!(
            check_once(addr, "/other", WAIT).await,
            Err(CheckError::Status(404))
        ));

        let state = HealthState::new(1);
        let h = spawn_health_checker(hc(20), vec![addr], state.clone());
        assert!(state.is_healthy(0));

        status.store(500, Ordering::Relaxed);
        assert!(state.wait_for(0, false, WAIT).await, "became unhealthy");
        assert!(!state.is_healthy(0));
        status.store(200, Ordering::Relaxed);
        assert!(state.wait_for(0, true, WAIT).await, "healthy again");
        assert_eq!(state.transitions(), 2);

        h.abort();
        let _ = h.await;
        srv.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn refused_connection_is_unhealthy_and_other_endpoints_unaffected() {
        let status = Arc::new(AtomicU16::new(200));
        let (good, srv) = server(status).await;
        // A port that was bound and released: connecting is refused.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let state = HealthState::new(2);
        let h = spawn_health_checker(hc(10), vec![dead, good], state.clone());
        assert!(state.wait_for(0, false, WAIT).await);
        // By now endpoint 1 has been checked as often as endpoint 0 and stays healthy.
        assert!(state.is_healthy(1));
        assert_eq!(state.transitions(), 1);
        h.abort();
        srv.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn timeout_counts_as_failure() {
        // A server that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let srv = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let r = check_once(addr, "/healthz", Duration::from_millis(50)).await;
        assert!(matches!(r, Err(CheckError::Timeout)), "{r:?}");
        let mut cfg = hc(10);
        cfg.timeout = Dur::from_millis(30);
        let state = HealthState::new(1);
        let h = spawn_health_checker(cfg, vec![addr], state.clone());
        assert!(state.wait_for(0, false, WAIT).await);
        h.abort();
        srv.abort();
    }

    #[test]
    fn state_basics() {
        let s = HealthState::new(3);
        assert_eq!(s.len(), 3);
        assert!((0..3).all(|i| s.is_healthy(i)));
        assert!(s.is_healthy(99));
        assert!(s.set_healthy(1, false));
        assert!(!s.set_healthy(1, false));
        assert!(!s.is_healthy(1));
        assert!(!s.set_healthy(99, false));
        assert_eq!(s.transitions(), 1);
    }
}
