//! `weir` — the data plane of a WebAssembly-programmable service proxy.
//!
//! The library holds everything the `weir` binary runs: the YAML schema ([`config`]), route
//! matching ([`route`]), clusters with load balancing, pooling and outlier ejection
//! ([`cluster`]), the HTTP proxy path ([`http`]), listeners and workers ([`listener`]), the
//! immutable running configuration ([`snapshot`]) and the admin endpoint ([`admin`]).
//!
//! Start with `examples/weir.yaml` and `weir run --config examples/weir.yaml`.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod app;
pub mod bench;
pub mod cluster;
pub mod config;
pub mod control;
pub mod demo;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod preflight;
pub mod route;
pub mod shared;
pub mod snapshot;
pub mod swap_thread;
pub mod tls;
pub mod trace;
pub mod wasm;
