//! [`StreamLock`]: the one-thread async lock that the request and response sides of a
//! request's filter chain share.
//!
//! Both sides run on the same worker thread. The response side takes the lock for the
//! response phases. The request-body pump takes it once per chunk. A guest callback never
//! awaits, but a paused filter does, while it holds the lock. So the lock must be async. It
//! does not need to be `Send`, so it is a `RefCell` plus the wakers of the tasks waiting for
//! it: no atomics, no semaphore, no allocation per lock.

use std::cell::{RefCell, RefMut};
use std::ops::{Deref, DerefMut};
use std::task::{Poll, Waker};

/// An async mutex for one thread (`!Send`, `!Sync`).
#[derive(Debug)]
pub struct StreamLock<T> {
    value: RefCell<T>,
    /// Tasks that found the value locked; all are woken when it is released (at most the two
    /// sides of one request wait here).
    waiters: RefCell<Vec<Waker>>,
}

/// Exclusive access to a [`StreamLock`]'s value until dropped.
pub struct StreamGuard<'a, T> {
    lock: &'a StreamLock<T>,
    value: Option<RefMut<'a, T>>,
}

// === impl StreamLock ===

impl<T> StreamLock<T> {
    pub fn new(value: T) -> Self {
        StreamLock {
            value: RefCell::new(value),
            waiters: RefCell::new(Vec::new()),
        }
    }

    /// Waits until the value is free, then holds it.
    pub async fn lock(&self) -> StreamGuard<'_, T> {
        std::future::poll_fn(|cx| match self.value.try_borrow_mut() {
            Ok(value) => Poll::Ready(StreamGuard {
                lock: self,
                value: Some(value),
            }),
            Err(_) => {
                let mut waiters = self.waiters.borrow_mut();
                if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}

// === impl StreamGuard ===

impl<T> Deref for StreamGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_deref().expect("held until drop")
    }
}

impl<T> DerefMut for StreamGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_deref_mut().expect("held until drop")
    }
}

impl<T> Drop for StreamGuard<'_, T> {
    fn drop(&mut self) {
        self.value = None;
        let waiters = std::mem::take(&mut *self.lock.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiter_gets_the_value_when_the_holder_lets_go() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let lock = Rc::new(StreamLock::new(Vec::new()));
                let (held_tx, held_rx) = tokio::sync::oneshot::channel();
                let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
                let first = {
                    let lock = lock.clone();
                    tokio::task::spawn_local(async move {
                        let mut g = lock.lock().await;
                        g.push(1);
                        held_tx.send(()).unwrap();
                        go_rx.await.unwrap();
                        g.push(2);
                    })
                };
                held_rx.await.unwrap();
                let second = {
                    let lock = lock.clone();
                    tokio::task::spawn_local(async move { lock.lock().await.push(3) })
                };
                tokio::task::yield_now().await;
                assert_eq!(lock.waiters.borrow().len(), 1, "second waits");
                go_tx.send(()).unwrap();
                first.await.unwrap();
                second.await.unwrap();
                assert_eq!(*lock.lock().await, [1, 2, 3]);
            })
            .await;
    }
}
