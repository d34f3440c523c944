//! Issue 2, point 5: thread-per-core workers (`--workers N`), one accept loop each; with many
//! connections every worker serves requests (`/stats/workers`).

use crate::support::{Client, TempDir, Upstream, Weir};

fn yaml(up: &Upstream) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: backend
clusters:
  - name: backend
    endpoints: [{}]
"#,
        up.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_both_serve_requests() {
    let up = Upstream::start("a").await;
    let weir = Weir::start_with(&yaml(&up), 2, TempDir::new("workers")).await;
    assert_eq!(weir.workers, 2, "ready line reports the worker count");
    let addr = weir.addr("edge");
    let mut tasks = Vec::new();
    for _ in 0..64 {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::h1(addr).await;
            for _ in 0..3 {
                assert_eq!(c.get("/w").await.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let (code, body) = weir.admin_get("/stats/workers").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("stats json");
    let workers = v["workers"].as_array().expect("workers array");
    assert_eq!(workers.len(), 2, "{body}");
    let mut total = 0;
    for w in workers {
        let n = w["requests"].as_u64().expect("requests");
        assert!(n > 0, "a worker served nothing: {body}");
        assert!(w["accepted"].as_u64().expect("accepted") > 0, "{body}");
        total += n;
    }
    assert_eq!(total, 192, "requests per worker add up: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_count_three_is_reported() {
    let up = Upstream::start("a").await;
    let weir = Weir::start_with(&yaml(&up), 3, TempDir::new("workers3")).await;
    assert_eq!(weir.workers, 3);
    let (_, body) = weir.admin_get("/stats/workers").await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("stats json");
    assert_eq!(v["workers"].as_array().map(Vec::len), Some(3), "{body}");
}
