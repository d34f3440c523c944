//! The `policies` bundle (filters/policies): the four built-in filters from one module, each
//! filter entry picking its policy by `root_id`, all in one VM group (`vm_id: policies`), so a
//! chain of all four runs in one instance per worker. Each policy must behave as its own
//! module does; an unknown root id fails validation naming the choices.

use crate::module;
use crate::support::weir::run_weir;
use crate::support::{Client, TempDir, Upstream, Weir};

/// A listener whose chain is auth → limit → headers → fault, all from policies.wasm.
fn chain_yaml(upstream: &str, vm_id: &str) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters: [auth, limit, headers, fault]
    routes:
      - match: {{ path_prefix: / }}
        cluster: up
clusters:
  - name: up
    endpoints: [{upstream}]
filters:
  - name: auth
    module: {m}
    root_id: auth
    vm_id: {vm_id}
    config: {{ api_keys: {{ header: x-api-key, keys: {{ k1: alice }} }} }}
    limits: {{ callback_deadline: 1s }}
  - name: limit
    module: {m}
    root_id: rate_limit
    vm_id: {vm_id}
    config: {{ rate: 3, per: minute, burst: 3, key: global }}
    limits: {{ callback_deadline: 1s }}
  - name: headers
    module: {m}
    root_id: header_rewrite
    vm_id: {vm_id}
    config:
      request: {{ set: {{ x-env: bench }} }}
      response: {{ set: {{ x-proxied-by: weir }} }}
    limits: {{ callback_deadline: 1s }}
  - name: fault
    module: {m}
    root_id: fault
    vm_id: {vm_id}
    config: {{ abort: {{ status: 503, percent: 0 }}, header_override: true }}
    limits: {{ callback_deadline: 1s }}
"#,
        m = module("policies"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_policies_from_one_module_share_a_vm_and_each_does_its_job() {
    let up = Upstream::start("up").await;
    let weir = Weir::start_with(
        &chain_yaml(&up.endpoint(), "policies"),
        1,
        TempDir::new("policies"),
    )
    .await;
    let mut c = Client::h1(weir.addr("edge")).await;

    // auth: no key → 401 with its challenge; the limiter never counted it (auth runs first).
    let r = c.get("/").await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.header("www-authenticate").is_some(), "{r:?}");

    // fault: the header override aborts (after auth and the limiter: remaining 2).
    let r = c
        .get_with("/", &[("x-api-key", "k1"), ("x-fault-abort", "503")])
        .await;
    assert_eq!(r.status, 503, "{r:?}");

    // header_rewrite on both directions, rate_limit's headers, through to the upstream.
    for remaining in ["1", "0"] {
        let r = c.get_with("/", &[("x-api-key", "k1")]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.upstream_header("x-env").as_deref(), Some("bench"));
        assert_eq!(r.header("x-proxied-by").as_deref(), Some("weir"));
        assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(
            r.header("x-ratelimit-remaining").as_deref(),
            Some(remaining)
        );
    }
    // rate_limit: the bucket (3 per minute) is empty.
    let r = c.get_with("/", &[("x-api-key", "k1")]).await;
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.header("retry-after").is_some(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_root_id_fails_validation_naming_the_policies() {
    let dir = TempDir::new("policies-validate");
    let yaml = chain_yaml("127.0.0.1:9", "policies").replace("root_id: fault", "root_id: faults");
    let path = dir.join("bad.yaml");
    std::fs::write(&path, &yaml).expect("write config");
    let (code, _out, err) = run_weir(&["validate", "--config", &path.display().to_string()]).await;
    assert_eq!(code, Some(1), "stderr:\n{err}");
    assert!(err.contains("fault"), "names the filter: {err}");
    assert!(
        err.contains("auth, rate_limit, header_rewrite, fault"),
        "names the policies: {err}"
    );
}
