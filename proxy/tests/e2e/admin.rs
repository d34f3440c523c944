//! Issue 2, point 9: admin endpoint `/ready`, `/config` (running config as JSON with its
//! version), `/metrics` (Prometheus text with `weir_requests_total{listener,route,cluster,code}`
//! and the `weir_request_duration_seconds` histogram).

use crate::support::{Upstream, Weir};

fn yaml(up: &Upstream) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: api
        match: {{ path_prefix: /api }}
        cluster: backend
clusters:
  - name: backend
    endpoints: [{}]
"#,
        up.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_config() {
    let up = Upstream::start("a").await;
    let weir = Weir::start(&yaml(&up)).await;
    let (code, body) = weir.admin_get("/ready").await;
    assert_eq!((code, body.trim()), (200, "ready"));

    let (code, body) = weir.admin_get("/config").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("config is JSON");
    assert!(
        v["version"].as_u64().is_some(),
        "config has a numeric version: {body}"
    );
    assert_eq!(v["config"]["listeners"][0]["name"], "edge", "{body}");
    assert_eq!(
        v["config"]["listeners"][0]["routes"][0]["cluster"], "backend",
        "{body}"
    );
    assert_eq!(
        v["config"]["clusters"][0]["endpoints"][0],
        up.endpoint(),
        "{body}"
    );

    let (code, _) = weir.admin_get("/no-such-admin-page").await;
    assert_eq!(code, 404);
}

/// Value of the sample whose name is `name` and whose labels include every `labels` pair.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            if n != name {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse().ok())?
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_durations() {
    let up = Upstream::start("a").await;
    let weir = Weir::start(&yaml(&up)).await;
    let mut c = weir.h1("edge").await;
    for _ in 0..3 {
        assert_eq!(c.get("/api/x").await.status, 200);
    }
    assert_eq!(c.get("/api/status/500").await.status, 500);
    assert_eq!(c.get("/elsewhere").await.status, 404);

    let (code, m) = weir.admin_get("/metrics").await;
    assert_eq!(code, 200);
    let ok = [
        ("listener", "edge"),
        ("route", "api"),
        ("cluster", "backend"),
        ("code", "200"),
    ];
    assert_eq!(
        sample(&m, "weir_requests_total", &ok),
        Some(3.0),
        "metrics:\n{m}"
    );
    let err = [
        ("listener", "edge"),
        ("route", "api"),
        ("cluster", "backend"),
        ("code", "500"),
    ];
    assert_eq!(
        sample(&m, "weir_requests_total", &err),
        Some(1.0),
        "metrics:\n{m}"
    );
    assert_eq!(
        sample(
            &m,
            "weir_requests_total",
            &[("listener", "edge"), ("code", "404")]
        ),
        Some(1.0),
        "metrics:\n{m}"
    );
    assert!(
        m.contains("# TYPE weir_requests_total counter"),
        "metrics:\n{m}"
    );
    assert!(
        m.contains("# TYPE weir_request_duration_seconds histogram"),
        "metrics:\n{m}"
    );
    let count = sample(&m, "weir_request_duration_seconds_count", &[]).unwrap_or(0.0);
    // Several label sets may exist; the sum over them must cover all 5 requests.
    let total: f64 = m
        .lines()
        .filter(|l| l.starts_with("weir_request_duration_seconds_count"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    assert!(
        count >= 1.0 && total >= 5.0,
        "duration histogram counts {total} requests:\n{m}"
    );
    assert!(
        m.contains("weir_request_duration_seconds_bucket{") && m.contains("le=\"+Inf\""),
        "metrics:\n{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_per_listener_overrides_the_top_level_one() {
    let up = Upstream::start("a").await;
    let yaml = format!(
        r#"
access_log: {{ path: $DIR/access.log }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: backend
  - name: internal
    address: 127.0.0.1:0
    access_log: {{ path: $DIR/internal.log }}
    routes:
      - match: {{ path_prefix: / }}
        cluster: backend
clusters:
  - name: backend
    endpoints: [{}]
"#,
        up.endpoint()
    );
    let weir = Weir::start(&yaml).await;
    assert_eq!(weir.h1("edge").await.get("/to-edge").await.status, 200);
    let mut internal = crate::support::Client::h1(weir.addr("internal")).await;
    assert_eq!(internal.get("/to-internal").await.status, 200);
    let edge_entry = weir
        .wait_log("edge request", |v| v["path"] == "/to-edge")
        .await;
    assert_eq!(edge_entry["listener"], "edge");
    let internal_log = weir.access_log.with_file_name("internal.log");
    crate::support::eventually(
        "internal listener logs to its own file",
        crate::support::DEADLINE,
        std::time::Duration::from_millis(10),
        || {
            let p = internal_log.clone();
            async move {
                std::fs::read_to_string(&p)
                    .unwrap_or_default()
                    .contains("/to-internal")
            }
        },
    )
    .await;
    assert!(
        !weir
            .access_log_lines()
            .iter()
            .any(|v| v["path"] == "/to-internal"),
        "the internal listener's request went to the top-level log too"
    );
}
