//! Point 2: one JSON access-log line per request with every field, Envoy response flags
//! (NR UF UH UT URX UO DC UAEX RL), per-listener sinks (a file, stdout), HTTP/2, mTLS principal.

use crate::launch::{Opts, Proc};
use crate::support::client::Client;
use crate::support::{dead_addr, full, Certs, TempDir, Upstream};
use crate::wat;
use serde_json::Value;
use std::time::Duration;

fn flags_yaml(up: &Upstream) -> String {
    format!(
        r#"
access_log: {{ path: $DIR/access.log }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: denied
        match: {{ path_prefix: /deny }}
        cluster: app
        filters: [deny]
      - name: limited
        match: {{ path_prefix: /limit }}
        cluster: app
        filters: [limit]
      - name: faulted
        match: {{ path_prefix: /fault }}
        cluster: app
        filters: [fault]
      - name: filtered
        match: {{ path_prefix: /filtered }}
        cluster: app
        filters: [pass]
      - name: timeout
        match: {{ path_prefix: /timeout }}
        cluster: app
        timeout: 200ms
      - name: retried
        match: {{ path_prefix: /retry }}
        cluster: app
        retries: {{ attempts: 1, on: [5xx] }}
      - name: refused
        match: {{ path_prefix: /refused }}
        cluster: gone
      - name: narrow
        match: {{ path_prefix: /narrow }}
        cluster: narrow
      - name: main
        match: {{ path_prefix: /api }}
        cluster: app
clusters:
  - name: app
    endpoints: [{ep}]
  - name: gone
    endpoints: [{dead}]
  - name: narrow
    endpoints: [{ep}]
    limits: {{ max_requests: 1 }}
filters:
  - name: deny
    module: $DIR/deny.wat
  - name: limit
    module: $DIR/limit.wat
  - name: fault
    module: $DIR/fault.wat
  - name: pass
    module: $DIR/pass.wat
"#,
        ep = up.endpoint(),
        dead = dead_addr(),
    )
}

async fn start_flags(up: &Upstream) -> Proc {
    let dir = TempDir::new("observe-alog");
    std::fs::write(dir.join("deny.wat"), wat::deny(403)).unwrap();
    std::fs::write(dir.join("limit.wat"), wat::deny(429)).unwrap();
    std::fs::write(
        dir.join("fault.wat"),
        wat::deny_with(503, "fault_filter_abort"),
    )
    .unwrap();
    std::fs::write(dir.join("pass.wat"), wat::logger("passed", "passed")).unwrap();
    Proc::start_in(dir, &flags_yaml(up), Opts::default()).await
}

fn by_path<'a>(lines: &'a [Value], path: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["path"] == path)
        .unwrap_or_else(|| panic!("no line for {path} in {lines:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_request_with_every_field() {
    let up = Upstream::start("u1").await;
    let p = start_flags(&up).await;
    let log = p.dir.join("access.log");
    let mut c = p.h1("edge").await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let req = c
        .request(http::Method::POST, "/api/echo?q=1")
        .header("x-request-id", "rid-123")
        .header("traceparent", tp)
        .body(full("hello"))
        .unwrap();
    let r = c.fetch(req).await.unwrap();
    assert_eq!(r.status, 200);
    let sent_tp = r.upstream_header("traceparent").unwrap();
    let lines = Proc::wait_lines(&log, 1, |_| true).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let l = &lines[0];
    let start = l["start_time"].as_str().unwrap();
    humantime::parse_rfc3339(start).unwrap_or_else(|e| panic!("start_time {start}: {e}"));
    assert_eq!(l["listener"], "edge");
    assert_eq!(l["route"], "main");
    assert_eq!(l["cluster"], "app");
    assert_eq!(l["method"], "POST");
    assert_eq!(l["authority"], p.addr("edge").to_string());
    assert_eq!(l["path"], "/api/echo?q=1");
    assert_eq!(l["protocol"], "HTTP/1.1");
    assert_eq!(l["status"], 200);
    assert_eq!(l["response_flags"], "-");
    assert_eq!(l["bytes_received"], 5);
    assert_eq!(l["bytes_sent"], r.body.len() as u64);
    assert!(l["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(l["upstream_host"], up.endpoint());
    let ust = l["upstream_service_time_ms"].as_f64().unwrap();
    assert!(ust > 0.0 && ust <= l["duration_ms"].as_f64().unwrap());
    assert_eq!(l["request_id"], "rid-123");
    assert_eq!(l["traceparent"], sent_tp.as_str());
    assert_eq!(&sent_tp[..36], &tp[..36], "same trace");
    assert!(l["principal"].is_null());
    assert!(l["downstream_remote_address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // Exactly one line per request.
    for i in 0..5 {
        c.get(&format!("/api/n{i}")).await;
    }
    let lines = Proc::wait_lines(&log, 6, |_| true).await;
    assert_eq!(lines.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_flags() {
    let up = Upstream::start("u1").await;
    let p = start_flags(&up).await;
    let log = p.dir.join("access.log");
    let mut c = p.h1("edge").await;
    let cases: [(&str, u16); 9] = [
        ("/nowhere", 404),
        ("/deny/x", 403),
        ("/limit/x", 429),
        ("/fault/x", 503),
        ("/filtered/x", 200),
        ("/timeout/slow/3000", 504),
        ("/retry/status/503", 503),
        ("/refused", 503),
        ("/api/status/502", 502),
    ];
    for (path, status) in cases {
        let mut c2 = p.h1("edge").await;
        let r = c2.get(path).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
    }
    // UO: one request holds the only slot of `narrow`, the next overflows.
    let addr = p.addr("edge");
    let held = tokio::spawn(async move { Client::h1(addr).await.get("/narrow/hold").await.status });
    crate::support::upstream::wait_until("request held", || up.held() == 1).await;
    let r = c.get("/narrow/x").await;
    assert_eq!(r.status, 503, "{}", r.text());
    up.release();
    assert_eq!(held.await.unwrap(), 200);
    // DC: the client goes away in the middle of a large download.
    {
        let mut c3 = p.h1("edge").await;
        let req = c3
            .request(http::Method::GET, "/api/download/100000000")
            .body(crate::support::empty())
            .unwrap();
        let resp = c3.send(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        drop(resp);
        drop(c3);
    }
    // DC before any response: the client goes away while the upstream takes its time. As
    // Envoy: one line, status 0.
    {
        use tokio::io::AsyncWriteExt;
        let before = up.requests();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /api/slow/5000 HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        crate::support::upstream::wait_until("request upstream", || up.requests() > before).await;
        drop(s);
    }
    let lines = Proc::wait_lines(&log, 13, |_| true).await;
    let flag = |path: &str| {
        by_path(&lines, path)["response_flags"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(flag("/nowhere"), "NR");
    assert_eq!(flag("/deny/x"), "UAEX");
    assert_eq!(flag("/limit/x"), "RL");
    assert_eq!(flag("/fault/x"), "FI");
    // A response that went through a filter chain over HTTP/1.1 is complete, not `DC`.
    assert_eq!(flag("/filtered/x"), "-");
    assert_eq!(flag("/timeout/slow/3000"), "UT");
    assert_eq!(flag("/retry/status/503"), "URX");
    assert_eq!(flag("/refused"), "UF");
    assert_eq!(flag("/api/status/502"), "-");
    assert_eq!(flag("/narrow/x"), "UO");
    assert_eq!(flag("/narrow/hold"), "-");
    assert_eq!(flag("/api/download/100000000"), "DC");
    assert_eq!(flag("/api/slow/5000"), "DC");
    assert_eq!(by_path(&lines, "/api/slow/5000")["status"], 0);
    let dl = by_path(&lines, "/api/download/100000000");
    assert!(dl["bytes_sent"].as_u64().unwrap() < 100_000_000, "{dl}");
    assert_eq!(
        by_path(&lines, "/refused")["upstream_host"],
        p_dead_host(&p)
    );
    assert_eq!(by_path(&lines, "/nowhere")["route"], "");
}

/// The access-log line weir printed on stdout for `path` (bounded wait).
async fn stdout_line(p: &mut Proc, path: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let l = p.stdout.recv().await.expect("stdout open");
            if let Ok(v) = serde_json::from_str::<Value>(&l) {
                if v["path"] == path {
                    return v;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no access-log line for {path} on stdout"))
}

/// The configured endpoint of cluster `gone` (from the config file).
fn p_dead_host(p: &Proc) -> String {
    let text = std::fs::read_to_string(&p.config).unwrap();
    let i = text.find("name: gone").unwrap();
    let rest = &text[i..];
    let a = rest.find('[').unwrap();
    let b = rest.find(']').unwrap();
    rest[a + 1..b].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_upstream_is_uh() {
    let up = Upstream::start("u1").await;
    up.set_health(503);
    let yaml = format!(
        r#"
access_log: {{ path: $DIR/access.log }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: sick
clusters:
  - name: sick
    endpoints: [{ep}]
    health_check: {{ path: /healthz, interval: 50ms, timeout: 1s, unhealthy: 1, healthy: 1 }}
"#,
        ep = up.endpoint()
    );
    let p = Proc::start(&yaml, Opts::default()).await;
    let log = p.dir.join("access.log");
    let mut status = 0;
    for _ in 0..200 {
        status = p.h1("edge").await.get("/x").await.status;
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status, 503,
        "the health check never marked the endpoint down"
    );
    let lines = Proc::wait_lines(&log, 1, |l| l["status"] == 503).await;
    assert_eq!(lines[0]["response_flags"], "UH");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_listener_sinks_file_and_stdout_and_h2() {
    let up = Upstream::start("u1").await;
    let yaml = format!(
        r#"
access_log: {{ path: $DIR/top.log }}
listeners:
  - name: tofile
    address: 127.0.0.1:0
    access_log: {{ path: $DIR/own.log }}
    routes:
      - match: {{ path_prefix: / }}
        cluster: app
  - name: tostdout
    address: 127.0.0.1:0
    access_log: {{ path: stdout }}
    routes:
      - match: {{ path_prefix: / }}
        cluster: app
  - name: default
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: app
  - name: silent
    address: 127.0.0.1:0
    access_log: {{ path: "off" }}
    routes:
      - match: {{ path_prefix: / }}
        cluster: app
clusters:
  - name: app
    endpoints: [{ep}]
"#,
        ep = up.endpoint()
    );
    let mut p = Proc::start(&yaml, Opts::default()).await;
    p.h1("tofile").await.get("/one").await;
    let mut h2 = Client::h2c(p.addr("tostdout")).await;
    assert_eq!(h2.get("/two").await.status, 200);
    p.h1("default").await.get("/three").await;
    p.h1("silent").await.get("/four").await;
    let own = Proc::wait_lines(&p.dir.join("own.log"), 1, |_| true).await;
    assert_eq!(own[0]["path"], "/one");
    let top = Proc::wait_lines(&p.dir.join("top.log"), 1, |_| true).await;
    assert_eq!(top.len(), 1, "{top:#?}");
    assert_eq!(top[0]["path"], "/three");
    let line = stdout_line(&mut p, "/two").await;
    assert_eq!(line["protocol"], "HTTP/2");
    assert_eq!(line["listener"], "tostdout");
    // `off` wrote nowhere: not to the top-level file, not to stdout.
    let all: Vec<Value> = Proc::json_lines(&p.dir.join("top.log"))
        .into_iter()
        .chain(Proc::json_lines(&p.dir.join("own.log")))
        .collect();
    assert!(all.iter().all(|l| l["path"] != "/four"), "{all:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_principal() {
    let up = Upstream::start("u1").await;
    let dir = TempDir::new("observe-mtls");
    let certs = Certs::generate(dir.path());
    let yaml = format!(
        r#"
access_log: {{ path: $DIR/access.log }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    tls: {{ cert: {cert}, key: {key}, client_ca: {ca} }}
    routes:
      - match: {{ path_prefix: / }}
        cluster: app
clusters:
  - name: app
    endpoints: [{ep}]
"#,
        cert = certs.server_cert.display(),
        key = certs.server_key.display(),
        ca = certs.ca.display(),
        ep = up.endpoint()
    );
    let p = Proc::start_in(dir, &yaml, Opts::default()).await;
    let mut c = Client::tls(
        p.addr("edge"),
        certs.client_config(&["http/1.1"], true),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(c.get("/secure").await.status, 200);
    let lines = Proc::wait_lines(&p.dir.join("access.log"), 1, |_| true).await;
    assert_eq!(
        lines[0]["principal"],
        crate::support::certs::CLIENT_SPIFFE_ID
    );
}

/// Concurrent requests on two workers: every line whole and parseable, one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lines_never_mix() {
    let up = Upstream::start("u1").await;
    let yaml = format!(
        r#"
access_log: {{ path: $DIR/access.log }}
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
    );
    let p = Proc::start(
        &yaml,
        Opts {
            workers: 2,
            ..Default::default()
        },
    )
    .await;
    let addr = p.addr("edge");
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            tokio::spawn(async move {
                let mut c = Client::h1(addr).await;
                for i in 0..50 {
                    assert_eq!(
                        c.get(&format!("/t{t}/{i}/{}", "x".repeat(200)))
                            .await
                            .status,
                        200
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let log = p.dir.join("access.log");
    Proc::wait_lines(&log, 400, |_| true).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 400);
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert_eq!(v["status"], 200);
    }
}

/// DESIGN.md §8: one JSON line per request, with no `access_log:` key at all (stdout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_access_log_key_lines_go_to_stdout() {
    let up = Upstream::start("u1").await;
    let yaml = format!(
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
    );
    let mut p = Proc::start(&yaml, Opts::default()).await;
    assert_eq!(p.h1("edge").await.get("/by-default").await.status, 200);
    let line = stdout_line(&mut p, "/by-default").await;
    assert_eq!(line["status"], 200);
    assert_eq!(line["method"], "GET");
    assert_eq!(line["response_flags"], "-");
    assert_eq!(line["upstream"], up.endpoint());
    assert!(line["duration"].is_u64(), "{line}");
}
