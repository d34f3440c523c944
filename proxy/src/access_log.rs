//! JSON access log: one line per request, to stdout or a file (DESIGN.md §8).

use serde::Serialize;
use std::io::Write;

/// Where a listener's access log goes.
pub enum AccessLogSink {
    Stdout,
    Stderr,
    File(std::fs::File),
}

impl AccessLogSink {
    /// Opens the sink named by `path` (`stdout`, `stderr`, `off` → `None`, else a file, appended).
    pub fn open(path: &str) -> std::io::Result<Option<AccessLogSink>> {
        Ok(match path {
            "off" | "" => None,
            "stdout" | "-" => Some(AccessLogSink::Stdout),
            "stderr" => Some(AccessLogSink::Stderr),
            p => Some(AccessLogSink::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
        })
    }

    /// Writes one entry as one line (a single write: lines of concurrent workers never mix).
    pub fn write(&self, entry: &AccessLogEntry<'_>) {
        let mut line = match serde_json::to_vec(entry) {
            Ok(l) => l,
            Err(_) => return,
        };
        line.push(b'\n');
        let _ = match self {
            AccessLogSink::Stdout => std::io::stdout().lock().write_all(&line),
            AccessLogSink::Stderr => std::io::stderr().lock().write_all(&line),
            AccessLogSink::File(f) => (&*f).write_all(&line),
        };
    }
}

/// One access log line.
#[derive(Debug, Serialize)]
pub struct AccessLogEntry<'a> {
    pub start_time: String,
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
    pub upstream_host: &'a str,
    pub upstream_service_time_ms: Option<f64>,
    pub request_id: &'a str,
    pub traceparent: &'a str,
    /// The mTLS peer's URI SAN (SPIFFE id), when the client presented a certificate.
    pub principal: Option<&'a str>,
    pub downstream_remote_address: String,
}
