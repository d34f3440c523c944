//! A small in-process upstream server for `weir demo` and `weir bench`: HTTP/1.1 and h2c on one
//! port. `/bench` answers a fixed 2-byte body; anything else echoes the request as JSON
//! (`upstream`, `method`, `path`, `headers`), with `x-upstream: NAME` on every response.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::Arc;

async fn answer(
    name: Arc<str>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let mut resp = if req.uri().path() == "/bench" {
        Response::new(Full::new(Bytes::from_static(b"ok")))
    } else {
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                )
            })
            .collect();
        let method = req.method().to_string();
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let _ = req.into_body().collect().await;
        let v = serde_json::json!({ "upstream": &*name, "method": method, "path": path, "headers": headers });
        let mut r = Response::new(Full::new(Bytes::from(
            serde_json::to_vec(&v).unwrap_or_default(),
        )));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    };
    if let Ok(v) = http::HeaderValue::from_str(&name) {
        resp.headers_mut().insert("x-upstream", v);
    }
    Ok(resp)
}

/// Starts an upstream named `name` on 127.0.0.1:0 on the current runtime; returns its address.
pub async fn spawn(name: &str) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let name: Arc<str> = Arc::from(name);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let name = name.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| answer(name.clone(), req));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}
