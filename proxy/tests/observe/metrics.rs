//! Point 1: `/metrics` is valid exposition text (own validator, plus `promtool check metrics`
//! when installed), every §8 family is there with its labels after traffic, filter metrics
//! included, and counters do not reset across a swap (`POST /reload`).

use crate::launch::{Opts, Proc};
use crate::support::{dead_addr, TempDir, Upstream};
use crate::{prom, wat};

fn yaml(up: &Upstream, dead: std::net::SocketAddr) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: logged
        match: {{ path_prefix: /log }}
        cluster: app
        filters: [logger]
      - name: retried
        match: {{ path_prefix: /retry }}
        cluster: app
        retries: {{ attempts: 2, on: [5xx] }}
      - name: broken
        match: {{ path_prefix: /broken }}
        cluster: gone
      - name: main
        match: {{ path_prefix: / }}
        cluster: app
clusters:
  - name: app
    endpoints: [{ep}]
  - name: gone
    endpoints: [{dead}]
    outlier: {{ consecutive_5xx: 1, interval: 1s, base_ejection: 30s, max_ejection_percent: 100 }}
filters:
  - name: logger
    module: $DIR/logger.wat
"#,
        ep = up.endpoint()
    )
}

async fn start(up: &Upstream) -> Proc {
    let dir = TempDir::new("observe-metrics");
    std::fs::write(
        dir.join("logger.wat"),
        wat::logger("seen", "obs_requests_seen"),
    )
    .unwrap();
    Proc::start_in(dir, &yaml(up, dead_addr()), Opts::default()).await
}

async fn traffic(p: &Proc) {
    let mut c = p.h1("edge").await;
    for path in [
        "/a",
        "/b?x=1",
        "/status/404",
        "/status/500",
        "/log/1",
        "/log/2",
        "/retry/status/503",
    ] {
        c.get(path).await;
    }
    let mut c = p.h1("edge").await;
    c.get("/broken").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_design_metric_with_labels_and_valid_text() {
    let up = Upstream::start("u1").await;
    let p = start(&up).await;
    traffic(&p).await;
    let (_, text) = p.admin_get("/metrics").await;
    let m = prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    match prom::promtool(&text) {
        None => eprintln!("promtool not installed: validator only"),
        Some(Ok(lint)) => eprintln!("promtool check metrics: ok {lint}"),
        Some(Err(e)) => panic!("promtool check metrics failed:\n{e}\n{text}"),
    }

    let kinds = [
        ("weir_requests_total", "counter"),
        ("weir_request_duration_seconds", "histogram"),
        ("weir_upstream_requests_total", "counter"),
        ("weir_upstream_retries_total", "counter"),
        ("weir_upstream_ejections_total", "counter"),
        ("weir_filter_duration_seconds", "histogram"),
        ("weir_filter_errors_total", "counter"),
        ("weir_config_version", "gauge"),
        ("weir_config_swaps_total", "counter"),
        ("weir_trace_spans_total", "counter"),
        ("obs_requests_seen", "counter"),
    ];
    for (name, kind) in kinds {
        assert_eq!(m.family(name).kind, kind, "{name}");
    }
    let route = |r: &str, code: &str| {
        m.sum(
            "weir_requests_total",
            &[
                ("listener", "edge"),
                ("route", r),
                ("cluster", "app"),
                ("code", code),
            ],
        )
    };
    assert_eq!(route("main", "200"), 2.0);
    assert_eq!(route("main", "404"), 1.0);
    assert_eq!(route("main", "500"), 1.0);
    assert_eq!(route("logged", "200"), 2.0);
    assert_eq!(route("retried", "503"), 1.0);
    assert_eq!(
        m.sum(
            "weir_requests_total",
            &[("route", "broken"), ("cluster", "gone"), ("code", "503")]
        ),
        1.0
    );
    for s in &m.family("weir_requests_total").samples {
        let keys: Vec<&str> = s.labels.keys().map(String::as_str).collect();
        assert_eq!(keys, ["cluster", "code", "listener", "route"], "{s:?}");
    }
    assert_eq!(
        m.sum(
            "weir_request_duration_seconds_count",
            &[("listener", "edge"), ("route", "main"), ("cluster", "app")]
        ),
        4.0
    );
    let buckets = m.find(
        "weir_request_duration_seconds_bucket",
        &[("route", "main"), ("cluster", "app")],
    );
    assert!(
        buckets.len() >= 10,
        "sensible bucket count: {}",
        buckets.len()
    );
    let ep = up.endpoint();
    assert_eq!(
        m.sum(
            "weir_upstream_requests_total",
            &[("cluster", "app"), ("endpoint", &ep), ("code", "503")]
        ),
        3.0,
        "one try and two retries"
    );
    assert_eq!(m.sum("weir_upstream_retries_total", &[]), 2.0);
    assert_eq!(
        m.sum("weir_upstream_ejections_total", &[]),
        1.0,
        "the dead endpoint of `gone` (consecutive_5xx: 1) is ejected once"
    );
    assert_eq!(m.sum("weir_config_version", &[]), 1.0);
    assert_eq!(
        m.sum("weir_config_swaps_total", &[("result", "rejected")]),
        0.0
    );
    assert!(
        m.sum(
            "weir_filter_duration_seconds_count",
            &[("filter", "logger"), ("phase", "request_headers")]
        ) >= 2.0
    );
    assert!(!m
        .find("weir_filter_errors_total", &[("filter", "logger")])
        .is_empty());
    for s in m.find("weir_filter_errors_total", &[]) {
        assert!(s.labels.contains_key("kind"), "{s:?}");
    }
    assert_eq!(m.sum("obs_requests_seen", &[]), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_survive_a_swap() {
    let up = Upstream::start("u1").await;
    let p = start(&up).await;
    traffic(&p).await;
    let before = p.scrape().await;
    // A reload that parses but cannot be applied (a new listener on a busy address) is
    // rejected and leaves no gap in the version numbers.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let good = std::fs::read_to_string(&p.config).unwrap();
    let bad = good.replacen(
        "listeners:\n",
        &format!(
            "listeners:\n  - name: busy\n    address: {}\n    routes:\n      - match: {{ path_prefix: / }}\n        cluster: app\n",
            busy.local_addr().unwrap()
        ),
        1,
    );
    std::fs::write(&p.config, bad).unwrap();
    let mut c = crate::support::Client::h1(p.admin).await;
    let req = c
        .request(http::Method::POST, "/reload")
        .body(crate::support::empty())
        .unwrap();
    let r = c.fetch(req).await.unwrap();
    assert_ne!(r.status, 200, "a busy address must reject the reload");
    std::fs::write(&p.config, good).unwrap();
    let before_rejected = p.scrape().await;
    assert_eq!(
        before_rejected.sum("weir_config_swaps_total", &[("result", "rejected")]),
        before.sum("weir_config_swaps_total", &[("result", "rejected")]) + 1.0
    );
    assert_eq!(before_rejected.sum("weir_config_version", &[]), 1.0);
    // Change the file (a new route), then POST /reload.
    let text = std::fs::read_to_string(&p.config).unwrap().replace(
        "      - name: main\n",
        "      - name: extra\n        match: { path_prefix: /extra }\n        cluster: app\n      - name: main\n",
    );
    std::fs::write(&p.config, text).unwrap();
    assert_eq!(p.reload().await, 2);
    let after = p.scrape().await;
    for name in [
        "weir_requests_total",
        "weir_request_duration_seconds_count",
        "weir_upstream_requests_total",
        "weir_upstream_retries_total",
        "weir_filter_duration_seconds_count",
        "obs_requests_seen",
    ] {
        assert_eq!(
            before.sum(name, &[]),
            after.sum(name, &[]),
            "{name} changed by the swap"
        );
    }
    assert_eq!(after.sum("weir_config_version", &[]), 2.0);
    assert_eq!(
        after.sum("weir_config_swaps_total", &[("result", "applied")]),
        before.sum("weir_config_swaps_total", &[("result", "applied")]) + 1.0
    );
    traffic(&p).await;
    let again = p.scrape().await;
    assert_eq!(
        again.sum("weir_requests_total", &[("route", "main"), ("code", "200")]),
        2.0 * before.sum("weir_requests_total", &[("route", "main"), ("code", "200")]),
        "counts go on from where they were"
    );
    assert_eq!(again.sum("obs_requests_seen", &[]), 4.0);
    assert_eq!(again.sum("weir_upstream_retries_total", &[]), 4.0);
}

#[test]
fn promtool_accepts_what_the_validator_accepts() {
    let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n";
    prom::parse(text).unwrap();
    if let Some(r) = prom::promtool(text) {
        r.unwrap();
    }
}

/// A filter cannot make the scrape invalid: metric names that clash with weir's own families,
/// or with each other once sanitized (`dup.name` and `dup_name`), keep the text valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clashing_filter_metric_names_keep_the_text_valid() {
    let up = Upstream::start("u1").await;
    let dir = TempDir::new("observe-clash");
    for (file, metric) in [
        ("a.wat", "weir_requests_total"),
        ("b.wat", "dup.name"),
        ("c.wat", "dup_name"),
        ("d.wat", "weir_request_duration_seconds_count"),
    ] {
        std::fs::write(dir.join(file), wat::logger("x", metric)).unwrap();
    }
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters: [a, b, c, d]
    routes:
      - match: {{ path_prefix: / }}
        cluster: app
clusters:
  - name: app
    endpoints: [{ep}]
filters:
  - {{ name: a, module: $DIR/a.wat }}
  - {{ name: b, module: $DIR/b.wat }}
  - {{ name: c, module: $DIR/c.wat }}
  - {{ name: d, module: $DIR/d.wat }}
"#,
        ep = up.endpoint()
    );
    let p = Proc::start_in(dir, &yaml, Opts::default()).await;
    assert_eq!(p.h1("edge").await.get("/x").await.status, 200);
    let (_, text) = p.admin_get("/metrics").await;
    let m = prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    if let Some(r) = prom::promtool(&text) {
        r.unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));
    }
    // weir's own family wins.
    assert_eq!(
        m.sum(
            "weir_requests_total",
            &[("listener", "edge"), ("code", "200")]
        ),
        1.0
    );
}
