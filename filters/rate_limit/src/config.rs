//! `rate_limit` configuration: the JSON schema and validation.

use std::time::Duration;

use serde::Deserialize;
use weir_sdk::config::{self, ConfigError};
use weir_sdk::shared::BucketSpec;

/// The JSON configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tokens added per `per` (a positive integer).
    #[serde(deserialize_with = "config::positive_u64")]
    pub rate: u64,
    /// `second` | `minute` | `hour` | `day`, or a duration such as `"10s"`.
    #[serde(default = "second")]
    pub per: String,
    /// Bucket capacity (default: `rate`).
    #[serde(default, deserialize_with = "opt_positive")]
    pub burst: Option<u64>,
    /// `header:NAME` | `source_ip` | `global` (default `global`).
    #[serde(default = "global")]
    pub key: String,
    /// How stale buckets are swept (see the crate docs).
    #[serde(default)]
    pub eviction: Option<EvictionConfig>,
}

/// `eviction: {interval: "100ms", batch: 1000}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvictionConfig {
    /// Sweep period per worker (default 100ms).
    #[serde(default, deserialize_with = "opt_duration")]
    pub interval: Option<Duration>,
    /// Queued keys examined per sweep per worker (default 1000).
    #[serde(default, deserialize_with = "opt_positive")]
    pub batch: Option<u64>,
}

fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    weir_sdk::duration::deserialize(d).map(Some)
}

/// Default sweep period.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// Default sweep batch.
pub const DEFAULT_SWEEP_BATCH: usize = 1000;

fn second() -> String {
    "second".to_string()
}

fn global() -> String {
    "global".to_string()
}

fn opt_positive<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    config::positive_u64(d).map(Some)
}

/// Where a request's bucket key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The value of this request header (lower-case name); requests without it are not limited.
    Header(String),
    /// The client IP (`source.address` without the port).
    SourceIp,
    /// One bucket for every request.
    Global,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The bucket shape.
    pub spec: BucketSpec,
    /// The key source.
    pub key: KeySource,
    /// Sweep period.
    pub sweep_interval: Duration,
    /// Keys examined per sweep.
    pub sweep_batch: usize,
}

fn parse_per(text: &str) -> Result<Duration, ConfigError> {
    let d = match text {
        "second" | "s" => Duration::from_secs(1),
        "minute" | "m" => Duration::from_secs(60),
        "hour" | "h" => Duration::from_secs(3600),
        "day" => Duration::from_secs(86_400),
        other => weir_sdk::duration::parse_duration(other).map_err(|_| {
            ConfigError::field(
                "per",
                format!("expected second, minute, hour, day or a duration such as \"10s\", got {other:?}"),
            )
        })?,
    };
    if d.is_zero() {
        return Err(ConfigError::field("per", "must be longer than zero"));
    }
    Ok(d)
}

fn parse_key(text: &str) -> Result<KeySource, ConfigError> {
    match text {
        "global" => Ok(KeySource::Global),
        "source_ip" => Ok(KeySource::SourceIp),
        other => match other.strip_prefix("header:") {
            Some(name) if !name.trim().is_empty() => {
                Ok(KeySource::Header(name.trim().to_ascii_lowercase()))
            }
            _ => Err(ConfigError::field(
                "key",
                format!("expected \"header:NAME\", \"source_ip\" or \"global\", got {other:?}"),
            )),
        },
    }
}

/// Validates a parsed configuration.
pub fn prepare(c: Config) -> Result<Prepared, ConfigError> {
    let per = parse_per(&c.per)?;
    Ok(Prepared {
        spec: BucketSpec {
            rate: c.rate,
            per,
            burst: c.burst.unwrap_or(c.rate),
        },
        key: parse_key(&c.key)?,
        sweep_interval: match c.eviction.as_ref().and_then(|e| e.interval) {
            Some(d) if d < Duration::from_millis(1) => {
                return Err(ConfigError::field(
                    "eviction.interval",
                    "must be at least 1ms",
                ))
            }
            Some(d) => d,
            None => DEFAULT_SWEEP_INTERVAL,
        },
        sweep_batch: c
            .eviction
            .as_ref()
            .and_then(|e| e.batch)
            .map_or(DEFAULT_SWEEP_BATCH, |b| {
                usize::try_from(b).unwrap_or(usize::MAX)
            }),
    })
}

/// Parses and validates the plugin configuration.
pub fn load(bytes: Option<Vec<u8>>) -> Result<Prepared, ConfigError> {
    prepare(config::from_plugin_configuration(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(s: &str) -> Result<Prepared, ConfigError> {
        load(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn parses() {
        let p =
            load_str(r#"{"rate":100,"per":"minute","burst":200,"key":"header:X-User"}"#).unwrap();
        assert_eq!(p.spec.rate, 100);
        assert_eq!(p.spec.per, Duration::from_secs(60));
        assert_eq!(p.spec.burst, 200);
        assert_eq!(p.key, KeySource::Header("x-user".into()));
        let p = load_str(r#"{"rate":5,"per":"10s","key":"source_ip"}"#).unwrap();
        assert_eq!(p.spec.burst, 5);
        assert_eq!(p.spec.per, Duration::from_secs(10));
        assert_eq!(p.key, KeySource::SourceIp);
        assert_eq!(p.sweep_interval, DEFAULT_SWEEP_INTERVAL);
        let p = load_str(r#"{"rate":5,"eviction":{"interval":"1s","batch":10}}"#).unwrap();
        assert_eq!(
            (p.sweep_interval, p.sweep_batch),
            (Duration::from_secs(1), 10)
        );
    }

    #[test]
    fn rejects_with_field() {
        let e = load_str(r#"{"rate":0}"#).unwrap_err();
        assert_eq!(e.to_string(), "rate: expected a positive integer");
        let e = load_str(r#"{"rate":-3}"#).unwrap_err();
        assert_eq!(e.to_string(), "rate: expected a positive integer");
        let e = load_str(r#"{"rate":1,"burst":0}"#).unwrap_err();
        assert_eq!(e.to_string(), "burst: expected a positive integer");
        let e = load_str(r#"{"rate":1,"per":"fortnight"}"#).unwrap_err();
        assert!(e.to_string().starts_with("per: expected second"), "{e}");
        let e = load_str(r#"{"rate":1,"key":"cookie:x"}"#).unwrap_err();
        assert!(e.to_string().starts_with("key: expected"), "{e}");
        let e = load_str(r#"{"rate":1,"eviction":{"batch":0}}"#).unwrap_err();
        assert_eq!(e.to_string(), "eviction.batch: expected a positive integer");
        let e = load_str("{}").unwrap_err();
        assert!(e.to_string().contains("missing field `rate`"), "{e}");
    }
}
