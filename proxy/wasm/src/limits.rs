//! Per-VM limits: the memory cap (a wasmtime `ResourceLimiter`) and the epoch-deadline
//! arithmetic for callbacks.

use crate::metrics::FilterStats;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often the engine's epoch is incremented by the ticker thread: the granularity of
/// callback deadlines (a callback is stopped between its deadline and one tick later). Each
/// tick wakes a thread, preempting a worker on a busy core: at 2 ms the ticker alone took 1 %
/// of a core, so it is 10 ms (100 wake-ups a second), well under the 100 ms default deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Deadline used for instantiation, `_initialize`/`_start`, `proxy_on_vm_start` and
/// `proxy_on_configure` (configuration parsing may be slower than a request callback).
pub const MIN_INIT_DEADLINE: Duration = Duration::from_secs(2);

/// Epoch ticks for a deadline (at least 1, rounded up, plus one tick of slack since the current
/// tick may be almost over).
pub fn deadline_ticks(deadline: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos().max(1);
    let n = deadline.as_nanos().div_ceil(tick) as u64;
    n.max(1) + 1
}

/// Error that `memory.grow` past the cap traps with.
#[derive(Debug, thiserror::Error)]
#[error("memory limit exceeded: the filter asked for {desired} bytes, its cap is {limit} bytes")]
pub struct MemoryLimitExceeded {
    pub desired: usize,
    pub limit: usize,
}

/// A memory (and table) cap for one store. It also keeps its filter's live-VM count and
/// memory total (`/filters`): it lives exactly as long as the store, and sees every memory
/// creation and growth.
#[derive(Debug)]
pub struct MemoryLimiter {
    pub(crate) max_memory_bytes: usize,
    pub(crate) max_table_elements: usize,
    pub(crate) exceeded: bool,
    usage: Option<Arc<FilterStats>>,
    /// Bytes this store added to `usage`.
    counted: u64,
}

impl MemoryLimiter {
    pub fn new(max_memory_bytes: usize) -> Self {
        MemoryLimiter {
            max_memory_bytes,
            max_table_elements: 1_000_000,
            exceeded: false,
            usage: None,
            counted: 0,
        }
    }

    /// Counts this store as a live VM of the filter `stats` belong to, with its memory.
    pub(crate) fn counting(mut self, stats: Arc<FilterStats>) -> Self {
        stats.live_vms.fetch_add(1, Ordering::Relaxed);
        self.usage = Some(stats);
        self
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        if let Some(stats) = &self.usage {
            stats.live_vms.fetch_sub(1, Ordering::Relaxed);
            stats
                .memory_bytes
                .fetch_sub(self.counted, Ordering::Relaxed);
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.exceeded = true;
            return Err(MemoryLimitExceeded {
                desired,
                limit: self.max_memory_bytes,
            }
            .into());
        }
        if let Some(stats) = &self.usage {
            let grown = desired.saturating_sub(current) as u64;
            stats.memory_bytes.fetch_add(grown, Ordering::Relaxed);
            self.counted += grown;
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }
}
