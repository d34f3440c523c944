//! `weir-control` — the weir control plane (DESIGN.md §7).
//!
//! It watches a directory holding the desired state (a `weir.yaml` plus the `.wasm` modules it
//! references), turns every valid change into a new version with content-addressed modules
//! (`sha256:<hex>`) — valid as `weir validate` means it: every filter compiled, instantiated and
//! configured ([`weir::preflight`]), for a push before anything is sent — and streams versions
//! to proxies (`weir run --control URL --node NAME`), recording each node's ACK or NACK. The
//! wire types are shared with the proxy's client in [`weir::control::wire`].
//!
//! - [`server`]: `weir-control serve --dir DIR --listen ADDR`
//! - [`client`]: `weir-control push --server URL FILE.yaml` and `weir-control status --server URL`
//! - [`desired`]: validation and content-addressing of a desired state
//!
//! Example: put a `weir.yaml` (see `examples/`) and the `.wasm` files it names (built into
//! `target/filters/`) in a directory `DIR`, then
//! `weir-control serve --dir DIR --listen 127.0.0.1:7000`,
//! `weir run --control http://127.0.0.1:7000 --node edge-1`, and later
//! `weir-control push --server http://127.0.0.1:7000 new.yaml` and
//! `weir-control status --server http://127.0.0.1:7000`. `control/tests/control_plane.rs`
//! drives all of it over real sockets.
#![forbid(unsafe_code)]

pub mod client;
pub mod desired;
pub mod server;

pub use server::{start, ServeError, ServeOptions, ServerHandle};
