//! Durations written as in weir's YAML: `"200ms"`, `"1.5s"`, `"2m"`, `"1h"`,
//! `"250us"`, `"10ns"`, or a bare integer meaning milliseconds.

use std::time::Duration;

/// A duration string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: expected a number with a unit (ns, us, ms, s, m, h), e.g. \"200ms\"")]
pub struct DurationError {
    /// The text that failed to parse.
    pub input: String,
}

/// Parses `"200ms"`-style durations. Whitespace around the text is ignored;
/// a bare number is milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: text.to_string(),
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(err());
    }
    let value: f64 = num.parse().map_err(|_| err())?;
    let nanos_per_unit: f64 = match unit.trim() {
        "" | "ms" => 1e6,
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return Err(err()),
    };
    let nanos = value * nanos_per_unit;
    if !nanos.is_finite() || nanos < 0.0 || nanos > u64::MAX as f64 {
        return Err(err());
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// Serde helper: `#[serde(deserialize_with = "weir_sdk::duration::deserialize")]`
/// accepts a duration string or an integer number of milliseconds.
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    use serde::Deserialize;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => parse_duration(&s).map_err(serde::de::Error::custom),
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(Duration::from_millis)
            .ok_or_else(|| serde::de::Error::custom("expected a non-negative duration")),
        _ => Err(serde::de::Error::custom(
            "expected a duration such as \"200ms\"",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_millis(10));
        assert_eq!(parse_duration("7us").unwrap(), Duration::from_micros(7));
        assert_eq!(parse_duration(" 3ns ").unwrap(), Duration::from_nanos(3));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "ms", "1d", "-1s", "1..2s", "1e999s", "x"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
