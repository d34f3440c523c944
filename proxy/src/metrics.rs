//! Process-wide metrics in Prometheus text format (DESIGN.md §8).
//!
//! Counters are atomics resolved when a snapshot is built (the request path only does
//! `fetch_add`); they live in a registry keyed by their labels, so a new snapshot gets the same
//! counters back and nothing resets across swaps. Only the admin scrape takes the registry lock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A latency histogram with fixed buckets.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Counts by HTTP status code (100..=599; anything else counts as 0).
pub struct CodeCounters {
    codes: Box<[AtomicU64]>,
}

impl Default for CodeCounters {
    fn default() -> Self {
        CodeCounters {
            codes: (0..600).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl CodeCounters {
    pub fn inc(&self, code: u16) {
        let i = if (100..600).contains(&code) {
            code as usize
        } else {
            0
        };
        self.codes[i].fetch_add(1, Ordering::Relaxed);
    }

    fn each(&self, mut f: impl FnMut(u16, u64)) {
        for (i, c) in self.codes.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v > 0 {
                f(i as u16, v);
            }
        }
    }
}

/// Downstream request stats of one (listener, route, cluster).
#[derive(Default)]
pub struct RequestStats {
    pub codes: CodeCounters,
    pub duration: Histogram,
}

/// Spans of the OTLP exporter (`weir_trace_spans_total{result}`).
#[derive(Debug, Default)]
pub struct SpanCounters {
    /// Accepted by the collector.
    pub exported: AtomicU64,
    /// Dropped because the export queue was full.
    pub dropped: AtomicU64,
    /// Lost to a failed export (collector down, non-2xx answer).
    pub failed: AtomicU64,
}

/// Appends metric text to a scrape.
pub type Renderer = Arc<dyn Fn(&mut String) + Send + Sync>;

/// The registry of every metric weir itself exports.
#[derive(Default)]
pub struct Registry {
    requests: Mutex<BTreeMap<(String, String, String), Arc<RequestStats>>>,
    upstream: Mutex<BTreeMap<(String, String), Arc<CodeCounters>>>,
    pub retries: AtomicU64,
    /// Outlier ejections of every cluster (each `ClusterState` holds a clone).
    pub ejections: Arc<AtomicU64>,
    pub config_version: AtomicU64,
    pub swaps_ok: AtomicU64,
    pub swaps_rejected: AtomicU64,
    /// Span export outcomes (shared with the snapshots' tracers).
    pub spans: Arc<SpanCounters>,
    /// Extra text appended to every scrape (e.g. filter metrics from the wasm host).
    extra: Mutex<Vec<Renderer>>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Registry {
    /// The stats of `(listener, route, cluster)`, created on first use (snapshot build time).
    pub fn request_stats(&self, listener: &str, route: &str, cluster: &str) -> Arc<RequestStats> {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((listener.into(), route.into(), cluster.into()))
            .or_default()
            .clone()
    }

    /// The upstream response counters of `(cluster, endpoint)`.
    pub fn upstream_stats(&self, cluster: &str, endpoint: &str) -> Arc<CodeCounters> {
        let mut m = self.upstream.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((cluster.into(), endpoint.into()))
            .or_default()
            .clone()
    }

    /// Registers a renderer whose output is appended to every scrape.
    pub fn add_renderer(&self, f: Renderer) {
        self.extra.lock().unwrap_or_else(|e| e.into_inner()).push(f);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP weir_requests_total Downstream requests by listener, route, cluster and status code.\n");
        out.push_str("# TYPE weir_requests_total counter\n");
        let reqs = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for ((l, r, c), s) in &reqs {
            s.codes.each(|code, v| {
                let _ = writeln!(
                    out,
                    "weir_requests_total{{listener=\"{}\",route=\"{}\",cluster=\"{}\",code=\"{code}\"}} {v}",
                    escape(l),
                    escape(r),
                    escape(c)
                );
            });
        }
        out.push_str("# HELP weir_request_duration_seconds Downstream request duration (until the response body ends).\n");
        out.push_str("# TYPE weir_request_duration_seconds histogram\n");
        for ((l, r, c), s) in &reqs {
            let labels = format!(
                "listener=\"{}\",route=\"{}\",cluster=\"{}\"",
                escape(l),
                escape(r),
                escape(c)
            );
            s.duration
                .render(&mut out, "weir_request_duration_seconds", &labels);
        }
        out.push_str("# HELP weir_upstream_requests_total Upstream responses by cluster, endpoint and status code.\n");
        out.push_str("# TYPE weir_upstream_requests_total counter\n");
        let ups = self
            .upstream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for ((c, e), s) in &ups {
            s.each(|code, v| {
                let _ = writeln!(
                    out,
                    "weir_upstream_requests_total{{cluster=\"{}\",endpoint=\"{}\",code=\"{code}\"}} {v}",
                    escape(c),
                    escape(e)
                );
            });
        }
        let simple = [
            (
                "weir_upstream_retries_total",
                "counter",
                "Upstream request retries.",
                self.retries.load(Ordering::Relaxed),
            ),
            (
                "weir_upstream_ejections_total",
                "counter",
                "Endpoints ejected by outlier detection.",
                self.ejections.load(Ordering::Relaxed),
            ),
            (
                "weir_config_version",
                "gauge",
                "Version of the running configuration: the control plane's when managed, else the local snapshot number.",
                self.config_version.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, v) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP weir_config_swaps_total Configuration swaps by result.\n# TYPE weir_config_swaps_total counter\nweir_config_swaps_total{{result=\"applied\"}} {}\nweir_config_swaps_total{{result=\"rejected\"}} {}",
            self.swaps_ok.load(Ordering::Relaxed),
            self.swaps_rejected.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP weir_trace_spans_total Spans by export result (exported, dropped: queue full, failed: collector error).\n# TYPE weir_trace_spans_total counter\nweir_trace_spans_total{{result=\"exported\"}} {}\nweir_trace_spans_total{{result=\"dropped\"}} {}\nweir_trace_spans_total{{result=\"failed\"}} {}",
            self.spans.exported.load(Ordering::Relaxed),
            self.spans.dropped.load(Ordering::Relaxed),
            self.spans.failed.load(Ordering::Relaxed)
        );
        let extra = self.extra.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut more = String::new();
        for f in extra {
            f(&mut more);
        }
        append_distinct(&mut out, &more);
        out
    }
}

/// The family declared by a `# TYPE` line: `(name, kind)`.
fn type_line(line: &str) -> Option<(&str, &str)> {
    let mut p = line.strip_prefix("# TYPE ")?.split_whitespace();
    Some((p.next()?, p.next().unwrap_or("untyped")))
}

/// Series names a family of `kind` takes.
fn series_names(name: &str, kind: &str) -> Vec<String> {
    match kind {
        "histogram" | "summary" => ["", "_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{name}{s}"))
            .collect(),
        _ => vec![name.to_string()],
    }
}

/// Appends `extra` (filter-defined metrics) to `out`, leaving out every family whose name (or
/// one of its series names) is already taken — by weir's own families or an earlier one of
/// `extra` (two filter names that sanitize alike) — so that no filter can make the scrape
/// invalid (a second `# TYPE` or an interleaved family fails the whole scrape in Prometheus).
fn append_distinct(out: &mut String, extra: &str) {
    let mut taken: std::collections::HashSet<String> = out
        .lines()
        .filter_map(type_line)
        .flat_map(|(n, k)| series_names(n, k))
        .collect();
    let mut skip = false;
    let mut help: Option<&str> = None;
    for line in extra.lines() {
        if let Some((name, kind)) = type_line(line) {
            let names = series_names(name, kind);
            skip = names.iter().any(|n| taken.contains(n));
            let held = help.take();
            if skip {
                continue;
            }
            taken.extend(names);
            if let Some(h) = held.filter(|h| h.split_whitespace().nth(2) == Some(name)) {
                out.push_str(h);
                out.push('\n');
            }
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            // A new family starts (its TYPE decides; without one, its name does).
            skip = rest
                .split_whitespace()
                .next()
                .is_some_and(|n| taken.contains(n));
            help = Some(line);
            continue;
        } else if let Some(h) = help.take() {
            if !skip {
                out.push_str(h);
                out.push('\n');
            }
        }
        if !skip {
            out.push_str(line);
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_families_never_clash() {
        let mut out = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n".to_string();
        let own = out.clone();
        let extra = "# TYPE a_total counter\na_total 9\n# TYPE h_count counter\nh_count 9\n# HELP x X.\n# TYPE x gauge\nx 1\n# TYPE x counter\nx 2\n# TYPE a histogram\na_bucket{le=\"+Inf\"} 0\na_sum 0\na_count 0\n";
        append_distinct(&mut out, extra);
        assert_eq!(
            out.strip_prefix(own.as_str()).unwrap(),
            "# HELP x X.\n# TYPE x gauge\nx 1\n# TYPE a histogram\na_bucket{le=\"+Inf\"} 0\na_sum 0\na_count 0\n"
        );
    }
}
