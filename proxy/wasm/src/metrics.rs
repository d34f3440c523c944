//! Metrics: the process-wide registry of filter-defined metrics (`proxy_define_metric`:
//! counter, gauge, histogram) and the per-filter host metrics
//! `weir_filter_errors_total{filter,kind}` and `weir_filter_duration_seconds{filter,phase}`,
//! rendered in Prometheus text format by [`MetricsRegistry::render_prometheus`].
//!
//! Hot path: increments are atomics on `Arc`s handed out at definition/preparation time; the
//! registry's locks are only taken when a metric is defined, a filter is prepared, or on render.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::FailureKind;

/// Kind of a filter-defined metric (proxy-wasm `MetricType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

impl MetricKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(MetricKind::Counter),
            1 => Some(MetricKind::Gauge),
            2 => Some(MetricKind::Histogram),
            _ => None,
        }
    }
}

/// Bucket bounds of filter-defined histograms (Envoy's defaults, unitless).
const FILTER_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Bucket bounds of `weir_filter_duration_seconds`.
const DURATION_BUCKETS: [f64; 14] = [
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.005,
    0.01,
    0.1,
    1.0,
];

/// The largest integer `v` with `v * unit <= bound` (as the float comparison a bucket is defined
/// by); 0 when even 0 is above the bound (bounds are never negative here).
fn largest_at_or_below(bound: f64, unit: f64) -> u64 {
    let mut v = (bound / unit).floor().max(0.0) as u64;
    while v > 0 && v as f64 * unit > bound {
        v -= 1;
    }
    while ((v + 1) as f64 * unit) <= bound {
        v += 1;
    }
    v
}

/// A fixed-bucket histogram with atomic counts. Observations are integers (nanoseconds for
/// durations, raw values for filter histograms) so that one observation is two relaxed
/// `fetch_add`s (its bucket and the sum) — the count is the sum of the buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// What one integer unit is in the unit of `bounds` (1e-9 for nanoseconds → seconds).
    unit: f64,
    /// Per bound, the largest observation (in integer units) that falls at or below it, so an
    /// observation finds its bucket with integer compares and no float conversion.
    int_bounds: Box<[u64]>,
    /// One per bound, then the overflow bucket (`+Inf`).
    counts: Vec<AtomicU64>,
    /// Sum of the observations, in integer units.
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64], unit: f64) -> Self {
        Histogram {
            bounds,
            unit,
            int_bounds: bounds
                .iter()
                .map(|b| largest_at_or_below(*b, unit))
                .collect(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// The bucket of `v`: the first bound `v` is at or below (`+Inf` past the last), found with
    /// integer compares from the smallest bound (callbacks mostly land in the first few).
    fn bucket(&self, v: u64) -> usize {
        self.int_bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.int_bounds.len())
    }

    /// Record one observation of `v` integer units.
    pub fn observe(&self, v: u64) {
        self.counts[self.bucket(v)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
    }

    /// [`Histogram::observe`] for a histogram only one thread ever writes: a load and a store
    /// per counter instead of a locked read-modify-write (readers may see a count one
    /// observation late, never a torn or lost one).
    fn observe_single_writer(&self, v: u64) {
        let bump =
            |c: &AtomicU64, by: u64| c.store(c.load(Ordering::Relaxed) + by, Ordering::Relaxed);
        bump(&self.counts[self.bucket(v)], 1);
        bump(&self.sum, v);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Sum of the observations, in the unit of the bounds.
    pub fn sum(&self) -> f64 {
        self.sum.load(Ordering::Relaxed) as f64 * self.unit
    }

    /// Adds this histogram's counts into `counts` (one per bucket) and `sum`.
    fn add_into(&self, counts: &mut [u64], sum: &mut u64) {
        for (total, c) in counts.iter_mut().zip(&self.counts) {
            *total += c.load(Ordering::Relaxed);
        }
        *sum += self.sum.load(Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut counts = vec![0; self.counts.len()];
        let mut sum = 0;
        self.add_into(&mut counts, &mut sum);
        render_buckets(
            out,
            name,
            labels,
            self.bounds,
            &counts,
            sum as f64 * self.unit,
        );
    }
}

/// Prometheus text for one histogram: `counts` per bucket (the last one `+Inf`), `sum` in the
/// unit of `bounds`.
fn render_buckets(
    out: &mut String,
    name: &str,
    labels: &str,
    bounds: &[f64],
    counts: &[u64],
    sum: f64,
) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0u64;
    for (b, c) in bounds.iter().zip(counts) {
        cumulative += c;
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
    }
    let count = cumulative + counts[bounds.len()];
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
    if labels.is_empty() {
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    } else {
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// One filter-defined metric.
#[derive(Debug)]
pub struct FilterMetric {
    pub name: String,
    pub kind: MetricKind,
    value: AtomicI64,
    histogram: Option<Histogram>,
}

impl FilterMetric {
    /// Counter/gauge value (histograms: observation count).
    pub fn value(&self) -> i64 {
        match &self.histogram {
            Some(h) => h.count() as i64,
            None => self.value.load(Ordering::Relaxed),
        }
    }

    /// Add `delta` (counters and gauges).
    pub fn add(&self, delta: i64) {
        self.value.fetch_add(delta, Ordering::Relaxed);
    }

    /// Set (counter/gauge) or observe (histogram).
    pub fn record(&self, v: u64) {
        match &self.histogram {
            Some(h) => h.observe(v),
            None => self.value.store(v as i64, Ordering::Relaxed),
        }
    }
}

/// Phases timed in `weir_filter_duration_seconds{phase}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Start,
    Configure,
    ContextCreate,
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
    Log,
    Done,
    Delete,
    Tick,
    HttpCallResponse,
    QueueReady,
    ForeignFunction,
}

impl Phase {
    const COUNT: usize = 16;

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::Configure => "configure",
            Phase::ContextCreate => "context_create",
            Phase::RequestHeaders => "request_headers",
            Phase::RequestBody => "request_body",
            Phase::RequestTrailers => "request_trailers",
            Phase::ResponseHeaders => "response_headers",
            Phase::ResponseBody => "response_body",
            Phase::ResponseTrailers => "response_trailers",
            Phase::Log => "log",
            Phase::Done => "done",
            Phase::Delete => "delete",
            Phase::Tick => "tick",
            Phase::HttpCallResponse => "http_call_response",
            Phase::QueueReady => "queue_ready",
            Phase::ForeignFunction => "foreign_function",
        }
    }

    /// Every phase, in label order.
    pub const ALL: [Phase; Phase::COUNT] = [
        Phase::Start,
        Phase::Configure,
        Phase::ContextCreate,
        Phase::RequestHeaders,
        Phase::RequestBody,
        Phase::RequestTrailers,
        Phase::ResponseHeaders,
        Phase::ResponseBody,
        Phase::ResponseTrailers,
        Phase::Log,
        Phase::Done,
        Phase::Delete,
        Phase::Tick,
        Phase::HttpCallResponse,
        Phase::QueueReady,
        Phase::ForeignFunction,
    ];
}

/// Threads with a duration shard of their own (more share one, with atomic adds).
const DURATION_SHARDS: usize = 64;

static NEXT_SHARD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// This thread's shard of every filter's durations (assigned once, never reused).
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
}

/// One histogram per [`Phase`].
type PhaseHistograms = Box<[Histogram]>;

fn phase_histograms() -> PhaseHistograms {
    (0..Phase::COUNT)
        .map(|_| Histogram::new(&DURATION_BUCKETS, 1e-9))
        .collect()
}

/// Host-side statistics of one filter (by filter name), shared by all its VMs.
///
/// Callback durations are timed about thirty times per request through four filters, so they
/// are kept per thread: each worker thread writes its own shard (allocated on its first
/// observation) without locked instructions, and readers add the shards up. Threads past
/// [`DURATION_SHARDS`] share one more shard with atomic adds.
#[derive(Debug)]
pub struct FilterStats {
    errors: [AtomicU64; 4],
    /// Live VMs of this filter (all workers and snapshots) and the bytes of their linear
    /// memories, kept by each VM's memory limiter (see `limits::MemoryLimiter`).
    pub(crate) live_vms: AtomicU64,
    pub(crate) memory_bytes: AtomicU64,
    /// `DURATION_SHARDS` single-writer shards, then the shared one.
    durations: Box<[std::sync::OnceLock<PhaseHistograms>]>,
}

impl FilterStats {
    fn new() -> Self {
        FilterStats {
            errors: Default::default(),
            live_vms: AtomicU64::new(0),
            memory_bytes: AtomicU64::new(0),
            durations: (0..=DURATION_SHARDS)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
        }
    }

    /// Count one failure.
    pub fn error(&self, kind: FailureKind) {
        self.errors[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// VMs of this filter alive now, on every worker (old snapshots' VMs included until their
    /// last request ends).
    pub fn live_vms(&self) -> u64 {
        self.live_vms.load(Ordering::Relaxed)
    }

    /// Bytes of linear memory of those VMs.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    /// Failures of `kind` so far.
    pub fn errors(&self, kind: FailureKind) -> u64 {
        self.errors[kind.index()].load(Ordering::Relaxed)
    }

    /// Time spent in one callback, in nanoseconds.
    pub fn observe_nanos(&self, phase: Phase, v: u64) {
        let shard = SHARD.with(|s| *s).min(DURATION_SHARDS);
        let h = &self.durations[shard].get_or_init(phase_histograms)[phase as usize];
        if shard < DURATION_SHARDS {
            h.observe_single_writer(v);
        } else {
            h.observe(v);
        }
    }

    /// `phase`'s bucket counts and sum (nanoseconds), added up over the shards.
    fn merged(&self, phase: Phase) -> (Vec<u64>, u64) {
        let mut counts = vec![0; DURATION_BUCKETS.len() + 1];
        let mut sum = 0;
        for shard in self.durations.iter().filter_map(|s| s.get()) {
            shard[phase as usize].add_into(&mut counts, &mut sum);
        }
        (counts, sum)
    }

    /// Number of timed callbacks of `phase`.
    pub fn calls(&self, phase: Phase) -> u64 {
        self.merged(phase).0.iter().sum()
    }

    /// Seconds spent in callbacks of `phase`.
    pub fn seconds(&self, phase: Phase) -> f64 {
        self.merged(phase).1 as f64 * 1e-9
    }

    /// Every phase that ran so far: `(phase name, calls, seconds)`.
    pub fn phases(&self) -> Vec<(&'static str, u64, f64)> {
        Phase::ALL
            .iter()
            .filter_map(|p| {
                let (counts, sum) = self.merged(*p);
                let calls: u64 = counts.iter().sum();
                (calls > 0).then(|| (p.as_str(), calls, sum as f64 * 1e-9))
            })
            .collect()
    }

    /// Total seconds spent in this filter's callbacks.
    pub fn total_seconds(&self) -> f64 {
        Phase::ALL.iter().map(|p| self.seconds(*p)).sum()
    }

    /// `weir_filter_duration_seconds` of `phase` with `labels`, if it ran at all.
    fn render_durations(&self, out: &mut String, phase: Phase, labels: &str) {
        let (counts, sum) = self.merged(phase);
        if counts.iter().sum::<u64>() == 0 {
            return;
        }
        let name = "weir_filter_duration_seconds";
        render_buckets(
            out,
            name,
            labels,
            &DURATION_BUCKETS,
            &counts,
            sum as f64 * 1e-9,
        );
    }
}

/// The process-wide metrics registry.
#[derive(Debug, Default)]
pub struct MetricsRegistry {
    by_name: Mutex<BTreeMap<String, u32>>,
    metrics: RwLock<Vec<Arc<FilterMetric>>>,
    filters: Mutex<BTreeMap<String, Arc<FilterStats>>>,
}

/// Prometheus-safe metric name.
fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.as_bytes()[0].is_ascii_digit() {
        s.insert(0, '_');
    }
    s
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl MetricsRegistry {
    /// Define (or find) a metric by name; the same name always gives the same id, across VMs
    /// and workers. A name already defined with another kind is an error (`None`).
    pub fn define(&self, kind: MetricKind, name: &str) -> Option<(u32, Arc<FilterMetric>)> {
        let mut by_name = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = by_name.get(name) {
            let m = self.get(id)?;
            return (m.kind == kind).then_some((id, m));
        }
        let mut metrics = self.metrics.write().unwrap_or_else(|e| e.into_inner());
        let id = metrics.len() as u32;
        let m = Arc::new(FilterMetric {
            name: name.to_string(),
            kind,
            value: AtomicI64::new(0),
            histogram: (kind == MetricKind::Histogram)
                .then(|| Histogram::new(&FILTER_BUCKETS, 1.0)),
        });
        metrics.push(m.clone());
        by_name.insert(name.to_string(), id);
        Some((id, m))
    }

    /// A metric by id.
    pub fn get(&self, id: u32) -> Option<Arc<FilterMetric>> {
        self.metrics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id as usize)
            .cloned()
    }

    /// A metric by name.
    pub fn by_name(&self, name: &str) -> Option<Arc<FilterMetric>> {
        let id = *self
            .by_name
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)?;
        self.get(id)
    }

    /// The stats handle of a filter (created on first use).
    pub fn filter(&self, name: &str) -> Arc<FilterStats> {
        self.filters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(FilterStats::new()))
            .clone()
    }

    /// Write every filter-defined metric and the two filter host metrics.
    pub fn render_prometheus(&self, out: &mut String) {
        let metrics: Vec<Arc<FilterMetric>> = self
            .metrics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for m in metrics {
            let name = sanitize(&m.name);
            match m.kind {
                MetricKind::Counter => {
                    let _ = writeln!(out, "# TYPE {name} counter");
                    let _ = writeln!(out, "{name} {}", m.value());
                }
                MetricKind::Gauge => {
                    let _ = writeln!(out, "# TYPE {name} gauge");
                    let _ = writeln!(out, "{name} {}", m.value());
                }
                MetricKind::Histogram => {
                    let _ = writeln!(out, "# TYPE {name} histogram");
                    if let Some(h) = &m.histogram {
                        h.render(out, &name, "");
                    }
                }
            }
        }
        let filters: Vec<(String, Arc<FilterStats>)> = self
            .filters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if filters.is_empty() {
            return;
        }
        let _ = writeln!(out, "# TYPE weir_filter_errors_total counter");
        for (f, s) in &filters {
            let f = escape_label(f);
            for kind in FailureKind::ALL {
                let _ = writeln!(
                    out,
                    "weir_filter_errors_total{{filter=\"{f}\",kind=\"{}\"}} {}",
                    kind.as_str(),
                    s.errors(kind)
                );
            }
        }
        let _ = writeln!(out, "# TYPE weir_filter_duration_seconds histogram");
        for (f, s) in &filters {
            let f = escape_label(f);
            for phase in Phase::ALL {
                let labels = format!("filter=\"{f}\",phase=\"{}\"", phase.as_str());
                s.render_durations(out, phase, &labels);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a bucket is defined as: the first bound the observation, in the bounds' unit, is at
    /// or below.
    fn float_bucket(h: &Histogram, v: u64) -> usize {
        let x = v as f64 * h.unit;
        h.bounds
            .iter()
            .position(|b| x <= *b)
            .unwrap_or(h.bounds.len())
    }

    #[test]
    fn integer_buckets_match_the_float_bounds() {
        for h in [
            Histogram::new(&DURATION_BUCKETS, 1e-9),
            Histogram::new(&FILTER_BUCKETS, 1.0),
        ] {
            let mut probes = vec![0, 1, 2, u64::MAX];
            for b in h.int_bounds.iter() {
                probes.extend([b.saturating_sub(1), *b, b + 1]);
            }
            for v in probes {
                assert_eq!(h.bucket(v), float_bucket(&h, v), "value {v}");
            }
        }
    }
}
