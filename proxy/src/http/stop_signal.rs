//! [`UntilStop`]: runs a connection's future alongside the future that asks it to stop (drain
//! or idle timeout), polling the stop side only when it was woken.
//!
//! A `select!` over the two polls both on every wake-up of the connection task — twice per
//! keep-alive request — which re-polls the idle timer and the drain signal each time (and,
//! unbiased, draws a random number to pick the order). Here the stop future gets a waker of its
//! own that raises a flag before waking the task, and is polled again only when that flag is up.
//!
//! Example: `http::server::serve`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// What finished first.
pub enum First<R> {
    /// The main future, with its output.
    Done(R),
    /// The stop future.
    Stop,
}

/// The stop side's waker: raises `woken`, then wakes the task that polls [`UntilStop`].
struct StopWaker {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for StopWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().map(|t| t.clone()).unwrap_or_default();
        if let Some(t) = task {
            t.wake();
        }
    }
}

/// Polls `main` on every wake-up and `stop` only when `stop` itself was woken (and once at
/// first). Resolves with whichever finishes first.
pub struct UntilStop<'a, M, S> {
    main: Pin<&'a mut M>,
    stop: Pin<&'a mut S>,
    shared: Arc<StopWaker>,
    waker: Waker,
}

impl<'a, M: Future, S: Future> UntilStop<'a, M, S> {
    pub fn new(main: Pin<&'a mut M>, stop: Pin<&'a mut S>) -> Self {
        let shared = Arc::new(StopWaker {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        let waker = Waker::from(shared.clone());
        UntilStop {
            main,
            stop,
            shared,
            waker,
        }
    }
}

impl<M: Future, S: Future> Future for UntilStop<'_, M, S> {
    type Output = First<M::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(r) = this.main.as_mut().poll(cx) {
            return Poll::Ready(First::Done(r));
        }
        if this.shared.woken.swap(false, Ordering::AcqRel) {
            if let Ok(mut task) = this.shared.task.lock() {
                if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                    *task = Some(cx.waker().clone());
                }
            }
            let mut stop_cx = Context::from_waker(&this.waker);
            if this.stop.as_mut().poll(&mut stop_cx).is_ready() {
                return Poll::Ready(First::Stop);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_stop_side_wins_when_it_fires() {
        let main = std::future::pending::<()>();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::pin!(main);
        let stop = async move {
            let _ = rx.await;
        };
        tokio::pin!(stop);
        tokio::spawn(async move {
            let _ = tx.send(());
        });
        assert!(matches!(UntilStop::new(main, stop).await, First::Stop));
    }

    #[tokio::test]
    async fn the_main_side_finishes_with_its_output() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let main = async move { rx.await.unwrap_or(0) };
        tokio::pin!(main);
        let stop = std::future::pending::<()>();
        tokio::pin!(stop);
        tokio::spawn(async move {
            let _ = tx.send(7);
        });
        assert!(matches!(UntilStop::new(main, stop).await, First::Done(7)));
    }
}
