//! Local replies to gRPC requests, as Envoy makes them: a gRPC client cannot read an HTTP error
//! page, so a reply the proxy or a filter makes for a request whose `content-type` is
//! `application/grpc…` becomes a trailers-only gRPC response — HTTP 200,
//! `content-type: application/grpc`, `grpc-status` (the filter's `grpc_status` argument of
//! `proxy_send_local_response`, else mapped from the HTTP status as Envoy maps it) and
//! `grpc-message` (the reply's text, percent-encoded) — and no body. As in Envoy, the access
//! log then shows status 200, and the response flags say why.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

/// Whether a request is gRPC (`content-type: application/grpc`, `application/grpc+proto`, …).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(b"application/grpc") && matches!(v.get(16), None | Some(b'+') | Some(b';'))
    })
}

/// Envoy's mapping of an HTTP status to a gRPC status code.
pub fn status_for_http(code: u16) -> i32 {
    match code {
        400 => 13,             // INTERNAL
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 => 12,             // UNIMPLEMENTED
        429 | 502..=504 => 14, // UNAVAILABLE
        _ => 2,                // UNKNOWN
    }
}

/// The gRPC form of a local reply: `status` and `headers` as the reply has them, `text` its
/// body, `grpc_status` the status a filter asked for (if any).
pub fn trailers_only(
    status: StatusCode,
    mut headers: HeaderMap,
    text: &[u8],
    grpc_status: Option<i32>,
) -> Response<Bytes> {
    let code = grpc_status.unwrap_or_else(|| status_for_http(status.as_u16()));
    headers.remove(http::header::CONTENT_LENGTH);
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(code));
    let message = percent_encode(trim_newline(text));
    if let Ok(v) = HeaderValue::from_str(&message) {
        if !message.is_empty() {
            headers.insert("grpc-message", v);
        }
    }
    let mut resp = Response::new(Bytes::new());
    *resp.headers_mut() = headers;
    resp
}

fn trim_newline(text: &[u8]) -> &[u8] {
    text.strip_suffix(b"\n").unwrap_or(text)
}

/// `grpc-message` encoding (gRPC over HTTP/2): bytes outside printable ASCII, and `%`, as
/// `%XX`.
fn percent_encode(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        for (ct, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("application/grpc; charset=utf-8", true),
            ("application/grpc-web", false),
            ("application/json", false),
        ] {
            h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_grpc(&h), grpc, "{ct}");
        }
    }

    #[test]
    fn a_401_becomes_unauthenticated_with_its_text() {
        let mut h = HeaderMap::new();
        h.insert("www-authenticate", HeaderValue::from_static("Bearer"));
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(9));
        let r = trailers_only(StatusCode::UNAUTHORIZED, h, b"no key 100%\n", None);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "16");
        assert_eq!(r.headers()["grpc-message"], "no key 100%25");
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert!(r.headers().get("content-length").is_none());
        assert!(r.body().is_empty());
        let r = trailers_only(
            StatusCode::TOO_MANY_REQUESTS,
            HeaderMap::new(),
            b"",
            Some(8),
        );
        assert_eq!(
            r.headers()["grpc-status"],
            "8",
            "the filter's grpc_status wins"
        );
        assert!(r.headers().get("grpc-message").is_none());
    }
}
