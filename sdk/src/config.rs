//! Typed JSON plugin configuration with errors that name the failing field.
//!
//! ```ignore
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config { greeting: String }
//!
//! fn on_configure(&mut self, _: usize) -> bool {
//!     match weir_sdk::config::from_plugin_configuration::<Config>(self.get_plugin_configuration()) {
//!         Ok(c) => { self.config = c; true }
//!         Err(e) => { log::error!("invalid config: {e}"); false }
//!     }
//! }
//! ```

use serde::de::DeserializeOwned;

/// A configuration error: the JSON path of the offending field (empty for the
/// document itself) and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `jwt.keys[0].kty`; empty for the whole document.
    pub path: String,
    /// What was wrong, e.g. `expected a positive integer`.
    pub message: String,
}

// === impl ConfigError ===

impl ConfigError {
    /// An error about the field at `path`.
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Prefixes the path with `parent` (for validating nested sections).
    pub fn within(mut self, parent: &str) -> Self {
        self.path = if self.path.is_empty() {
            parent.to_string()
        } else if self.path.starts_with('[') {
            format!("{parent}{}", self.path)
        } else {
            format!("{parent}.{}", self.path)
        };
        self
    }

    fn render(&self) -> String {
        if self.path.is_empty() || self.path == "." {
            self.message.clone()
        } else {
            format!("{}: {}", self.path, self.message)
        }
    }
}

/// Parses `bytes` as JSON into `T`. An empty input is read as `{}` (a filter
/// configured without `config:`). Errors name the field path.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let trimmed = bytes.iter().all(|b| b.is_ascii_whitespace());
    let bytes: &[u8] = if trimmed { b"{}" } else { bytes };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let mut message = inner.to_string();
        // serde_json appends " at line L column C"; the path is more useful.
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        ConfigError {
            // "." is the document itself; "?" an unknown position (e.g. truncated input).
            path: if path == "." || path == "?" {
                String::new()
            } else {
                path
            },
            message,
        }
    })?;
    Ok(value)
}

/// Parses the plugin configuration as returned by
/// `RootContext::get_plugin_configuration()`; `None` is read as `{}`.
pub fn from_plugin_configuration<T: DeserializeOwned>(
    bytes: Option<Vec<u8>>,
) -> Result<T, ConfigError> {
    parse(bytes.as_deref().unwrap_or(b""))
}

/// Reads the plugin configuration from the host (call from `on_configure`).
pub fn plugin_configuration<T: DeserializeOwned>() -> Result<T, ConfigError> {
    let bytes = proxy_wasm::hostcalls::get_buffer(
        proxy_wasm::types::BufferType::PluginConfiguration,
        0,
        usize::MAX,
    )
    .ok()
    .flatten();
    from_plugin_configuration(bytes)
}

/// Deserializes a strictly positive integer (for rates, sizes); the error says so.
pub fn positive_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match v.as_u64() {
        Some(n) if n > 0 => Ok(n),
        _ => Err(serde::de::Error::custom("expected a positive integer")),
    }
}

use serde::Deserialize;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(deserialize_with = "positive_u64")]
        rate: u64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        limits: Vec<Inner>,
        #[serde(default)]
        name: String,
    }

    #[test]
    fn names_the_field() {
        let e = parse::<Outer>(br#"{"limits":[{"rate":0}]}"#).unwrap_err();
        assert_eq!(e.to_string(), "limits[0].rate: expected a positive integer");
        let e = parse::<Outer>(br#"{"limits":[],"nmae":"x"}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("nmae: unknown field `nmae`"),
            "{e}"
        );
        let e = parse::<Outer>(b"{").unwrap_err();
        assert!(e.to_string().starts_with("EOF"), "{e}");
    }

    #[test]
    fn empty_is_object() {
        #[derive(Deserialize, Default)]
        struct D {
            #[serde(default)]
            x: u32,
        }
        assert_eq!(parse::<D>(b"").unwrap().x, 0);
        assert_eq!(parse::<D>(b"  ").unwrap().x, 0);
    }

    #[test]
    fn within_prefixes() {
        let e = ConfigError::field("rate", "bad").within("limits[0]");
        assert_eq!(e.to_string(), "limits[0].rate: bad");
    }
}
