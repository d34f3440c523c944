//! The upstream of the host tests: a hyper server (HTTP/1.1 and h2c on one port) on
//! 127.0.0.1:0 whose behaviour is chosen by the path:
//!
//! | path | response |
//! | --- | --- |
//! | `/echo-body` | 200 at once, then every request body frame echoed back as it arrives; trailers: the request's trailers plus `x-up-trailer: 1` |
//! | `/called` | `called` (counted in `calls`: the target of the filters' `proxy_http_call`) |
//! | `/slow/MS` | 200 after MS ms |
//! | `/big/N` | N bytes of `a` in 16 KiB frames |
//! | anything else | after reading the whole request body: JSON `{path, headers, body_len}` (request headers as an object, repeated ones joined by `, `) |
//!
//! Counters wake `support::upstream::wait_until` waiters.

use crate::support::client::{Body, BoxError};
use crate::support::upstream::notify_changed;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
pub struct Counters {
    pub requests: AtomicUsize,
    pub calls: AtomicUsize,
}

pub struct HostUpstream {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostUpstream {
    pub async fn start() -> HostUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let c = c.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(req, c.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        HostUpstream {
            addr,
            counters,
            task,
        }
    }

    pub fn requests(&self) -> usize {
        self.counters.requests.load(Ordering::SeqCst)
    }

    pub fn calls(&self) -> usize {
        self.counters.calls.load(Ordering::SeqCst)
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

async fn handle(req: Request<Incoming>, c: Arc<Counters>) -> Result<Response<Body>, BoxError> {
    c.requests.fetch_add(1, Ordering::SeqCst);
    notify_changed();
    let path = req.uri().path().to_string();
    let mut seg = path.trim_start_matches('/').splitn(2, '/');
    let head = seg.next().unwrap_or("");
    let arg = seg.next().unwrap_or("");
    match head {
        "echo-body" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
            let mut body = req.into_body();
            tokio::spawn(async move {
                let mut trailers = HeaderMap::new();
                while let Some(f) = body.frame().await {
                    match f {
                        Ok(f) => match f.into_data() {
                            Ok(d) => {
                                if tx.send(Ok(Frame::data(d))).await.is_err() {
                                    return;
                                }
                            }
                            Err(f) => {
                                if let Ok(t) = f.into_trailers() {
                                    trailers.extend(t);
                                }
                            }
                        },
                        Err(e) => {
                            let _ = tx.send(Err(Box::new(e))).await;
                            return;
                        }
                    }
                }
                trailers.insert("x-up-trailer", HeaderValue::from_static("1"));
                let _ = tx.send(Ok(Frame::trailers(trailers))).await;
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|f| (f, rx))
            });
            Ok(Response::builder()
                .header("x-upstream", "host")
                .body(BodyExt::boxed(StreamBody::new(stream)))?)
        }
        "called" => {
            c.calls.fetch_add(1, Ordering::SeqCst);
            notify_changed();
            Ok(Response::builder()
                .header("x-upstream", "host")
                .body(full("called"))?)
        }
        "slow" => {
            let ms = arg.parse().unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(Response::new(full("slow")))
        }
        "big" => {
            let n: usize = arg.parse().unwrap_or(0);
            let chunk = Bytes::from(vec![b'a'; 16 * 1024]);
            let frames: Vec<Result<Frame<Bytes>, BoxError>> = (0..n.div_ceil(chunk.len()))
                .map(|i| {
                    let len = chunk.len().min(n - i * chunk.len());
                    Ok(Frame::data(chunk.slice(..len)))
                })
                .collect();
            let stream = futures_util::stream::iter(frames);
            Ok(Response::builder()
                .header("x-upstream", "host")
                .body(BodyExt::boxed(StreamBody::new(stream)))?)
        }
        _ => {
            let mut headers: BTreeMap<String, String> = BTreeMap::new();
            for (k, v) in req.headers() {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                headers
                    .entry(k.as_str().to_string())
                    .and_modify(|e| {
                        e.push_str(", ");
                        e.push_str(&v);
                    })
                    .or_insert(v);
            }
            // Read the whole request body first, as most servers do before answering.
            let received = req.into_body().collect().await?.to_bytes().len();
            let body =
                serde_json::json!({ "path": path, "headers": headers, "body_len": received });
            Ok(Response::builder()
                .header("x-upstream", "host")
                .header("content-type", "application/json")
                .body(full(body.to_string()))?)
        }
    }
}
