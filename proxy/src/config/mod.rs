//! The YAML schema of `weir.yaml` (DESIGN.md §5): serde types, defaults and the loader that
//! turns a file into a validated [`Config`] or a list of `file:line:column: message` errors.
//!
//! Every struct denies unknown keys; the loader reports *all* unknown keys and semantic errors
//! of a file in one go (see [`load`]).

mod load;
mod units;
mod validate;

pub use load::{
    load_file, load_file_validated, load_str, load_str_lenient, load_str_validated, ConfigError,
    ConfigErrors,
};
pub use units::{parse_duration, parse_size, ByteSize, Dur};
pub use validate::validate;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Resolves a path from the config: absolute paths stay, relative ones are joined to the
/// directory of the config file.
pub fn resolve_path(base_dir: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Admin endpoint address (`/ready /metrics /config /filters`).
    #[serde(default)]
    pub admin: Option<String>,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub clusters: Vec<Cluster>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Access log sink for every listener that does not set its own.
    #[serde(default)]
    pub access_log: Option<AccessLog>,
    /// Span export (DESIGN.md §8); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
}

/// `tracing:` — where spans go.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    /// OTLP/HTTP JSON export to a collector.
    #[serde(default)]
    pub otlp: Option<OtlpConfig>,
}

/// `tracing.otlp:` — OTLP/HTTP (JSON encoding) span export.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's traces URL, `http://HOST:PORT/v1/traces`.
    pub endpoint: String,
    /// `service.name` resource attribute.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Spans waiting for export; more are dropped (and counted).
    #[serde(default = "default_otlp_queue")]
    pub queue_size: usize,
    /// Spans per export request at most.
    #[serde(default = "default_otlp_batch")]
    pub batch_size: usize,
    /// A partial batch is sent after this long.
    #[serde(default = "default_otlp_flush")]
    pub flush_interval: Dur,
}

fn default_service_name() -> String {
    "weir".into()
}
fn default_otlp_queue() -> usize {
    4096
}
fn default_otlp_batch() -> usize {
    512
}
fn default_otlp_flush() -> Dur {
    Dur(std::time::Duration::from_millis(200))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// Filter chain (names from the top-level `filters:`) for every route of this listener.
    #[serde(default)]
    pub filters: Vec<String>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub limits: ListenerLimits,
    #[serde(default)]
    pub access_log: Option<AccessLog>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    pub cert: String,
    pub key: String,
    /// With a client CA, clients must present a certificate signed by it (mTLS).
    #[serde(default)]
    pub client_ca: Option<String>,
}

/// Downstream protection limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerLimits {
    /// Total size of request headers; above it the request gets 431.
    pub max_request_headers: ByteSize,
    /// Request body size; above it the request gets 413. Unlimited when absent.
    pub max_request_body: Option<ByteSize>,
    /// Time allowed for a client to send the request head.
    pub header_read_timeout: Dur,
    /// Idle keep-alive connections are closed after this.
    pub idle_timeout: Dur,
    /// On shutdown, in-flight requests get this long to finish.
    pub drain_timeout: Dur,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_request_headers: ByteSize(60 * 1024),
            max_request_body: None,
            header_read_timeout: Dur::from_secs(10),
            idle_timeout: Dur::from_secs(300),
            drain_timeout: Dur::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// `stdout`, `stderr`, `off`, or a file path.
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "match")]
    pub matcher: RouteMatch,
    /// Single destination cluster (exclusive with `split`).
    #[serde(default)]
    pub cluster: Option<String>,
    /// Weighted destinations: cluster name → weight.
    #[serde(default)]
    pub split: Option<BTreeMap<String, u32>>,
    /// Whole-request timeout (all tries); 504 + UT when exceeded. Default 15s, `0s` = none.
    #[serde(default)]
    pub timeout: Option<Dur>,
    #[serde(default)]
    pub retries: Option<RetryPolicy>,
    #[serde(default)]
    pub mirror: Option<Mirror>,
    /// Filters appended to the listener chain for this route.
    #[serde(default)]
    pub filters: Vec<String>,
    /// Forward the client's Host header (default) or rewrite it to the endpoint address.
    #[serde(default)]
    pub host_rewrite: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub path_regex: Option<String>,
    /// One method or a list of methods.
    #[serde(default)]
    pub method: Option<OneOrMany>,
    /// header name → matcher; a plain string is an exact match.
    #[serde(default)]
    pub headers: BTreeMap<String, ValueMatch>,
    /// query parameter name → matcher.
    #[serde(default)]
    pub query: BTreeMap<String, ValueMatch>,
    /// Virtual hosts by `:authority`/Host; `*.example.com` wildcards.
    #[serde(default)]
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// How a header or query value is matched: `"v"` (exact) or `{exact|prefix|regex|present}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ValueMatch {
    Exact(String),
    Rule(ValueRule),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ValueRule {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    /// `true`: must be present (any value); `false`: must be absent.
    #[serde(default)]
    pub present: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    pub attempts: u32,
    #[serde(default)]
    pub per_try_timeout: Option<Dur>,
    /// Any of `5xx`, `gateway-error`, `reset`, `connect-failure`, `retriable-4xx`.
    #[serde(default)]
    pub on: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    pub cluster: String,
    #[serde(default = "hundred")]
    pub percent: f64,
}

fn hundred() -> f64 {
    100.0
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    LeastRequest,
    Random,
    RingHash,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub lb: LbPolicy,
    /// ring_hash key: `header:NAME` or `source_ip`.
    #[serde(default)]
    pub hash_on: Option<String>,
    #[serde(default)]
    pub tls: Option<ClusterTls>,
    #[serde(default)]
    pub http2: bool,
    #[serde(default)]
    pub pool: PoolConfig,
    #[serde(default)]
    pub limits: ClusterLimits,
    #[serde(default)]
    pub outlier: Option<OutlierConfig>,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
}

fn default_connect_timeout() -> Dur {
    Dur::from_secs(5)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterTls {
    /// CA bundle that signs the upstream's certificate.
    #[serde(default)]
    pub ca: Option<String>,
    /// Client certificate and key (upstream mTLS).
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    /// Server name sent (SNI) and verified; defaults to the endpoint host.
    #[serde(default)]
    pub sni: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    pub max_idle_per_endpoint: usize,
    pub idle_timeout: Dur,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_idle_per_endpoint: 64,
            idle_timeout: Dur::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterLimits {
    pub max_connections: u32,
    pub max_pending: u32,
    pub max_requests: u32,
}

impl Default for ClusterLimits {
    fn default() -> Self {
        ClusterLimits {
            max_connections: 1024,
            max_pending: 1024,
            max_requests: 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    pub consecutive_5xx: u32,
    pub interval: Dur,
    pub base_ejection: Dur,
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_5xx: 5,
            interval: Dur::from_secs(10),
            base_ejection: Dur::from_secs(30),
            max_ejection_percent: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub path: String,
    #[serde(default = "hc_interval")]
    pub interval: Dur,
    #[serde(default = "hc_timeout")]
    pub timeout: Dur,
    #[serde(default = "three")]
    pub unhealthy: u32,
    #[serde(default = "two")]
    pub healthy: u32,
}

fn hc_interval() -> Dur {
    Dur::from_secs(5)
}
fn hc_timeout() -> Dur {
    Dur::from_secs(1)
}
fn three() -> u32 {
    3
}
fn two() -> u32 {
    2
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    #[default]
    FailClosed,
    FailOpen,
    Reload,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub name: String,
    /// A path (relative to the config file) or `sha256:<hex>`.
    pub module: String,
    /// Any YAML; handed to the filter as JSON bytes (plugin configuration).
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub vm_id: String,
    /// Root context id (`plugin_root_id`); empty by default, as in Envoy.
    #[serde(default)]
    pub root_id: Option<String>,
    #[serde(default)]
    pub limits: FilterLimits,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterLimits {
    pub memory: ByteSize,
    pub callback_deadline: Dur,
    pub max_body_bytes: ByteSize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        FilterLimits {
            memory: ByteSize(64 * 1024 * 1024),
            callback_deadline: Dur::from_millis(100),
            max_body_bytes: ByteSize(1024 * 1024),
        }
    }
}
