//! Issue 5, point 1: standalone reloads. `--watch` (the file changes), SIGHUP and
//! `POST /reload` each rebuild and swap the snapshot; an invalid new config (bad YAML, a module
//! that does not compile, a filter whose `proxy_on_configure` fails) changes nothing — the old
//! snapshot keeps serving — is logged, and counts in `weir_config_swaps_total{result="rejected"}`.

use crate::support::{
    eventually, filter, get_once, version_config, write_atomic, TempDir, Upstream, Weir,
};
use std::net::SocketAddr;

const REJECTED: &str = r#"weir_config_swaps_total{result="rejected"}"#;
const APPLIED: &str = r#"weir_config_swaps_total{result="applied"}"#;

struct Fixture {
    dir: TempDir,
    blue: Upstream,
    green: Upstream,
    module: String,
}

impl Fixture {
    async fn new(label: &str) -> Fixture {
        Fixture {
            dir: TempDir::new(label),
            blue: Upstream::start("blue").await,
            green: Upstream::start("green").await,
            module: filter("header_rewrite.wasm").display().to_string(),
        }
    }

    fn config(&self, tag: &str, gen: u64) -> String {
        let cluster = if tag == "1" { "blue" } else { "green" };
        version_config(
            &self.module,
            tag,
            gen,
            cluster,
            self.blue.addr,
            self.green.addr,
        )
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.join("weir.yaml")
    }

    fn write(&self, text: &str) {
        write_atomic(&self.path(), text);
    }
}

/// (x-version, x-gen, x-upstream) of one GET, each header present exactly once.
async fn served(addr: SocketAddr) -> (String, String, String) {
    let r = get_once(addr, "/probe").await;
    assert_eq!(r.status, 200, "{r:?}");
    let one = |h: &str| {
        r.one(h)
            .unwrap_or_else(|| panic!("exactly one {h} expected: {r:?}"))
    };
    (one("x-version"), one("x-gen"), one("x-upstream"))
}

async fn wait_gen(addr: SocketAddr, gen: u64) -> (String, String, String) {
    eventually(&format!("generation {gen} served"), || async {
        let s = served(addr).await;
        (s.1 == gen.to_string()).then_some(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_when_the_file_changes() {
    let fx = Fixture::new("watch").await;
    fx.write(&fx.config("1", 0));
    let weir = Weir::standalone(&fx.path(), 2, true, &fx.dir.join("weir.log")).await;
    let edge = weir.listeners["edge"];
    assert_eq!(served(edge).await, ("1".into(), "0".into(), "blue".into()));

    fx.write(&fx.config("2", 1));
    assert_eq!(
        wait_gen(edge, 1).await,
        ("2".into(), "1".into(), "green".into())
    );
    assert_eq!(weir.metric(APPLIED).await, 1.0);

    // An invalid edit is rejected; the running config keeps serving.
    fx.write("listeners: [ {name: edge\n");
    eventually("the bad edit is rejected", || async {
        (weir.metric(REJECTED).await == 1.0).then_some(())
    })
    .await;
    assert_eq!(served(edge).await.1, "1");

    fx.write(&fx.config("1", 2));
    assert_eq!(
        wait_gen(edge, 2).await,
        ("1".into(), "2".into(), "blue".into())
    );
    // The listener socket survived every swap (same address).
    assert_eq!(weir.wait_listener("edge").await, edge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_admin_reload_each_swap() {
    let fx = Fixture::new("hup").await;
    fx.write(&fx.config("1", 0));
    let weir = Weir::standalone(&fx.path(), 2, false, &fx.dir.join("weir.log")).await;
    let edge = weir.listeners["edge"];
    assert_eq!(served(edge).await.1, "0");

    // SIGHUP (no --watch: the signal is the only trigger).
    fx.write(&fx.config("2", 1));
    weir.signal("HUP");
    assert_eq!(
        wait_gen(edge, 1).await,
        ("2".into(), "1".into(), "green".into())
    );
    assert_eq!(weir.metric(APPLIED).await, 1.0);

    // POST /reload swaps before it answers.
    let before = weir.config().await["version"].as_u64().unwrap();
    fx.write(&fx.config("1", 2));
    let (code, body) = weir.admin_post("/reload").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let version = v["version"].as_u64().expect("new version");
    assert!(version > before, "{body}");
    assert_eq!(served(edge).await, ("1".into(), "2".into(), "blue".into()));
    assert_eq!(weir.config().await["version"].as_u64(), Some(version));
    assert_eq!(weir.metric(APPLIED).await, 2.0);

    // SIGHUP with an invalid file: rejected, counted, nothing changes.
    fx.write("listeners:\n  - name: edge\n    address: [\n");
    weir.signal("HUP");
    eventually("the SIGHUP reload is rejected", || async {
        (weir.metric(REJECTED).await == 1.0).then_some(())
    })
    .await;
    assert_eq!(served(edge).await.1, "2");
    assert_eq!(weir.config().await["version"].as_u64(), Some(version));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_change_nothing() {
    let fx = Fixture::new("invalid").await;
    let good = fx.config("1", 0);
    fx.write(&good);
    let weir = Weir::standalone(&fx.path(), 2, false, &fx.dir.join("weir.log")).await;
    let edge = weir.listeners["edge"];
    let version = weir.config().await["version"].as_u64().unwrap();

    // A module that does not compile: random bytes, and a valid header followed by garbage.
    std::fs::write(
        fx.dir.join("garbage.wasm"),
        b"this is not wasm \x00\x01\x02\xff",
    )
    .unwrap();
    let mut bad = b"\0asm\x01\0\0\0".to_vec();
    bad.extend_from_slice(&[0x01, 0xff, 0xff, 0xff, 0x0f, 0x42, 0x42]);
    std::fs::write(fx.dir.join("truncated.wasm"), bad).unwrap();
    let with_module = |path: &str| good.replace(&fx.module, path);
    let rate_limit = filter("rate_limit.wasm").display().to_string();
    let failing_configure = format!(
        "{}  - name: limit\n    module: {rate_limit}\n    config: {{ rate: 0 }}\n",
        good.replace("filters: [version]", "filters: [version, limit]")
    );
    let cases = [
        (
            "bad YAML",
            "listeners: [ {name: edge, address: \n".to_string(),
        ),
        ("unknown key", good.replace("routes:", "routez:")),
        (
            "garbage module",
            with_module(&fx.dir.join("garbage.wasm").display().to_string()),
        ),
        (
            "truncated module",
            with_module(&fx.dir.join("truncated.wasm").display().to_string()),
        ),
        ("on_configure fails", failing_configure),
    ];
    for (i, (what, text)) in cases.iter().enumerate() {
        // Each invalid config also carries a new generation: if anything leaked through, the
        // responses would show it.
        fx.write(&text.replace("x-gen: \"0\"", "x-gen: \"99\""));
        let (code, body) = weir.admin_post("/reload").await;
        assert_eq!(code, 400, "{what}: reload must fail: {body}");
        let err: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            !err["error"].as_str().unwrap_or_default().is_empty(),
            "{what}: {body}"
        );
        assert_eq!(
            weir.metric(REJECTED).await,
            (i + 1) as f64,
            "{what}: counted as rejected"
        );
        assert_eq!(weir.metric(APPLIED).await, 0.0, "{what}");
        assert_eq!(
            served(edge).await,
            ("1".into(), "0".into(), "blue".into()),
            "{what}: the old snapshot keeps serving"
        );
        assert_eq!(
            weir.config().await["version"].as_u64(),
            Some(version),
            "{what}: nothing published"
        );
    }
    let log = weir.log_text();
    assert!(
        log.matches("configuration rejected").count() >= cases.len(),
        "every rejection is logged:\n{log}"
    );
    assert!(log.contains("limit"), "the failing filter is named:\n{log}");

    // And a valid config still swaps afterwards.
    fx.write(&fx.config("2", 1));
    let (code, body) = weir.admin_post("/reload").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(served(edge).await, ("2".into(), "1".into(), "green".into()));
}
