//! Swap protocol steps 1–2 for filters: read each filter's module (a path, or `sha256:<hex>`
//! verified against its digest), compile it once (the host caches compiled modules by sha256,
//! across snapshots), and bind it to its YAML settings as a `PreparedPlugin` shared by all
//! workers.

use crate::config::{self, Config, OnError};
use sha2::Digest;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use weir_wasm::{FailurePolicy, PluginSpec, PreparedPlugin, WasmHost};

/// The filters of a config, prepared; errors name the filter.
pub type Prepared = HashMap<String, Arc<PreparedPlugin>>;

fn module_bytes(f: &config::Filter, base_dir: &Path) -> Result<Vec<u8>, String> {
    if let Some(hex) = f.module.strip_prefix("sha256:") {
        let hex = hex.to_ascii_lowercase();
        let candidates = [
            base_dir.join("modules").join(format!("{hex}.wasm")),
            base_dir.join(format!("{hex}.wasm")),
        ];
        for c in &candidates {
            if let Ok(bytes) = std::fs::read(c) {
                let got = hex::encode(sha2::Sha256::digest(&bytes));
                if got != hex {
                    return Err(format!(
                        "module {}: digest mismatch (file has sha256:{got})",
                        c.display()
                    ));
                }
                return Ok(bytes);
            }
        }
        return Err(format!(
            "module sha256:{hex} not found (looked in {})",
            base_dir.display()
        ));
    }
    let path = config::resolve_path(base_dir, &f.module);
    std::fs::read(&path).map_err(|e| format!("module {}: {e}", path.display()))
}

/// The host-side spec of a YAML filter.
pub fn spec(f: &config::Filter) -> PluginSpec {
    let mut spec = PluginSpec::new(f.name.clone());
    spec.root_id = f.root_id.clone().unwrap_or_default();
    spec.vm_id = f.vm_id.clone();
    spec.configuration = match &f.config {
        // A string goes as its bytes, as Envoy's `StringValue` configuration does (so
        // `config: '{"rate": 1}'` is JSON to the filter, and plain text stays plain).
        Some(serde_json::Value::String(text)) => text.clone().into_bytes(),
        Some(v) => serde_json::to_vec(v).unwrap_or_default(),
        None => Vec::new(),
    };
    spec.failure = match f.on_error {
        OnError::FailClosed => FailurePolicy::FailClosed,
        OnError::FailOpen => FailurePolicy::FailOpen,
        OnError::Reload => FailurePolicy::Reload,
    };
    spec.memory_limit_bytes = usize::try_from(f.limits.memory.get()).unwrap_or(usize::MAX);
    spec.callback_deadline = f.limits.callback_deadline.get();
    spec.max_body_bytes = usize::try_from(f.limits.max_body_bytes.get()).unwrap_or(usize::MAX);
    spec
}

/// Compiles and prepares every filter of `cfg`; collects every error.
pub fn prepare_filters(
    cfg: &Config,
    base_dir: &Path,
    host: &WasmHost,
) -> Result<Prepared, Vec<String>> {
    let mut out = HashMap::new();
    let mut errors = Vec::new();
    for f in &cfg.filters {
        let module = if let Some(m) = f
            .module
            .strip_prefix("sha256:")
            .and_then(|hex| host.cached_by_hex(&hex.to_ascii_lowercase()))
        {
            m
        } else {
            match module_bytes(f, base_dir)
                .and_then(|b| host.compile(&b).map_err(|e| e.to_string()))
            {
                Ok(m) => m,
                Err(e) => {
                    errors.push(format!("filter {}: {e}", f.name));
                    continue;
                }
            }
        };
        out.insert(f.name.clone(), host.prepare(spec(f), module));
    }
    let known: std::collections::HashSet<&str> =
        cfg.filters.iter().map(|f| f.name.as_str()).collect();
    for l in &cfg.listeners {
        let names = l
            .filters
            .iter()
            .chain(l.routes.iter().flat_map(|r| r.filters.iter()));
        for n in names {
            if !known.contains(n.as_str()) {
                let e = format!("listener {}: unknown filter {n:?}", l.name);
                if !errors.contains(&e) {
                    errors.push(e);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
