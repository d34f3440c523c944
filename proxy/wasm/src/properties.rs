//! Properties (`proxy_get_property`/`proxy_set_property`): [`StreamInfo`], filled by the proxy
//! per request, and the mapping from Envoy attribute paths to values encoded as Envoy encodes
//! them: strings as raw bytes, integers as 8-byte little-endian, booleans as one byte,
//! timestamps and durations as 8-byte little-endian nanoseconds, maps as serialized pairs (like
//! header maps). Unknown paths are NOT_FOUND.
//!
//! Supported paths: `request.{path,url_path,host,scheme,method,headers[,NAME],id,protocol,query,
//! time,duration,size,total_size,useragent,referer}`, `response.{code,code_details,flags,
//! headers[,NAME],trailers,size}`, `source.{address,port}`, `destination.{address,port}`,
//! `connection.{id,mtls,requested_server_name,tls_version,uri_san_peer_certificate,
//! dns_san_peer_certificate,subject_peer_certificate}`, `upstream.{address,port}`,
//! `plugin_name`, `plugin_root_id`, `plugin_vm_id`, `node.id` (and `node` alone),
//! `route_name`, `cluster_name` (also under `xds.`), plus anything set with
//! `proxy_set_property` on the same stream (or root context).

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::headers::HeaderList;
use crate::state::StreamData;
use crate::vm::PluginSpec;

/// Per-request facts the proxy knows (connection, TLS, routing). Fields the proxy learns later
/// (cluster, upstream address, response details) can be updated with
/// [`crate::ChainStream::info_mut`].
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub source_address: Option<SocketAddr>,
    pub destination_address: Option<SocketAddr>,
    pub connection_id: u64,
    pub mtls: bool,
    pub requested_server_name: Option<String>,
    pub tls_version: Option<String>,
    pub peer_uri_sans: Vec<String>,
    pub peer_dns_sans: Vec<String>,
    pub peer_subject: Option<String>,
    /// `request.id`; when `None`, the `x-request-id` request header is used.
    pub request_id: Option<http::HeaderValue>,
    /// "HTTP/1.0", "HTTP/1.1", "HTTP/2".
    pub protocol: Option<std::borrow::Cow<'static, str>>,
    /// Wall-clock start (`request.time`); when `None`, derived from `start_instant` on demand
    /// (the proxy reads the wall clock per request only when its access log or spans need it).
    pub start_time: Option<SystemTime>,
    pub start_instant: Instant,
    pub route_name: Option<std::sync::Arc<str>>,
    pub cluster_name: Option<std::sync::Arc<str>>,
    pub upstream_address: Option<SocketAddr>,
    pub node_id: Option<std::sync::Arc<str>>,
    pub response_code_details: Option<std::borrow::Cow<'static, str>>,
    /// Envoy response flags bitmask (`response.flags`).
    pub response_flags: u64,
}

impl Default for StreamInfo {
    fn default() -> Self {
        StreamInfo {
            source_address: None,
            destination_address: None,
            connection_id: 0,
            mtls: false,
            requested_server_name: None,
            tls_version: None,
            peer_uri_sans: Vec::new(),
            peer_dns_sans: Vec::new(),
            peer_subject: None,
            request_id: None,
            protocol: None,
            start_time: None,
            start_instant: Instant::now(),
            route_name: None,
            cluster_name: None,
            upstream_address: None,
            node_id: None,
            response_code_details: None,
            response_flags: 0,
        }
    }
}

/// Encode an integer as Envoy does.
pub fn encode_int(v: i64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn nanos_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn s(v: &str) -> Option<Vec<u8>> {
    Some(v.as_bytes().to_vec())
}

fn opt_s<S: std::ops::Deref<Target = str>>(v: &Option<S>) -> Option<Vec<u8>> {
    v.as_deref().map(|v| v.as_bytes().to_vec())
}

fn addr(a: &Option<SocketAddr>) -> Option<Vec<u8>> {
    a.map(|a| a.to_string().into_bytes())
}

fn port(a: &Option<SocketAddr>) -> Option<Vec<u8>> {
    a.map(|a| encode_int(a.port() as i64))
}

/// `*.headers` as Envoy encodes it: every header, pseudo-headers too, once, its values joined
/// by `,`; `*.headers.NAME`: that header's values joined the same way.
fn header_map(h: &HeaderList, rest: &[&[u8]]) -> Option<Vec<u8>> {
    match rest {
        [] => {
            let mut joined: Vec<(&[u8], Vec<u8>)> = Vec::with_capacity(h.len());
            for (k, v) in h.iter() {
                match joined.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(k)) {
                    Some((_, all)) => {
                        all.push(b',');
                        all.extend_from_slice(v);
                    }
                    None => joined.push((k, v.to_vec())),
                }
            }
            Some(crate::abi::serialize_pairs(
                joined.iter().map(|(k, v)| (*k, v.as_slice())),
            ))
        }
        [name] => {
            let mut values = h.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
            let mut all = values.next()?.1.to_vec();
            for (_, v) in values {
                all.push(b',');
                all.extend_from_slice(v);
            }
            Some(all)
        }
        _ => None,
    }
}

/// Look a property up. `stream` is the effective HTTP context's stream, if any; `root_props`
/// the values set on the root context.
pub(crate) fn get_property(
    path: &[&[u8]],
    stream: Option<&StreamData>,
    plugin: &PluginSpec,
    root_props: &[(Vec<u8>, Vec<u8>)],
    raw_path: &[u8],
) -> Option<Vec<u8>> {
    // Values set by filters win.
    if let Some(st) = stream {
        if let Some((_, v)) = st.props.iter().rev().find(|(k, _)| k == raw_path) {
            return Some(v.clone());
        }
    }
    if let Some((_, v)) = root_props.iter().rev().find(|(k, _)| k == raw_path) {
        return Some(v.clone());
    }
    match path {
        [b"plugin_name"] => return s(&plugin.name),
        [b"plugin_root_id"] => return s(&plugin.root_id),
        [b"plugin_vm_id"] => return s(&plugin.vm_id),
        _ => {}
    }
    let st = stream?;
    let info = &st.info;
    let rh = &st.request_headers;
    match path {
        [b"node", b"id"] | [b"node"] => opt_s(&info.node_id),
        [b"route_name"] | [b"xds", b"route_name"] => opt_s(&info.route_name),
        [b"cluster_name"] | [b"xds", b"cluster_name"] => opt_s(&info.cluster_name),
        [b"request", rest @ ..] => match rest {
            [b"path"] => rh.get(":path").map(<[u8]>::to_vec),
            [b"url_path"] => rh.get(":path").map(|p| {
                let end = p.iter().position(|c| *c == b'?').unwrap_or(p.len());
                p[..end].to_vec()
            }),
            [b"query"] => rh
                .get(":path")
                .map(|p| match p.iter().position(|c| *c == b'?') {
                    Some(i) => p[i + 1..].to_vec(),
                    None => Vec::new(),
                }),
            [b"host"] => rh.get(":authority").map(<[u8]>::to_vec),
            [b"scheme"] => rh.get(":scheme").map(<[u8]>::to_vec),
            [b"method"] => rh.get(":method").map(<[u8]>::to_vec),
            [b"useragent"] => rh.get("user-agent").map(<[u8]>::to_vec),
            [b"referer"] => rh.get("referer").map(<[u8]>::to_vec),
            [b"headers", more @ ..] => header_map(rh, more),
            [b"trailers", more @ ..] => header_map(&st.request_trailers, more),
            [b"id"] => info
                .request_id
                .as_ref()
                .map(|v| v.as_bytes().to_vec())
                .or_else(|| rh.get("x-request-id").map(<[u8]>::to_vec)),
            [b"protocol"] => opt_s(&info.protocol),
            [b"time"] => {
                let start = info
                    .start_time
                    .unwrap_or_else(|| SystemTime::now() - info.start_instant.elapsed());
                Some(encode_int(nanos_since_epoch(start)))
            }
            [b"duration"] => Some(encode_int(info.start_instant.elapsed().as_nanos() as i64)),
            [b"size"] => Some(encode_int(
                rh.get_str("content-length")
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .unwrap_or(st.request_body_size as i64),
            )),
            [b"total_size"] => {
                let head: usize = rh.iter().map(|(k, v)| k.len() + v.len()).sum();
                Some(encode_int(head as i64 + st.request_body_size as i64))
            }
            _ => None,
        },
        [b"response", rest @ ..] => match rest {
            [b"code"] => st
                .response_headers
                .get_str(":status")
                .and_then(|c| c.parse::<i64>().ok())
                .map(encode_int),
            [b"code_details"] => opt_s(&info.response_code_details),
            [b"flags"] => Some(encode_int(info.response_flags as i64)),
            [b"headers", more @ ..] => header_map(&st.response_headers, more),
            [b"trailers", more @ ..] => header_map(&st.response_trailers, more),
            [b"size"] => Some(encode_int(st.response_body_size as i64)),
            _ => None,
        },
        [b"source", b"address"] => addr(&info.source_address),
        [b"source", b"port"] => port(&info.source_address),
        [b"destination", b"address"] => addr(&info.destination_address),
        [b"destination", b"port"] => port(&info.destination_address),
        [b"upstream", b"address"] => addr(&info.upstream_address),
        [b"upstream", b"port"] => port(&info.upstream_address),
        [b"connection", rest @ ..] => match rest {
            [b"id"] => Some(encode_int(info.connection_id as i64)),
            [b"mtls"] => Some(vec![info.mtls as u8]),
            [b"requested_server_name"] => opt_s(&info.requested_server_name),
            [b"tls_version"] => opt_s(&info.tls_version),
            [b"uri_san_peer_certificate"] => info.peer_uri_sans.first().and_then(|v| s(v)),
            [b"dns_san_peer_certificate"] => info.peer_dns_sans.first().and_then(|v| s(v)),
            [b"subject_peer_certificate"] => opt_s(&info.peer_subject),
            _ => None,
        },
        _ => None,
    }
}
