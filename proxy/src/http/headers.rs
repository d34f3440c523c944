//! Proxy header hygiene: hop-by-hop removal, `x-forwarded-*`, `x-request-id`.

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use std::cell::Cell;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy `keep-alive` / `proxy-connection`).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// `name`'s index in [`HOP_BY_HOP`]: its length picks the one candidate to compare (a table
/// lookup for standard names, no hashing, no comparison against all eight).
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    let n = name.as_str();
    let i = match n.len() {
        10 if n == "connection" => 0,
        10 if n == "keep-alive" => 1,
        16 if n == "proxy-connection" => 2,
        18 if n == "proxy-authenticate" => 3,
        19 if n == "proxy-authorization" => 4,
        2 if n == "te" => 5,
        17 if n == "transfer-encoding" => 6,
        7 if n == "upgrade" => 7,
        _ => return None,
    };
    Some(i)
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
/// `trailers` in `te` is kept for gRPC-style requests (as Envoy does).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names, no hashing: which hop-by-hop headers are there (most requests
    // carry none; most HTTP/1.1 responses just `connection: keep-alive`).
    let present = headers
        .keys()
        .filter_map(hop_by_hop_index)
        .fold(0u8, |bits, i| bits | 1 << i);
    if present == 0 {
        return;
    }
    let has = |name: &HeaderName| hop_by_hop_index(name).is_some_and(|i| present & 1 << i != 0);
    if has(&header::CONNECTION) {
        // Names the `Connection` header lists; its usual tokens (`keep-alive`, `close`) are
        // either removed below anyway or not header names in use.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    let te_trailers = has(&header::TE)
        && headers
            .get(header::TE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            });
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The `x-forwarded-for` value a connection from `client` adds (computed once per connection).
pub fn client_ip_value(client: std::net::IpAddr) -> HeaderValue {
    HeaderValue::try_from(client.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Appends the client address (`client_ip`, from [`client_ip_value`]) to `x-forwarded-for` and
/// sets `x-forwarded-proto`.
pub fn set_forwarded(headers: &mut HeaderMap, client_ip: &HeaderValue, https: bool) {
    // One lookup (an entry) instead of a get and an insert.
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Occupied(mut e) if !e.get().is_empty() => {
            let prev = e.get();
            let mut v = Vec::with_capacity(prev.len() + 2 + client_ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(client_ip.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                e.insert(v);
            }
        }
        Entry::Occupied(mut e) => {
            e.insert(client_ip.clone());
        }
        Entry::Vacant(e) => {
            e.insert(client_ip.clone());
        }
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if https { "https" } else { "http" }),
    );
}

/// Returns the request id, generating (and inserting) a UUIDv4 when absent or invalid.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    match headers.entry(X_REQUEST_ID) {
        Entry::Occupied(e) if !e.get().is_empty() && e.get().to_str().is_ok() => e.get().clone(),
        Entry::Occupied(mut e) => {
            let id = new_uuid();
            e.insert(id.clone());
            id
        }
        Entry::Vacant(e) => e.insert(new_uuid()).clone(),
    }
}

/// W3C trace context: keeps the caller's trace id (or starts a trace) and sets a new span id for
/// the upstream hop, so the upstream's parent is this proxy. Returns the `traceparent` sent.
/// `tracestate`, `b3` and `x-b3-*` headers pass through untouched.
pub fn propagate_traceparent(headers: &mut HeaderMap) -> HeaderValue {
    // 00-<32 hex trace>-<16 hex span>-<2 hex flags>
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-01";
    let entry = headers.entry(TRACEPARENT);
    let incoming = match &entry {
        Entry::Occupied(e) => e.get().to_str().ok().and_then(parse_traceparent),
        Entry::Vacant(_) => None,
    };
    match incoming {
        Some((trace, flags)) => {
            buf[3..35].copy_from_slice(trace.as_bytes());
            buf[53..55].copy_from_slice(flags.as_bytes());
        }
        None => {
            let (a, b) = (fast_random(), fast_random());
            hex_into(&mut buf[3..19], &a.to_be_bytes());
            hex_into(&mut buf[19..35], &b.to_be_bytes());
        }
    }
    hex_into(&mut buf[36..52], &nonzero_random().to_be_bytes());
    let v = HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static(""));
    match entry {
        Entry::Occupied(mut e) => {
            e.insert(v.clone());
        }
        Entry::Vacant(e) => {
            e.insert(v.clone());
        }
    }
    v
}

/// `(trace id, flags)` of a valid version-00 `traceparent`.
fn parse_traceparent(v: &str) -> Option<(&str, &str)> {
    let mut parts = v.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex_ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    let valid = version == "00"
        && parts.next().is_none()
        && hex_ok(trace, 32)
        && hex_ok(parent, 16)
        && hex_ok(flags, 2)
        && trace != "00000000000000000000000000000000"
        && parent != "0000000000000000";
    valid.then_some((trace, flags))
}

/// A random RFC 4122 version 4 UUID as a header value.
fn new_uuid() -> HeaderValue {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&fast_random().to_be_bytes());
    b[8..].copy_from_slice(&fast_random().to_be_bytes());
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1; // the dash
        }
        hex_into(&mut out[at..at + 2], &[*byte]);
        at += 2;
    }
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Lower-case hex of `bytes` into `out` (`out.len() == 2 * bytes.len()`).
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xf) as usize];
    }
}

thread_local! {
    /// Per-thread wyrand state, seeded once from the OS-seeded thread RNG.
    static RNG: Cell<u64> = Cell::new(rand::random());
}

/// A fast non-cryptographic random number (wyrand) for request and span ids: unique enough
/// for tracing (as Envoy's ids), never used for secrets.
pub fn fast_random() -> u64 {
    RNG.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A non-zero [`fast_random`] (span ids must not be all zeros).
fn nonzero_random() -> u64 {
    loop {
        let r = fast_random();
        if r != 0 {
            return r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));

        // Every hop-by-hop name is found by its index; `close` is not a header to remove.
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i));
        }
        assert_eq!(hop_by_hop_index(&header::CONTENT_LENGTH), None);
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Close, X-Other"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("gzip, trailers"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let mut names: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["te", "x-keep"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn forwarded_appends() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        set_forwarded(
            &mut h,
            &client_ip_value("127.0.0.1".parse().unwrap()),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    #[test]
    fn traceparent_created_or_continued() {
        let mut h = HeaderMap::new();
        let made = propagate_traceparent(&mut h);
        let made = made.to_str().unwrap().to_string();
        assert_eq!(made.len(), 55);
        let trace = &made[3..35];
        let again = propagate_traceparent(&mut h);
        let again = again.to_str().unwrap();
        assert_eq!(&again[3..35], trace, "same trace");
        assert_ne!(&again[36..52], &made[36..52], "new span");
        let mut bad = HeaderMap::new();
        bad.insert("traceparent", HeaderValue::from_static("garbage"));
        assert_ne!(propagate_traceparent(&mut bad), "garbage");
    }

    #[test]
    fn request_id_kept_or_made() {
        let mut h = HeaderMap::new();
        let id = ensure_request_id(&mut h);
        assert_eq!(id.len(), 36);
        let u = id.to_str().unwrap();
        assert_eq!(&u[14..15], "4", "version 4: {u}");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "variant: {u}");
        assert_eq!(u.matches('-').count(), 4);
        assert_eq!(ensure_request_id(&mut h), id);
    }
}
