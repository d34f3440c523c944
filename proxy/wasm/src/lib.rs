//! `weir-wasm`: the proxy-wasm (ABI v0.2.1, also 0.2.0 and 0.1.0) host on wasmtime.
//!
//! Role: compile filters once per process ([`WasmHost::compile`], cached by sha256), build one
//! VM per (filter, worker) on the worker thread ([`PluginVm::new`]; filters with the same
//! non-empty vm_id and module share one, [`PluginVm::new_in`]), and run a request through a
//! chain of filters ([`FilterChain::new_stream`] → [`ChainStream`]). Every host function of the
//! ABI is linked from module `env`; a WASI preview1 subset is linked under both
//! `wasi_snapshot_preview1` and `wasi_unstable`.
//!
//! Threading: [`WasmHost`], [`CompiledModule`] and [`PreparedPlugin`] are `Send + Sync`;
//! [`PluginVm`], [`FilterChain`] and [`ChainStream`] are `!Send` and live on one worker thread,
//! which must run a tokio current-thread runtime inside a `LocalSet` (timers, `proxy_http_call`
//! responses and shared-queue notifications are `spawn_local` tasks).
//!
//! Example: see `tests/wat_modules.rs` (WAT filters driven through a chain) and
//! `tests/rust_guest.rs` (a filter built with the `proxy-wasm` SDK); the crate docs of [`stream`]
//! show the call order.
#![forbid(unsafe_code)]

pub mod abi;
pub mod callbacks;
pub mod engine;
pub mod error;
pub mod headers;
pub mod limits;
pub mod metrics;
pub mod module;
pub mod properties;
pub mod services;
mod state;
pub mod stream;
mod timing;
pub mod vm;
pub mod wasi;

pub use callbacks::Callbacks;
pub use engine::WasmHost;
pub use error::{FailureKind, StreamError, WasmError};
pub use headers::HeaderList;
pub use module::{AbiVersion, CompiledModule};
pub use properties::StreamInfo;
pub use services::{HostServices, HttpCallError, HttpCallFuture, HttpCallResponse, NoServices};
pub use stream::{
    BodyFlow, ChainStream, FilterChain, Flow, LocalResponse, RequestRecorder, ResponseRecorder,
    TrailersFlow,
};
pub use vm::{FailurePolicy, PluginSpec, PluginVm, PreparedPlugin, SharedVm, VmGroups};

#[allow(dead_code)]
fn _assert_thread_safety() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<WasmHost>();
    send_sync::<CompiledModule>();
    send_sync::<PreparedPlugin>();
}
