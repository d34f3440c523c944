//! [`HostServices`]: what the proxy provides to filters on one worker (outbound HTTP calls to a
//! cluster by name, foreign functions, the node id). Object-safe; one `Rc<dyn HostServices>` per
//! worker.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;

/// The response of an outbound call: head + body, and trailers if any.
#[derive(Debug, Clone)]
pub struct HttpCallResponse {
    pub response: http::Response<Bytes>,
    pub trailers: Option<http::HeaderMap>,
}

/// The future of an outbound call; `Err` (connect failure, timeout...) is delivered to the
/// filter as a response with no headers and no body, as Envoy does.
pub type HttpCallFuture = LocalBoxFuture<'static, Result<HttpCallResponse, String>>;

/// Why an outbound call could not even be started.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HttpCallError {
    /// No cluster of that name: the filter gets BAD_ARGUMENT.
    #[error("unknown cluster {0}")]
    UnknownCluster(String),
    /// Anything else: the filter gets INTERNAL_FAILURE.
    #[error("{0}")]
    Other(String),
}

/// Services the proxy offers to filters. Implemented by the proxy (real pool + balancer) and by
/// test harnesses.
pub trait HostServices {
    /// Start `request` to `cluster` (the request URI is `scheme://authority/path`, and carries
    /// a `host` header). The host enforces `timeout` as well (0 = no timeout).
    fn http_call(
        &self,
        cluster: &str,
        request: http::Request<Bytes>,
        timeout: Duration,
    ) -> Result<HttpCallFuture, HttpCallError>;

    /// `proxy_call_foreign_function`: `None` = no such function (NOT_FOUND).
    fn call_foreign_function(&self, _name: &str, _args: &[u8]) -> Option<Result<Vec<u8>, String>> {
        None
    }
}

/// Services that have nothing: every `http_call` answers BAD_ARGUMENT (unknown cluster).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoServices;

impl HostServices for NoServices {
    fn http_call(
        &self,
        cluster: &str,
        _request: http::Request<Bytes>,
        _timeout: Duration,
    ) -> Result<HttpCallFuture, HttpCallError> {
        Err(HttpCallError::UnknownCluster(cluster.to_string()))
    }
}
