//! Issue 2, point 1 (bodies): a 200 MB upload and a 200 MB download pass through the proxy
//! while its RSS grows by less than 50 MB (sampled from /proc/PID/status during the transfer).

use crate::support::client::generated;
use crate::support::weir::rss_of;
use crate::support::{Client, Upstream, Weir};
use http::Method;
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const SIZE: u64 = 200 * 1024 * 1024;
const MAX_GROWTH: u64 = 50 * 1024 * 1024;
const SAMPLE_EVERY: u64 = 8 * 1024 * 1024;

fn yaml(up: &Upstream) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: backend
        timeout: 120s
clusters:
  - name: backend
    endpoints: [{}]
"#,
        up.endpoint()
    )
}

async fn warm_up(c: &mut Client) {
    // One small transfer each way so buffers and pools exist before the baseline is taken.
    assert_eq!(c.get("/download/1048576").await.status, 200);
    let req = c
        .request(Method::POST, "/upload")
        .body(generated(1 << 20, 64 * 1024, |_| {}))
        .expect("req");
    assert_eq!(c.fetch(req).await.expect("warm-up upload").status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_200mb_streams_with_bounded_rss() {
    let up = Upstream::start("big").await;
    let weir = Weir::start(&yaml(&up)).await;
    let mut c = weir.h1("edge").await;
    warm_up(&mut c).await;
    let base = weir.rss();
    assert!(base > 0, "cannot read RSS of weir");

    let req = c
        .request(Method::GET, &format!("/download/{SIZE}"))
        .body(crate::support::empty())
        .expect("req");
    let resp = c.send(req).await.expect("download response");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let (mut got, mut next_sample, mut peak) = (0u64, 0u64, base);
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("body frame");
        if let Some(d) = frame.data_ref() {
            got += d.len() as u64;
        }
        if got >= next_sample {
            peak = peak.max(weir.rss());
            next_sample += SAMPLE_EVERY;
        }
    }
    assert_eq!(got, SIZE, "whole body received");
    let growth = peak.saturating_sub(base);
    assert!(
        growth < MAX_GROWTH,
        "RSS grew by {} MB during a 200 MB download (base {} MB)",
        growth >> 20,
        base >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_200mb_streams_with_bounded_rss() {
    let up = Upstream::start("sink").await;
    let weir = Weir::start(&yaml(&up)).await;
    let mut c = weir.h1("edge").await;
    warm_up(&mut c).await;
    let base = weir.rss();
    assert!(base > 0, "cannot read RSS of weir");

    let peak = Arc::new(AtomicU64::new(base));
    let (pid, p) = (weir.pid, peak.clone());
    let mut next_sample = 0u64;
    let body = generated(SIZE, 64 * 1024, move |sent| {
        if sent >= next_sample {
            p.fetch_max(rss_of(pid), Ordering::SeqCst);
            next_sample += SAMPLE_EVERY;
        }
    });
    let req = c.request(Method::POST, "/upload").body(body).expect("req");
    let r = c.fetch(req).await.expect("upload");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), SIZE.to_string(), "upstream received every byte");
    let growth = peak.load(Ordering::SeqCst).saturating_sub(base);
    assert!(
        growth < MAX_GROWTH,
        "RSS grew by {} MB during a 200 MB upload (base {} MB)",
        growth >> 20,
        base >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_without_length_streams() {
    // A body without content-length (chunked on HTTP/1.1) passes through intact.
    let up = Upstream::start("sink").await;
    let weir = Weir::start(&yaml(&up)).await;
    let mut c = weir.h1("edge").await;
    let chunks: Vec<Result<http_body::Frame<bytes::Bytes>, crate::support::client::BoxError>> = (0
        ..100)
        .map(|_| {
            Ok(http_body::Frame::data(bytes::Bytes::from(vec![
                b'x';
                10_000
            ])))
        })
        .collect();
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(chunks)).boxed();
    let req = c.request(Method::POST, "/upload").body(body).expect("req");
    let r = c.fetch(req).await.expect("chunked upload");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "1000000");
}
