//! The downstream socket as the HTTP server sees it. It records activity (for the listener's
//! `idle_timeout`) and stays reachable after the server is done with it, so the connection can
//! be closed *lingering* ([`linger`]): send FIN, then read and discard what the client still
//! sends (up to [`LINGER`]) before the socket is dropped. Closing a socket with unread bytes
//! makes the kernel send RST and throw away response bytes not yet delivered — which would turn
//! a graceful drain into resets for the client.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Longest a closing connection waits for the client's FIN.
pub const LINGER: Duration = Duration::from_secs(2);

/// How many reads and writes moved bytes on a connection (a counter, not a clock read per I/O:
/// the idle check samples it, see `http::server::serve`).
pub type Activity = Rc<Cell<u64>>;

/// The socket, shared between the HTTP server and the closing code.
pub type SharedTcp = Rc<RefCell<TcpStream>>;

pub struct ConnStream {
    inner: SharedTcp,
    activity: Activity,
}

impl ConnStream {
    pub fn new(tcp: TcpStream) -> (ConnStream, Activity, SharedTcp) {
        let activity = Rc::new(Cell::new(0));
        let inner = Rc::new(RefCell::new(tcp));
        (
            ConnStream {
                inner: inner.clone(),
                activity: activity.clone(),
            },
            activity,
            inner,
        )
    }
}

impl AsyncRead for ConnStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut *self.inner.borrow_mut()).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.set(self.activity.get().wrapping_add(1));
        }
        r
    }
}

impl AsyncWrite for ConnStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut *self.inner.borrow_mut()).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.set(self.activity.get().wrapping_add(1));
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut *self.inner.borrow_mut()).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.set(self.activity.get().wrapping_add(1));
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.borrow().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner.borrow_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner.borrow_mut()).poll_shutdown(cx)
    }
}

/// Closes the write side and reads until the client closes too (or [`LINGER`] passes), so the
/// final close sends FIN, not RST. Call it once the HTTP server is done with the connection.
pub async fn linger(tcp: SharedTcp) {
    let shutdown = std::future::poll_fn(|cx| Pin::new(&mut *tcp.borrow_mut()).poll_shutdown(cx));
    if shutdown.await.is_err() {
        return;
    }
    let drain = async {
        let mut scratch = [0u8; 4096];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            let r =
                std::future::poll_fn(|cx| Pin::new(&mut *tcp.borrow_mut()).poll_read(cx, &mut buf))
                    .await;
            match r {
                Ok(()) if buf.filled().is_empty() => return,
                Ok(()) => continue,
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
