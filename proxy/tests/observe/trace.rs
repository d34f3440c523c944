//! Point 3: trace context — `traceparent` created when absent and continued with a new span id
//! upstream; `tracestate`, `x-request-id`, `b3`/`x-b3-*` passed through — and OTLP/HTTP JSON
//! export to a local receiver: one SERVER span per request whose ids match the `traceparent`
//! sent upstream, one child span per filter callback, drops counted when the queue is full.

use crate::collector::Collector;
use crate::launch::{Opts, Proc};
use crate::support::{TempDir, Upstream};
use crate::wat;
use serde_json::Value;

fn simple(up: &Upstream) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: app
clusters:
  - name: app
    endpoints: [{ep}]
"#,
        ep = up.endpoint()
    )
}

fn split_tp(tp: &str) -> (String, String, String) {
    let p: Vec<&str> = tp.split('-').collect();
    assert_eq!(p.len(), 4, "{tp}");
    assert_eq!(p[0], "00");
    assert_eq!(p[1].len(), 32);
    assert_eq!(p[2].len(), 16);
    (p[1].into(), p[2].into(), p[3].into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_headers_created_continued_and_propagated() {
    let up = Upstream::start("u1").await;
    let p = Proc::start(&simple(&up), Opts::default()).await;
    let mut c = p.h1("edge").await;

    // Absent: created (sampled), and an x-request-id made.
    let r = c.get("/a").await;
    let (trace, span, flags) = split_tp(&r.upstream_header("traceparent").expect("traceparent"));
    assert_ne!(trace, "0".repeat(32));
    assert_ne!(span, "0".repeat(16));
    assert_eq!(flags, "01");
    let rid = r.upstream_header("x-request-id").expect("x-request-id");
    assert_eq!(rid.len(), 36, "{rid}");
    let r2 = c.get("/a").await;
    assert_ne!(
        split_tp(&r2.upstream_header("traceparent").unwrap()).0,
        trace,
        "a new trace per request"
    );

    // Present: same trace and flags, a new span id (weir's span is the upstream's parent).
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    let hdrs = [
        ("traceparent", tp),
        ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        ("x-request-id", "my-request"),
        (
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        ),
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("x-b3-sampled", "1"),
    ];
    let r = c.get_with("/b", &hdrs).await;
    let (t2, s2, f2) = split_tp(&r.upstream_header("traceparent").unwrap());
    assert_eq!(t2, "0af7651916cd43dd8448eb211c80319c");
    assert_ne!(s2, "b7ad6b7169203331");
    assert_eq!(f2, "00");
    for (k, v) in &hdrs[1..] {
        assert_eq!(
            r.upstream_header(k).as_deref(),
            Some(*v),
            "{k} passed through"
        );
    }

    // Invalid: replaced by a new trace.
    let r = c.get_with("/c", &[("traceparent", "00-zz-yy-01")]).await;
    split_tp(&r.upstream_header("traceparent").unwrap());
}

fn otlp_yaml(up: &Upstream, endpoint: &str, queue: usize) -> String {
    format!(
        r#"
tracing:
  otlp: {{ endpoint: "{endpoint}", service_name: weir-test, queue_size: {queue}, batch_size: 64, flush_interval: 20ms }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters: [logger]
    routes:
      - name: api
        match: {{ path_prefix: /api }}
        cluster: app
clusters:
  - name: app
    endpoints: [{ep}]
filters:
  - name: logger
    module: $DIR/logger.wat
"#,
        ep = up.endpoint()
    )
}

fn attr(span: &Value, key: &str) -> Value {
    span["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
        .map(|kv| kv["value"].clone())
        .unwrap_or_else(|| panic!("no attribute {key} in {span:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_spans_match_the_upstream_traceparent() {
    let up = Upstream::start("u1").await;
    let col = Collector::start().await;
    let dir = TempDir::new("observe-otlp");
    std::fs::write(dir.join("logger.wat"), wat::logger("traced", "obs_traced")).unwrap();
    let p = Proc::start_in(dir, &otlp_yaml(&up, &col.endpoint(), 1024), Opts::default()).await;
    let mut c = p.h1("edge").await;
    let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let r = c
        .get_with("/api/items?x=1", &[("traceparent", incoming)])
        .await;
    assert_eq!(r.status, 200);
    let (trace, span, _) = split_tp(&r.upstream_header("traceparent").unwrap());
    // And one request that starts a trace.
    let r2 = c.get("/api/other").await;
    let (trace2, span2, _) = split_tp(&r2.upstream_header("traceparent").unwrap());

    let spans = col
        .wait_spans("both server spans", |s| {
            s.iter().filter(|s| s["kind"] == 2).count() >= 2
        })
        .await;
    let server = spans
        .iter()
        .find(|s| s["kind"] == 2 && s["traceId"] == trace.as_str())
        .unwrap_or_else(|| panic!("no server span of trace {trace}: {spans:#?}"));
    assert_eq!(server["spanId"], span.as_str(), "the span id sent upstream");
    assert_eq!(
        server["parentSpanId"], "b7ad6b7169203331",
        "the caller's span"
    );
    assert_eq!(attr(server, "http.method")["stringValue"], "GET");
    assert_eq!(attr(server, "url.path")["stringValue"], "/api/items");
    assert_eq!(attr(server, "http.status_code")["intValue"], "200");
    assert_eq!(attr(server, "route")["stringValue"], "api");
    assert_eq!(attr(server, "cluster")["stringValue"], "app");
    assert_eq!(
        attr(server, "upstream")["stringValue"],
        up.endpoint().as_str()
    );
    let start: u128 = server["startTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: u128 = server["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(end > start);

    let spans = col
        .wait_spans("the filter child span", |s| {
            s.iter().any(|x| x["parentSpanId"] == span.as_str())
        })
        .await;
    let children: Vec<&Value> = spans
        .iter()
        .filter(|s| s["parentSpanId"] == span.as_str())
        .collect();
    let child = children
        .iter()
        .find(|s| s["name"] == "filter logger request_headers")
        .unwrap_or_else(|| panic!("no filter span: {children:#?}"));
    assert_eq!(child["traceId"], trace.as_str());
    assert_eq!(child["kind"], 1);
    assert_ne!(child["spanId"], span.as_str());
    let cs: u128 = child["startTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(cs >= start && cs <= end, "child inside its parent");

    let other = spans
        .iter()
        .find(|s| s["kind"] == 2 && s["traceId"] == trace2.as_str())
        .expect("server span of the new trace");
    assert_eq!(other["spanId"], span2.as_str());
    assert!(
        other.get("parentSpanId").is_none(),
        "a root span: {other:#}"
    );

    for (path, ctype, body) in col.exports() {
        assert_eq!(path, "/v1/traces");
        assert_eq!(ctype, "application/json");
        let res = &body["resourceSpans"][0]["resource"]["attributes"][0];
        assert_eq!(res["key"], "service.name");
        assert_eq!(res["value"]["stringValue"], "weir-test");
    }
    // Exactly the server span and the filter's one implemented callback per request.
    assert_eq!(spans.len(), 4, "{spans:#?}");
    // The exporter counts a batch once the collector's answer is read.
    crate::support::eventually(
        "exported spans counted",
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(20),
        || async {
            let m = p.scrape().await;
            m.sum("weir_trace_spans_total", &[("result", "exported")]) == 4.0
        },
    )
    .await;
    let m = p.scrape().await;
    assert_eq!(
        m.sum("weir_trace_spans_total", &[("result", "dropped")]),
        0.0
    );
    assert_eq!(
        m.sum("weir_trace_spans_total", &[("result", "failed")]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_never_blocks_requests_and_is_counted() {
    let up = Upstream::start("u1").await;
    let dir = TempDir::new("observe-otlp-down");
    std::fs::write(dir.join("logger.wat"), wat::logger("traced", "obs_traced")).unwrap();
    // A collector that accepts connections and never answers: each export waits for its read
    // timeout, so the queue (one request's spans) fills and the rest is dropped.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/v1/traces", mute.local_addr().unwrap());
    let p = Proc::start_in(dir, &otlp_yaml(&up, &endpoint, 1), Opts::default()).await;
    let mut c = p.h1("edge").await;
    let n = 200;
    for i in 0..n {
        assert_eq!(c.get(&format!("/api/{i}")).await.status, 200);
    }
    // Every request's spans end up dropped (queue full) or failed (collector refused), never
    // exported, and the counts add up (2 spans a request: server + filter).
    crate::support::eventually(
        "all spans accounted for",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(50),
        || async {
            let m = p.scrape().await;
            let d = m.sum("weir_trace_spans_total", &[("result", "dropped")]);
            let f = m.sum("weir_trace_spans_total", &[("result", "failed")]);
            d + f == 2.0 * n as f64
        },
    )
    .await;
    let m = p.scrape().await;
    assert!(m.sum("weir_trace_spans_total", &[("result", "dropped")]) > 0.0);
    assert_eq!(
        m.sum("weir_trace_spans_total", &[("result", "exported")]),
        0.0
    );
    drop(mute);
}

#[test]
fn bad_tracing_config_is_rejected_with_its_location() {
    let dir = TempDir::new("observe-badtrace");
    let cfg = dir.join("weir.yaml");
    for (yaml, want) in [
        (
            "tracing: { otlp: { endpoint: \"https://x:1/v1/traces\" } }\n",
            "tracing.otlp.endpoint",
        ),
        (
            "tracing: { otlp: { endpoint: \"http://127.0.0.1:1\", queue_size: 0 } }\n",
            "tracing.otlp.queue_size",
        ),
        (
            "tracing: { otlp: { endpoint: \"http://127.0.0.1:1\", colour: red } }\n",
            "colour",
        ),
        ("tracing: { zipkin: {} }\n", "zipkin"),
    ] {
        std::fs::write(&cfg, yaml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("validate")
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yaml} accepted");
        assert!(err.contains(want), "{yaml}: {err}");
    }
    std::fs::write(&cfg, "tracing: { otlp: { endpoint: \"http://127.0.0.1:4318/v1/traces\", service_name: weir } }\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Spans keep flowing across swaps: an unchanged `tracing:` keeps its exporter, a changed one
/// (another collector) starts a new one and the old one stops receiving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_across_swaps() {
    let up = Upstream::start("u1").await;
    let a = Collector::start().await;
    let b = Collector::start().await;
    let dir = TempDir::new("observe-otlp-swap");
    std::fs::write(dir.join("logger.wat"), wat::logger("t", "obs_swap")).unwrap();
    let p = Proc::start_in(dir, &otlp_yaml(&up, &a.endpoint(), 1024), Opts::default()).await;
    let mut c = p.h1("edge").await;
    let server_spans = |s: &[Value]| s.iter().filter(|x| x["kind"] == 2).count();
    c.get("/api/1").await;
    a.wait_spans("first", |s| server_spans(s) == 1).await;
    assert_eq!(p.reload().await, 2);
    c.get("/api/2").await;
    a.wait_spans("after an unchanged swap", |s| server_spans(s) == 2)
        .await;
    let text = std::fs::read_to_string(&p.config)
        .unwrap()
        .replace(&a.endpoint(), &b.endpoint());
    std::fs::write(&p.config, text).unwrap();
    assert_eq!(p.reload().await, 3);
    c.get("/api/3").await;
    b.wait_spans("on the new collector", |s| server_spans(s) == 1)
        .await;
    assert_eq!(server_spans(&a.spans()), 2);
}
