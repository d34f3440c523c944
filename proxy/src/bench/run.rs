//! `weir bench`: an in-process upstream, the proxy with the given config (or a default), and a
//! load generator, run twice — with the filter chain and with every filter removed — so the
//! chain's own cost shows as a difference and a ratio.

use super::{cpu, loadgen, upstream};
use crate::app::{Proxy, StartOptions};
use crate::config::{self, Config};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `weir bench`.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub config: Option<PathBuf>,
    pub duration: Duration,
    pub connections: usize,
    pub rate: Option<u64>,
    pub http2: bool,
    pub json: bool,
    pub workers: usize,
    pub path: String,
    /// With a path: a third run, without filters but with the access log written there.
    pub access_log: Option<String>,
}

/// One measured run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunFigures {
    pub label: String,
    pub requests: u64,
    pub errors: u64,
    pub non_2xx: u64,
    /// Responses by status code.
    pub statuses: std::collections::BTreeMap<u16, u64>,
    pub rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub cpu_us_per_request: f64,
    pub peak_rss_bytes: u64,
    /// Time spent in each filter's callbacks per request (the host's own accounting).
    pub filter_us_per_request: Vec<(String, f64)>,
}

fn filter_seconds(proxy: &Proxy) -> Vec<(String, f64)> {
    let snap = proxy.shared.snapshot.load();
    let mut v: Vec<(String, f64)> = snap
        .filters
        .iter()
        .map(|(n, p)| (n.clone(), p.stats().total_seconds()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Where `weir bench` without `--config` finds the built-in filters: `target/filters` under the
/// current directory, else the one beside the binary's directory (`target/release/weir` →
/// `target/filters`), so it runs from anywhere in a built checkout.
fn builtin_filters_dir() -> Option<PathBuf> {
    let beside_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("filters")));
    std::iter::once(PathBuf::from("target/filters"))
        .chain(beside_binary)
        .find(|dir| dir.join("auth.wasm").is_file())
}

/// The default bench config: one listener, one route, the built-in filters found in
/// `filters_dir` (see [`builtin_filters_dir`]).
pub fn default_config(filters_dir: &Path) -> Config {
    let mut filters = Vec::new();
    let mut chain = Vec::new();
    let builtins: [(&str, serde_json::Value); 4] = [
        (
            "auth",
            serde_json::json!({"api_keys": {"header": "x-api-key", "keys": {"bench-key": "bench"}}, "rules": []}),
        ),
        (
            "rate_limit",
            serde_json::json!({"rate": 100000000, "per": "second", "burst": 100000000, "key": "global"}),
        ),
        (
            "header_rewrite",
            serde_json::json!({"request": {"set": {"x-bench": "1"}}, "response": {"set": {"x-served-by": "weir"}}}),
        ),
        (
            "fault",
            serde_json::json!({"abort": {"status": 503, "percent": 0}, "header_override": false}),
        ),
    ];
    for (name, cfg) in builtins {
        let module = filters_dir.join(format!("{name}.wasm"));
        if module.exists() {
            chain.push(name.to_string());
            filters.push(config::Filter {
                name: name.into(),
                module: module.display().to_string(),
                config: Some(cfg),
                on_error: Default::default(),
                vm_id: String::new(),
                root_id: None,
                limits: Default::default(),
            });
        }
    }
    let yaml = serde_json::json!({
        "listeners": [{
            "name": "bench",
            "address": "127.0.0.1:0",
            "filters": chain,
            "routes": [{ "name": "all", "match": { "path_prefix": "/" }, "cluster": "upstream" }],
        }],
        "clusters": [{ "name": "upstream", "endpoints": ["127.0.0.1:1"] }],
    });
    let mut cfg: Config = serde_json::from_value(yaml).expect("the default bench config is valid");
    cfg.filters = filters;
    cfg
}

/// Headers every bench request carries: the API key the default chain's `auth` filter accepts.
fn bench_headers() -> Vec<(http::HeaderName, http::HeaderValue)> {
    vec![(
        http::HeaderName::from_static("x-api-key"),
        http::HeaderValue::from_static("bench-key"),
    )]
}

fn strip_filters(cfg: &Config) -> Config {
    let mut c = cfg.clone();
    c.filters.clear();
    for l in &mut c.listeners {
        l.filters.clear();
        for r in &mut l.routes {
            r.filters.clear();
        }
    }
    c
}

async fn measure(
    label: &str,
    cfg: Config,
    base: &Path,
    opts: &BenchOptions,
) -> Result<RunFigures, String> {
    let proxy = Proxy::start(
        cfg,
        base,
        StartOptions {
            workers: Some(opts.workers),
            node: "bench".into(),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| e.join("\n"))?;
    let target = proxy
        .listeners
        .first()
        .map(|(_, a)| *a)
        .ok_or("the config has no listener")?;
    // Warm up pools and VMs.
    let warm = loadgen::LoadOptions {
        target,
        path: opts.path.clone(),
        duration: Duration::from_millis(500),
        connections: opts.connections.min(8),
        rate: None,
        http2: opts.http2,
        progress: false,
        headers: bench_headers(),
    };
    let _ = tokio::task::spawn_blocking(move || loadgen::run(warm)).await;
    if !opts.json {
        eprintln!("{label}:");
    }
    let cpu0 = cpu::threads_cpu("weir-worker");
    let f0 = filter_seconds(&proxy);
    let load = loadgen::LoadOptions {
        target,
        path: opts.path.clone(),
        duration: opts.duration,
        connections: opts.connections,
        rate: opts.rate,
        http2: opts.http2,
        progress: !opts.json,
        headers: bench_headers(),
    };
    let res = tokio::task::spawn_blocking(move || loadgen::run(load))
        .await
        .map_err(|e| e.to_string())??;
    let cpu = cpu::threads_cpu("weir-worker").saturating_sub(cpu0);
    let n = res.requests.max(1) as f64;
    let filter_us_per_request = filter_seconds(&proxy)
        .into_iter()
        .zip(f0)
        .map(|((name, after), (_, before))| (name, (after - before) * 1e6 / n))
        .collect();
    proxy.shutdown().await;
    Ok(RunFigures {
        label: label.into(),
        requests: res.requests,
        errors: res.errors,
        non_2xx: res.non_2xx,
        statuses: res.statuses.clone(),
        rps: res.rps(),
        p50_ms: res.ms(0.5),
        p90_ms: res.ms(0.9),
        p99_ms: res.ms(0.99),
        p999_ms: res.ms(0.999),
        cpu_us_per_request: cpu.as_secs_f64() * 1e6 / res.requests.max(1) as f64,
        peak_rss_bytes: cpu::peak_rss(),
        filter_us_per_request,
    })
}

/// Runs the benchmark; returns the exit code.
pub fn bench(opts: BenchOptions) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir bench: {e}");
            return 1;
        }
    };
    match rt.block_on(bench_async(&opts)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("weir bench: {e}");
            1
        }
    }
}

async fn bench_async(opts: &BenchOptions) -> Result<(), String> {
    let (mut cfg, base) = match &opts.config {
        Some(p) => {
            let cfg = config::load_file(p).map_err(|e| e.to_string())?;
            let base = p
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            (cfg, base)
        }
        None => {
            let dir = builtin_filters_dir().ok_or_else(|| {
                "no built-in filters found (target/filters here or beside the weir binary): \
                 build them with `bash scripts/build-filters.sh`, or pass --config"
                    .to_string()
            })?;
            (default_config(&dir), PathBuf::from("."))
        }
    };
    let up = upstream::spawn("bench-upstream")
        .await
        .map_err(|e| e.to_string())?;
    for c in &mut cfg.clusters {
        c.endpoints = vec![up.to_string()];
        c.tls = None;
        c.http2 = false;
        c.health_check = None;
    }
    for l in &mut cfg.listeners {
        l.address = "127.0.0.1:0".into();
        l.tls = None;
        l.access_log = None;
    }
    // Off unless asked for (`--access-log`): the figures are the proxy's and the chain's.
    cfg.access_log = Some(config::AccessLog { path: "off".into() });
    cfg.admin = None;
    let chain: Vec<String> = cfg.filters.iter().map(|f| f.name.clone()).collect();
    let with = measure("with filter chain", cfg.clone(), &base, opts).await?;
    let without = measure("without filters", strip_filters(&cfg), &base, opts).await?;
    let logged = match &opts.access_log {
        Some(path) => {
            let mut c = strip_filters(&cfg);
            c.access_log = Some(config::AccessLog { path: path.clone() });
            Some(measure("without filters, access log on", c, &base, opts).await?)
        }
        None => None,
    };
    let log_cost = logged.as_ref().map(|l| {
        serde_json::json!({
            "cpu_us_per_request": l.cpu_us_per_request - without.cpu_us_per_request,
            "cpu_ratio": l.cpu_us_per_request / without.cpu_us_per_request.max(1e-9),
        })
    });
    let report = serde_json::json!({
        "filters": chain,
        "workers": opts.workers,
        "connections": opts.connections,
        "duration_s": opts.duration.as_secs_f64(),
        "rate": opts.rate,
        "http2": opts.http2,
        "with_filters": with,
        "without_filters": without,
        "access_log_on": logged,
        "access_log_cost": log_cost,
        "chain_cpu_us_per_request": with.cpu_us_per_request - without.cpu_us_per_request,
        "chain_cpu_ratio": with.cpu_us_per_request / without.cpu_us_per_request.max(1e-9),
    });
    if opts.json {
        println!("{report}");
        return Ok(());
    }
    println!("filter chain: [{}]", chain.join(", "));
    println!(
        "| run | requests/s | p50 ms | p90 ms | p99 ms | p99.9 ms | CPU µs/req | errors | non-2xx |\n|---|---|---|---|---|---|---|---|---|"
    );
    for r in [Some(&with), Some(&without), logged.as_ref()]
        .into_iter()
        .flatten()
    {
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} | {} | {} |",
            r.label,
            r.rps,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.p999_ms,
            r.cpu_us_per_request,
            r.errors,
            r.non_2xx
        );
    }
    for r in [&with, &without] {
        if r.non_2xx > 0 {
            println!("{}: responses by status {:?}", r.label, r.statuses);
        }
    }
    if !with.filter_us_per_request.is_empty() {
        println!("\nper filter (time inside its callbacks per request, host accounting):\n| filter | µs/request |\n|---|---|");
        let mut sum = 0.0;
        for (name, us) in &with.filter_us_per_request {
            sum += us;
            println!("| {name} | {us:.2} |");
        }
        println!("| all filters | {sum:.2} |\n");
    }
    println!(
        "chain cost: {:+.1} µs CPU per request ({:.2}× the plain proxy); peak RSS {:.1} MiB",
        with.cpu_us_per_request - without.cpu_us_per_request,
        with.cpu_us_per_request / without.cpu_us_per_request.max(1e-9),
        with.peak_rss_bytes.max(without.peak_rss_bytes) as f64 / (1 << 20) as f64
    );
    if let Some(l) = &logged {
        println!(
            "access log cost: {:+.1} µs CPU per request ({:+.1}% of the plain proxy)",
            l.cpu_us_per_request - without.cpu_us_per_request,
            (l.cpu_us_per_request / without.cpu_us_per_request.max(1e-9) - 1.0) * 100.0
        );
    }
    Ok(())
}
