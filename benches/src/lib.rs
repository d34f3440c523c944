//! `weir-benches`: performance measurements of weir, kept out of the test suite.
//!
//! - `cargo bench -p weir-benches --bench hostcalls`: proxy-wasm hostcalls through the real host
//!   (header get/add/replace, body get/set, property get, shared data CAS), 100 per request;
//! - `cargo bench -p weir-benches --bench chain_length`: one request through no filter, an empty
//!   filter, and 1, 4, 8 header-adding filters;
//! - `cargo bench -p weir-benches --bench route_match`: first-match over 10 and 1,000 compiled
//!   routes (prefix, regex, header and mixed route sets);
//! - `cargo bench -p weir-benches --bench balancer_pick`: one pick of each load-balancing policy
//!   over 10 endpoints;
//! - `cargo bench -p weir-benches --bench snapshot_swap`: `weir::app::swap` on a running
//!   in-process proxy, with and without the four built-in filters;
//! - `benches/compare.sh`: nginx, haproxy, weir and weir with the four built-in filters as reverse
//!   proxies to the same upstream (requests/s, p99 latency, proxy CPU µs per request, as ratios
//!   to plain weir); `benches/compare-nginx.sh` runs only nginx and plain weir. Optional
//!   variants split a chain's cost: `--proxies "weir weir-noop weir-auth weir-rate_limit
//!   weir-header_rewrite weir-fault"` (four no-op filters; each built-in filter alone).
//!
//! This library holds the fixtures the criterion benches share: route sets and the requests
//! that hit them.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use weir::config::{RouteMatch, ValueMatch, ValueRule};
use weir::route::matcher::Matcher;

/// The kind of routes in a generated route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// `path_prefix: /svc{i}/`
    Prefix,
    /// `path_regex: /svc{i}/items/[0-9]+`
    Regex,
    /// `path_prefix: /api/` and `headers: { x-tenant: t{i} }`
    Header,
    /// The three kinds above in turn.
    Mixed,
}

impl Mix {
    pub const ALL: [Mix; 4] = [Mix::Prefix, Mix::Regex, Mix::Header, Mix::Mixed];

    pub fn name(self) -> &'static str {
        match self {
            Mix::Prefix => "prefix",
            Mix::Regex => "regex",
            Mix::Header => "header",
            Mix::Mixed => "mixed",
        }
    }

    fn kind_of(self, i: usize) -> Mix {
        match self {
            Mix::Mixed => [Mix::Prefix, Mix::Regex, Mix::Header][i % 3],
            m => m,
        }
    }
}

/// The `match:` of route `i` of a table of kind `mix`.
pub fn route_match(mix: Mix, i: usize) -> RouteMatch {
    match mix.kind_of(i) {
        Mix::Prefix => RouteMatch {
            path_prefix: Some(format!("/svc{i}/")),
            ..Default::default()
        },
        Mix::Regex => RouteMatch {
            path_regex: Some(format!("/svc{i}/items/[0-9]+")),
            ..Default::default()
        },
        _ => {
            let mut headers = BTreeMap::new();
            headers.insert("x-tenant".to_string(), ValueMatch::Exact(format!("t{i}")));
            headers.insert(
                "x-trace".to_string(),
                ValueMatch::Rule(ValueRule {
                    present: Some(true),
                    ..Default::default()
                }),
            );
            RouteMatch {
                path_prefix: Some("/api/".to_string()),
                headers,
                ..Default::default()
            }
        }
    }
}

/// `n` compiled routes of kind `mix`.
pub fn routes(mix: Mix, n: usize) -> Vec<Matcher> {
    (0..n)
        .map(|i| Matcher::new(&route_match(mix, i)).expect("generated routes compile"))
        .collect()
}

/// A request (path, headers) that is matched by route `i` of a `mix` table and by no earlier
/// route.
pub fn request_for(mix: Mix, i: usize) -> (String, http::HeaderMap) {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::HOST,
        http::HeaderValue::from_static("bench.test"),
    );
    headers.insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static("bench/1"),
    );
    let path = match mix.kind_of(i) {
        Mix::Prefix => format!("/svc{i}/orders/42"),
        Mix::Regex => format!("/svc{i}/items/12345"),
        _ => {
            headers.insert(
                "x-tenant",
                http::HeaderValue::from_str(&format!("t{i}")).expect("ascii"),
            );
            headers.insert("x-trace", http::HeaderValue::from_static("1"));
            "/api/orders/42".to_string()
        }
    };
    (path, headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir::route::matcher::{first_match, RequestView};

    #[test]
    fn fixtures_hit_the_intended_route() {
        for mix in Mix::ALL {
            let table = routes(mix, 30);
            for i in [0, 1, 2, 13, 29] {
                let (path, headers) = request_for(mix, i);
                let view = RequestView {
                    method: &http::Method::GET,
                    path: &path,
                    query: None,
                    host: Some("bench.test"),
                    headers: &headers,
                };
                assert_eq!(first_match(&table, &view), Some(i), "{mix:?} route {i}");
            }
        }
    }
}
