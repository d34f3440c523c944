//! Request routing: compiled matchers (path exact/prefix/regex, method, headers, query, hosts)
//! and weighted splits. Everything is compiled when a snapshot is built; matching allocates
//! nothing. A listener's [`RouteTable`] answers the first route whose matcher holds.

pub mod matcher;
pub mod split;

use crate::cluster::ClusterState;
use crate::config;
use crate::metrics::{Registry, RequestStats};
use matcher::{Matcher, RequestView};
use split::WeightedSplit;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Default whole-request timeout (Envoy's): until the upstream response head arrives.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a route sends traffic.
pub enum Destination {
    Cluster(Arc<ClusterState>),
    Split {
        split: WeightedSplit,
        clusters: Vec<Arc<ClusterState>>,
    },
}

/// Compiled retry policy.
#[derive(Debug, Clone, Default)]
pub struct Retry {
    pub retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub on_5xx: bool,
    pub on_gateway_error: bool,
    pub on_reset: bool,
    pub on_connect_failure: bool,
    pub on_retriable_4xx: bool,
}

impl Retry {
    fn new(p: &config::RetryPolicy) -> Retry {
        let has = |s: &str| p.on.iter().any(|o| o == s);
        let none = p.on.is_empty();
        Retry {
            retries: p.attempts,
            per_try_timeout: p.per_try_timeout.map(|d| d.get()).filter(|d| !d.is_zero()),
            on_5xx: has("5xx") || none,
            on_gateway_error: has("gateway-error"),
            on_reset: has("reset") || none,
            on_connect_failure: has("connect-failure") || has("refused-stream") || none,
            on_retriable_4xx: has("retriable-4xx"),
        }
    }

    /// Whether an upstream status warrants another try.
    pub fn retry_status(&self, status: u16) -> bool {
        (self.on_5xx && status >= 500)
            || (self.on_gateway_error && matches!(status, 502..=504))
            || (self.on_retriable_4xx && status == 409)
    }

    /// Whether a try that got no response head warrants another: as Envoy's `retry_on`, `5xx`,
    /// `gateway-error` and `reset` take every such failure (a reset, a per-try timeout, a
    /// connect failure); `connect-failure` (and `refused-stream`) only a failed connect.
    pub fn retry_failure(&self, connect_failure: bool) -> bool {
        self.on_5xx
            || self.on_gateway_error
            || self.on_reset
            || (connect_failure && self.on_connect_failure)
    }
}

/// One compiled route.
pub struct CompiledRoute {
    /// Shared with every request's filter stream (`route_name`) without a copy.
    pub name: Arc<str>,
    pub matcher: Matcher,
    pub destination: Destination,
    /// `None`: no timeout.
    pub timeout: Option<Duration>,
    pub retry: Option<Retry>,
    pub mirror: Option<(Arc<ClusterState>, f64)>,
    /// The full filter chain: listener filters then route filters.
    pub filters: Vec<String>,
    pub host_rewrite: Option<http::HeaderValue>,
    /// Stats per destination cluster name.
    pub stats: foldhash::HashMap<String, Arc<RequestStats>>,
}

impl CompiledRoute {
    /// Picks the destination cluster (`r` uniformly random).
    pub fn pick_cluster(&self, r: u64) -> &Arc<ClusterState> {
        match &self.destination {
            Destination::Cluster(c) => c,
            Destination::Split { split, clusters } => {
                let name = split.pick(r);
                clusters
                    .iter()
                    .find(|c| *c.name == *name)
                    .unwrap_or(&clusters[0])
            }
        }
    }
}

/// The routes of one listener, in order.
pub struct RouteTable {
    pub routes: Vec<CompiledRoute>,
}

impl RouteTable {
    /// Compiles a listener's routes; errors name the route.
    pub fn build(
        listener: &config::Listener,
        clusters: &HashMap<String, Arc<ClusterState>>,
        metrics: &Registry,
    ) -> Result<RouteTable, Vec<String>> {
        let mut errors = Vec::new();
        let mut routes = Vec::new();
        for (i, r) in listener.routes.iter().enumerate() {
            let name = r.name.clone().unwrap_or_else(|| format!("route-{i}"));
            let ctx = |m: String| format!("listener {} route {}: {m}", listener.name, name);
            let lookup = |c: &str| {
                clusters
                    .get(c)
                    .cloned()
                    .ok_or_else(|| ctx(format!("unknown cluster {c:?}")))
            };
            let matcher = match Matcher::new(&r.matcher) {
                Ok(m) => m,
                Err(e) => {
                    errors.push(ctx(e));
                    continue;
                }
            };
            let destination = match (&r.cluster, &r.split) {
                (Some(c), None) => match lookup(c) {
                    Ok(c) => Destination::Cluster(c),
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                },
                (None, Some(weights)) => {
                    let split = match WeightedSplit::new(weights) {
                        Ok(s) => s,
                        Err(e) => {
                            errors.push(ctx(e));
                            continue;
                        }
                    };
                    let found: Result<Vec<_>, _> = weights.keys().map(|c| lookup(c)).collect();
                    match found {
                        Ok(clusters) => Destination::Split { split, clusters },
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    }
                }
                _ => {
                    errors.push(ctx("needs exactly one of `cluster` or `split`".into()));
                    continue;
                }
            };
            let mirror = match &r.mirror {
                Some(m) => match lookup(&m.cluster) {
                    Ok(c) => Some((c, m.percent)),
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                },
                None => None,
            };
            let host_rewrite = match &r.host_rewrite {
                Some(h) => match http::HeaderValue::from_str(h) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        errors.push(ctx(format!("invalid host_rewrite {h:?}")));
                        continue;
                    }
                },
                None => None,
            };
            let names: Vec<String> = match &destination {
                Destination::Cluster(c) => vec![c.name.to_string()],
                Destination::Split { clusters, .. } => {
                    clusters.iter().map(|c| c.name.to_string()).collect()
                }
            };
            let stats = names
                .iter()
                .map(|c| (c.clone(), metrics.request_stats(&listener.name, &name, c)))
                .collect();
            let mut filters = listener.filters.clone();
            filters.extend(r.filters.iter().cloned());
            routes.push(CompiledRoute {
                name: name.into(),
                matcher,
                destination,
                timeout: match r.timeout {
                    None => Some(DEFAULT_TIMEOUT),
                    Some(d) if d.is_zero() => None,
                    Some(d) => Some(d.get()),
                },
                retry: r.retries.as_ref().map(Retry::new),
                mirror,
                filters,
                host_rewrite,
                stats,
            });
        }
        if errors.is_empty() {
            Ok(RouteTable { routes })
        } else {
            Err(errors)
        }
    }

    /// The first route matching `req`.
    pub fn find(&self, req: &RequestView<'_>) -> Option<&CompiledRoute> {
        self.routes.iter().find(|r| r.matcher.matches(req))
    }

    /// The first route matching `req`, with its index.
    pub fn find_indexed(&self, req: &RequestView<'_>) -> Option<(usize, &CompiledRoute)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matcher.matches(req))
    }
}
