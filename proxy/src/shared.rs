//! Process-wide state shared by every worker and the admin endpoint: the running snapshot
//! (behind `ArcSwap`), the metrics registry, per-worker counters, and the command channels that
//! carry the swap protocol (DESIGN.md §2) to the workers.

use crate::metrics::Registry;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

/// State shared by all threads.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Registry>,
    pub workers: Vec<WorkerStats>,
    pub node: String,
    pub wasm: weir_wasm::WasmHost,
    worker_tx: Vec<mpsc::UnboundedSender<WorkerCmd>>,
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
            node,
            wasm,
            worker_tx: tx,
            next_conn_id: AtomicU64::new(1),
            next_version: AtomicU64::new(next),
        });
        (shared, rx)
    }

    /// The version number the next snapshot gets.
    pub fn take_version(&self) -> u64 {
        self.next_version.fetch_add(1, Ordering::Relaxed)
    }

    /// The swap protocol's steps 3–4: every worker prepares the snapshot's VMs; only if all
    /// succeed is it published (one atomic store). Otherwise nothing changes and every error is
    /// returned.
    pub async fn apply(&self, snapshot: Snapshot) -> Result<u64, Vec<String>> {
        let snapshot = Arc::new(snapshot);
        let version = snapshot.version;
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
        self.metrics
            .config_version
            .store(version, Ordering::Relaxed);
        self.metrics.swaps_ok.fetch_add(1, Ordering::Relaxed);
        Ok(version)
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }
}
