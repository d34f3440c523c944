//! Issue 3, points 1–2: ABI markers 0.2.1 / 0.2.0 / 0.1.0 load and run through weir; modules
//! without a marker or an allocator fail `weir validate` (exit 1, naming the filter) and `weir
//! run`; filters in every supported language (Rust for wasm32-unknown-unknown and
//! wasm32-wasip1, AssemblyScript, WAT reactor and command, the SDK guest) each add a header.

use crate::guest::{abi_wat, e2e_filter, example};
use crate::support::weir::run_weir;
use crate::support::{Client, TempDir, Weir};
use crate::upstream::HostUpstream;
use crate::util::{clusters, filter, simple};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abi_markers_0_2_1_0_2_0_0_1_0_load_and_run() {
    let up = HostUpstream::start().await;
    let dir = TempDir::new("abi");
    let mut filters = String::new();
    for (name, marker, v1, value) in [
        ("abi021", "proxy_abi_version_0_2_1", false, "0.2.1"),
        ("abi020", "proxy_abi_version_0_2_0", false, "0.2.0"),
        ("abi010", "proxy_abi_version_0_1_0", true, "0.1.0"),
    ] {
        let path = dir.join(&format!("{name}.wat"));
        std::fs::write(&path, abi_wat(Some(marker), true, v1, value)).expect("write wat");
        filters.push_str(&filter(name, &path, "{}", ""));
    }
    let yaml = simple(&up, &["abi021", "abi020", "abi010"], &filters);
    let weir = Weir::start_with(&yaml, 1, dir).await;
    let mut c = weir.h1("edge").await;
    let r = c.get("/x").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.upstream_header("x-abi").as_deref(),
        Some("0.2.1, 0.2.0, 0.1.0"),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_without_marker_or_allocator_is_rejected_naming_the_filter() {
    let up = HostUpstream::start().await;
    let dir = TempDir::new("abi-bad");
    let nomarker = dir.join("nomarker.wat");
    std::fs::write(&nomarker, abi_wat(None, true, false, "x")).expect("write");
    let noalloc = dir.join("noalloc.wat");
    std::fs::write(
        &noalloc,
        abi_wat(Some("proxy_abi_version_0_2_1"), false, false, "x"),
    )
    .expect("write");
    let filters = filter("nomarker", &nomarker, "{}", "") + &filter("noalloc", &noalloc, "{}", "");
    let yaml = simple(&up, &["nomarker", "noalloc"], &filters);
    let cfg = dir.join("weir.yaml");
    std::fs::write(&cfg, &yaml).expect("write config");
    let (code, out, err) = run_weir(&["validate", "--config", &cfg.display().to_string()]).await;
    let all = format!("{out}\n{err}");
    assert_eq!(code, Some(1), "{all}");
    let line = |filter: &str, word: &str| {
        all.lines()
            .any(|l| l.contains(&format!("filter {filter}")) && l.contains(word))
    };
    assert!(line("nomarker", "ABI marker"), "{all}");
    assert!(line("noalloc", "proxy_on_memory_allocate"), "{all}");
    assert!(line("noalloc", "malloc"), "{all}");

    let run = Weir::try_start(&yaml, 1, TempDir::new("abi-bad-run")).await;
    let Err(e) = run else {
        panic!("weir run started with modules it cannot load")
    };
    assert!(e.contains("nomarker") && e.contains("noalloc"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_adds_its_header_through_weir() {
    let up = HostUpstream::start().await;
    let routes = [
        ("rust", "/rust"),
        ("wasi", "/wasi"),
        ("as", "/as"),
        ("reactor", "/reactor"),
        ("command", "/command"),
        ("sdk", "/sdk"),
    ];
    let mut yaml =
        String::from("listeners:\n  - name: edge\n    address: 127.0.0.1:0\n    routes:\n");
    for (f, p) in routes {
        yaml.push_str(&format!(
            "      - name: {f}\n        match: {{ path_prefix: {p} }}\n        cluster: up\n        filters: [{f}]\n"
        ));
    }
    yaml.push_str(&clusters(&up));
    yaml.push_str("filters:\n");
    yaml.push_str(&filter(
        "rust",
        &example("example_rust.wasm"),
        "{\"greeting\": \"from rust\"}",
        "",
    ));
    yaml.push_str(&filter(
        "wasi",
        &example("example_rust_wasi.wasm"),
        "{\"greeting\": \"from wasip1\"}",
        "",
    ));
    yaml.push_str(&filter(
        "as",
        &example("example_as.wasm"),
        "{}",
        "root_id: example_as",
    ));
    yaml.push_str(&filter("reactor", &example("reactor.wasm"), "{}", ""));
    yaml.push_str(&filter("command", &example("command.wasm"), "{}", ""));
    yaml.push_str(&filter("sdk", e2e_filter(), "{\"tag\": \"S\"}", ""));
    let weir = crate::util::start(&yaml, 1).await;
    let mut c: Client = weir.h1("edge").await;

    let r = c.get("/rust").await;
    assert_eq!(r.header("x-hello").as_deref(), Some("from rust"), "{r:?}");
    let r = c.get("/wasi").await;
    assert_eq!(r.header("x-hello").as_deref(), Some("from wasip1"), "{r:?}");
    let r = c.get("/as").await;
    assert_eq!(r.header("x-as").as_deref(), Some("1"), "{r:?}");
    let r = c.get("/reactor").await;
    assert_eq!(
        r.upstream_header("x-wat").as_deref(),
        Some("reactor"),
        "{r:?}"
    );
    let r = c.get("/command").await;
    assert_eq!(
        r.upstream_header("x-wat").as_deref(),
        Some("command"),
        "{r:?}"
    );
    let r = c.get("/sdk").await;
    assert_eq!(r.upstream_header("x-order").as_deref(), Some("S"), "{r:?}");
    assert_eq!(r.header("x-order-resp").as_deref(), Some("S"), "{r:?}");
}
