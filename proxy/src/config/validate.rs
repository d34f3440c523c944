//! Semantic validation of a parsed [`Config`]: everything serde cannot check (references between
//! sections, duplicate names, addresses, regexes, TLS files, filter modules, limits).
//!
//! [`validate`] returns every problem as `(path, message)`; the path (`listeners[0].routes[2].cluster`,
//! `routes[1].split["a.b"]` for keys that are not plain words) names the offending YAML node, and
//! the loader turns it into `file:line:column`.

use super::{resolve_path, Cluster, Config, Filter, Listener, Route, RouteMatch, ValueMatch};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// Retry conditions a route may name in `retries.on`.
pub const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
];

/// Smallest `limits.memory` a filter may have (one wasm page).
pub const MIN_FILTER_MEMORY: u64 = 64 * 1024;

/// Every semantic error of `cfg` as `(path, message)`; files are looked up relative to `base_dir`.
pub fn validate(cfg: &Config, base_dir: &Path) -> Vec<(String, String)> {
    let mut c = Checker {
        base_dir,
        errors: Vec::new(),
    };
    c.config(cfg);
    c.errors
}

/// The path of a map key: `.key` for plain words, `["key"]` otherwise.
fn key(parent: &str, k: &str) -> String {
    let simple = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if simple {
        format!("{parent}.{k}")
    } else {
        format!("{parent}[{}]", serde_json::Value::String(k.to_string()))
    }
}

struct Checker<'a> {
    base_dir: &'a Path,
    errors: Vec<(String, String)>,
}

// === impl Checker: top level ===

impl Checker<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push((path.into(), message.into()));
    }

    fn config(&mut self, cfg: &Config) {
        if let Some(admin) = &cfg.admin {
            if admin.parse::<SocketAddr>().is_err() {
                self.err(
                    "admin",
                    format!("`{admin}` is not an ip:port address (e.g. 127.0.0.1:9901)"),
                );
            }
        }
        if let Some(log) = &cfg.access_log {
            if log.path.trim().is_empty() {
                self.err(
                    "access_log.path",
                    "must not be empty (stdout, stderr, off or a file)",
                );
            }
        }

        if let Some(otlp) = cfg.tracing.as_ref().and_then(|t| t.otlp.as_ref()) {
            if let Err(e) = crate::trace::otlp::Endpoint::parse(&otlp.endpoint) {
                self.err("tracing.otlp.endpoint", e.to_string());
            }
            if otlp.queue_size == 0 {
                self.err("tracing.otlp.queue_size", "must be at least 1");
            }
            if otlp.batch_size == 0 {
                self.err("tracing.otlp.batch_size", "must be at least 1");
            }
            if otlp.flush_interval.is_zero() {
                self.err("tracing.otlp.flush_interval", "must be more than 0");
            }
        }

        let clusters: HashSet<&str> = cfg.clusters.iter().map(|c| c.name.as_str()).collect();
        let filters: HashSet<&str> = cfg.filters.iter().map(|f| f.name.as_str()).collect();
        let refs = Refs {
            clusters: &clusters,
            filters: &filters,
        };

        self.unique_names(
            "listeners",
            "listener",
            cfg.listeners.iter().map(|l| l.name.as_str()),
        );
        self.unique_names(
            "clusters",
            "cluster",
            cfg.clusters.iter().map(|c| c.name.as_str()),
        );
        self.unique_names(
            "filters",
            "filter",
            cfg.filters.iter().map(|f| f.name.as_str()),
        );

        let mut addresses: HashMap<SocketAddr, usize> = HashMap::new();
        for (i, l) in cfg.listeners.iter().enumerate() {
            let path = format!("listeners[{i}]");
            match l.address.parse::<SocketAddr>() {
                Ok(addr) if addr.port() != 0 => {
                    if let Some(first) = addresses.insert(addr, i) {
                        addresses.insert(addr, first);
                        self.err(
                            format!("{path}.address"),
                            format!("address {addr} is already used by listeners[{first}]"),
                        );
                    }
                }
                Ok(_) => {}
                Err(_) => self.err(
                    format!("{path}.address"),
                    format!(
                        "`{}` is not an ip:port address (e.g. 127.0.0.1:8080, port 0 for any)",
                        l.address
                    ),
                ),
            }
            self.listener(&path, l, &refs);
        }
        for (i, c) in cfg.clusters.iter().enumerate() {
            self.cluster(&format!("clusters[{i}]"), c);
        }
        for (i, f) in cfg.filters.iter().enumerate() {
            self.filter(&format!("filters[{i}]"), f);
        }
    }

    /// Names must be non-empty and unique within their list (`list` is the YAML key).
    fn unique_names<'n>(&mut self, list: &str, what: &str, names: impl Iterator<Item = &'n str>) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, name) in names.enumerate() {
            let path = format!("{list}[{i}].name");
            if name.trim().is_empty() {
                self.err(path, format!("{what} name must not be empty"));
            } else if let Some(first) = seen.get(name) {
                self.err(
                    path,
                    format!("duplicate {what} name `{name}` (first at {list}[{first}])"),
                );
            } else {
                seen.insert(name, i);
            }
        }
    }

    /// A file that must exist (relative to the config file's directory).
    fn file(&mut self, path: String, p: &str) {
        if p.trim().is_empty() {
            self.err(path, "file name must not be empty");
            return;
        }
        let resolved = resolve_path(self.base_dir, p);
        if !resolved.is_file() {
            self.err(
                path,
                format!("file `{p}` not found (looked for {})", resolved.display()),
            );
        }
    }

    fn positive(&mut self, path: String, zero: bool) {
        if zero {
            self.err(path, "must be greater than 0");
        }
    }
}

struct Refs<'a> {
    clusters: &'a HashSet<&'a str>,
    filters: &'a HashSet<&'a str>,
}

// === impl Checker: listeners and routes ===

impl Checker<'_> {
    fn listener(&mut self, path: &str, l: &Listener, refs: &Refs<'_>) {
        if let Some(tls) = &l.tls {
            self.file(format!("{path}.tls.cert"), &tls.cert);
            self.file(format!("{path}.tls.key"), &tls.key);
            if let Some(ca) = &tls.client_ca {
                self.file(format!("{path}.tls.client_ca"), ca);
            }
        }
        self.filter_refs(&format!("{path}.filters"), &l.filters, refs);
        self.positive(
            format!("{path}.limits.max_request_headers"),
            l.limits.max_request_headers.get() == 0,
        );
        self.positive(
            format!("{path}.limits.header_read_timeout"),
            l.limits.header_read_timeout.is_zero(),
        );
        if let Some(log) = &l.access_log {
            if log.path.trim().is_empty() {
                self.err(
                    format!("{path}.access_log.path"),
                    "must not be empty (stdout, stderr, off or a file)",
                );
            }
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, r) in l.routes.iter().enumerate() {
            let rpath = format!("{path}.routes[{i}]");
            if let Some(name) = &r.name {
                if name.trim().is_empty() {
                    self.err(format!("{rpath}.name"), "route name must not be empty");
                } else if let Some(first) = names.get(name.as_str()) {
                    self.err(
                        format!("{rpath}.name"),
                        format!("duplicate route name `{name}` (first at {path}.routes[{first}])"),
                    );
                } else {
                    names.insert(name, i);
                }
            }
            self.route(&rpath, r, refs);
        }
    }

    fn filter_refs(&mut self, path: &str, names: &[String], refs: &Refs<'_>) {
        for (i, f) in names.iter().enumerate() {
            if !refs.filters.contains(f.as_str()) {
                self.err(
                    format!("{path}[{i}]"),
                    format!("unknown filter `{f}` (not in the top-level `filters:`)"),
                );
            }
        }
    }

    fn cluster_ref(&mut self, path: String, name: &str, refs: &Refs<'_>) {
        if !refs.clusters.contains(name) {
            self.err(path, format!("unknown cluster `{name}`"));
        }
    }

    fn route(&mut self, path: &str, r: &Route, refs: &Refs<'_>) {
        match (&r.cluster, &r.split) {
            (Some(_), Some(_)) => {
                self.err(path, "a route takes either `cluster` or `split`, not both")
            }
            (None, None) => self.err(path, "a route needs a `cluster` or a `split`"),
            _ => {}
        }
        if let Some(c) = &r.cluster {
            self.cluster_ref(format!("{path}.cluster"), c, refs);
        }
        if let Some(split) = &r.split {
            let spath = format!("{path}.split");
            if split.is_empty() {
                self.err(spath.clone(), "a split needs at least one cluster");
            }
            for name in split.keys() {
                self.cluster_ref(key(&spath, name), name, refs);
            }
            if !split.is_empty() && split.values().map(|w| u64::from(*w)).sum::<u64>() == 0 {
                self.err(spath, "weights must total more than 0");
            }
        }
        if let Some(m) = &r.mirror {
            self.cluster_ref(format!("{path}.mirror.cluster"), &m.cluster, refs);
            if !(m.percent.is_finite() && (0.0..=100.0).contains(&m.percent)) {
                self.err(
                    format!("{path}.mirror.percent"),
                    format!("{} is not a percentage in 0..=100", m.percent),
                );
            }
        }
        if let Some(retries) = &r.retries {
            if retries.attempts < 1 {
                self.err(format!("{path}.retries.attempts"), "must be at least 1");
            }
            for (i, on) in retries.on.iter().enumerate() {
                if !RETRY_ON.contains(&on.as_str()) {
                    self.err(
                        format!("{path}.retries.on[{i}]"),
                        format!(
                            "unknown retry condition `{on}` (one of {})",
                            RETRY_ON.join(", ")
                        ),
                    );
                }
            }
            if let Some(t) = retries.per_try_timeout {
                self.positive(format!("{path}.retries.per_try_timeout"), t.is_zero());
            }
        }
        self.filter_refs(&format!("{path}.filters"), &r.filters, refs);
        if let Some(h) = &r.host_rewrite {
            if !valid_host(h) {
                self.err(
                    format!("{path}.host_rewrite"),
                    format!("`{h}` is not a valid host[:port]"),
                );
            }
        }
        self.route_match(&format!("{path}.match"), &r.matcher);
    }

    fn route_match(&mut self, path: &str, m: &RouteMatch) {
        let set = [&m.path, &m.path_prefix, &m.path_regex]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if set > 1 {
            self.err(
                path,
                "use only one of `path`, `path_prefix` and `path_regex`",
            );
        }
        for (field, value) in [("path", &m.path), ("path_prefix", &m.path_prefix)] {
            if let Some(v) = value {
                if !v.starts_with('/') {
                    self.err(
                        format!("{path}.{field}"),
                        format!("`{v}` must start with `/`"),
                    );
                }
            }
        }
        if let Some(re) = &m.path_regex {
            self.regex(format!("{path}.path_regex"), re);
        }
        if let Some(methods) = &m.method {
            let list = methods.to_vec();
            let many = matches!(methods, super::OneOrMany::Many(_));
            if list.is_empty() {
                self.err(
                    format!("{path}.method"),
                    "the method list must not be empty",
                );
            }
            for (i, meth) in list.iter().enumerate() {
                let mpath = if many {
                    format!("{path}.method[{i}]")
                } else {
                    format!("{path}.method")
                };
                if let Err(msg) = check_method(meth) {
                    self.err(mpath, msg);
                }
            }
        }
        for (name, rule) in &m.headers {
            let hpath = key(&format!("{path}.headers"), name);
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.err(
                    hpath.clone(),
                    format!("`{name}` is not a valid header name"),
                );
            }
            self.value_match(hpath, rule);
        }
        for (name, rule) in &m.query {
            let qpath = key(&format!("{path}.query"), name);
            if name.is_empty() {
                self.err(qpath.clone(), "query parameter name must not be empty");
            }
            self.value_match(qpath, rule);
        }
        for (i, h) in m.hosts.iter().enumerate() {
            if !valid_host_pattern(h) {
                self.err(
                    format!("{path}.hosts[{i}]"),
                    format!("`{h}` is not a host pattern (`*`, `*.example.com` or `example.com[:port]`)"),
                );
            }
        }
    }

    fn value_match(&mut self, path: String, m: &ValueMatch) {
        let ValueMatch::Rule(rule) = m else { return };
        let set = [
            rule.exact.is_some(),
            rule.prefix.is_some(),
            rule.regex.is_some(),
            rule.present.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set != 1 {
            self.err(
                path.clone(),
                "give exactly one of `exact`, `prefix`, `regex`, `present`",
            );
        }
        if let Some(re) = &rule.regex {
            self.regex(format!("{path}.regex"), re);
        }
    }

    fn regex(&mut self, path: String, re: &str) {
        if let Err(e) = regex::Regex::new(re) {
            // regex errors are multi-line; keep the one-line contract.
            let msg = e
                .to_string()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            self.err(path, format!("invalid regex: {msg}"));
        }
    }
}

// === impl Checker: clusters and filters ===

impl Checker<'_> {
    fn cluster(&mut self, path: &str, c: &Cluster) {
        if c.endpoints.is_empty() {
            self.err(
                format!("{path}.endpoints"),
                "a cluster needs at least one endpoint",
            );
        }
        for (i, ep) in c.endpoints.iter().enumerate() {
            if !valid_endpoint(ep) {
                self.err(
                    format!("{path}.endpoints[{i}]"),
                    format!("`{ep}` is not a host:port endpoint (e.g. 127.0.0.1:9000, backend.local:80)"),
                );
            }
        }
        // As Envoy's hash policy: only `ring_hash` uses the key (without one it picks at random);
        // the other policies ignore it, so DESIGN.md's example (`round_robin` + `hash_on`) holds.
        if let Some(h) = &c.hash_on {
            if crate::cluster::balancer::HashOn::parse(h).is_err() {
                self.err(
                    format!("{path}.hash_on"),
                    format!("`{h}` is not `header:NAME` or `source_ip`"),
                );
            }
        }
        if let Some(tls) = &c.tls {
            for (field, value) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
                if let Some(p) = value {
                    self.file(format!("{path}.tls.{field}"), p);
                }
            }
            match (&tls.cert, &tls.key) {
                (Some(_), None) => self.err(
                    format!("{path}.tls.cert"),
                    "a client `cert` needs its `key`",
                ),
                (None, Some(_)) => {
                    self.err(format!("{path}.tls.key"), "a client `key` needs its `cert`")
                }
                _ => {}
            }
            if let Some(sni) = &tls.sni {
                if !valid_hostname(sni) {
                    self.err(
                        format!("{path}.tls.sni"),
                        format!("`{sni}` is not a valid server name"),
                    );
                }
            }
        }
        self.positive(
            format!("{path}.connect_timeout"),
            c.connect_timeout.is_zero(),
        );
        self.positive(
            format!("{path}.limits.max_connections"),
            c.limits.max_connections == 0,
        );
        self.positive(
            format!("{path}.limits.max_requests"),
            c.limits.max_requests == 0,
        );
        if let Some(o) = &c.outlier {
            if o.max_ejection_percent > 100 {
                self.err(
                    format!("{path}.outlier.max_ejection_percent"),
                    format!("{} is not a percentage in 0..=100", o.max_ejection_percent),
                );
            }
            self.positive(
                format!("{path}.outlier.consecutive_5xx"),
                o.consecutive_5xx == 0,
            );
            self.positive(format!("{path}.outlier.interval"), o.interval.is_zero());
            self.positive(
                format!("{path}.outlier.base_ejection"),
                o.base_ejection.is_zero(),
            );
        }
        if let Some(hc) = &c.health_check {
            if !hc.path.starts_with('/') {
                self.err(
                    format!("{path}.health_check.path"),
                    format!("`{}` must start with `/`", hc.path),
                );
            }
            self.positive(
                format!("{path}.health_check.interval"),
                hc.interval.is_zero(),
            );
            self.positive(format!("{path}.health_check.timeout"), hc.timeout.is_zero());
            self.positive(format!("{path}.health_check.unhealthy"), hc.unhealthy == 0);
            self.positive(format!("{path}.health_check.healthy"), hc.healthy == 0);
        }
    }

    fn filter(&mut self, path: &str, f: &Filter) {
        let mpath = format!("{path}.module");
        if let Some(hex) = f.module.strip_prefix("sha256:") {
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                self.err(mpath, "a module digest is `sha256:` and 64 hex digits");
            }
        } else {
            self.file(mpath, &f.module);
        }
        if f.limits.memory.get() < MIN_FILTER_MEMORY {
            self.err(
                format!("{path}.limits.memory"),
                format!(
                    "{} is below the minimum of 64KiB (one wasm page)",
                    f.limits.memory
                ),
            );
        }
        self.positive(
            format!("{path}.limits.callback_deadline"),
            f.limits.callback_deadline.is_zero(),
        );
        if let Some(root) = &f.root_id {
            if root.is_empty() {
                self.err(
                    format!("{path}.root_id"),
                    "must not be empty (omit it to use the filter name)",
                );
            }
        }
    }
}

// === Syntax helpers ===

const STANDARD_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn check_method(m: &str) -> Result<(), String> {
    let upper = m.to_ascii_uppercase();
    if STANDARD_METHODS.contains(&upper.as_str()) && upper != m {
        return Err(format!(
            "HTTP methods are case-sensitive: write `{upper}`, not `{m}`"
        ));
    }
    if m.is_empty() || http::Method::from_bytes(m.as_bytes()).is_err() {
        return Err(format!("`{m}` is not a valid HTTP method"));
    }
    Ok(())
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_` (no empty label).
fn valid_hostname(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Splits `host:port` / `[v6]:port` / `host`; `Err` when the shape is wrong.
fn split_host_port(s: &str) -> Result<(&str, Option<&str>), ()> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(())?;
        host.parse::<std::net::Ipv6Addr>().map_err(|_| ())?;
        return match after {
            "" => Ok((host, None)),
            _ => after.strip_prefix(':').map(|p| (host, Some(p))).ok_or(()),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Ok((host, Some(port))),
        Some(_) => Err(()), // a bare IPv6 address needs brackets
        None => Ok((s, None)),
    }
}

fn valid_port(p: &str, allow_zero: bool) -> bool {
    !p.is_empty()
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u16>().is_ok_and(|n| allow_zero || n != 0)
}

fn valid_host(s: &str) -> bool {
    match split_host_port(s) {
        Ok((host, port)) => {
            (host.parse::<IpAddr>().is_ok() || valid_hostname(host))
                && port.is_none_or(|p| valid_port(p, false))
        }
        Err(()) => false,
    }
}

/// `*`, `*.example.com`, `example.com`, `example.com:8080`, `10.0.0.1`, `[::1]:80`.
fn valid_host_pattern(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    match s.strip_prefix("*.") {
        Some(rest) => !rest.contains('*') && valid_host(rest),
        None => valid_host(s),
    }
}

/// `host:port` with a port in 1..=65535.
fn valid_endpoint(s: &str) -> bool {
    matches!(split_host_port(s), Ok((host, Some(port)))
        if (host.parse::<IpAddr>().is_ok() || valid_hostname(host)) && valid_port(port, false))
}

// === Tests ===

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use std::path::PathBuf;

    /// The errors of a config that parses; `base` is where files are looked up.
    fn check_in(text: &str, base: &Path) -> Vec<(String, String)> {
        let cfg = load_str("t.yaml", text).unwrap_or_else(|e| panic!("does not parse: {e}"));
        validate(&cfg, base)
    }

    fn check(text: &str) -> Vec<(String, String)> {
        check_in(text, Path::new("/nonexistent-weir-dir"))
    }

    /// Asserts exactly one error, at `path`, whose message contains `needle`.
    #[track_caller]
    fn one(text: &str, path: &str, needle: &str) {
        let errs = check(text);
        assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
        assert_eq!(errs[0].0, path, "{errs:#?}");
        assert!(
            errs[0].1.contains(needle),
            "`{}` does not contain `{needle}`",
            errs[0].1
        );
    }

    const DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    /// Wraps a route body in a listener with clusters a, b and filter f.
    fn with_route(route: &str) -> String {
        format!(
            "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    routes:\n      - {route}\n\
             clusters:\n  - {{ name: a, endpoints: [127.0.0.1:1] }}\n  - {{ name: b, endpoints: [127.0.0.1:2] }}\n\
             filters:\n  - {{ name: f, module: \"{DIGEST}\" }}\n"
        )
    }

    fn with_cluster(cluster: &str) -> String {
        format!("clusters:\n  - {cluster}\n")
    }

    #[test]
    fn design_example_is_valid() {
        let text = format!(
            r#"
admin: 127.0.0.1:9901
listeners:
  - name: edge
    address: 127.0.0.1:8080
    filters: [authn, limit, headers]
    routes:
      - name: canary-by-header
        match: {{ path_prefix: /orders, headers: {{ x-canary: "true" }} }}
        cluster: orders-v2
      - name: orders
        match: {{ path_prefix: /orders, method: [GET, POST], query: {{ v: {{ regex: "^[0-9]+$" }} }}, hosts: [a.example.com, "*.example.com"] }}
        split: {{ orders-v1: 90, orders-v2: 10 }}
        timeout: 10s
        retries: {{ attempts: 3, per_try_timeout: 2s, on: [5xx, reset, connect-failure] }}
        mirror: {{ cluster: orders-shadow, percent: 5 }}
        filters: [chaos]
      - name: regex
        match: {{ path_regex: "^/v[0-9]+/.*", headers: {{ x-a: {{ present: true }}, x-b: {{ prefix: ab }} }} }}
        cluster: orders-v1
  - name: second
    address: 127.0.0.1:0
  - name: third
    address: 127.0.0.1:0
clusters:
  - name: orders-v1
    endpoints: [127.0.0.1:9001, 127.0.0.1:9002]
    lb: round_robin
    hash_on: header:x-user
    http2: false
    pool: {{ max_idle_per_endpoint: 64, idle_timeout: 60s }}
    limits: {{ max_connections: 1024, max_pending: 1024, max_requests: 1024 }}
    outlier: {{ consecutive_5xx: 5, interval: 10s, base_ejection: 30s, max_ejection_percent: 10 }}
    health_check: {{ path: /healthz, interval: 5s, timeout: 1s, unhealthy: 3, healthy: 2 }}
  - name: orders-v2
    endpoints: ["[::1]:9003", "backend.local:80"]
    lb: least_request
    tls: {{ sni: orders }}
  - name: orders-shadow
    endpoints: [127.0.0.1:9004]
filters:
  - name: headers
    module: {DIGEST}
    config:
      request: {{ set: {{ x-env: prod }}, remove: [x-debug] }}
    on_error: fail_closed
    vm_id: ""
    limits: {{ memory: 64MiB, callback_deadline: 20ms }}
  - {{ name: authn, module: {DIGEST} }}
  - {{ name: limit, module: {DIGEST}, on_error: fail_open }}
  - {{ name: chaos, module: {DIGEST}, on_error: reload }}
"#
        );
        assert_eq!(check(&text), vec![]);
    }

    #[test]
    fn duplicate_names() {
        let errs = check(
            "listeners:\n  - { name: l, address: 127.0.0.1:0 }\n  - { name: l, address: 127.0.0.1:0 }\n\
             clusters:\n  - { name: c, endpoints: [a:1] }\n  - { name: c, endpoints: [a:1] }\n\
             filters:\n  - { name: f, module: \"sha256:00\" }\n  - { name: f, module: \"sha256:00\" }\n",
        );
        let paths: Vec<&str> = errs.iter().map(|e| e.0.as_str()).collect();
        assert!(paths.contains(&"listeners[1].name"), "{errs:#?}");
        assert!(paths.contains(&"clusters[1].name"), "{errs:#?}");
        assert!(paths.contains(&"filters[1].name"), "{errs:#?}");
        one(
            "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    routes:\n      - { name: r, cluster: a }\n      - { name: r, cluster: a }\nclusters:\n  - { name: a, endpoints: [a:1] }\n",
            "listeners[0].routes[1].name",
            "duplicate route name `r`",
        );
        one(
            "listeners:\n  - { name: \"\", address: 127.0.0.1:0 }\n",
            "listeners[0].name",
            "must not be empty",
        );
    }

    #[test]
    fn listener_addresses() {
        one(
            "listeners:\n  - { name: l, address: localhost:80 }\n",
            "listeners[0].address",
            "not an ip:port",
        );
        one(
            "listeners:\n  - { name: l, address: \"127.0.0.1\" }\n",
            "listeners[0].address",
            "not an ip:port",
        );
        one(
            "listeners:\n  - { name: l, address: 127.0.0.1:80 }\n  - { name: m, address: 127.0.0.1:80 }\n",
            "listeners[1].address",
            "already used by listeners[0]",
        );
        assert_eq!(check("listeners:\n  - { name: l, address: \"[::1]:0\" }\n  - { name: m, address: \"[::1]:0\" }\n"), vec![]);
        one("admin: nowhere\n", "admin", "not an ip:port");
        assert_eq!(check("admin: 0.0.0.0:9901\n"), vec![]);
    }

    #[test]
    fn route_destination() {
        one(
            &with_route("{ cluster: a, split: { a: 1 } }"),
            "listeners[0].routes[0]",
            "not both",
        );
        one(
            &with_route("{ name: r }"),
            "listeners[0].routes[0]",
            "needs a `cluster` or a `split`",
        );
        one(
            &with_route("{ cluster: zz }"),
            "listeners[0].routes[0].cluster",
            "unknown cluster `zz`",
        );
        one(
            &with_route("{ split: { a: 1, \"x.y\": 1 } }"),
            "listeners[0].routes[0].split[\"x.y\"]",
            "unknown cluster `x.y`",
        );
        one(
            &with_route("{ split: { a: 0, b: 0 } }"),
            "listeners[0].routes[0].split",
            "total more than 0",
        );
        one(
            &with_route("{ split: {} }"),
            "listeners[0].routes[0].split",
            "at least one cluster",
        );
        one(
            &with_route("{ cluster: a, mirror: { cluster: q } }"),
            "listeners[0].routes[0].mirror.cluster",
            "unknown cluster `q`",
        );
        one(
            &with_route("{ cluster: a, mirror: { cluster: b, percent: 101 } }"),
            "listeners[0].routes[0].mirror.percent",
            "0..=100",
        );
        one(
            &with_route("{ cluster: a, mirror: { cluster: b, percent: -1 } }"),
            "listeners[0].routes[0].mirror.percent",
            "0..=100",
        );
        assert_eq!(
            check(&with_route(
                "{ cluster: a, mirror: { cluster: b, percent: 0 } }"
            )),
            vec![]
        );
    }

    #[test]
    fn filter_references() {
        one(
            &with_route("{ cluster: a, filters: [f, nope] }"),
            "listeners[0].routes[0].filters[1]",
            "unknown filter `nope`",
        );
        let text = with_route("{ cluster: a }").replace(
            "address: 127.0.0.1:0",
            "address: 127.0.0.1:0\n    filters: [gone]",
        );
        one(&text, "listeners[0].filters[0]", "unknown filter `gone`");
    }

    #[test]
    fn retries() {
        one(
            &with_route("{ cluster: a, retries: { attempts: 0 } }"),
            "listeners[0].routes[0].retries.attempts",
            "at least 1",
        );
        one(
            &with_route(
                "{ cluster: a, retries: { attempts: 2, on: [5xx, refused-stream, sometimes] } }",
            ),
            "listeners[0].routes[0].retries.on[2]",
            "unknown retry condition `sometimes`",
        );
        assert_eq!(
            check(&with_route("{ cluster: a, retries: { attempts: 2, on: [5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream] } }")),
            vec![]
        );
    }

    #[test]
    fn match_rules() {
        let m = |body: &str| with_route(&format!("{{ cluster: a, match: {body} }}"));
        one(
            &m("{ path_regex: \"(\" }"),
            "listeners[0].routes[0].match.path_regex",
            "invalid regex",
        );
        one(
            &m("{ path: /a, path_prefix: /b }"),
            "listeners[0].routes[0].match",
            "only one of",
        );
        one(
            &m("{ path_prefix: orders }"),
            "listeners[0].routes[0].match.path_prefix",
            "must start with `/`",
        );
        one(
            &m("{ headers: { x-a: { regex: \"[\" } } }"),
            "listeners[0].routes[0].match.headers.x-a.regex",
            "invalid regex",
        );
        one(
            &m("{ query: { q: { regex: \"a{2,1}\" } } }"),
            "listeners[0].routes[0].match.query.q.regex",
            "invalid regex",
        );
        one(
            &m("{ headers: { x-a: {} } }"),
            "listeners[0].routes[0].match.headers.x-a",
            "exactly one of",
        );
        one(
            &m("{ headers: { x-a: { exact: a, prefix: b } } }"),
            "listeners[0].routes[0].match.headers.x-a",
            "exactly one of",
        );
        one(
            &m("{ headers: { \"bad header\": x } }"),
            "listeners[0].routes[0].match.headers[\"bad header\"]",
            "not a valid header name",
        );
        one(
            &m("{ method: get }"),
            "listeners[0].routes[0].match.method",
            "write `GET`",
        );
        one(
            &m("{ method: [GET, \"B@D\"] }"),
            "listeners[0].routes[0].match.method[1]",
            "not a valid HTTP method",
        );
        one(
            &m("{ method: [] }"),
            "listeners[0].routes[0].match.method",
            "must not be empty",
        );
        assert_eq!(check(&m("{ method: PURGE }")), vec![]);
        one(
            &m("{ hosts: [\"a.*.com\"] }"),
            "listeners[0].routes[0].match.hosts[0]",
            "not a host pattern",
        );
        one(
            &m("{ hosts: [\"*\", \"ok.com\", \"bad host\"] }"),
            "listeners[0].routes[0].match.hosts[2]",
            "not a host pattern",
        );
        one(
            &m("{ hosts: [\"a.com:99999\"] }"),
            "listeners[0].routes[0].match.hosts[0]",
            "not a host pattern",
        );
        assert_eq!(check(&m("{ hosts: [\"*\", \"*.example.com\", \"example.com:8080\", \"10.0.0.1\", \"[::1]:80\"] }")), vec![]);
    }

    #[test]
    fn clusters() {
        one(
            &with_cluster("{ name: c, endpoints: [] }"),
            "clusters[0].endpoints",
            "at least one endpoint",
        );
        one(
            &with_cluster("{ name: c, endpoints: [a:1, nope] }"),
            "clusters[0].endpoints[1]",
            "not a host:port",
        );
        one(
            &with_cluster("{ name: c, endpoints: [\"a:0\"] }"),
            "clusters[0].endpoints[0]",
            "not a host:port",
        );
        one(
            &with_cluster("{ name: c, endpoints: [\"::1:80\"] }"),
            "clusters[0].endpoints[0]",
            "not a host:port",
        );
        // Envoy's reading: ring_hash without a key picks at random; other policies ignore it.
        for ok in [
            "{ name: c, endpoints: [a:1], lb: ring_hash }",
            "{ name: c, endpoints: [a:1], hash_on: source_ip }",
            "{ name: c, endpoints: [a:1], lb: least_request, hash_on: \"header:x-user\" }",
        ] {
            assert_eq!(check(&with_cluster(ok)), vec![], "{ok}");
        }
        one(
            &with_cluster("{ name: c, endpoints: [a:1], lb: random, hash_on: cookie }"),
            "clusters[0].hash_on",
            "not `header:NAME`",
        );
        one(
            &with_cluster("{ name: c, endpoints: [a:1], lb: ring_hash, hash_on: cookie }"),
            "clusters[0].hash_on",
            "not `header:NAME`",
        );
        one(
            &with_cluster("{ name: c, endpoints: [a:1], lb: ring_hash, hash_on: \"header:\" }"),
            "clusters[0].hash_on",
            "not `header:NAME`",
        );
        assert_eq!(
            check(&with_cluster(
                "{ name: c, endpoints: [a:1], lb: ring_hash, hash_on: source_ip }"
            )),
            vec![]
        );
        one(
            &with_cluster("{ name: c, endpoints: [a:1], outlier: { max_ejection_percent: 101 } }"),
            "clusters[0].outlier.max_ejection_percent",
            "0..=100",
        );
        one(
            &with_cluster("{ name: c, endpoints: [a:1], health_check: { path: healthz } }"),
            "clusters[0].health_check.path",
            "start with `/`",
        );
        one(
            &with_cluster("{ name: c, endpoints: [a:1], connect_timeout: 0s }"),
            "clusters[0].connect_timeout",
            "greater than 0",
        );
    }

    #[test]
    fn tls_files_resolve_against_base_dir() {
        let dir = std::env::temp_dir().join(format!("weir-validate-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("certs")).unwrap();
        for f in ["cert.pem", "key.pem", "ca.pem"] {
            std::fs::write(dir.join("certs").join(f), "x").unwrap();
        }
        let abs_ca = dir.join("certs/ca.pem").display().to_string();
        let ok = format!(
            "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    tls: {{ cert: certs/cert.pem, key: certs/key.pem, client_ca: \"{abs_ca}\" }}\n\
             clusters:\n  - {{ name: c, endpoints: [a:1], tls: {{ ca: certs/ca.pem, cert: certs/cert.pem, key: certs/key.pem }} }}\n"
        );
        assert_eq!(check_in(&ok, &dir), vec![]);
        let errs = check_in(&ok, Path::new("/nonexistent-weir-dir"));
        let paths: Vec<&str> = errs.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "listeners[0].tls.cert",
                "listeners[0].tls.key",
                "clusters[0].tls.ca",
                "clusters[0].tls.cert",
                "clusters[0].tls.key"
            ]
        );
        assert!(errs[0].1.contains("not found"), "{errs:#?}");
        let half = "clusters:\n  - { name: c, endpoints: [a:1], tls: { cert: certs/cert.pem } }\n";
        let errs = check_in(half, &dir);
        assert_eq!(
            errs,
            vec![(
                "clusters[0].tls.cert".to_string(),
                "a client `cert` needs its `key`".to_string()
            )]
        );
        // A module given as a file resolves the same way.
        std::fs::write(dir.join("f.wasm"), "\0asm").unwrap();
        assert_eq!(
            check_in("filters:\n  - { name: f, module: f.wasm }\n", &dir),
            vec![]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn filters() {
        one(
            "filters:\n  - { name: f, module: missing.wasm }\n",
            "filters[0].module",
            "not found",
        );
        one(
            "filters:\n  - { name: f, module: \"sha256:abc\" }\n",
            "filters[0].module",
            "64 hex digits",
        );
        one(
            &format!(
                "filters:\n  - {{ name: f, module: \"{DIGEST}\", limits: {{ memory: 1KiB }} }}\n"
            ),
            "filters[0].limits.memory",
            "below the minimum of 64KiB",
        );
        one(
            &format!("filters:\n  - {{ name: f, module: \"{DIGEST}\", limits: {{ callback_deadline: 0ms }} }}\n"),
            "filters[0].limits.callback_deadline",
            "greater than 0",
        );
        assert_eq!(
            check(&format!(
                "filters:\n  - {{ name: f, module: \"{DIGEST}\", limits: {{ memory: 64KiB }} }}\n"
            )),
            vec![]
        );
    }

    #[test]
    fn resolve_path_joins_relative_only() {
        assert_eq!(
            resolve_path(Path::new("/etc/weir"), "certs/a.pem"),
            PathBuf::from("/etc/weir/certs/a.pem")
        );
        assert_eq!(
            resolve_path(Path::new("/etc/weir"), "/abs/a.pem"),
            PathBuf::from("/abs/a.pem")
        );
    }

    #[test]
    fn host_syntax() {
        assert!(valid_endpoint("127.0.0.1:80"));
        assert!(valid_endpoint("[::1]:80"));
        assert!(valid_endpoint("svc.ns.cluster.local:8080"));
        assert!(!valid_endpoint("127.0.0.1"));
        assert!(!valid_endpoint("a:b"));
        assert!(!valid_endpoint(":80"));
        assert!(!valid_endpoint("-a:80"));
        assert!(valid_host_pattern("*"));
        assert!(!valid_host_pattern("*.*"));
        assert!(!valid_host_pattern(""));
    }
}
