//! `weir run` and `weir validate`: loading, starting workers and the admin endpoint, reloading,
//! and draining on SIGTERM.

use crate::config::{self, Config};
use crate::listener;
use crate::metrics::Registry;
use crate::shared::Shared;
use crate::snapshot::Snapshot;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Options of `weir run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config file (standalone mode).
    pub config: PathBuf,
    /// `--control URL`: managed by weir-control instead of a file.
    pub control: Option<String>,
    /// Where the last good control-plane bundle is kept (served on restart while the control
    /// plane is down).
    pub cache_dir: Option<PathBuf>,
    pub workers: Option<usize>,
    pub admin: Option<String>,
    pub watch: bool,
    pub node: String,
}

/// Loads and validates a config file; every error as `file:line:column: message`.
pub fn load(path: &Path) -> Result<Config, Vec<String>> {
    let cfg = config::load_file_validated(path)
        .map_err(|e| e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    Ok(cfg)
}

fn base_dir(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `weir validate`: parse and validate the YAML, then the full check of [`crate::preflight`]
/// (build the snapshot, compile every module, instantiate and configure every filter once, as
/// a worker would), with no side effect (no access-log file is created). Every error is
/// returned, a filter's located at its `config:` or `module:` key.
pub fn validate(path: &Path) -> Result<(), Vec<String>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{file}:1:1: cannot read config: {e}")])?;
    crate::preflight::check_str(&file, &text, &base_dir(path), &Default::default()).map(|_| ())
}

/// Rebuilds the snapshot from `path` and publishes it; failures keep the old one and count as
/// rejected swaps.
pub fn reload(shared: &Shared, path: &Path) -> Result<u64, String> {
    let cfg = load(path);
    swap(shared, cfg, &base_dir(path))
}

/// The swap protocol of DESIGN.md §2 for an already parsed config: build (compile filters),
/// prepare on every worker, publish only if all succeeded. Blocking: call it off the workers.
pub fn swap(shared: &Shared, cfg: Result<Config, Vec<String>>, base: &Path) -> Result<u64, String> {
    let _g = shared.swap_lock.lock().unwrap_or_else(|e| e.into_inner());
    let result = cfg.and_then(|cfg| {
        let prev = shared.snapshot.load_full();
        let version = shared.upcoming_version();
        let snap = Snapshot::build(
            version,
            cfg,
            base,
            Some(&prev),
            &shared.metrics,
            &shared.wasm,
        )?;
        tokio::runtime::Handle::current().block_on(shared.apply(snap))
    });
    match result {
        Ok(v) => {
            tracing::info!(version = v, "configuration swapped");
            Ok(v)
        }
        Err(errors) => {
            shared
                .metrics
                .swaps_rejected
                .fetch_add(1, Ordering::Relaxed);
            let msg = errors.join("\n");
            tracing::error!(errors = %msg, "configuration rejected; keeping the running one");
            Err(msg)
        }
    }
}

/// `weir run`: runs until SIGTERM/SIGINT; returns the process exit code.
pub fn run(opts: RunOptions) -> i32 {
    if opts.control.is_some() {
        return run_managed(opts);
    }
    let cfg = match load(&opts.config) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return 1;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir: cannot start runtime: {e}");
            return 1;
        }
    };
    rt.block_on(run_async(opts, cfg))
}

async fn run_async(opts: RunOptions, cfg: Config) -> i32 {
    // What `--watch` compares against: the file as it was when it was loaded (read before the
    // ready line, so an edit made right after start-up is not mistaken for the loaded state).
    let loaded = std::fs::read(&opts.config).ok();
    let start = StartOptions {
        workers: opts.workers,
        admin: opts.admin.clone(),
        node: opts.node.clone(),
        config_path: Some(opts.config.clone()),
    };
    // Kept to point start-up errors of a filter at its place in the file, as `weir validate`.
    let located = cfg.clone();
    let proxy = match Proxy::start(cfg, &base_dir(&opts.config), start).await {
        Ok(p) => p,
        Err(errors) => {
            let file = opts.config.display().to_string();
            let text = std::fs::read_to_string(&opts.config).unwrap_or_default();
            for e in crate::preflight::locate(&file, &text, &located, errors) {
                eprintln!("{e}");
            }
            return 1;
        }
    };
    println!("{}", proxy.ready_line());
    tracing::info!(workers = proxy.workers, "weir is ready");
    if opts.watch {
        tokio::spawn(watch_file(
            proxy.shared.clone(),
            opts.config.clone(),
            loaded,
            proxy.reloader.clone(),
        ));
    }
    wait_for_shutdown(proxy.shared.clone(), proxy.reloader.clone()).await;
    tracing::info!("shutting down: draining in-flight requests");
    proxy.shutdown().await;
    0
}

/// How to start a [`Proxy`].
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Worker threads (default: number of cores).
    pub workers: Option<usize>,
    /// Admin address, overriding the config's.
    pub admin: Option<String>,
    pub node: String,
    /// The file reloads read (SIGHUP, `--watch`, `POST /reload`); none: reload unavailable.
    pub config_path: Option<PathBuf>,
}

/// Where the configuration of a [`Proxy`] comes from.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// A file (or the caller): ready from the start; `weir_config_version` counts snapshots.
    Standalone,
    /// A control plane. `control_version`: its version of the starting config (the cached
    /// bundle); `None` when the start is the empty placeholder, so `/ready` answers 503 until
    /// a version is applied. `weir_config_version` reports the control plane's version.
    Managed { control_version: Option<u64> },
}

/// A running data plane: workers, listeners and the admin endpoint.
pub struct Proxy {
    pub shared: Arc<Shared>,
    pub listeners: Vec<(String, std::net::SocketAddr)>,
    pub admin: Option<std::net::SocketAddr>,
    pub workers: usize,
    pub reloader: crate::admin::Reloader,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    admin_task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Builds the first snapshot, binds every listener, starts the workers and the admin
    /// endpoint, and returns once every worker accepts connections. Must run inside a tokio
    /// runtime (health checks and the admin endpoint run on it).
    pub async fn start(cfg: Config, base: &Path, opts: StartOptions) -> Result<Proxy, Vec<String>> {
        Self::start_with(cfg, base, opts, Mode::Standalone).await
    }

    /// [`Proxy::start`] in `mode`; a managed mode is set on the shared state before the admin
    /// endpoint serves.
    async fn start_with(
        cfg: Config,
        base: &Path,
        opts: StartOptions,
        mode: Mode,
    ) -> Result<Proxy, Vec<String>> {
        let workers = opts.workers.filter(|w| *w > 0).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let metrics = Arc::new(Registry::default());
        let admin_addr = opts.admin.clone().or_else(|| cfg.admin.clone());
        let listeners_cfg = cfg.listeners.clone();
        let wasm = weir_wasm::WasmHost::new().map_err(|e| vec![e.to_string()])?;
        {
            let w = wasm.clone();
            metrics.add_renderer(Arc::new(move |out: &mut String| w.render_prometheus(out)));
        }
        let snap = Snapshot::build(1, cfg, base, None, &metrics, &wasm)?;
        let swap_thread = crate::swap_thread::SwapThread::start()
            .map_err(|e| vec![format!("cannot start the swap thread: {e}")])?;
        let (shared, commands) =
            Shared::new(snap, metrics, wasm, workers, opts.node.clone(), swap_thread);
        if let Mode::Managed { control_version } = mode {
            shared.set_managed(control_version);
        }
        let bound = listener::bind_all(&listeners_cfg, workers).map_err(|e| vec![e.to_string()])?;
        shared.set_listeners(
            listeners_cfg
                .iter()
                .zip(&bound.addresses)
                .map(|(l, (_, actual))| (l.name.clone(), l.address.clone(), *actual)),
        );
        let reloader: crate::admin::Reloader = {
            let shared = shared.clone();
            let path = opts.config_path.clone();
            Arc::new(move || match &path {
                Some(p) => reload(&shared, p),
                None => Err("no configuration file to reload from".into()),
            })
        };
        let admin_bound = match &admin_addr {
            Some(a) => Some(
                tokio::net::TcpListener::bind(a.as_str())
                    .await
                    .map_err(|e| vec![format!("admin {a}: {e}")])?,
            ),
            None => None,
        };
        let admin = admin_bound.as_ref().and_then(|l| l.local_addr().ok());
        let admin_task = admin_bound.map(|l| {
            tokio::spawn(crate::admin::serve(
                l,
                shared.clone(),
                Some(reloader.clone()),
            ))
        });

        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut threads = Vec::new();
        for ((id, sockets), cmds) in bound.per_worker.into_iter().enumerate().zip(commands) {
            let t = listener::spawn_worker(
                id,
                shared.clone(),
                sockets,
                shutdown_rx.clone(),
                cmds,
                ready_tx.clone(),
            )
            .map_err(|e| vec![format!("cannot start worker {id}: {e}")])?;
            threads.push(t);
        }
        drop(ready_tx);
        let ready = tokio::task::spawn_blocking(move || {
            (0..workers)
                .map(|_| {
                    ready_rx
                        .recv()
                        .unwrap_or_else(|_| Err("a worker died while starting".into()))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| vec![e.to_string()])?;
        let proxy = Proxy {
            shared,
            listeners: bound.addresses,
            admin,
            workers,
            reloader,
            shutdown_tx,
            threads,
            admin_task,
        };
        if let Err(e) = ready {
            proxy.shutdown().await;
            return Err(vec![e]);
        }
        Ok(proxy)
    }

    /// The address of listener `name`.
    pub fn listener(&self, name: &str) -> Option<std::net::SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// The JSON line `weir run` prints once ready.
    pub fn ready_line(&self) -> String {
        let listeners: serde_json::Map<String, serde_json::Value> = self
            .listeners
            .iter()
            .map(|(n, a)| (n.clone(), serde_json::Value::String(a.to_string())))
            .collect();
        serde_json::json!({
            "event": "ready",
            "pid": std::process::id(),
            "admin": self.admin.map(|a| a.to_string()),
            "listeners": listeners,
            "workers": self.workers,
        })
        .to_string()
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain timeout), joins the
    /// workers.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        if let Some(t) = self.admin_task {
            t.abort();
        }
        // Access-log lines are buffered (flushed every 100 ms): write what is left.
        crate::access_log::flush_all();
    }
}

/// Waits for SIGTERM or SIGINT; SIGHUP reloads the configuration.
async fn wait_for_shutdown(shared: Arc<Shared>, reloader: crate::admin::Reloader) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                let f = reloader.clone();
                let _ = shared.swap_thread.run(move || f()).await;
            }
        }
    }
}

/// `--watch`: reloads when the file's contents change (checked twice a second).
async fn watch_file(
    shared: Arc<Shared>,
    path: PathBuf,
    mut last: Option<Vec<u8>>,
    reloader: crate::admin::Reloader,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tick.tick().await;
        let now = std::fs::read(&path).ok();
        if now.is_some() && now != last {
            last = now;
            let f = reloader.clone();
            let _ = shared.swap_thread.run(move || f()).await;
        }
    }
}

// === managed by weir-control ===

/// `weir run --control URL --node NAME`: starts on the cached bundle (or on nothing), then
/// applies every version the control plane sends by the swap protocol, ACKing or NACKing it.
fn run_managed(opts: RunOptions) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir: cannot start runtime: {e}");
            return 1;
        }
    };
    rt.block_on(run_managed_async(opts))
}

fn apply_bundle(shared: &Shared, bundle: &crate::control::Bundle) -> Result<u64, String> {
    let cfg = bundle.load_config(Path::new(".")).map_err(|e| vec![e]);
    let v = swap(shared, cfg, Path::new("."))?;
    shared.set_control_version(bundle.version);
    Ok(v)
}

async fn run_managed_async(opts: RunOptions) -> i32 {
    let url = opts.control.clone().unwrap_or_default();
    let cached = opts
        .cache_dir
        .as_deref()
        .and_then(crate::control::load_cached);
    let mut running = None;
    let (cfg, cached_version) = match &cached {
        Some(b) => match b.load_config(Path::new(".")) {
            Ok(c) => {
                tracing::info!(
                    version = b.version,
                    "starting on the cached control-plane bundle"
                );
                running = Some(b.clone());
                (c, Some(b.version))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cached bundle unusable; starting empty");
                (Config::default(), None)
            }
        },
        None => (Config::default(), None),
    };
    let start = StartOptions {
        workers: opts.workers,
        admin: opts.admin.clone(),
        node: opts.node.clone(),
        config_path: None,
    };
    // Not ready (`/ready` 503) until a configuration is applied, unless the cache had one.
    let mode = Mode::Managed {
        control_version: cached_version,
    };
    let proxy = match Proxy::start_with(cfg, Path::new("."), start, mode).await {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                eprintln!("weir: {e}");
            }
            return 1;
        }
    };
    println!("{}", proxy.ready_line());
    tracing::info!(control = %url, node = %opts.node, "weir is ready (managed)");
    let mut client = crate::control::ControlClient::new(url, opts.node.clone());
    if let Some(dir) = &opts.cache_dir {
        client = client.with_cache_dir(dir.clone());
    }
    if let Some(b) = &running {
        // The control plane may still send this version: ACK it without another swap.
        client = client.with_running(b);
    }
    let shared = proxy.shared.clone();
    let control = tokio::spawn(client.run(move |bundle: crate::control::Bundle| {
        let shared = shared.clone();
        async move {
            let job = shared.clone();
            shared
                .swap_thread
                .run(move || apply_bundle(&job, &bundle).map(|_| ()))
                .await
                .map_err(|e| e.to_string())?
        }
    }));
    wait_for_shutdown(proxy.shared.clone(), proxy.reloader.clone()).await;
    control.abort();
    tracing::info!("shutting down: draining in-flight requests");
    proxy.shutdown().await;
    0
}
