//! Process-wide state shared by every worker and the admin endpoint: the running snapshot
//! (behind `ArcSwap`), the metrics registry and per-worker counters.

use crate::metrics::Registry;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of one worker thread.
#[derive(Default)]
pub struct WorkerStats {
    pub accepted: AtomicU64,
    pub requests: AtomicU64,
}

/// State shared by all threads.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Registry>,
    pub workers: Vec<WorkerStats>,
    pub node: String,
    next_conn_id: AtomicU64,
}

impl Shared {
    pub fn new(snapshot: Snapshot, metrics: Arc<Registry>, workers: usize, node: String) -> Arc<Shared> {
        metrics.config_version.store(snapshot.version, Ordering::Relaxed);
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
            node,
            next_conn_id: AtomicU64::new(1),
        })
    }

    /// Publishes a new snapshot (one atomic store).
    pub fn publish(&self, snapshot: Snapshot) {
        let v = snapshot.version;
        self.snapshot.store(Arc::new(snapshot));
        self.metrics.config_version.store(v, Ordering::Relaxed);
        self.metrics.swaps_ok.fetch_add(1, Ordering::Relaxed);
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }
}
