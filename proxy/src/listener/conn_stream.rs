//! The downstream socket as the HTTP server sees it: it records activity (for the listener's
//! `idle_timeout`) and closes *lingering*: on shutdown it sends FIN, then reads and discards
//! what the client still sends (up to [`LINGER`]) before the socket is dropped. Closing a socket
//! with unread bytes makes the kernel send RST and throw away response bytes not yet sent —
//! which would turn a graceful drain into resets for the client.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Longest a closing connection waits for the client's FIN.
pub const LINGER: Duration = Duration::from_secs(2);

/// Last time bytes moved on a connection.
pub type Activity = Rc<Cell<Instant>>;

pub struct ConnStream {
    inner: TcpStream,
    activity: Activity,
    lingering: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ConnStream {
    pub fn new(inner: TcpStream) -> (ConnStream, Activity) {
        let activity = Rc::new(Cell::new(Instant::now()));
        (ConnStream { inner, activity: activity.clone(), lingering: None }, activity)
    }
}

impl AsyncRead for ConnStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.set(Instant::now());
        }
        r
    }
}

impl AsyncWrite for ConnStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.set(Instant::now());
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.set(Instant::now());
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.lingering.is_none() {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.lingering = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        let mut scratch = [0u8; 4096];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    if let Some(t) = this.lingering.as_mut() {
                        if t.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Ok(()));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}
