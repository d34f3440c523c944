//! A body no filter takes (every filter's `weir.callbacks` leaves out the body callbacks)
//! goes past the chain — a response body streams to the client, a request body goes upstream
//! without the pump task — and the filters still see what it carried: the `response.size` /
//! `request.size` property in `log` is the number of bytes that went through.

use crate::launch::{Opts, Proc};
use crate::support::{TempDir, Upstream};
use crate::wat;

/// An upstream and a proxy whose one filter, `sizes`, is the module `wat` (log only).
async fn proxy_with_logger(name: &str, wat: String) -> (Upstream, Proc) {
    let up = Upstream::start(&format!("{name}-up")).await;
    let dir = TempDir::new(name);
    std::fs::write(dir.join("sizes.wat"), wat).unwrap();
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters: [sizes]
    routes:
      - match: {{ path_prefix: / }}
        cluster: app
clusters:
  - name: app
    endpoints: [{ep}]
filters:
  - name: sizes
    module: $DIR/sizes.wat
"#,
        ep = up.endpoint()
    );
    let p = Proc::start_in(dir, &yaml, Opts::default()).await;
    (up, p)
}

/// Waits until the filter counter `metric` reaches `want` (`log` runs when each stream ends,
/// just after its last byte went out), then checks that no `phase` callback ran.
async fn expect_logged(p: &Proc, metric: &str, want: f64, phase: &str) {
    let start = std::time::Instant::now();
    loop {
        let total = p.scrape().await.sum(metric, &[]);
        if total == want {
            break;
        }
        assert!(
            total <= want && start.elapsed() < std::time::Duration::from_secs(10),
            "{metric} is {total}, want {want}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, filters) = p.admin_get("/filters").await;
    assert!(
        !filters.contains(phase),
        "no {phase} callback ran: {filters}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_sees_the_size_of_a_body_that_bypassed_the_chain() {
    let (_up, p) = proxy_with_logger("observe-bypass", wat::size_logger("obs_body_bytes")).await;
    let mut c = p.h1("edge").await;
    let big = c.get("/download/200000").await;
    assert_eq!((big.status, big.body.len()), (200, 200_000));
    let small = c.get("/download/10").await;
    assert_eq!((small.status, small.body.len()), (200, 10));
    expect_logged(&p, "obs_body_bytes", 200_010.0, "response_body").await;
}

/// The request side: no filter takes the request body, so it goes upstream as is (no pump
/// task, no channel), and `log` still sees its size — here a chunked body (no
/// `content-length` for `request.size` to fall back on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_sees_the_size_of_a_request_body_that_bypassed_the_chain() {
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::BodyExt;

    let logger = wat::property_logger("request", "obs_request_bytes");
    let (_up, p) = proxy_with_logger("observe-bypass-req", logger).await;
    let mut c = p.h1("edge").await;
    // 40 frames of 2,500 bytes from a stream: no exact size, so hyper sends it chunked.
    let frames = (0..40).map(|_| {
        Ok::<_, crate::support::client::BoxError>(Frame::data(Bytes::from(vec![b'u'; 2_500])))
    });
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed();
    let req = http::Request::post("/upload").body(body).unwrap();
    let resp = c.fetch(req).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(String::from_utf8_lossy(&resp.body).trim(), "100000");
    expect_logged(&p, "obs_request_bytes", 100_000.0, "request_body").await;
}
