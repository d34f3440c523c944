//! JSON access log: one line per request, to stdout (the default), stderr or a file
//! (DESIGN.md §8).
//!
//! Lines are serialized on the request path and appended to the sink's buffer; a background
//! thread writes the buffer out every [`FLUSH_INTERVAL`], at once when it holds [`FLUSH_BYTES`]
//! (the request path only wakes it), and when the sink is dropped (its snapshot replaced and
//! its last request done, or the process shutting down). A write(2) per request was 10–17% of
//! a plain proxied request's CPU in `weir bench`; batched, lines still never mix (whole lines
//! per write) and appear within [`FLUSH_INTERVAL`].
//!
//! A request never waits for the log's reader: the writer takes the lines out of the buffer
//! and writes them without holding it, and while it is stuck (a pipe nobody reads) the buffer
//! grows to at most [`MAX_PENDING`]; lines past that are dropped and counted, with a warning.

use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// How long a line may wait in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// A buffer this large is written at once.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// Lines waiting beyond this (the reader is not keeping up) are dropped.
pub const MAX_PENDING: usize = 8 * 1024 * 1024;
/// How long the last flush at exit may wait for a reader.
const EXIT_FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Where a listener's access log goes.
pub struct AccessLogSink {
    inner: Arc<Inner>,
}

enum Target {
    Stdout,
    Stderr,
    File(std::fs::File),
}

struct Inner {
    target: Target,
    /// Lines not yet taken by the writer (requests append here).
    pending: Mutex<Vec<u8>>,
    /// The writer's buffer, swapped with `pending`; held while writing, which keeps line order
    /// between the flusher thread and a final flush.
    writing: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    flusher: OnceLock<std::thread::Thread>,
    /// Set when the sink is dropped: the flusher writes what is left and ends.
    closed: AtomicBool,
}

impl Inner {
    /// Takes every pending line and writes it out (blocking only the caller).
    fn flush(&self) {
        let mut out = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *p, &mut *out);
        }
        if out.is_empty() {
            return;
        }
        let _ = match &self.target {
            Target::Stdout => std::io::stdout().lock().write_all(&out),
            Target::Stderr => std::io::stderr().lock().write_all(&out),
            Target::File(f) => (&*f).write_all(&out),
        };
        out.clear();
    }
}

/// Every sink alive, for [`flush_all`].
static SINKS: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());

/// Writes every buffered line of every sink now (call before the process exits). Waits at most
/// [`EXIT_FLUSH_WAIT`] for readers that do not read, so an unread pipe cannot hold up exit.
pub fn flush_all() {
    let sinks: Vec<Arc<Inner>> = {
        let mut l = SINKS.lock().unwrap_or_else(|e| e.into_inner());
        l.retain(|w| w.strong_count() > 0);
        l.iter().filter_map(Weak::upgrade).collect()
    };
    if sinks.is_empty() {
        return;
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("weir-access-log-exit".into())
        .spawn(move || {
            for s in sinks {
                s.flush();
            }
            let _ = done_tx.send(());
        });
    if spawned.is_ok() {
        let _ = done_rx.recv_timeout(EXIT_FLUSH_WAIT);
    }
}

impl AccessLogSink {
    /// Opens the sink named by `path` (`stdout`, `stderr`, `off` → `None`, else a file, appended)
    /// and starts its flusher thread.
    pub fn open(path: &str) -> std::io::Result<Option<AccessLogSink>> {
        let target = match path {
            "off" | "" => return Ok(None),
            "stdout" | "-" => Target::Stdout,
            "stderr" => Target::Stderr,
            p => Target::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let inner = Arc::new(Inner {
            target,
            pending: Mutex::new(Vec::with_capacity(FLUSH_BYTES)),
            writing: Mutex::new(Vec::with_capacity(FLUSH_BYTES)),
            dropped: AtomicU64::new(0),
            flusher: OnceLock::new(),
            closed: AtomicBool::new(false),
        });
        SINKS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&inner));
        // Only this thread (and the exit flush) writes: a worker dropping the last snapshot
        // that used the sink never waits for the reader.
        let own = inner.clone();
        let flusher = std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || loop {
                std::thread::park_timeout(FLUSH_INTERVAL);
                let closed = own.closed.load(Ordering::Acquire);
                own.flush();
                if closed {
                    return;
                }
            })?;
        let _ = inner.flusher.set(flusher.thread().clone());
        Ok(Some(AccessLogSink { inner }))
    }

    /// Appends one entry as one line (written within [`FLUSH_INTERVAL`]). Never blocks on the
    /// log's reader: past [`MAX_PENDING`] unwritten bytes the line is dropped and counted.
    pub fn write(&self, entry: &AccessLogEntry<'_>) {
        let mut b = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() >= MAX_PENDING {
            drop(b);
            if self.inner.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    "access log: its reader is not keeping up; dropping lines (more than {} MiB waiting)",
                    MAX_PENDING >> 20
                );
            }
            return;
        }
        let mark = b.len();
        if serde_json::to_writer(&mut *b, entry).is_err() {
            b.truncate(mark);
            return;
        }
        b.push(b'\n');
        if b.len() >= FLUSH_BYTES && mark < FLUSH_BYTES {
            if let Some(t) = self.inner.flusher.get() {
                t.unpark();
            }
        }
    }

    /// Writes the buffered lines now.
    pub fn flush(&self) {
        self.inner.flush();
    }
}

impl Drop for AccessLogSink {
    /// The flusher writes the last lines and ends (off the dropping thread).
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        if let Some(t) = self.inner.flusher.get() {
            t.unpark();
        }
    }
}

/// One access log line.
#[derive(Debug, Serialize)]
pub struct AccessLogEntry<'a> {
    /// RFC 3339 with milliseconds, UTC (formatted straight into the line).
    #[serde(serialize_with = "rfc3339_millis")]
    pub start_time: std::time::SystemTime,
    pub listener: &'a str,
    pub route: &'a str,
    pub cluster: &'a str,
    pub method: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
    pub protocol: &'a str,
    pub status: u16,
    pub response_flags: &'a str,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration_ms: f64,
    /// The same, in whole milliseconds (Envoy's `%DURATION%`; DESIGN.md §8 names `duration`).
    pub duration: u64,
    pub upstream_host: &'a str,
    /// The same (DESIGN.md §8 names `upstream`).
    pub upstream: &'a str,
    pub upstream_service_time_ms: Option<f64>,
    pub request_id: &'a str,
    pub traceparent: &'a str,
    /// The mTLS peer's URI SAN (SPIFFE id), when the client presented a certificate.
    pub principal: Option<&'a str>,
    pub downstream_remote_address: std::net::SocketAddr,
}

fn rfc3339_millis<S: serde::Serializer>(
    t: &std::time::SystemTime,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}
