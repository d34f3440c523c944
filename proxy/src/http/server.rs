//! hyper server glue: serves one accepted downstream connection (HTTP/1.1 keep-alive, h2c with
//! prior knowledge, or TLS with ALPN h2/http1.1) on the current worker, with the listener's
//! header-size and header-read-timeout limits.

use super::proxy::{handle, ConnInfo, Worker};
use super::stop_signal::{First, UntilStop};
use crate::config::ListenerLimits;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::rc::Rc;

/// Runs `!Send` futures (hyper's HTTP/2 streams) as local tasks of the worker's runtime.
#[derive(Clone, Copy, Debug)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// Builds the connection builder for a listener's limits.
pub fn builder(limits: &ListenerLimits) -> auto::Builder<LocalExec> {
    let mut b = auto::Builder::new(LocalExec);
    let max_headers = limits.max_request_headers.get().clamp(8192, 16 << 20) as usize;
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout.get())
        .max_buf_size(max_headers)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(max_headers as u32)
        .max_concurrent_streams(1024);
    b
}

/// Serves one connection until it closes or, after `shutdown` fires, until its in-flight
/// requests are done. A connection on which no byte moved for the listener's `idle_timeout` is
/// closed gracefully (a request still in flight finishes first).
#[allow(clippy::too_many_arguments)]
pub async fn serve<IO>(
    io: IO,
    http2_only: Option<bool>,
    limits: &ListenerLimits,
    worker: Rc<Worker>,
    conn: Rc<ConnInfo>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    activity: crate::listener::conn_stream::Activity,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let b = builder(limits);
    let b = match http2_only {
        Some(true) => b.http2_only(),
        Some(false) => b.http1_only(),
        None => b,
    };
    let svc = hyper::service::service_fn(move |req| handle(worker.clone(), conn.clone(), req));
    let fut = b.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(fut);
    // Idle: the activity counter has not moved for `idle_timeout`. It is sampled every eighth
    // of the timeout, so an idle connection closes between 1 and 1.25 timeouts after its last
    // byte — without a clock read on every read and write.
    let idle = limits.idle_timeout.get();
    let idle_check = async {
        let step = (idle / 8).max(std::time::Duration::from_millis(1));
        let (mut seen, mut quiet_since) = (activity.get(), tokio::time::Instant::now());
        loop {
            tokio::time::sleep(step).await;
            let now = tokio::time::Instant::now();
            let count = activity.get();
            if count != seen {
                (seen, quiet_since) = (count, now);
            } else if now.duration_since(quiet_since) >= idle {
                return;
            }
        }
    };
    // The connection stops (gracefully) on drain or when idle; that side is polled only when
    // its timer or the drain signal wakes it, not on every request.
    let stop = async {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => {}
            _ = idle_check => {}
        }
    };
    tokio::pin!(stop);
    let first = UntilStop::new(fut.as_mut(), stop.as_mut()).await;
    let res = match first {
        First::Done(r) => r,
        First::Stop => {
            fut.as_mut().graceful_shutdown();
            fut.await
        }
    };
    if let Err(e) = res {
        tracing::debug!(error = %super::error::error_chain(&*e), "connection closed with error");
    }
}
