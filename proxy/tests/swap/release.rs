//! Issue 5, point 6: old VMs are released. The lifecycle guest
//! (`proxy/wasm/tests/guests/lifecycle`) counts root contexts configured, `proxy_on_done` and
//! `proxy_on_delete` in process-wide metrics: a version's VMs get both once the last request that
//! started on that version ends, not before; and after 200 swaps the proxy's RSS is within 10%
//! of its RSS after 10 swaps.

use crate::support::{
    eventually, get_once, lifecycle_guest, write_atomic, TempDir, Upstream, Weir,
};
use std::net::SocketAddr;
use std::path::PathBuf;

const CONFIGURED: &str = "swaplife_configured_total";
const DONE: &str = "swaplife_done_total";
const DELETED: &str = "swaplife_deleted_total";

struct Life {
    dir: TempDir,
    up: Upstream,
    weir: Weir,
    file: PathBuf,
    edge: SocketAddr,
}

fn config(up: SocketAddr, gen: u64) -> String {
    format!(
        r#"listeners:
  - name: edge
    address: 127.0.0.1:0
    filters: [life]
    routes:
      - name: all
        match: {{ path_prefix: / }}
        cluster: backend
clusters:
  - name: backend
    endpoints: [{up}]
filters:
  - name: life
    module: {module}
    config: {{ gen: {gen} }}
"#,
        module = lifecycle_guest().display()
    )
}

impl Life {
    async fn start(workers: usize) -> Life {
        let dir = TempDir::new("release");
        let up = Upstream::start("backend").await;
        let file = dir.join("weir.yaml");
        write_atomic(&file, config(up.addr, 0));
        let weir = Weir::standalone(&file, workers, false, &dir.join("weir.log")).await;
        let edge = weir.listeners["edge"];
        Life {
            dir,
            up,
            weir,
            file,
            edge,
        }
    }

    async fn swap(&self, gen: u64) {
        write_atomic(&self.file, config(self.up.addr, gen));
        let (code, body) = self.weir.admin_post("/reload").await;
        assert_eq!(code, 200, "reload {gen}: {body}");
    }

    /// (configured, done, deleted)
    async fn counts(&self) -> (u64, u64, u64) {
        let (code, body) = self.weir.admin_get("/metrics").await;
        assert_eq!(code, 200);
        let m = |s| crate::support::metric_value(&body, s) as u64;
        (m(CONFIGURED), m(DONE), m(DELETED))
    }

    /// The generation that served a GET (`x-life: {"gen":N}`).
    async fn served_gen(&self) -> String {
        let r = get_once(self.edge, "/probe").await;
        assert_eq!(r.status, 200, "{r:?}");
        r.one("x-life").expect("one x-life")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_vms_end_when_their_last_request_does() {
    let life = Life::start(1).await;
    assert_eq!(life.counts().await, (1, 0, 0));
    assert_eq!(life.served_gen().await, r#"{"gen":0}"#);

    // A request in flight on generation 0 (held by the upstream) across three swaps.
    let edge = life.edge;
    let held = tokio::spawn(async move { get_once(edge, "/hold").await });
    eventually("the request reached the upstream", || async {
        (life.up.held() == 1).then_some(())
    })
    .await;
    for gen in 1..=3 {
        life.swap(gen).await;
    }
    // A new request is served by generation 3; generations 1 and 2 served nothing in flight, so
    // their VMs are gone (the worker lets older versions go when a request takes a newer one).
    assert_eq!(life.served_gen().await, r#"{"gen":3}"#);
    let (configured, done, deleted) = life.counts().await;
    assert_eq!(configured, 4, "one VM per generation (1 worker)");
    assert_eq!(
        (done, deleted),
        (2, 2),
        "generations 1 and 2 released, 0 kept by its in-flight request"
    );

    // The held request ends on the VM it started with; then that VM gets on_done/on_delete.
    life.up.release();
    let r = held.await.expect("held request");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.one("x-life").as_deref(), Some(r#"{"gen":0}"#));
    eventually("generation 0 released after its last request", || async {
        (life.counts().await == (4, 3, 3)).then_some(())
    })
    .await;
    assert!(life.dir.path().exists());
}

/// RSS moves in steps of 2–4 MiB as instance memories come and go (74.6 → 79.0 → 74.9 → 77.0 MiB
/// between consecutive samples of one run), so one sample after swap 10 can be a trough that
/// puts a flat run over 10 %. The comparison is of medians: RSS after swaps 10, 20 and 30
/// against RSS after swaps 180, 190 and 200. A leak of the old versions' VMs grows linearly
/// (it gave +11 % here when it happened) and still fails. Builds run on the one `weir-swap`
/// thread (`proxy/src/swap_thread.rs`): on tokio's blocking pool a swap sometimes started a new
/// thread, whose stack and malloc arena were a one-off step of 4–6 MiB (+11.2 % in one CI run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_after_200_swaps_within_10_percent_of_after_10() {
    let workers = 2;
    let life = Life::start(workers).await;
    let (mut early, mut late) = (Vec::new(), Vec::new());
    for gen in 1..=200u64 {
        life.swap(gen).await;
        if gen % 10 == 0 {
            assert_eq!(life.served_gen().await, format!(r#"{{"gen":{gen}}}"#));
            match gen {
                10..=30 => early.push(life.weir.rss_kib()),
                180..=200 => late.push(life.weir.rss_kib()),
                _ => {}
            }
        }
    }
    let median = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (rss_10, rss_200) = (median(&mut early), median(&mut late));
    let (configured, done, deleted) = life.counts().await;
    eprintln!(
        "RSS after swaps 10/20/30: {early:?} KiB (median {rss_10}); after 180/190/200: {late:?} KiB \
         (median {rss_200}, {:+.1}%); VMs configured {configured}, on_done {done}, on_delete {deleted}",
        (rss_200 as f64 / rss_10 as f64 - 1.0) * 100.0
    );
    assert_eq!(configured, 201 * workers as u64);
    assert_eq!(done, deleted);
    let live = configured - deleted;
    assert!(
        live <= 3 * workers as u64,
        "old VMs released: {live} root contexts still alive after 200 swaps on {workers} workers"
    );
    // The host's own accounting agrees (`/filters`: live VMs of the filter, every snapshot).
    let (code, body) = life.weir.admin_get("/filters").await;
    assert_eq!(code, 200, "{body}");
    let filters: serde_json::Value = serde_json::from_str(&body).expect("json");
    let host_live = filters["filters"][0]["vms_live"]
        .as_u64()
        .expect("vms_live");
    assert!(
        host_live <= 3 * workers as u64 && host_live >= workers as u64,
        "/filters counts {host_live} live VMs after 200 swaps on {workers} workers"
    );
    assert!(
        rss_200 as f64 <= rss_10 as f64 * 1.10,
        "RSS after 200 swaps {rss_200} KiB > 110% of RSS after 10 swaps {rss_10} KiB"
    );
}
