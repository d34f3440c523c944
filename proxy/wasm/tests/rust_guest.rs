//! A filter built with the `proxy-wasm` Rust SDK (tests/guests/sdk_filter), compiled in the test
//! run for wasm32-unknown-unknown and wasm32-wasip1, driven through the chain API with a real
//! HTTP upstream on 127.0.0.1 for `proxy_http_call`.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{get_request, run_local};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use weir_wasm::{
    BodyFlow, FilterChain, Flow, HeaderList, HostServices, HttpCallError, HttpCallFuture,
    HttpCallResponse, PluginSpec, PluginVm, StreamError, StreamInfo, WasmHost,
};

fn build_guest(target: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = dir.join("tests/guests/sdk_filter/Cargo.toml");
    let target_dir: PathBuf = dir.join("../../target/wasm-guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release", "--target", target, "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "guest build for {target} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(target_dir.join(target).join("release/sdk_filter.wasm")).expect("guest wasm")
}

/// Serves `http_call` to cluster "upstream" from a real HTTP server on 127.0.0.1.
struct Services {
    upstream: SocketAddr,
}

impl HostServices for Services {
    fn http_call(
        &self,
        cluster: &str,
        request: http::Request<Bytes>,
        _timeout: Duration,
    ) -> Result<HttpCallFuture, HttpCallError> {
        if cluster != "upstream" {
            return Err(HttpCallError::UnknownCluster(cluster.into()));
        }
        let addr = self.upstream;
        Ok(Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::task::spawn_local(conn);
            let (parts, body) = request.into_parts();
            let resp = sender
                .send_request(http::Request::from_parts(parts, Full::new(body)))
                .await
                .map_err(|e| e.to_string())?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok(HttpCallResponse {
                response: http::Response::from_parts(parts, body),
                trailers: None,
            })
        }))
    }
}

async fn start_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::task::spawn_local(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::task::spawn_local(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"pong"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn info() -> StreamInfo {
    StreamInfo {
        source_address: Some("127.0.0.1:4242".parse().unwrap()),
        ..StreamInfo::default()
    }
}

fn sdk_spec(name: &str) -> PluginSpec {
    let mut s = PluginSpec::new(name);
    s.root_id = "sdk-root".into();
    s.vm_id = "sdk".into();
    s.configuration = b"{}".to_vec();
    s.max_body_bytes = 16;
    s.callback_deadline = Duration::from_millis(500);
    s
}

fn exercise(wasm: &[u8], name: &str) {
    let host = WasmHost::new().unwrap();
    let module = host.compile(wasm).expect("guest compiles");
    let plugin = host.prepare(sdk_spec(name), module.clone());
    host.shared_data().set("sdk", b"counter", b"0", 0);

    run_local(async {
        let upstream = start_upstream().await;
        let vm = PluginVm::new(&plugin, Rc::new(Services { upstream })).expect("vm starts");
        vm.activate();
        let chain = FilterChain::new(vec![vm]);

        // Headers and properties.
        let mut s = chain.new_stream(info());
        assert_eq!(
            s.on_request_headers(get_request("/plain?q=1"), true).await,
            Flow::Continue
        );
        {
            let h = s.request_headers();
            assert_eq!(h.get_str("x-sdk"), Some("1"));
            assert_eq!(h.get_str("x-root-id"), Some("sdk-root"));
            assert_eq!(h.get_str("x-prop-path"), Some("/plain?q=1"));
            assert_eq!(h.get_str("x-source-port"), Some("4242"));
            assert_eq!(h.get_str("x-mark"), Some("m1"));
            assert_eq!(h.get_str("x-unknown-prop"), Some("none"));
        }
        assert_eq!(s.property(b"weir\0mark"), Some(b"m1".to_vec()));
        assert_eq!(
            s.on_response_headers(HeaderList::from_pairs([(":status", "200")]), true)
                .await,
            Flow::Continue
        );
        assert_eq!(s.response_headers().get_str("x-resp"), Some("1"));
        s.finish();

        // Local response.
        let mut s = chain.new_stream(info());
        match s.on_request_headers(get_request("/local"), true).await {
            Flow::LocalResponse(lr) => {
                assert_eq!(lr.status, 418);
                assert_eq!(lr.headers.get_str("x-local"), Some("1"));
                assert_eq!(&lr.body[..], b"teapot");
            }
            other => panic!("expected local response, got {other:?}"),
        }
        drop(s);

        // http_call → pause → response → resume.
        let mut s = chain.new_stream(info());
        assert_eq!(
            s.on_request_headers(get_request("/call"), true).await,
            Flow::Continue
        );
        assert_eq!(s.request_headers().get_str("x-call-status"), Some("200"));
        assert_eq!(s.request_headers().get_str("x-call-body"), Some("pong"));
        drop(s);

        // Unknown cluster and missing :path are BAD_ARGUMENT.
        let mut s = chain.new_stream(info());
        assert_eq!(
            s.on_request_headers(get_request("/badcall"), true).await,
            Flow::Continue
        );
        assert_eq!(
            s.request_headers().get_str("x-call-error"),
            Some("Some(BadArgument) Some(BadArgument)")
        );
        drop(s);

        // Pause resumed from a tick via set_effective_context + continue.
        let mut s = chain.new_stream(info());
        let flow = tokio::time::timeout(
            Duration::from_secs(10),
            s.on_request_headers(get_request("/tick"), true),
        )
        .await
        .expect("tick resumed the stream");
        assert_eq!(flow, Flow::Continue);
        assert_eq!(s.request_headers().get_str("x-resumed"), Some("tick"));
        drop(s);

        // Body buffered until end of stream, then modified.
        let mut s = chain.new_stream(info());
        assert_eq!(
            s.on_request_headers(get_request("/body"), false).await,
            Flow::Continue
        );
        assert_eq!(
            s.on_request_body(Bytes::from_static(b"abc"), false).await,
            Ok(BodyFlow::Hold)
        );
        assert_eq!(
            s.on_request_body(Bytes::from_static(b"def"), true).await,
            Ok(BodyFlow::Continue(Bytes::from_static(b"ABCDEF")))
        );
        drop(s);
        // Past max_body_bytes (16): a distinct error → 413.
        let mut s = chain.new_stream(info());
        assert_eq!(
            s.on_request_headers(get_request("/body"), false).await,
            Flow::Continue
        );
        let err = s
            .on_request_body(Bytes::from_static(b"0123456789abcdefXYZ"), false)
            .await
            .unwrap_err();
        assert!(matches!(err, StreamError::RequestBodyTooLarge { .. }));
        assert_eq!(err.status(), 413);
        drop(s);

        // Shared queue: enqueue from a stream, on_queue_ready on the registering VM.
        let mut s = chain.new_stream(info());
        assert_eq!(
            s.on_request_headers(get_request("/queue"), true).await,
            Flow::Continue
        );
        drop(s);
        let mut seen = None;
        for _ in 0..1000 {
            seen = host.shared_data().get("sdk", b"queue_seen");
            if seen.is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(seen.map(|(v, _)| v), Some(b"hello".to_vec()));
    });

    // Metrics.
    let m = host.metrics();
    assert!(m.by_name("sdk_requests_total").unwrap().value() >= 8);
    assert!(
        m.by_name("sdk_logs_total").unwrap().value() >= 8,
        "on_log ran per stream"
    );
    assert_eq!(m.by_name("sdk_gauge").unwrap().value(), 7);
    let mut text = String::new();
    host.render_prometheus(&mut text);
    assert!(text.contains("# TYPE sdk_requests_total counter"), "{text}");
    assert!(text.contains("sdk_gauge 7"), "{text}");
    assert!(text.contains("sdk_hist_bucket{le=\"50\"}"), "{text}");

    // Shared data CAS under contention: two worker threads, one VM each.
    let per_worker = 25;
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let plugin = plugin.clone();
            std::thread::spawn(move || {
                run_local(async move {
                    let vm = PluginVm::new(&plugin, Rc::new(weir_wasm::NoServices)).unwrap();
                    let chain = FilterChain::new(vec![vm]);
                    for _ in 0..per_worker {
                        let mut s = chain.new_stream(StreamInfo::default());
                        assert_eq!(
                            s.on_request_headers(get_request("/cas"), true).await,
                            Flow::Continue
                        );
                    }
                })
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let (v, _) = host.shared_data().get("sdk", b"counter").unwrap();
    assert_eq!(String::from_utf8(v).unwrap(), (2 * per_worker).to_string());
    let _: Arc<_> = module;
}

#[test]
fn sdk_filter_wasm32_unknown_unknown() {
    exercise(&build_guest("wasm32-unknown-unknown"), "sdk-unknown");
}

#[test]
fn sdk_filter_wasm32_wasip1() {
    exercise(&build_guest("wasm32-wasip1"), "sdk-wasip1");
}
