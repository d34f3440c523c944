//! Point 4: `/filters` (digest, VMs, memory in use and its limit, error counts, time spent per
//! phase) and `/config` (running version, swapped_at) over the admin port.

use crate::launch::{Opts, Proc};
use crate::support::{TempDir, Upstream};
use crate::wat;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn yaml(up: &Upstream) -> String {
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
      - name: denied
        match: {{ path_prefix: /deny }}
        cluster: app
        filters: [deny]
clusters:
  - name: app
    endpoints: [{ep}]
filters:
  - name: logger
    module: $DIR/logger.wat
    limits: {{ memory: 32MiB, callback_deadline: 50ms }}
  - name: deny
    module: $DIR/deny.wat
    on_error: fail_open
"#,
        ep = up.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_endpoint_reports_each_filter() {
    let up = Upstream::start("u1").await;
    let dir = TempDir::new("observe-admin");
    let logger = wat::logger("hi", "obs_admin_seen");
    std::fs::write(dir.join("logger.wat"), &logger).unwrap();
    std::fs::write(dir.join("deny.wat"), wat::deny(403)).unwrap();
    let p = Proc::start_in(
        dir,
        &yaml(&up),
        Opts {
            workers: 2,
            ..Default::default()
        },
    )
    .await;
    let mut c = p.h1("edge").await;
    for i in 0..5 {
        assert_eq!(c.get(&format!("/log/{i}")).await.status, 200);
    }
    assert_eq!(c.get("/deny").await.status, 403);
    let (status, body) = p.admin_get("/filters").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version"], 1);
    let filters = v["filters"].as_array().unwrap();
    let names: Vec<&str> = filters
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["deny", "logger"]);
    let f = &filters[1];
    let digest = f["module_sha256"].as_str().unwrap();
    assert_eq!(digest.len(), 64);
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
    let file_digest = hex::encode(Sha256::digest(logger.as_bytes()));
    eprintln!("module_sha256 {digest}, sha256 of the .wat file {file_digest}");
    assert_ne!(
        digest,
        filters[0]["module_sha256"].as_str().unwrap(),
        "per module"
    );
    assert_eq!(f["vms"], 2, "one VM per worker");
    assert_eq!(f["vms_live"], 2, "both VMs alive, none per request");
    let memory = f["memory_bytes"].as_u64().unwrap();
    assert!(
        memory > 0 && memory.is_multiple_of(2 * 65536),
        "two VMs' linear memories, whole wasm pages: {memory}"
    );
    assert_eq!(f["memory_limit_bytes"], 32 * 1024 * 1024);
    assert_eq!(f["callback_deadline_ms"], 50.0);
    for kind in ["trap", "timeout", "oom", "config"] {
        assert_eq!(f["errors"][kind], 0, "{kind}");
    }
    assert!(f["seconds_total"].as_f64().unwrap() > 0.0);
    assert_eq!(f["phases"]["request_headers"]["calls"], 5);
    assert!(f["phases"]["request_headers"]["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(filters[0]["on_error"], "fail_open");
    assert_eq!(filters[1]["on_error"], "fail_closed", "the default");
    assert_eq!(filters[0]["phases"]["request_headers"]["calls"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_endpoint_spells_on_error_as_the_yaml() {
    let up = Upstream::start("u1").await;
    let dir = TempDir::new("observe-on-error");
    std::fs::write(dir.join("deny.wat"), wat::deny(403)).unwrap();
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: all
        match: {{ path_prefix: / }}
        cluster: app
        filters: [a, b, c, d]
clusters:
  - name: app
    endpoints: [{ep}]
filters:
  - {{ name: a, module: $DIR/deny.wat, on_error: fail_closed }}
  - {{ name: b, module: $DIR/deny.wat, on_error: fail_open }}
  - {{ name: c, module: $DIR/deny.wat, on_error: reload }}
  - {{ name: d, module: $DIR/deny.wat }}
"#,
        ep = up.endpoint()
    );
    let p = Proc::start_in(dir, &yaml, Opts::default()).await;
    let (status, body) = p.admin_get("/filters").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let on_error: Vec<(&str, &str)> = v["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["on_error"].as_str().unwrap()))
        .collect();
    assert_eq!(
        on_error,
        [
            ("a", "fail_closed"),
            ("b", "fail_open"),
            ("c", "reload"),
            ("d", "fail_closed"),
        ],
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_endpoint_shows_version_and_swap_time() {
    let up = Upstream::start("u1").await;
    let dir = TempDir::new("observe-config");
    std::fs::write(dir.join("logger.wat"), wat::logger("hi", "obs_cfg_seen")).unwrap();
    std::fs::write(dir.join("deny.wat"), wat::deny(403)).unwrap();
    let p = Proc::start_in(dir, &yaml(&up), Opts::default()).await;
    let get = || async {
        let (s, b) = p.admin_get("/config").await;
        assert_eq!(s, 200);
        serde_json::from_str::<Value>(&b).unwrap()
    };
    let v1 = get().await;
    assert_eq!(v1["version"], 1);
    let t1 = humantime::parse_rfc3339(v1["swapped_at"].as_str().unwrap()).unwrap();
    assert_eq!(v1["config"]["clusters"][0]["name"], "app");
    assert!(v1["listeners"]["edge"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(p.reload().await, 2);
    let v2 = get().await;
    assert_eq!(v2["version"], 2);
    let t2 = humantime::parse_rfc3339(v2["swapped_at"].as_str().unwrap()).unwrap();
    assert!(t2 >= t1, "{t1:?} {t2:?}");
    assert_ne!(v1["swapped_at"], v2["swapped_at"]);
}
