//! End-to-end tests of the proxy-wasm host through the `weir` binary (issue 3, points 1–10):
//! every test writes a YAML config into a temp dir, starts `weir run` (listener and admin on
//! 127.0.0.1:0, readiness = its `ready` line on stdout), talks to it over real sockets with
//! hyper clients, and proxies to an in-test hyper upstream ([`upstream`]).
//!
//! Modules are built in the test run, never checked in: the purpose-built SDK guest
//! `proxy/wasm/tests/guests/e2e_filter` (its behaviour is chosen by its JSON config and by the
//! `x-act` request header, see its crate doc) with cargo, the repository's example filters with
//! `scripts/build-filters.sh`, and WAT text written by the tests ([`guest`]).
//!
//! Run just these: `cargo test -p weir --test host`. The process harness (`Weir`, clients,
//! certificates) is shared with the issue-2 suite (`proxy/tests/e2e/support`).
#![forbid(unsafe_code)]

#[path = "../e2e/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

mod guest;
mod upstream;
mod util;

mod abi;
mod calls;
mod chains;
mod isolation;
mod observe;
mod phases;
mod state;
