//! `fault` configuration: the JSON schema and validation.

use std::time::Duration;

use serde::Deserialize;
use weir_sdk::config::{self, ConfigError};

/// Longest delay a request header (`x-fault-delay-ms`) may ask for.
pub const MAX_OVERRIDE_DELAY: Duration = Duration::from_secs(60);

/// The JSON configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Delay injection.
    #[serde(default)]
    pub delay: Option<DelayConfig>,
    /// Abort injection.
    #[serde(default)]
    pub abort: Option<AbortConfig>,
    /// Honour `x-fault-delay-ms` / `x-fault-abort` request headers (default true).
    #[serde(default = "yes")]
    pub header_override: bool,
}

fn yes() -> bool {
    true
}

fn hundred() -> f64 {
    100.0
}

/// `{fixed: "200ms", percent: 10}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayConfig {
    /// How long to hold the request.
    #[serde(deserialize_with = "weir_sdk::duration::deserialize")]
    pub fixed: Duration,
    /// Share of requests delayed, 0–100 (default 100).
    #[serde(default = "hundred")]
    pub percent: f64,
}

/// `{status: 503, percent: 5}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortConfig {
    /// HTTP status of the local answer (200–599).
    pub status: u32,
    /// Share of requests aborted, 0–100 (default 100).
    #[serde(default = "hundred")]
    pub percent: f64,
}

/// Validated configuration with percentages as parts per million.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prepared {
    /// (delay, ppm) when delays are configured.
    pub delay: Option<(Duration, u32)>,
    /// (status, ppm) when aborts are configured.
    pub abort: Option<(u32, u32)>,
    /// Whether override headers are honoured.
    pub header_override: bool,
}

fn ppm(path: &str, percent: f64) -> Result<u32, ConfigError> {
    if !(0.0..=100.0).contains(&percent) || percent.is_nan() {
        return Err(ConfigError::field(
            path,
            "expected a percentage between 0 and 100",
        ));
    }
    Ok((percent * 10_000.0).round() as u32)
}

/// Whether `status` may be used for an abort.
pub fn valid_status(status: u32) -> bool {
    (200..=599).contains(&status)
}

/// Validates a parsed configuration.
pub fn prepare(c: Config) -> Result<Prepared, ConfigError> {
    let delay = match c.delay {
        Some(d) => Some((d.fixed, ppm("delay.percent", d.percent)?)),
        None => None,
    };
    let abort = match c.abort {
        Some(a) => {
            if !valid_status(a.status) {
                return Err(ConfigError::field(
                    "abort.status",
                    "expected an HTTP status between 200 and 599",
                ));
            }
            Some((a.status, ppm("abort.percent", a.percent)?))
        }
        None => None,
    };
    Ok(Prepared {
        delay,
        abort,
        header_override: c.header_override,
    })
}

/// Parses and validates the plugin configuration (`None`: empty config).
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
        let p = load_str(
            r#"{"delay":{"fixed":"200ms","percent":10},"abort":{"status":503,"percent":5.5},"header_override":false}"#,
        )
        .unwrap();
        assert_eq!(p.delay, Some((Duration::from_millis(200), 100_000)));
        assert_eq!(p.abort, Some((503, 55_000)));
        assert!(!p.header_override);
        let p = load_str("").unwrap();
        assert!(p.header_override && p.delay.is_none() && p.abort.is_none());
    }

    #[test]
    fn rejects_with_field() {
        let e = load_str(r#"{"abort":{"status":42}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "abort.status: expected an HTTP status between 200 and 599"
        );
        let e = load_str(r#"{"delay":{"fixed":"200ms","percent":101}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "delay.percent: expected a percentage between 0 and 100"
        );
        let e = load_str(r#"{"delay":{"fixed":"soon"}}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("delay.fixed: invalid duration"),
            "{e}"
        );
    }
}
