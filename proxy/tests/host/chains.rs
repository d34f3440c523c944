//! Issue 3, point 3: chains per listener and per route from YAML run in order (each filter
//! appends its tag to a header: requests in chain order, responses in reverse); `config:`
//! reaches the filter as JSON bytes; `proxy_on_vm_start` / `proxy_on_configure` returning false
//! fails `weir validate` naming the filter, and `weir run` refuses to start. A filter's local
//! reply passes the response phases of the filters the request reached, as in Envoy.

use crate::guest::{e2e_filter, example};
use crate::support::weir::run_weir;
use crate::support::TempDir;
use crate::support::Weir;
use crate::upstream::HostUpstream;
use crate::util::{act, clusters, e2e, filter, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_and_route_chains_run_in_order() {
    let up = HostUpstream::start().await;
    let cfg_json = r#"{"tag": "", "nested": {"list": [1, "two", true, null], "n": 1.5}, "s": "a \"quoted\" value"}"#;
    let yaml = format!(
        r#"listeners:
  - name: edge
    address: 127.0.0.1:0
    filters: [a, b]
    routes:
      - name: r1
        match: {{ path_prefix: /r1 }}
        cluster: up
        filters: [c, d]
      - name: r2
        match: {{ path_prefix: /r2 }}
        cluster: up
        filters: [d, c]
      - name: cfg
        match: {{ path_prefix: /cfg }}
        cluster: up
        filters: [cfg]
      - name: plain
        match: {{ path_prefix: / }}
        cluster: up
{clusters}filters:
{a}{b}{c}{d}{cfg}"#,
        clusters = clusters(&up),
        a = e2e("a", "A", ""),
        b = e2e("b", "B", ""),
        c = e2e("c", "C", ""),
        d = e2e("d", "D", ""),
        cfg = filter("cfg", e2e_filter(), cfg_json, ""),
    );
    let weir = start(&yaml, 1).await;
    let mut c = weir.h1("edge").await;
    for (path, req, resp) in [
        ("/r1", "ABCD", "DCBA"),
        ("/r2", "ABDC", "CDBA"),
        ("/plain", "AB", "BA"),
    ] {
        let r = c.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.upstream_header("x-order").as_deref(), Some(req), "{path}");
        assert_eq!(r.header("x-order-resp").as_deref(), Some(resp), "{path}");
    }
    // The last filter of the chain (cfg) sets x-config to its configuration bytes: JSON.
    let r = act(&mut c, "/cfg", "config", &[]).await;
    let got = r
        .upstream_header("x-config")
        .expect("x-config reached upstream");
    let got: serde_json::Value = serde_json::from_str(&got).expect("config is JSON");
    let want: serde_json::Value = serde_json::from_str(cfg_json).unwrap();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn false_from_vm_start_or_configure_fails_validate_and_run() {
    let up = HostUpstream::start().await;
    for (name, fail, hook) in [
        ("badstart", "vm_start", "proxy_on_vm_start"),
        ("badconf", "configure", "proxy_on_configure"),
    ] {
        let filters = e2e("fine", "F", "")
            + &filter(name, e2e_filter(), &format!("{{\"fail\": \"{fail}\"}}"), "");
        let yaml = crate::util::simple(&up, &["fine", name], &filters);
        let dir = TempDir::new("badcfg");
        let cfg = dir.join("weir.yaml");
        std::fs::write(&cfg, &yaml).expect("write config");
        let (code, out, err) =
            run_weir(&["validate", "--config", &cfg.display().to_string()]).await;
        let all = format!("{out}\n{err}");
        assert_eq!(code, Some(1), "{all}");
        assert!(
            all.lines()
                .any(|l| l.contains(&format!("filter {name}")) && l.contains(hook)),
            "{name}: {all}"
        );
        assert!(
            !all.lines().any(|l| l.contains("filter fine")),
            "the good filter is not blamed: {all}"
        );
        let run = Weir::try_start(&yaml, 2, TempDir::new("badcfg-run")).await;
        let Err(e) = run else {
            panic!("weir run started although {name} fails {hook}")
        };
        assert!(e.contains(name), "{e}");
        // As `weir validate`: `weir.yaml:LINE:COLUMN: filter NAME: …`.
        let located = e.lines().any(|l| {
            l.split_once(": filter ").is_some_and(|(at, rest)| {
                let mut at = at.rsplitn(3, ':');
                rest.starts_with(name)
                    && at.next().is_some_and(|c| c.parse::<u32>().is_ok())
                    && at.next().is_some_and(|l| l.parse::<u32>().is_ok())
                    && at.next().is_some_and(|f| f.ends_with("weir.yaml"))
            })
        });
        assert!(located, "{name}: no file:line:column: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_reply_passes_the_response_phases_of_the_filters_before_it() {
    // Chain a (tag A) → auth (API key) → b (tag B). Without a key auth answers 401 from its
    // request phase: `a` and auth had their request phase, so they see the reply on its way
    // out (a appends A to x-order-resp); b never saw the request and sees no response.
    let up = HostUpstream::start().await;
    let filters = e2e("a", "A", "")
        + &filter(
            "auth",
            &example("auth.wasm"),
            r#"{"api_keys": {"header": "x-api-key", "keys": {"k1": "svc"}}}"#,
            "",
        )
        + &e2e("b", "B", "");
    let weir = start(&crate::util::simple(&up, &["a", "auth", "b"], &filters), 1).await;
    let mut c = weir.h1("edge").await;
    let r = c.get("/x").await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("www-authenticate").is_some(), "auth's own reply");
    assert_eq!(r.header("x-order-resp").as_deref(), Some("A"));
    let r = c.get_with("/x", &[("x-api-key", "k1")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-order-resp").as_deref(), Some("BA"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_string_config_reaches_the_filter_as_its_bytes() {
    // As Envoy's StringValue configuration: `config: '{"tag": "R"}'` is that JSON text to the
    // filter, not a JSON string holding it.
    let up = HostUpstream::start().await;
    let filters = filter("raw", e2e_filter(), r#"'{"tag": "R"}'"#, "");
    let weir = start(&crate::util::simple(&up, &["raw"], &filters), 1).await;
    let mut c = weir.h1("edge").await;
    let r = act(&mut c, "/x", "config", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.upstream_header("x-config").as_deref(),
        Some(r#"{"tag": "R"}"#)
    );
    assert_eq!(r.upstream_header("x-order").as_deref(), Some("R"));
}
