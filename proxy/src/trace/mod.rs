//! Request tracing (DESIGN.md §8): W3C trace ids of a request and the spans weir exports.
//!
//! The request path already creates or continues `traceparent` (`http/headers.rs`); when
//! `tracing: { otlp: ... }` is configured, a snapshot holds a [`Tracer`] and every request ends
//! with one SERVER span (its id is the span id weir sent upstream, its parent the caller's span)
//! plus one INTERNAL child span per filter callback that ran ("filter <name> <phase>"). Spans are
//! handed to a bounded queue with `try_send` (never blocking the request; a full queue drops and
//! counts in `weir_trace_spans_total{result="dropped"}`) and exported in batches by a background
//! thread as OTLP/HTTP JSON ([`otlp`]).
//!
//! Example: `tracing: { otlp: { endpoint: "http://127.0.0.1:4318/v1/traces", service_name: weir } }`.

pub mod otlp;

use std::time::SystemTime;

pub use otlp::{Endpoint, ExportError, Tracer};

/// OTLP span kinds weir emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
}

/// A span attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
}

/// A finished span, ready for export.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// Status ERROR (a 5xx server span, a failed filter).
    pub error: bool,
}

/// The ids of a version-00 W3C `traceparent`: `(trace id, parent span id, flags)`.
/// `None` when the value is not a valid traceparent.
pub fn parse_traceparent(v: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let mut parts = v.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() {
        return None;
    }
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !(lower_hex(trace) && lower_hex(span) && lower_hex(flags)) {
        return None;
    }
    let mut t = [0u8; 16];
    let mut s = [0u8; 8];
    let mut f = [0u8; 1];
    hex::decode_to_slice(trace, &mut t).ok()?;
    hex::decode_to_slice(span, &mut s).ok()?;
    hex::decode_to_slice(flags, &mut f).ok()?;
    if t == [0; 16] || s == [0; 8] {
        return None;
    }
    Some((t, s, f[0]))
}

/// A random non-zero span id.
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id: [u8; 8] = rand::random();
        if id != [0; 8] {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_traceparent_only() {
        let (t, s, f) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex::encode(t), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(s), "00f067aa0ba902b7");
        assert_eq!(f, 1);
        for bad in [
            "",
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
