//! Reading host properties (DESIGN §3), encoded as Envoy encodes them: strings
//! raw, integers as 8-byte little-endian, booleans as one byte.
//!
//! Paths are written dotted (`"source.address"`) or as segments
//! (`&["source", "address"]`).

use std::net::{IpAddr, SocketAddr};

use proxy_wasm::hostcalls;

/// Properties Envoy encodes as 8-byte little-endian integers.
const INTEGER_PROPERTIES: &[&str] = &[
    "source.port",
    "destination.port",
    "upstream.port",
    "request.size",
    "request.total_size",
    "request.duration",
    "request.time",
    "response.code",
    "response.size",
    "response.total_size",
    "response.flags",
    "response.grpc_status",
    "connection.id",
];

/// Splits a dotted property path into segments.
pub fn split_path(path: &str) -> Vec<&str> {
    path.split('.').filter(|s| !s.is_empty()).collect()
}

/// The raw bytes of a property, or `None` when the host does not know it.
pub fn property_bytes(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// A string property (`request.id`, `source.address`, `plugin_name`, ...).
pub fn property_string(path: &[&str]) -> Option<String> {
    String::from_utf8(property_bytes(path)?).ok()
}

/// An integer property (`source.port`, `response.code`, ...); also accepts a
/// decimal string value.
pub fn property_int(path: &[&str]) -> Option<i64> {
    decode_int(&property_bytes(path)?)
}

/// A boolean property (`connection.mtls`).
pub fn property_bool(path: &[&str]) -> Option<bool> {
    let b = property_bytes(path)?;
    match b.as_slice() {
        [v] => Some(*v != 0),
        b"true" => Some(true),
        b"false" => Some(false),
        _ => None,
    }
}

/// An IP address property: accepts `ip:port`, `[v6]:port` and a bare IP.
pub fn property_ip(path: &[&str]) -> Option<IpAddr> {
    parse_ip(&property_string(path)?)
}

/// The client's address as the host reports it (`ip:port`).
pub fn source_address() -> Option<String> {
    property_string(&["source", "address"])
}

/// The client's IP address.
pub fn source_ip() -> Option<IpAddr> {
    property_ip(&["source", "address"])
}

/// The request id (`x-request-id`), as `request.id`.
pub fn request_id() -> Option<String> {
    property_string(&["request", "id"])
}

/// The first URI SAN of the mTLS peer certificate (e.g. `spiffe://example.org/ns/a/sa/b`).
pub fn peer_uri_san() -> Option<String> {
    property_string(&["connection", "uri_san_peer_certificate"]).filter(|s| !s.is_empty())
}

/// A property rendered as text for interpolation: integers in decimal, strings raw,
/// booleans as `true`/`false`.
pub fn property_display(path: &[&str]) -> Option<String> {
    let bytes = property_bytes(path)?;
    Some(display_bytes(&path.join("."), &bytes))
}

/// Renders raw property bytes as text, knowing the dotted `path` they came from.
pub fn display_bytes(path: &str, bytes: &[u8]) -> String {
    if INTEGER_PROPERTIES.contains(&path) {
        if let Some(n) = decode_int(bytes) {
            return n.to_string();
        }
    }
    if path == "connection.mtls" && bytes.len() == 1 {
        return (bytes[0] != 0).to_string();
    }
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(|c| c.is_control()) => s.to_string(),
        _ => match decode_int(bytes) {
            Some(n) if bytes.len() == 8 => n.to_string(),
            _ => String::from_utf8_lossy(bytes)
                .chars()
                .filter(|c| !c.is_control())
                .collect(),
        },
    }
}

/// Decodes an 8-byte little-endian integer, or a decimal string.
pub fn decode_int(bytes: &[u8]) -> Option<i64> {
    if let Ok(arr) = <[u8; 8]>::try_from(bytes) {
        return Some(i64::from_le_bytes(arr));
    }
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// Parses `ip:port`, `[v6]:port` or a bare IP address.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    t.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips() {
        assert_eq!(parse_ip("10.0.0.1:1234"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(parse_ip("[::1]:80"), Some("::1".parse().unwrap()));
        assert_eq!(parse_ip("::1"), Some("::1".parse().unwrap()));
        assert_eq!(parse_ip("nope"), None);
    }

    #[test]
    fn display() {
        assert_eq!(display_bytes("source.port", &8080i64.to_le_bytes()), "8080");
        assert_eq!(display_bytes("source.address", b"1.2.3.4:5"), "1.2.3.4:5");
        assert_eq!(display_bytes("connection.mtls", &[1]), "true");
        assert_eq!(display_bytes("x.y", &7i64.to_le_bytes()), "7");
    }
}
