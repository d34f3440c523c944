//! The immutable running configuration behind `ArcSwap` (DESIGN.md §2).
//!
//! A [`Snapshot`] is built off the request path — YAML parsed and validated, TLS configs loaded,
//! routes compiled, balancers and clusters built — and published with one atomic store. A request
//! loads the snapshot once when it starts and keeps it to its end, so in-flight requests finish on
//! the configuration they started with.

use crate::access_log::AccessLogSink;
use crate::cluster::ClusterState;
use crate::config::{self, Config};
use crate::metrics::{Registry, RequestStats};
use crate::route::RouteTable;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// A listener as the request path sees it.
pub struct ListenerState {
    pub config: config::Listener,
    pub routes: RouteTable,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub access_log: Option<Arc<AccessLogSink>>,
    /// Stats of requests no route matched.
    pub no_route: Arc<RequestStats>,
}

/// Everything the data plane runs, frozen.
pub struct Snapshot {
    pub version: u64,
    pub config: Config,
    pub base_dir: PathBuf,
    pub swapped_at: SystemTime,
    /// By name; looked up once per request (foldhash: a quarter of SipHash's cost).
    pub listeners: foldhash::HashMap<String, Arc<ListenerState>>,
    pub clusters: HashMap<String, Arc<ClusterState>>,
    /// Compiled, prepared filters by name (VMs are made per worker from these).
    pub filters: crate::wasm::load::Prepared,
    /// The span exporter (`tracing.otlp`), shared with the previous snapshot when unchanged.
    pub tracer: Option<Arc<crate::trace::Tracer>>,
    cluster_ids: HashSet<u64>,
}

impl Snapshot {
    /// Builds a snapshot. Clusters whose config is unchanged from `prev` are reused (their pools,
    /// ejections and health state carry over). Errors are all collected.
    pub fn build(
        version: u64,
        config: Config,
        base_dir: &Path,
        prev: Option<&Snapshot>,
        metrics: &Registry,
        wasm: &weir_wasm::WasmHost,
    ) -> Result<Snapshot, Vec<String>> {
        let mut errors = Vec::new();
        let filters = match crate::wasm::load::prepare_filters(&config, base_dir, wasm) {
            Ok(f) => f,
            Err(e) => {
                errors.extend(e);
                Default::default()
            }
        };
        let mut clusters = HashMap::new();
        for c in &config.clusters {
            if let Some(old) = prev.and_then(|p| p.clusters.get(&c.name)) {
                if old.config == *c {
                    clusters.insert(c.name.clone(), old.clone());
                    continue;
                }
            }
            match ClusterState::build(c, base_dir, metrics) {
                Ok(s) => {
                    clusters.insert(c.name.clone(), Arc::new(s));
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        let mut listeners = foldhash::HashMap::default();
        for l in &config.listeners {
            let routes = match RouteTable::build(l, &clusters, metrics) {
                Ok(r) => r,
                Err(e) => {
                    errors.extend(e);
                    continue;
                }
            };
            let tls = match &l.tls {
                Some(t) => {
                    let p = |s: &String| config::resolve_path(base_dir, s);
                    match crate::tls::server_config(
                        &p(&t.cert),
                        &p(&t.key),
                        t.client_ca.as_ref().map(p).as_deref(),
                    ) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            errors.push(format!("listener {}: {e}", l.name));
                            continue;
                        }
                    }
                }
                None => None,
            };
            // Not configured anywhere: one JSON line per request on stdout (DESIGN.md §8).
            let default_log = config::AccessLog {
                path: "stdout".into(),
            };
            let log_cfg = l
                .access_log
                .as_ref()
                .or(config.access_log.as_ref())
                .or(Some(&default_log));
            let access_log = match log_cfg {
                Some(a) => {
                    let path = if matches!(a.path.as_str(), "stdout" | "stderr" | "off" | "-" | "")
                    {
                        a.path.clone()
                    } else {
                        config::resolve_path(base_dir, &a.path)
                            .display()
                            .to_string()
                    };
                    match AccessLogSink::open(&path) {
                        Ok(s) => s.map(Arc::new),
                        Err(e) => {
                            errors.push(format!("listener {}: access log {}: {e}", l.name, a.path));
                            continue;
                        }
                    }
                }
                None => None,
            };
            listeners.insert(
                l.name.clone(),
                Arc::new(ListenerState {
                    config: l.clone(),
                    routes,
                    tls,
                    access_log,
                    no_route: metrics.request_stats(&l.name, "", ""),
                }),
            );
        }
        let otlp = config.tracing.as_ref().and_then(|t| t.otlp.as_ref());
        let tracer = match (otlp, prev.and_then(|p| p.tracer.as_ref())) {
            (None, _) => None,
            (Some(c), Some(old)) if old.config() == c => Some(old.clone()),
            (Some(c), _) if errors.is_empty() => {
                match crate::trace::Tracer::start(c, metrics.spans.clone()) {
                    Ok(t) => Some(Arc::new(t)),
                    Err(e) => {
                        errors.push(format!("tracing.otlp: {e}"));
                        None
                    }
                }
            }
            (Some(_), _) => None,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let cluster_ids = clusters.values().map(|c| c.id).collect();
        Ok(Snapshot {
            version,
            config,
            base_dir: base_dir.to_path_buf(),
            swapped_at: SystemTime::now(),
            listeners,
            clusters,
            filters,
            tracer,
            cluster_ids,
        })
    }

    /// Whether a cluster build (by id) is part of this snapshot.
    pub fn has_cluster_id(&self, id: u64) -> bool {
        self.cluster_ids.contains(&id)
    }
}
