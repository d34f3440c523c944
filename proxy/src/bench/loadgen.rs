//! The load generator of `weir bench`: keep-alive HTTP/1.1 or HTTP/2 connections, closed-loop
//! (each connection sends its next request when the previous one is done) or open-loop at a
//! fixed rate (`--rate`). In open-loop mode latency is measured from when a request was
//! *scheduled*, not when it was sent, so a stalled proxy cannot hide its stall (no coordinated
//! omission).

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What load to send.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub target: SocketAddr,
    pub path: String,
    pub duration: Duration,
    pub connections: usize,
    /// Total requests per second (open loop); `None`: closed loop, as fast as possible.
    pub rate: Option<u64>,
    pub http2: bool,
    /// Print a progress bar on stderr.
    pub progress: bool,
    /// Extra request headers.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// What came back.
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub non_2xx: u64,
    pub elapsed: Duration,
    /// Latency in microseconds.
    pub latency: Histogram<u64>,
    /// Responses by status code.
    pub statuses: std::collections::BTreeMap<u16, u64>,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Latency quantile in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

async fn connect(target: SocketAddr, http2: bool) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let io = TokioIo::new(tcp);
    if http2 {
        let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(c);
        Ok(Sender::H2(s))
    } else {
        let (s, c) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(c);
        Ok(Sender::H1(s))
    }
}

async fn one(
    sender: &mut Sender,
    target: SocketAddr,
    path: &str,
    extra: &[(http::HeaderName, http::HeaderValue)],
) -> Result<u16, String> {
    let mut req = http::Request::new(Empty::<Bytes>::new());
    for (k, v) in extra {
        req.headers_mut().insert(k.clone(), v.clone());
    }
    *req.uri_mut() = path
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    req.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_str(&target.to_string()).map_err(|e| e.to_string())?,
    );
    let resp = match sender {
        Sender::H1(s) => {
            s.ready().await.map_err(|e| e.to_string())?;
            s.send_request(req).await
        }
        Sender::H2(s) => {
            *req.uri_mut() = format!("http://{target}{path}")
                .parse()
                .map_err(|e: http::uri::InvalidUri| e.to_string())?;
            *req.version_mut() = http::Version::HTTP_2;
            s.ready().await.map_err(|e| e.to_string())?;
            s.send_request(req).await
        }
    }
    .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(status)
}

async fn connection_loop(
    opts: Arc<LoadOptions>,
    start: Instant,
    per_conn_rate: Option<f64>,
    done: Arc<AtomicU64>,
) -> LoadResult {
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    let (mut requests, mut errors, mut non_2xx) = (0u64, 0u64, 0u64);
    let mut statuses = std::collections::BTreeMap::new();
    let end = start + opts.duration;
    let mut sender = None;
    let mut k: u64 = 0;
    loop {
        let scheduled = match per_conn_rate {
            Some(r) => {
                let t = start + Duration::from_secs_f64(k as f64 / r);
                k += 1;
                if t >= end {
                    break;
                }
                tokio::time::sleep_until(t.into()).await;
                t
            }
            None => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                now
            }
        };
        if sender.is_none() {
            match connect(opts.target, opts.http2).await {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    errors += 1;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        match one(s, opts.target, &opts.path, &opts.headers).await {
            Ok(status) => {
                requests += 1;
                *statuses.entry(status).or_insert(0) += 1;
                if !(200..300).contains(&status) {
                    non_2xx += 1;
                }
                let us = scheduled.elapsed().as_micros() as u64;
                let _ = hist.record(us.clamp(1, 60_000_000));
                done.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                errors += 1;
                sender = None;
            }
        }
    }
    LoadResult {
        requests,
        errors,
        non_2xx,
        elapsed: opts.duration,
        latency: hist,
        statuses,
    }
}

/// Runs the load on a dedicated thread and runtime; blocks until done.
pub fn run(opts: LoadOptions) -> Result<LoadResult, String> {
    std::thread::Builder::new()
        .name("weir-loadgen".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(run_async(opts))
        })
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|_| "load generator panicked".to_string())?
}

async fn run_async(opts: LoadOptions) -> Result<LoadResult, String> {
    let opts = Arc::new(opts);
    let conns = opts.connections.max(1);
    let per_conn = opts.rate.map(|r| r as f64 / conns as f64);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(connection_loop(opts.clone(), start, per_conn, done.clone())))
        .collect();
    let progress = opts.progress.then(|| {
        let done = done.clone();
        let total = opts.duration;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let el = start.elapsed().min(total);
                let frac = el.as_secs_f64() / total.as_secs_f64().max(1e-9);
                let filled = (frac * 30.0) as usize;
                eprint!(
                    "\r[{}{}] {:>5.1}s/{:.0}s {:>9} requests",
                    "=".repeat(filled),
                    " ".repeat(30 - filled.min(30)),
                    el.as_secs_f64(),
                    total.as_secs_f64(),
                    done.load(Ordering::Relaxed)
                );
            }
        })
    });
    let mut total = LoadResult {
        requests: 0,
        errors: 0,
        non_2xx: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
        statuses: Default::default(),
    };
    for t in tasks {
        let r = t.await.map_err(|e| e.to_string())?;
        total.requests += r.requests;
        total.errors += r.errors;
        total.non_2xx += r.non_2xx;
        for (k, v) in r.statuses {
            *total.statuses.entry(k).or_insert(0) += v;
        }
        let _ = total.latency.add(&r.latency);
    }
    total.elapsed = start.elapsed();
    if let Some(p) = progress {
        p.abort();
        eprintln!();
    }
    Ok(total)
}
