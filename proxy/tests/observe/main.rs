//! Observability tests of the `weir` binary (issue 7, DESIGN.md §8): `/metrics` validity (an
//! exposition-format parser, and `promtool check metrics` when installed), every §8 metric with
//! its labels after traffic, counters kept across swaps; the JSON access log with its response
//! flags; filter `proxy_log` lines with filter name and request id; trace context propagation and
//! OTLP/HTTP JSON export to a local receiver; `/filters` and `/config`.
//!
//! Every test starts the real binary on 127.0.0.1 (ephemeral ports), real upstreams and clients,
//! and waits on readiness signals. Run: `cargo test -p weir --test observe`.
#![forbid(unsafe_code)]

#[allow(dead_code, unused_imports)]
#[path = "../e2e/support/mod.rs"]
mod support;

mod collector;
mod launch;
mod prom;
mod wat;

mod access_log;
mod admin;
mod body_bypass;
mod cli;
mod filter_logs;
mod metrics;
mod trace;
