//! OTLP/HTTP JSON span export: a bounded queue and one background thread per [`Tracer`].
//!
//! The request path calls [`Tracer::submit`] (a `try_send`; never blocks, never allocates beyond
//! the spans themselves). The `weir-otlp` thread collects up to `batch_size` spans or waits
//! `flush_interval`, encodes an `ExportTraceServiceRequest` in the OTLP JSON encoding (ids as
//! lowercase hex, 64-bit integers as decimal strings) and POSTs it with `Content-Type:
//! application/json` over HTTP/1.1. When the tracer is dropped (its snapshot replaced and its
//! last request done) the thread sends what is left and exits.

use super::{AttrValue, SpanRecord};
use crate::config::OtlpConfig;
use crate::metrics::SpanCounters;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Why an endpoint or an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("`{0}` is not an http://HOST:PORT/PATH URL (only plain http is supported)")]
    BadEndpoint(String),
    #[error("collector {0}: {1}")]
    Io(String, std::io::Error),
    #[error("collector {0} answered `{1}`")]
    Status(String, String),
}

/// A parsed collector URL (`http://HOST[:PORT][/PATH]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `HOST:PORT` (port 80 when absent).
    pub authority: String,
    pub host: String,
    pub path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, ExportError> {
        let bad = || ExportError::BadEndpoint(url.to_string());
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") {
            return Err(bad());
        }
        let auth = uri.authority().ok_or_else(bad)?;
        if auth.host().is_empty() {
            return Err(bad());
        }
        let port = auth.port_u16().unwrap_or(80);
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") | Some("/") => "/v1/traces".to_string(),
            Some(p) => p.to_string(),
        };
        Ok(Endpoint {
            authority: format!("{}:{port}", auth.host()),
            host: auth.as_str().to_string(),
            path,
        })
    }
}

// === impl Tracer ===

/// The span exporter of one snapshot (shared by every worker).
pub struct Tracer {
    tx: SyncSender<Vec<SpanRecord>>,
    counters: Arc<SpanCounters>,
    config: OtlpConfig,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("endpoint", &self.config.endpoint)
            .finish()
    }
}

impl Tracer {
    /// Starts the export thread. `queue_size` bounds the requests' span groups waiting.
    pub fn start(config: &OtlpConfig, counters: Arc<SpanCounters>) -> Result<Tracer, ExportError> {
        let endpoint = Endpoint::parse(&config.endpoint)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_size.max(1));
        let worker = ExportLoop {
            rx,
            endpoint,
            service_name: config.service_name.clone(),
            batch_size: config.batch_size.max(1),
            flush_interval: config.flush_interval.get().max(Duration::from_millis(1)),
            counters: counters.clone(),
        };
        std::thread::Builder::new()
            .name("weir-otlp".into())
            .spawn(move || worker.run())
            .map_err(|e| ExportError::Io(config.endpoint.clone(), e))?;
        Ok(Tracer {
            tx,
            counters,
            config: config.clone(),
        })
    }

    /// The configuration this tracer was started from (a snapshot reuses an equal one).
    pub fn config(&self) -> &OtlpConfig {
        &self.config
    }

    /// Queues the spans of one request; drops them (counted) when the queue is full.
    pub fn submit(&self, spans: Vec<SpanRecord>) {
        let n = spans.len() as u64;
        match self.tx.try_send(spans) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

struct ExportLoop {
    rx: Receiver<Vec<SpanRecord>>,
    endpoint: Endpoint,
    service_name: String,
    batch_size: usize,
    flush_interval: Duration,
    counters: Arc<SpanCounters>,
}

impl ExportLoop {
    fn run(self) {
        let mut batch: Vec<SpanRecord> = Vec::new();
        let mut open = true;
        while open {
            // Wait for the first span, then fill the batch until full or the interval passes.
            match self.rx.recv() {
                Ok(s) => batch.extend(s),
                Err(_) => break,
            }
            let deadline = Instant::now() + self.flush_interval;
            while batch.len() < self.batch_size {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.rx.recv_timeout(left) {
                    Ok(s) => batch.extend(s),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            while !batch.is_empty() {
                let n = batch.len().min(self.batch_size);
                let rest = batch.split_off(n);
                self.export(&batch);
                batch = rest;
            }
        }
        if !batch.is_empty() {
            self.export(&batch);
        }
    }

    fn export(&self, spans: &[SpanRecord]) {
        let body = encode(&self.service_name, spans);
        match post(&self.endpoint, &body) {
            Ok(()) => {
                self.counters
                    .exported
                    .fetch_add(spans.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters
                    .failed
                    .fetch_add(spans.len() as u64, Ordering::Relaxed);
                tracing::warn!(error = %e, spans = spans.len(), "OTLP export failed");
            }
        }
    }
}

/// One `POST` with `Connection: close`; success is a 2xx status line.
fn post(ep: &Endpoint, body: &[u8]) -> Result<(), ExportError> {
    let io = |e| ExportError::Io(ep.authority.clone(), e);
    let addr = ep
        .authority
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| ExportError::BadEndpoint(ep.authority.clone()))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(io)?;
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nuser-agent: weir/{}\r\nconnection: close\r\n\r\n",
        ep.path,
        ep.host,
        body.len(),
        env!("CARGO_PKG_VERSION"),
    );
    s.write_all(head.as_bytes()).map_err(io)?;
    s.write_all(body).map_err(io)?;
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    while !got.contains(&b'\n') && got.len() < 4096 {
        let n = s.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&got);
    let line = line.lines().next().unwrap_or("").trim().to_string();
    let ok = line
        .split(' ')
        .nth(1)
        .is_some_and(|code| code.len() == 3 && code.starts_with('2'));
    if ok {
        Ok(())
    } else {
        Err(ExportError::Status(ep.authority.clone(), line))
    }
}

// === OTLP JSON encoding ===

fn unix_nanos(t: SystemTime) -> String {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        .to_string()
}

fn attr(key: &str, v: &AttrValue) -> serde_json::Value {
    let value = match v {
        AttrValue::Str(s) => serde_json::json!({ "stringValue": s }),
        AttrValue::Int(i) => serde_json::json!({ "intValue": i.to_string() }),
    };
    serde_json::json!({ "key": key, "value": value })
}

/// An `ExportTraceServiceRequest` in the OTLP JSON encoding.
pub fn encode(service_name: &str, spans: &[SpanRecord]) -> Vec<u8> {
    let spans: Vec<serde_json::Value> = spans
        .iter()
        .map(|s| {
            let mut v = serde_json::json!({
                "traceId": hex::encode(s.trace_id),
                "spanId": hex::encode(s.span_id),
                "name": s.name,
                "kind": s.kind as i32,
                "startTimeUnixNano": unix_nanos(s.start),
                "endTimeUnixNano": unix_nanos(s.end),
                "attributes": s.attributes.iter().map(|(k, v)| attr(k, v)).collect::<Vec<_>>(),
                "status": { "code": if s.error { 2 } else { 0 } },
            });
            if let Some(p) = s.parent_span_id {
                v["parentSpanId"] = hex::encode(p).into();
            }
            v
        })
        .collect();
    let req = serde_json::json!({
        "resourceSpans": [{
            "resource": { "attributes": [attr("service.name", &AttrValue::Str(service_name.to_string()))] },
            "scopeSpans": [{
                "scope": { "name": "weir", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }],
    });
    serde_json::to_vec(&req).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::SpanKind;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:4318/v1/traces").unwrap();
        assert_eq!(e.authority, "127.0.0.1:4318");
        assert_eq!(e.path, "/v1/traces");
        assert_eq!(
            Endpoint::parse("http://collector").unwrap().authority,
            "collector:80"
        );
        assert_eq!(
            Endpoint::parse("http://collector:1/").unwrap().path,
            "/v1/traces"
        );
        for bad in [
            "",
            "https://x:1/v1/traces",
            "127.0.0.1:4318",
            "http:///x",
            "ftp://x",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encodes_otlp_json() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
        let s = SpanRecord {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: Some([3; 8]),
            name: "GET r".into(),
            kind: SpanKind::Server,
            start: t,
            end: t + Duration::from_millis(5),
            attributes: vec![
                ("http.method", AttrValue::Str("GET".into())),
                ("http.status_code", AttrValue::Int(200)),
            ],
            error: false,
        };
        let v: serde_json::Value = serde_json::from_slice(&encode("svc", &[s])).unwrap();
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "01010101010101010101010101010101");
        assert_eq!(span["spanId"], "0202020202020202");
        assert_eq!(span["parentSpanId"], "0303030303030303");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["startTimeUnixNano"], "1000000000");
        assert_eq!(span["endTimeUnixNano"], "1005000000");
        assert_eq!(span["attributes"][1]["value"]["intValue"], "200");
        assert_eq!(
            v["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "svc"
        );
    }
}
