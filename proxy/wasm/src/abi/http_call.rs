//! `proxy_http_call(upstream, headers, body, trailers, timeout_ms, ret_token)`: an outbound
//! HTTP call to a cluster by name, through [`crate::HostServices::http_call`]. Callable from any
//! context. Headers must include `:method`, `:path` and `:authority` (else BAD_ARGUMENT); an
//! unknown cluster is BAD_ARGUMENT; any other refusal INTERNAL_FAILURE. The response is delivered
//! later as `proxy_on_http_call_response(root_id, token, headers, body_size, trailers)` with
//! the calling context as the effective context; a failed call (connect error, timeout) is
//! delivered with 0 headers and an empty body, as in Envoy. Trailers of the request are
//! accepted but not sent.

use std::time::Duration;

use bytes::Bytes;
use wasmtime::Linker;
use wasmtime::Result;

use super::{read, read_string, status, write_u32, Ctx};
use crate::headers::HeaderList;
use crate::services::HttpCallError;
use crate::state::{Effect, HostState};

fn build_request(headers: &HeaderList, body: Vec<u8>) -> Option<http::Request<Bytes>> {
    let method = http::Method::from_bytes(headers.get(":method")?).ok()?;
    let path = std::str::from_utf8(headers.get(":path")?).ok()?;
    let authority = std::str::from_utf8(headers.get(":authority")?).ok()?;
    if authority.is_empty() || path.is_empty() {
        return None;
    }
    let scheme = headers.get_str(":scheme").unwrap_or("http");
    let uri = http::Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
        .ok()?;
    let mut req = http::Request::builder().method(method).uri(uri);
    req = req.header(http::header::HOST, authority);
    for (k, v) in headers.iter() {
        if k.first() == Some(&b':') || k.eq_ignore_ascii_case(b"host") {
            continue;
        }
        let name = http::HeaderName::from_bytes(k).ok()?;
        let value = http::HeaderValue::from_bytes(v).ok()?;
        req = req.header(name, value);
    }
    req.body(Bytes::from(body)).ok()
}

pub(crate) fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Ctx<'_>,
         up: i32,
         upl: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         _tp: i32,
         _tl: i32,
         timeout_ms: i32,
         ret_token: i32|
         -> Result<i32> {
            let Some(cluster) = read_string(&mut c, up, upl)? else {
                return Ok(status::BAD_ARGUMENT);
            };
            let headers = read(&mut c, hp, hl)?;
            let body = read(&mut c, bp, bl)?;
            let Some(headers) = HeaderList::deserialize(&headers) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let Some(req) = build_request(&headers, body) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let timeout = Duration::from_millis(timeout_ms as u32 as u64);
            let s = c.data_mut();
            let fut = match s.services.http_call(&cluster, req, timeout) {
                Ok(f) => f,
                Err(HttpCallError::UnknownCluster(_)) => return Ok(status::BAD_ARGUMENT),
                Err(HttpCallError::Other(e)) => {
                    super::logging::log(s, 3, &format!("http_call to {cluster} refused: {e}"));
                    return Ok(status::INTERNAL_FAILURE);
                }
            };
            s.next_token = s.next_token.wrapping_add(1).max(1);
            let token = s.next_token;
            let caller = s.effective;
            s.effects.push(Effect::HttpCall {
                token,
                caller,
                fut,
                timeout,
            });
            write_u32(&mut c, ret_token, token)?;
            Ok(status::OK)
        },
    )?;
    Ok(())
}
