//! A local OTLP/HTTP receiver: a hyper server on 127.0.0.1:0 keeping every JSON export request
//! it gets (and its content type), with a notification per request for waiting without sleeps.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Default)]
struct State {
    exports: Mutex<Vec<(String, String, Value)>>,
    changed: Notify,
}

pub struct Collector {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = req.uri().path().to_string();
    let ctype = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req.into_body().collect().await?.to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.exports.lock().unwrap().push((path, ctype, v));
    state.changed.notify_waiters();
    Ok(Response::new(Full::new(Bytes::from_static(b"{}"))))
}

impl Collector {
    pub async fn start() -> Collector {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |r| handle(r, st.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Collector { addr, state, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// Every `(path, content type, body)` received so far.
    pub fn exports(&self) -> Vec<(String, String, Value)> {
        self.state.exports.lock().unwrap().clone()
    }

    /// Every span received so far (flattened out of resourceSpans/scopeSpans).
    pub fn spans(&self) -> Vec<Value> {
        self.exports()
            .iter()
            .flat_map(|(_, _, v)| {
                v["resourceSpans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|rs| {
                        rs["scopeSpans"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
                    })
            })
            .collect()
    }

    /// Waits (notified per export, bounded) until `cond(spans)` holds.
    pub async fn wait_spans(&self, what: &str, cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let notified = self.state.changed.notified();
            let spans = self.spans();
            if cond(&spans) {
                return spans;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("collector: timed out waiting for {what}; spans: {spans:#?}");
            }
        }
    }
}
