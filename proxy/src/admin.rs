//! The admin HTTP endpoint: `/ready`, `/config`, `/metrics`, `/stats/workers`, `POST /reload`.

use crate::http::error::{full, local_response};
use crate::http::ProxyBody;
use crate::shared::Shared;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;

/// Rebuilds and publishes the snapshot from its source; returns the new version or all errors.
pub type Reloader = Arc<dyn Fn() -> Result<u64, String> + Send + Sync>;

/// Serves the admin endpoint on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    reload: Option<Reloader>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        let reload = reload.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let reload = reload.clone();
                async move { Ok::<_, std::convert::Infallible>(route(req, &shared, reload).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from(
        serde_json::to_vec_pretty(v).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn route(
    req: Request<Incoming>,
    shared: &Shared,
    reload: Option<Reloader>,
) -> Response<ProxyBody> {
    match (req.method(), req.uri().path()) {
        // As Envoy: not ready until there is a configuration to serve (managed mode: before
        // the first control-plane version is applied).
        (&Method::GET, "/ready") if shared.is_ready() => local_response(StatusCode::OK, "ready"),
        (&Method::GET, "/ready") => local_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no configuration applied yet",
        ),
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(full(Bytes::from(shared.metrics.render())));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::GET, "/filters") => json(StatusCode::OK, &filters_json(shared)),
        (&Method::GET, "/listeners") => {
            let l: serde_json::Map<String, serde_json::Value> = shared
                .listeners()
                .into_iter()
                .map(|(n, (_, a))| (n, a.to_string().into()))
                .collect();
            json(StatusCode::OK, &serde_json::Value::Object(l))
        }
        (&Method::GET, "/config") => {
            let snap = shared.snapshot.load();
            let listeners: serde_json::Map<String, serde_json::Value> = shared
                .listeners()
                .into_iter()
                .map(|(n, (_, a))| (n, a.to_string().into()))
                .collect();
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "version": snap.version,
                    "control_version": shared.control_version.load(std::sync::atomic::Ordering::Relaxed),
                    "listeners": listeners,
                    "swapped_at": humantime::format_rfc3339_millis(snap.swapped_at).to_string(),
                    "config": snap.config,
                }),
            )
        }
        (&Method::GET, "/stats/workers") => {
            let workers: Vec<_> = shared
                .workers
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    serde_json::json!({
                        "id": i,
                        "accepted": w.accepted.load(std::sync::atomic::Ordering::Relaxed),
                        "requests": w.requests.load(std::sync::atomic::Ordering::Relaxed),
                    })
                })
                .collect();
            json(StatusCode::OK, &serde_json::json!({ "workers": workers }))
        }
        (&Method::POST, "/reload") => match reload {
            None => local_response(StatusCode::NOT_IMPLEMENTED, "reload not available"),
            Some(f) => match shared.swap_thread.run(move || f()).await {
                Ok(Ok(v)) => json(StatusCode::OK, &serde_json::json!({ "version": v })),
                Ok(Err(e)) => json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": e })),
                Err(e) => local_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            },
        },
        _ => local_response(StatusCode::NOT_FOUND, "not found"),
    }
}

/// A failure policy as the YAML spells it (`on_error:`).
fn failure_policy_name(p: weir_wasm::FailurePolicy) -> &'static str {
    match p {
        weir_wasm::FailurePolicy::FailClosed => "fail_closed",
        weir_wasm::FailurePolicy::FailOpen => "fail_open",
        weir_wasm::FailurePolicy::Reload => "reload",
    }
}

/// `/filters`: every filter of the running snapshot with its module digest, VMs, errors and the
/// time spent in its callbacks (host accounting).
fn filters_json(shared: &Shared) -> serde_json::Value {
    use weir_wasm::FailureKind;
    let snap = shared.snapshot.load();
    let mut names: Vec<&String> = snap.filters.keys().collect();
    names.sort();
    let filters: Vec<serde_json::Value> = names
        .into_iter()
        .map(|name| {
            let p = &snap.filters[name];
            let spec = p.spec();
            let stats = p.stats();
            let phases: serde_json::Map<String, serde_json::Value> = stats
                .phases()
                .into_iter()
                .map(|(ph, calls, secs)| {
                    (
                        ph.to_string(),
                        serde_json::json!({
                            "calls": calls,
                            "seconds": secs,
                            "us_per_call": secs * 1e6 / calls.max(1) as f64,
                        }),
                    )
                })
                .collect();
            serde_json::json!({
                "name": name,
                "module_sha256": p.module().sha256_hex(),
                "abi": format!("{:?}", p.module().abi()),
                "vm_id": spec.vm_id,
                "root_id": spec.root_id,
                "on_error": failure_policy_name(spec.failure),
                "vms": shared.workers.len(),
                "vms_live": stats.live_vms(),
                "memory_bytes": stats.memory_bytes(),
                "memory_limit_bytes": spec.memory_limit_bytes,
                "callback_deadline_ms": spec.callback_deadline.as_secs_f64() * 1e3,
                "errors": {
                    "trap": stats.errors(FailureKind::Trap),
                    "timeout": stats.errors(FailureKind::Timeout),
                    "oom": stats.errors(FailureKind::Oom),
                    "config": stats.errors(FailureKind::Config),
                },
                "seconds_total": stats.total_seconds(),
                "phases": phases,
            })
        })
        .collect();
    serde_json::json!({ "version": snap.version, "filters": filters })
}
