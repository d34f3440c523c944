//! The one place where proxy failures become an HTTP status and an Envoy response flag.

use super::ProxyBody;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// Why the proxy answered instead of the upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matched")]
    NoRoute,
    #[error("no healthy upstream")]
    NoHealthyUpstream,
    #[error("upstream connect failure: {0}")]
    ConnectFailure(String),
    #[error("upstream request timeout")]
    UpstreamTimeout,
    #[error("upstream connection terminated: {0}")]
    UpstreamReset(String),
    #[error("upstream overflow (circuit breaker open)")]
    Overflow,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("request headers too large")]
    HeadersTooLarge,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("response body too large for a buffering filter")]
    ResponseBodyTooLarge,
    #[error("filter {filter} failed: {reason}")]
    FilterFailed { filter: String, reason: String },
    #[error("downstream connection terminated")]
    DownstreamReset,
}

impl ProxyError {
    /// HTTP status sent to the client.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            ProxyError::NoRoute => S::NOT_FOUND,
            ProxyError::NoHealthyUpstream
            | ProxyError::ConnectFailure(_)
            | ProxyError::Overflow => S::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamTimeout => S::GATEWAY_TIMEOUT,
            ProxyError::UpstreamReset(_) => S::BAD_GATEWAY,
            ProxyError::BadRequest(_) => S::BAD_REQUEST,
            ProxyError::HeadersTooLarge => S::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::BodyTooLarge => S::PAYLOAD_TOO_LARGE,
            ProxyError::ResponseBodyTooLarge => S::INTERNAL_SERVER_ERROR,
            ProxyError::FilterFailed { .. } => S::SERVICE_UNAVAILABLE,
            // Nobody is listening any more; the status only shows in the access log.
            ProxyError::DownstreamReset => S::from_u16(499).unwrap_or(S::BAD_REQUEST),
        }
    }

    /// Envoy response flag for the access log.
    pub fn flag(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "NR",
            ProxyError::NoHealthyUpstream => "UH",
            ProxyError::ConnectFailure(_) => "UF",
            ProxyError::UpstreamTimeout => "UT",
            ProxyError::UpstreamReset(_) => "UC",
            ProxyError::Overflow => "UO",
            ProxyError::BadRequest(_) | ProxyError::HeadersTooLarge => "DPE",
            ProxyError::BodyTooLarge | ProxyError::ResponseBodyTooLarge => "-",
            ProxyError::FilterFailed { .. } => "UAEX",
            ProxyError::DownstreamReset => "DC",
        }
    }

    /// Short machine-readable reason, sent as the body and in `x-weir-error`.
    pub fn details(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "route_not_found",
            ProxyError::NoHealthyUpstream => "no_healthy_upstream",
            ProxyError::ConnectFailure(_) => "upstream_connect_failure",
            ProxyError::UpstreamTimeout => "upstream_timeout",
            ProxyError::UpstreamReset(_) => "upstream_reset",
            ProxyError::Overflow => "upstream_overflow",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::HeadersTooLarge => "request_headers_too_large",
            ProxyError::BodyTooLarge => "request_body_too_large",
            ProxyError::ResponseBodyTooLarge => "response_body_too_large",
            ProxyError::FilterFailed { .. } => "filter_failed",
            ProxyError::DownstreamReset => "downstream_reset",
        }
    }

    /// Whether the upstream side failed (no endpoint, connect failure, timeout, reset,
    /// breaker): a reply the response filters see, as in Envoy.
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            ProxyError::NoHealthyUpstream
                | ProxyError::ConnectFailure(_)
                | ProxyError::UpstreamTimeout
                | ProxyError::UpstreamReset(_)
                | ProxyError::Overflow
        )
    }

    /// The local response for this error.
    pub fn to_response(&self) -> http::Response<ProxyBody> {
        local_response(self.status(), self.details())
    }
}

/// A small plain-text local response (used for errors and admin answers).
pub fn local_response(status: http::StatusCode, text: &str) -> http::Response<ProxyBody> {
    let mut body = String::with_capacity(text.len() + 1);
    body.push_str(text);
    body.push('\n');
    let mut resp = http::Response::new(full(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    resp
}

/// A body with no bytes (zero-sized: boxing it does not allocate).
pub fn empty() -> ProxyBody {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A complete in-memory body.
pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Classifies an upstream pool error into the proxy error it means.
pub fn classify_client_error(err: &crate::cluster::pool::PoolError) -> ProxyError {
    match err {
        crate::cluster::pool::PoolError::Connect { .. } => {
            ProxyError::ConnectFailure(error_chain(err))
        }
        crate::cluster::pool::PoolError::Http(_) | crate::cluster::pool::PoolError::Upstream(_) => {
            ProxyError::UpstreamReset(error_chain(err))
        }
        crate::cluster::pool::PoolError::Overflow => ProxyError::Overflow,
    }
}

/// Formats an error with its sources, for logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}
