//! [`WasmHost`]: the process-wide host. Holds the wasmtime `Engine` (epoch interruption on, a
//! ticker thread advancing the epoch every [`crate::limits::EPOCH_TICK`]), the `Linker` built
//! once with every host function, the compiled-module cache (sha256 of the bytes), the shared
//! data and shared queues (keyed by vm_id) and the metrics registry. Cheap to clone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, Linker};

use crate::abi::shared_data::SharedData;
use crate::abi::shared_queue::SharedQueues;
use crate::error::WasmError;
use crate::metrics::MetricsRegistry;
use crate::module::CompiledModule;
use crate::state::HostState;
use crate::vm::{PluginSpec, PreparedPlugin};

/// The process-wide proxy-wasm host (`Send + Sync`, clone = `Arc` clone).
#[derive(Clone)]
pub struct WasmHost {
    pub(crate) inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    cache: Mutex<HashMap<[u8; 32], Arc<CompiledModule>>>,
    pub shared_data: Arc<SharedData>,
    pub queues: Arc<SharedQueues>,
    pub metrics: Arc<MetricsRegistry>,
    /// Starts the epoch ticker once.
    ticker: std::sync::Once,
}

impl std::fmt::Debug for WasmHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmHost").finish_non_exhaustive()
    }
}

impl WasmHost {
    /// Build the engine and link every host function. The epoch ticker starts with the first
    /// compiled module (a proxy without filters pays nothing for it).
    pub fn new() -> Result<Self, WasmError> {
        crate::timing::init();
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // `WEIR_WASM_PERFMAP=1`: write /tmp/perf-PID.map so `perf report` names guest functions
        // (build the filter without `strip` to keep its name section).
        if std::env::var_os("WEIR_WASM_PERFMAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| WasmError::Link(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        crate::abi::add_to_linker(&mut linker).map_err(|e| WasmError::Link(format!("{e:#}")))?;
        crate::wasi::add_to_linker(&mut linker).map_err(|e| WasmError::Link(format!("{e:#}")))?;
        let inner = Arc::new(HostInner {
            engine,
            linker,
            cache: Mutex::new(HashMap::new()),
            shared_data: Arc::new(SharedData::default()),
            queues: Arc::new(SharedQueues::default()),
            metrics: Arc::new(MetricsRegistry::default()),
            ticker: std::sync::Once::new(),
        });
        Ok(WasmHost { inner })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Compile (or fetch from the cache) a module: validates the ABI marker, the allocator
    /// export and the memory export, and pre-links it (`InstancePre`). Accepts WAT text too.
    pub fn compile(&self, bytes: &[u8]) -> Result<Arc<CompiledModule>, WasmError> {
        self.inner
            .ticker
            .call_once(|| spawn_ticker(Arc::downgrade(&self.inner)));
        let sha: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(m) = self.cached(&sha) {
            return Ok(m);
        }
        let m = Arc::new(crate::module::compile(
            &self.inner.engine,
            &self.inner.linker,
            bytes,
            sha,
        )?);
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        Ok(cache.entry(sha).or_insert(m).clone())
    }

    /// A cached module by sha256 (hex or raw).
    pub fn cached_by_hex(&self, sha256_hex: &str) -> Option<Arc<CompiledModule>> {
        let raw: [u8; 32] = hex::decode(sha256_hex).ok()?.try_into().ok()?;
        self.cached(&raw)
    }

    fn cached(&self, sha: &[u8; 32]) -> Option<Arc<CompiledModule>> {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha)
            .cloned()
    }

    /// Drop cached modules nobody else holds (call after a swap).
    pub fn evict_unused_modules(&self) {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, m| Arc::strong_count(m) > 1);
    }

    /// Bind a module to a filter spec (done once per snapshot, shared by all workers).
    pub fn prepare(&self, spec: PluginSpec, module: Arc<CompiledModule>) -> Arc<PreparedPlugin> {
        let stats = self.inner.metrics.filter(&spec.name);
        Arc::new(PreparedPlugin {
            spec: Arc::new(spec),
            module,
            stats,
            host: self.clone(),
        })
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<MetricsRegistry> {
        &self.inner.metrics
    }

    /// The shared-data store (for admin/debug and tests).
    pub fn shared_data(&self) -> &Arc<SharedData> {
        &self.inner.shared_data
    }

    /// Append filter-defined metrics and `weir_filter_errors_total` /
    /// `weir_filter_duration_seconds` in Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        self.inner.metrics.render_prometheus(out);
    }
}

fn spawn_ticker(host: Weak<HostInner>) {
    let _ = std::thread::Builder::new()
        .name("weir-wasm-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(crate::limits::EPOCH_TICK);
            match host.upgrade() {
                Some(h) => h.engine.increment_epoch(),
                None => return,
            }
        });
}
