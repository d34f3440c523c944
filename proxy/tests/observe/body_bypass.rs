//! A response body no filter takes (every filter's `weir.callbacks` leaves out the body
//! callbacks) streams past the chain, and the filters still see what it carried: the
//! `response.size` property in `log` is the number of bytes the client got.

use crate::launch::{Opts, Proc};
use crate::support::{TempDir, Upstream};
use crate::wat;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_sees_the_size_of_a_body_that_bypassed_the_chain() {
    let up = Upstream::start("bypass-up").await;
    let dir = TempDir::new("observe-bypass");
    std::fs::write(dir.join("sizes.wat"), wat::size_logger("obs_body_bytes")).unwrap();
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
    let mut c = p.h1("edge").await;
    let big = c.get("/download/200000").await;
    assert_eq!((big.status, big.body.len()), (200, 200_000));
    let small = c.get("/download/10").await;
    assert_eq!((small.status, small.body.len()), (200, 10));

    // `log` runs when each response's stream ends, just after its last byte went out.
    let start = std::time::Instant::now();
    loop {
        let total = p.scrape().await.sum("obs_body_bytes", &[]);
        if total == 200_010.0 {
            break;
        }
        assert!(
            total <= 200_010.0 && start.elapsed() < std::time::Duration::from_secs(10),
            "obs_body_bytes is {total}, want 200010"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, filters) = p.admin_get("/filters").await;
    assert!(
        !filters.contains("response_body"),
        "no body callback ran: {filters}"
    );
}

/// The request side: no filter takes the request body, so it goes upstream as is (no pump
/// task, no channel), and `log` still sees its size — here a chunked body (no
/// `content-length` for `request.size` to fall back on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_sees_the_size_of_a_request_body_that_bypassed_the_chain() {
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::BodyExt;

    let up = Upstream::start("bypass-req-up").await;
    let dir = TempDir::new("observe-bypass-req");
    std::fs::write(
        dir.join("sizes.wat"),
        wat::property_logger("request", "obs_request_bytes"),
    )
    .unwrap();
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

    let start = std::time::Instant::now();
    loop {
        let total = p.scrape().await.sum("obs_request_bytes", &[]);
        if total == 100_000.0 {
            break;
        }
        assert!(
            total <= 100_000.0 && start.elapsed() < std::time::Duration::from_secs(10),
            "obs_request_bytes is {total}, want 100000"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, filters) = p.admin_get("/filters").await;
    assert!(
        !filters.contains("request_body"),
        "no request body callback ran: {filters}"
    );
}
