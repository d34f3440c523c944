//! End-to-end tests of the `weir` binary (issue 2): every test starts the real binary on
//! 127.0.0.1 with ephemeral ports, real upstream servers (hyper, plain or TLS, HTTP/1.1 or
//! HTTP/2) and real clients, and waits on readiness signals (the `ready` line on stdout,
//! counters of the upstreams), never on sleeps.
//!
//! Run just these: `cargo test -p weir --test e2e`. One module per point of issue 2; the
//! harness is in `support/` (start with `support/weir.rs`).
#![forbid(unsafe_code)]

mod support;

mod admin;
mod balancing;
mod bench;
mod errors;
mod hygiene;
mod pooling;
mod protocols;
mod routing;
mod shutdown;
mod streaming;
mod upstream_h1;
mod validate;
mod workers;
