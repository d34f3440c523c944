//! Helpers: YAML building blocks, starting weir, reading /metrics, streaming request bodies.

use crate::support::client::{Body, BoxError, Resp};
use crate::support::{Client, TempDir, Weir, DEADLINE};
use crate::upstream::HostUpstream;
use bytes::Bytes;
use http::Method;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use std::path::Path;
use std::time::{Duration, Instant};

/// One `filters:` entry: `config` is a JSON (flow YAML) value, `extra` more keys of the entry
/// (`on_error: reload`, `limits: {...}`), one per line, unindented.
pub fn filter(name: &str, module: &Path, config: &str, extra: &str) -> String {
    let mut s = format!(
        "  - name: {name}\n    module: {}\n    config: {config}\n",
        module.display()
    );
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str(&format!("    {}\n", line.trim()));
    }
    s
}

/// An e2e_filter entry with `tag` and extra keys. Unless `extra` sets `limits`, the callback
/// deadline is 1 s: the deadline is wall-clock time, and the tests share a loaded machine.
pub fn e2e(name: &str, tag: &str, extra: &str) -> String {
    let mut extra = extra.to_string();
    if !extra.contains("limits") {
        extra.push_str("\nlimits: { callback_deadline: 1s }");
    }
    filter(
        name,
        crate::guest::e2e_filter(),
        &format!("{{\"tag\": \"{tag}\"}}"),
        &extra,
    )
}

/// Clusters `up` (HTTP/2 to the host upstream) and `calls` (HTTP/1.1, same upstream).
pub fn clusters(up: &HostUpstream) -> String {
    format!(
        "clusters:\n  - name: up\n    endpoints: [{a}]\n    http2: true\n  - name: calls\n    endpoints: [{a}]\n",
        a = up.addr
    )
}

/// One listener `edge` with the listener chain `chain` and one route `/` → `up`.
pub fn simple(up: &HostUpstream, chain: &[&str], filters: &str) -> String {
    format!(
        "listeners:\n  - name: edge\n    address: 127.0.0.1:0\n    filters: [{}]\n    routes:\n      - name: all\n        match: {{ path_prefix: / }}\n        cluster: up\n{}filters:\n{filters}",
        chain.join(", "),
        clusters(up)
    )
}

pub async fn start(yaml: &str, workers: usize) -> Weir {
    Weir::start_with(yaml, workers, TempDir::new("host")).await
}

/// `GET path` with `x-act: act` and extra headers.
pub async fn act(c: &mut Client, path: &str, act: &str, headers: &[(&str, &str)]) -> Resp {
    let mut h = vec![("x-act", act)];
    h.extend_from_slice(headers);
    c.get_with(path, &h).await
}

/// `POST path` with `x-act: act` and a complete body.
pub async fn post(c: &mut Client, path: &str, act: &str, body: &'static [u8]) -> Resp {
    let req = c
        .request(Method::POST, path)
        .header("x-act", act)
        .body(crate::support::full(Bytes::from_static(body)))
        .expect("request");
    c.fetch(req)
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e:?}"))
}

/// The admin /metrics text.
pub async fn metrics(w: &Weir) -> String {
    let (status, text) = w.admin_get("/metrics").await;
    assert_eq!(status, 200, "{text}");
    text
}

/// Value of the series `series` (name with labels, exactly as rendered) in `text`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls /metrics (bounded by `DEADLINE`) until `series` satisfies `pred`; returns its value.
pub async fn wait_metric(w: &Weir, series: &str, pred: impl Fn(f64) -> bool) -> f64 {
    let start = Instant::now();
    let mut last = String::new();
    for _ in 0..3000 {
        last = metrics(w).await;
        if let Some(v) = metric(&last, series) {
            if pred(v) {
                return v;
            }
        }
        if start.elapsed() > DEADLINE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("metric {series} never satisfied the condition; /metrics:\n{last}");
}

/// A request body fed by the test, frame by frame.
pub fn channel_body() -> (tokio::sync::mpsc::Sender<Frame<Bytes>>, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Frame<Bytes>>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|f| (Ok::<_, BoxError>(f), rx))
    });
    (tx, BodyExt::boxed(StreamBody::new(stream)))
}

/// The next data frame of `body` (trailers are skipped), bounded by `DEADLINE`.
pub async fn next_data(body: &mut hyper::body::Incoming) -> Option<Bytes> {
    tokio::time::timeout(DEADLINE, async {
        while let Some(f) = body.frame().await {
            match f.expect("response body frame").into_data() {
                Ok(d) if !d.is_empty() => return Some(d),
                _ => continue,
            }
        }
        None
    })
    .await
    .expect("a response frame in time")
}

/// Decodes a proxy-wasm serialized map (u32 count, (u32 key len, u32 value len) per pair, then
/// each key and value followed by NUL).
pub fn decode_map(b: &[u8]) -> Vec<(String, String)> {
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")) as usize;
    let n = u32_at(0);
    let mut sizes = Vec::new();
    for i in 0..n {
        sizes.push((u32_at(4 + i * 8), u32_at(8 + i * 8)));
    }
    let mut at = 4 + n * 8;
    let mut out = Vec::new();
    for (k, v) in sizes {
        let key = String::from_utf8_lossy(&b[at..at + k]).into_owned();
        at += k + 1;
        let val = String::from_utf8_lossy(&b[at..at + v]).into_owned();
        at += v + 1;
        out.push((key, val));
    }
    out
}

/// Parses the `props` answer of e2e_filter: path → bytes (`Err(status)` when not found).
pub fn parse_props(text: &str) -> std::collections::HashMap<String, Result<Vec<u8>, String>> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = match v.strip_prefix('!') {
                Some(err) => Err(err.to_string()),
                None => Ok((0..v.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&v[i..i + 2], 16).expect("hex"))
                    .collect()),
            };
            (k.to_string(), v)
        })
        .collect()
}
