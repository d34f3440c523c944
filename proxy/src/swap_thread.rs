//! The one thread that builds new snapshots.
//!
//! Every reload (`POST /reload`, SIGHUP, `--watch`) and every control-plane version is parsed,
//! compiled and published on this thread, one at a time, in the order asked. Building off the
//! runtime keeps the admin endpoint and the control client responsive while wasm compiles; doing
//! it on *one* long-lived thread (rather than tokio's blocking pool, which starts a new thread
//! whenever the previous one has not yet marked itself idle) keeps the proxy's memory flat across
//! swaps: a new thread brings its own stack and malloc arena, a one-off step of several MiB that
//! looked like a leak in the 200-swap RSS test (`proxy/tests/swap/release.rs`).

use std::sync::mpsc;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A handle on the swap thread; the thread ends when the last handle is dropped.
pub struct SwapThread {
    jobs: mpsc::Sender<Job>,
}

/// The swap thread is gone, or the job panicked.
#[derive(Debug, thiserror::Error)]
#[error("the snapshot build did not complete (swap thread stopped or the build panicked)")]
pub struct SwapThreadGone;

// === impl SwapThread ===

impl SwapThread {
    /// Starts the thread (named `weir-swap`).
    pub fn start() -> std::io::Result<SwapThread> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("weir-swap".into())
            .spawn(move || {
                for job in rx {
                    // A panicking build drops its result sender: the caller sees SwapThreadGone
                    // and the thread goes on with the next job.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })?;
        Ok(SwapThread { jobs })
    }

    /// Runs `f` on the swap thread after every job asked before it, and returns its result.
    /// `f` runs inside the caller's tokio runtime context (a snapshot build spawns its health
    /// checkers there), as `spawn_blocking` would.
    pub async fn run<T, F>(&self, f: F) -> Result<T, SwapThreadGone>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let runtime = tokio::runtime::Handle::current();
        self.jobs
            .send(Box::new(move || {
                let _context = runtime.enter();
                let _ = tx.send(f());
            }))
            .map_err(|_| SwapThreadGone)?;
        rx.await.map_err(|_| SwapThreadGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_in_order_on_one_thread_and_a_panic_is_an_error() {
        let t = SwapThread::start().unwrap();
        let name = t
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("weir-swap"));
        let spawned = t.run(|| tokio::spawn(async { 7 })).await.unwrap();
        assert_eq!(
            spawned.await.unwrap(),
            7,
            "jobs run in the caller's runtime"
        );
        let id1 = t.run(|| std::thread::current().id()).await.unwrap();
        let r = t.run(|| -> u32 { panic!("build panicked") }).await;
        assert!(r.is_err());
        let id2 = t.run(|| std::thread::current().id()).await.unwrap();
        assert_eq!(id1, id2, "the thread survives a panicking job");
        let (a, b) = tokio::join!(t.run(|| 1), t.run(|| 2));
        assert_eq!((a.unwrap(), b.unwrap()), (1, 2));
    }
}
