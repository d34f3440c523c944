//! Process-wide state shared by every worker and the admin endpoint: the running snapshot
//! (behind `ArcSwap`), the metrics registry, per-worker counters, and the command channels that
//! carry the swap protocol (DESIGN.md §2) to the workers.

use crate::metrics::Registry;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Counters of one worker thread.
#[derive(Default)]
pub struct WorkerStats {
    pub accepted: AtomicU64,
    pub requests: AtomicU64,
}

/// Messages to a worker thread.
pub enum WorkerCmd {
    /// Instantiate this snapshot's filter VMs on the worker (`proxy_on_vm_start`,
    /// `proxy_on_configure`) and keep them ready; answer with every error.
    Prepare {
        snapshot: Arc<Snapshot>,
        reply: oneshot::Sender<Result<(), Vec<String>>>,
    },
    /// Drop what `Prepare` built for a version that will not be published.
    Discard { version: u64 },
    /// This version is now the running one: let older versions' VMs go (each ends when its last
    /// in-flight request does).
    Published { version: u64 },
    /// Start accepting on a listener socket bound for this worker.
    AddListener {
        name: Arc<str>,
        socket: std::net::TcpListener,
    },
    /// Stop accepting on a listener (its open connections go on).
    RemoveListener { name: Arc<str> },
}

/// State shared by all threads.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Registry>,
    pub workers: Vec<WorkerStats>,
    /// The node id (`node.id`), shared with every request's filter stream without a copy.
    pub node: Arc<str>,
    pub wasm: weir_wasm::WasmHost,
    /// Where every new snapshot is built (file reloads, admin, control plane).
    pub swap_thread: crate::swap_thread::SwapThread,
    /// Serialises swaps (file reloads, admin, control plane).
    pub swap_lock: std::sync::Mutex<()>,
    /// Serialises the per-worker instantiation of filter VMs (see `Worker::prepare`).
    pub prepare_lock: std::sync::Mutex<()>,
    /// The control-plane version of the running snapshot (0: not from a control plane).
    pub control_version: AtomicU64,
    /// Managed by a control plane: `weir_config_version` reports the control plane's version
    /// of the running configuration ([`Shared::set_control_version`]), not the local snapshot
    /// counter (which keeps numbering snapshots for the workers).
    managed: AtomicBool,
    worker_tx: Vec<mpsc::UnboundedSender<WorkerCmd>>,
    /// Bound listeners: name → (configured address, actual address).
    listeners: std::sync::Mutex<BTreeMap<String, (String, SocketAddr)>>,
    next_conn_id: AtomicU64,
    next_version: AtomicU64,
}

impl Shared {
    /// Creates the shared state around the first snapshot, and one command receiver per worker.
    pub fn new(
        snapshot: Snapshot,
        metrics: Arc<Registry>,
        wasm: weir_wasm::WasmHost,
        workers: usize,
        node: String,
        swap_thread: crate::swap_thread::SwapThread,
    ) -> (Arc<Shared>, Vec<mpsc::UnboundedReceiver<WorkerCmd>>) {
        metrics
            .config_version
            .store(snapshot.version, Ordering::Relaxed);
        let (tx, rx): (Vec<_>, Vec<_>) = (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let next = snapshot.version + 1;
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
            node: node.into(),
            wasm,
            swap_thread,
            swap_lock: Default::default(),
            prepare_lock: Default::default(),
            control_version: AtomicU64::new(0),
            managed: AtomicBool::new(false),
            worker_tx: tx,
            listeners: Default::default(),
            next_conn_id: AtomicU64::new(1),
            next_version: AtomicU64::new(next),
        });
        (shared, rx)
    }

    /// Switches to managed mode before anything is served: the running configuration is the
    /// control plane's `version` (`None`: there is none yet, so not ready).
    pub fn set_managed(&self, version: Option<u64>) {
        self.managed.store(true, Ordering::Relaxed);
        self.set_control_version(version.unwrap_or(0));
    }

    /// Whether the running configuration comes from a control plane.
    pub fn is_managed(&self) -> bool {
        self.managed.load(Ordering::Relaxed)
    }

    /// Records that the control plane's `version` is now the running configuration (call after
    /// [`Shared::apply`] published it): `/config`'s `control_version`, `weir_config_version`
    /// and, when not 0, readiness.
    pub fn set_control_version(&self, version: u64) {
        self.control_version.store(version, Ordering::Release);
        self.metrics
            .config_version
            .store(version, Ordering::Relaxed);
    }

    /// Whether there is a configuration to serve (`/ready`): standalone from the start; managed
    /// once a control-plane version (or the cached bundle) is running (0: none yet).
    pub fn is_ready(&self) -> bool {
        !self.is_managed() || self.control_version.load(Ordering::Acquire) != 0
    }

    /// The version number the next published snapshot gets: only a publish moves it on, so a
    /// rejected reload leaves no gap in `weir_config_version`. Swaps are serialised
    /// (`swap_lock`); a rejected build's number is discarded on the workers before it is reused.
    pub fn upcoming_version(&self) -> u64 {
        self.next_version.load(Ordering::Relaxed)
    }

    /// The swap protocol's steps 3–4: every worker prepares the snapshot's VMs; only if all
    /// succeed is it published (one atomic store). Otherwise nothing changes and every error is
    /// returned.
    pub async fn apply(&self, snapshot: Snapshot) -> Result<u64, Vec<String>> {
        let snapshot = Arc::new(snapshot);
        let version = snapshot.version;
        // Listeners: keep those whose address is unchanged, bind new or moved ones now (a bind
        // failure rejects the swap), stop removed ones after publishing.
        let current = self.listeners();
        let mut to_add = Vec::new();
        let mut to_remove: Vec<String> = current
            .keys()
            .filter(|n| !snapshot.config.listeners.iter().any(|l| &l.name == *n))
            .cloned()
            .collect();
        for l in &snapshot.config.listeners {
            match current.get(&l.name) {
                Some((addr, _)) if *addr == l.address => {}
                Some(_) => {
                    to_remove.push(l.name.clone());
                    to_add.push(l.clone());
                }
                None => to_add.push(l.clone()),
            }
        }
        let bound = crate::listener::bind_all(&to_add, self.worker_tx.len())
            .map_err(|e| vec![e.to_string()])?;
        let mut replies = Vec::with_capacity(self.worker_tx.len());
        for tx in &self.worker_tx {
            let (reply, rx) = oneshot::channel();
            if tx
                .send(WorkerCmd::Prepare {
                    snapshot: snapshot.clone(),
                    reply,
                })
                .is_ok()
            {
                replies.push(rx);
            }
        }
        let mut errors = Vec::new();
        if replies.len() != self.worker_tx.len() {
            errors.push("a worker is gone".to_string());
        }
        for (i, rx) in replies.into_iter().enumerate() {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    for e in e {
                        if !errors.contains(&e) {
                            errors.push(e);
                        }
                    }
                }
                Err(_) => errors.push(format!("worker {i} stopped while preparing")),
            }
        }
        if !errors.is_empty() {
            for tx in &self.worker_tx {
                let _ = tx.send(WorkerCmd::Discard { version });
            }
            return Err(errors);
        }
        self.snapshot.store(snapshot);
        {
            let mut map = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
            for name in &to_remove {
                map.remove(name);
                for tx in &self.worker_tx {
                    let _ = tx.send(WorkerCmd::RemoveListener {
                        name: Arc::from(name.as_str()),
                    });
                }
            }
            for (l, (_, actual)) in to_add.iter().zip(&bound.addresses) {
                map.insert(l.name.clone(), (l.address.clone(), *actual));
            }
        }
        for tx in &self.worker_tx {
            let _ = tx.send(WorkerCmd::Published { version });
        }
        self.next_version.fetch_max(version + 1, Ordering::Relaxed);
        for (tx, sockets) in self.worker_tx.iter().zip(bound.per_worker) {
            for (name, socket) in sockets {
                let _ = tx.send(WorkerCmd::AddListener { name, socket });
            }
        }
        if !self.is_managed() {
            // Managed: the control plane's version is recorded by `set_control_version`.
            self.metrics
                .config_version
                .store(version, Ordering::Relaxed);
        }
        self.metrics.swaps_ok.fetch_add(1, Ordering::Relaxed);
        Ok(version)
    }

    /// Records listeners bound at start-up.
    pub fn set_listeners(&self, bound: impl IntoIterator<Item = (String, String, SocketAddr)>) {
        let mut map = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        for (name, configured, actual) in bound {
            map.insert(name, (configured, actual));
        }
    }

    /// Bound listeners: name → (configured address, actual address).
    pub fn listeners(&self) -> BTreeMap<String, (String, SocketAddr)> {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }
}
