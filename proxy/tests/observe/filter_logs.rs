//! Point 2 (filter logs): a filter's `proxy_log` line carries the filter name and the request
//! id (`weir run --log-format json`, RUST_LOG on `weir::filter`, read from weir's stderr).

use crate::launch::{Opts, Proc};
use crate::support::{TempDir, Upstream};
use crate::wat;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_log_lines_carry_filter_and_request_id() {
    let up = Upstream::start("u1").await;
    let dir = TempDir::new("observe-flog");
    std::fs::write(
        dir.join("logger.wat"),
        wat::logger("hello from wat", "obs_flog"),
    )
    .unwrap();
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters: [chatty]
    routes:
      - match: {{ path_prefix: / }}
        cluster: app
clusters:
  - name: app
    endpoints: [{ep}]
filters:
  - name: chatty
    module: $DIR/logger.wat
"#,
        ep = up.endpoint()
    );
    let opts = Opts {
        args: vec!["--log-format".into(), "json".into()],
        rust_log: Some("warn,weir::filter=info".into()),
        ..Default::default()
    };
    let p = Proc::start_in(dir, &yaml, opts).await;
    let mut c = p.h1("edge").await;
    c.get_with("/x", &[("x-request-id", "req-given")]).await;
    let r = c.get("/y").await;
    let made = r.upstream_header("x-request-id").unwrap();
    let lines = Proc::wait_lines(&p.stderr, 2, |l| l["target"] == "weir::filter").await;
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["fields"]["request_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids, ["req-given", made.as_str()], "{lines:#?}");
    for l in &lines {
        assert_eq!(l["fields"]["filter"], "chatty", "{l}");
        assert_eq!(l["fields"]["message"], "hello from wat", "{l}");
        assert_eq!(l["level"], "INFO");
    }
}
