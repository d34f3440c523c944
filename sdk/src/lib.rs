//! `weir-sdk`: helpers for writing weir filters in Rust, on top of the
//! [`proxy-wasm`](https://docs.rs/proxy-wasm) crate. Filters built with it run on
//! weir and on any other proxy-wasm host (Envoy, Istio) unchanged.
//!
//! What it gives a filter author:
//! - [`callbacks!`]: declare the stream callbacks the filter implements, so weir skips
//!   the others (fewer guest calls per request);
//! - [`config::parse`]: typed JSON plugin configuration whose errors name the field
//!   (`"rate: expected a positive integer"`), to log and return `false` from
//!   `on_configure` so `weir validate` fails naming the filter;
//! - [`headers`]: read request/response headers without panicking on non-UTF-8 values;
//! - [`respond::send_json`]: answer locally with a JSON body;
//! - [`properties`]: read string / integer / IP properties (`source.address`,
//!   `request.id`, `connection.uri_san_peer_certificate`, ...);
//! - [`shared`]: shared-data counters with a CAS retry loop and a token bucket
//!   that is exact across worker threads (used by the `rate_limit` filter);
//! - [`duration::parse_duration`]: `"200ms"`, `"1.5s"`, `"2m"`;
//! - [`template::Template`]: `%property.path%` interpolation in header values.
//!
//! The whole loop (write, build, test, run) is shown by `examples/rust-filter/`.

#![forbid(unsafe_code)]

pub mod callbacks;
pub mod config;
pub mod duration;
pub mod headers;
pub mod properties;
pub mod respond;
pub mod shared;
pub mod template;

pub use proxy_wasm;

pub use config::ConfigError;
