//! Connection circuit breakers of a cluster (`limits.max_connections`, `limits.max_pending`),
//! counted across every worker as Envoy counts them.
//!
//! A request that finds no idle connection needs a new one. When the cluster already has
//! `max_connections` open, the request waits ("pending") until a connection closes or one of
//! this worker's goes idle; when `max_pending` requests are already waiting, it is refused
//! (503, `UO`). The wait is bounded by the route's timeout. See `pool::ClusterPool::send`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// The breaker state of one cluster build, shared by its pools on every worker.
#[derive(Debug)]
pub struct ConnLimits {
    max_connections: u32,
    max_pending: u32,
    open: AtomicU32,
    pending: AtomicU32,
    /// Woken when a connection closes or goes idle while requests are pending.
    freed: Notify,
}

/// One open (or dialing) connection's place under `max_connections`; released on drop.
#[derive(Debug)]
pub struct ConnSlot(Arc<ConnLimits>);

/// One waiting request's place under `max_pending`; released on drop.
#[derive(Debug)]
pub struct PendingSlot<'a>(&'a ConnLimits);

// === impl ConnLimits ===

impl ConnLimits {
    pub fn new(max_connections: u32, max_pending: u32) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            max_connections,
            max_pending,
            open: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            freed: Notify::new(),
        })
    }

    /// A slot for one more connection, unless `max_connections` are open.
    pub fn try_open(self: &Arc<Self>) -> Option<ConnSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_connections).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnSlot(self.clone()))
    }

    /// A place among the waiting requests, unless `max_pending` already wait.
    pub fn try_wait(&self) -> Option<PendingSlot<'_>> {
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_pending).then_some(n + 1)
            })
            .ok()
            .map(|_| PendingSlot(self))
    }

    /// Resolves after the next [`ConnLimits::freed`]; create it (and `enable` it) before
    /// checking for a slot, so that a release in between is not missed.
    pub fn freed_signal(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// A connection closed or went idle: wake the pending requests, if any (one atomic load
    /// when none wait).
    pub fn freed(&self) {
        if self.pending.load(Ordering::Acquire) > 0 {
            self.freed.notify_waiters();
        }
    }

    /// Connections open (or being dialed) now.
    pub fn open(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }

    /// Requests waiting for a connection now.
    pub fn pending(&self) -> u32 {
        self.pending.load(Ordering::Relaxed)
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed();
    }
}

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_released_on_drop() {
        let l = ConnLimits::new(2, 1);
        let a = l.try_open().expect("first");
        let _b = l.try_open().expect("second");
        assert!(l.try_open().is_none(), "max_connections = 2");
        assert_eq!(l.open(), 2);
        drop(a);
        assert!(l.try_open().is_some(), "a closed connection frees its slot");
        let w = l.try_wait().expect("one may wait");
        assert!(l.try_wait().is_none(), "max_pending = 1");
        drop(w);
        assert_eq!(l.pending(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_released_slot_wakes_a_waiter() {
        let l = ConnLimits::new(1, 4);
        let held = l.try_open().expect("slot");
        let _w = l.try_wait().expect("wait");
        let freed = l.freed_signal();
        tokio::pin!(freed);
        freed.as_mut().enable();
        assert!(l.try_open().is_none());
        drop(held);
        freed.await;
        assert!(l.try_open().is_some());
    }
}
