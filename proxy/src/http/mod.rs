//! The HTTP proxy path: hyper glue, request/response hygiene, body limits, and the single place
//! where errors become HTTP statuses and Envoy response flags ([`error`]).
//!
//! Request phases, in order, for every request a listener accepts ([`proxy::handle`]):
//! 1. **snapshot** — the running [`crate::snapshot::Snapshot`] is loaded once and kept to the end;
//! 2. **route** — first matching route of the listener (404 `NR` when none);
//! 3. **hygiene** — hop-by-hop headers dropped, `x-forwarded-*` and `x-request-id` set;
//! 4. **filters** — the listener + route filter chain sees the request headers (may change them,
//!    pause, or answer locally);
//! 5. **upstream** — a cluster is chosen (weighted split), an endpoint picked by the balancer
//!    (ejected/unhealthy ones skipped), the request sent through the worker's pool with the
//!    route timeout and retry policy;
//! 6. **response** — hop-by-hop headers dropped, the body streamed back, and when it ends the
//!    access log line and metrics are written.

pub mod body;
pub mod error;
pub mod grpc;
pub mod headers;
pub mod proxy;
pub mod replay;
pub mod server;
pub mod stop_signal;

/// Error type carried by streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// `Send` body: upstream requests, admin responses, local responses.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;
/// Downstream response body (`!Send`: may run response filters on the worker).
pub type ResponseBody =
    std::pin::Pin<Box<dyn http_body::Body<Data = bytes::Bytes, Error = BoxError>>>;
