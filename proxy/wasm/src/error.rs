//! Error types of the host: [`WasmError`] for compile/instantiate/configure failures and
//! [`StreamError`] for the per-request errors the proxy must map to a status code.

use thiserror::Error;

/// Why a module or a plugin could not be made ready (compile, link, instantiate, configure).
#[derive(Debug, Error)]
pub enum WasmError {
    /// The bytes are not a valid wasm module (or WAT text).
    #[error("invalid wasm module: {0}")]
    Compile(String),
    /// No `proxy_abi_version_0_2_1`, `_0_2_0` or `_0_1_0` export.
    #[error("module exports no known proxy-wasm ABI marker (proxy_abi_version_0_2_1, proxy_abi_version_0_2_0 or proxy_abi_version_0_1_0)")]
    NoAbiMarker,
    /// Neither `proxy_on_memory_allocate` nor `malloc` is exported.
    #[error("module exports neither proxy_on_memory_allocate nor malloc, so the host cannot pass data to it")]
    NoAllocator,
    /// The module exports no memory named `memory`.
    #[error("module exports no linear memory named \"memory\"")]
    NoMemory,
    /// An export has the wrong signature.
    #[error("export {name} has the wrong signature: {detail}")]
    BadExport { name: String, detail: String },
    /// Imports could not be resolved.
    #[error("cannot link module: {0}")]
    Link(String),
    /// Instantiation or the start function (`_initialize`/`_start`) failed or trapped.
    #[error("filter {plugin}: instantiation failed: {detail}")]
    Instantiate { plugin: String, detail: String },
    /// `proxy_on_vm_start` returned false or trapped.
    #[error("filter {plugin}: proxy_on_vm_start failed: {detail}")]
    VmStart { plugin: String, detail: String },
    /// `proxy_on_configure` returned false or trapped.
    #[error("filter {plugin}: proxy_on_configure failed: {detail}")]
    Configure { plugin: String, detail: String },
    /// The VM is failed and cannot be used (fail_closed / fail_open after a trap).
    #[error("filter {plugin}: VM failed earlier: {detail}")]
    Failed { plugin: String, detail: String },
}

/// A per-request error that is not a filter decision.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// A filter buffered the request body past its `max_body_bytes`: answer 413.
    #[error("request body exceeds the buffer limit of filter {filter} ({limit} bytes)")]
    RequestBodyTooLarge { filter: String, limit: usize },
    /// A filter buffered the response body past its `max_body_bytes`: answer 500.
    #[error("response body exceeds the buffer limit of filter {filter} ({limit} bytes)")]
    ResponseBodyTooLarge { filter: String, limit: usize },
}

impl StreamError {
    /// The status the proxy should answer with.
    pub fn status(&self) -> u16 {
        match self {
            StreamError::RequestBodyTooLarge { .. } => 413,
            StreamError::ResponseBodyTooLarge { .. } => 500,
        }
    }
}

/// The kind of a filter failure, as counted in `weir_filter_errors_total{filter,kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The guest trapped (unreachable, bad memory access, panic, out-of-bounds pointer...).
    Trap,
    /// The callback ran past its epoch deadline.
    Timeout,
    /// The guest tried to grow memory past its cap.
    Oom,
    /// `proxy_on_vm_start`/`proxy_on_configure` failed (also on a reload).
    Config,
}

impl FailureKind {
    /// All kinds, in label order.
    pub const ALL: [FailureKind; 4] = [
        FailureKind::Trap,
        FailureKind::Timeout,
        FailureKind::Oom,
        FailureKind::Config,
    ];

    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::Oom => "oom",
            FailureKind::Config => "config",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}
