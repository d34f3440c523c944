//! `header_rewrite` configuration: the JSON schema and its prepared form.

use std::collections::BTreeMap;

use serde::Deserialize;
use weir_sdk::config::{self, ConfigError};
use weir_sdk::template::Template;

/// The JSON configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Edits to request headers.
    #[serde(default)]
    pub request: HeaderEdits,
    /// Edits to response headers.
    #[serde(default)]
    pub response: HeaderEdits,
    /// Rewrites the start of `:path`.
    #[serde(default)]
    pub path_prefix_rewrite: Option<PrefixRewrite>,
}

/// `{set, add, remove}` for one direction.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEdits {
    /// Header → value (replaces any existing value).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Header → value or list of values (appended).
    #[serde(default)]
    pub add: BTreeMap<String, OneOrMany>,
    /// Header names to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A single string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

/// `{prefix, replacement}`: a `:path` starting with `prefix` gets it replaced.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PrefixRewrite {
    /// The prefix to match (must start with `/`).
    #[serde(alias = "from")]
    pub prefix: String,
    /// What replaces it.
    #[serde(alias = "to")]
    pub replacement: String,
}

impl PrefixRewrite {
    /// The rewritten path, or `None` when `path` does not start with the prefix.
    pub fn rewrite(&self, path: &str) -> Option<String> {
        let rest = path.strip_prefix(&self.prefix)?;
        let mut out = String::with_capacity(self.replacement.len() + rest.len() + 1);
        out.push_str(&self.replacement);
        out.push_str(rest);
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        Some(out)
    }
}

/// Prepared edits for one direction: lower-cased names, parsed templates.
#[derive(Debug, Default)]
pub struct Rules {
    /// Names to remove.
    pub remove: Vec<String>,
    /// (name, template) pairs to set.
    pub set: Vec<(String, Template)>,
    /// (name, template) pairs to append.
    pub add: Vec<(String, Template)>,
}

/// The whole prepared configuration.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Request edits.
    pub request: Rules,
    /// Response edits.
    pub response: Rules,
    /// `:path` prefix rewrite.
    pub path_prefix_rewrite: Option<PrefixRewrite>,
}

fn header_name(path: &str, name: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty()
        && name
            .trim_start_matches(':')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && !name.trim_start_matches(':').is_empty();
    if !valid {
        return Err(ConfigError::field(
            path,
            format!("invalid header name {name:?}"),
        ));
    }
    Ok(name.to_ascii_lowercase())
}

fn template(path: &str, value: &str) -> Result<Template, ConfigError> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(ConfigError::field(
            path,
            "header value contains CR, LF or NUL",
        ));
    }
    Template::parse(value).map_err(|e| ConfigError::field(path, e.to_string()))
}

fn prepare_edits(dir: &str, e: HeaderEdits) -> Result<Rules, ConfigError> {
    let mut rules = Rules::default();
    for (i, name) in e.remove.iter().enumerate() {
        rules
            .remove
            .push(header_name(&format!("{dir}.remove[{i}]"), name)?);
    }
    for (name, value) in &e.set {
        let p = format!("{dir}.set.{name}");
        rules
            .set
            .push((header_name(&p, name)?, template(&p, value)?));
    }
    for (name, values) in e.add {
        let p = format!("{dir}.add.{name}");
        let n = header_name(&p, &name)?;
        let values = match values {
            OneOrMany::One(v) => vec![v],
            OneOrMany::Many(v) => v,
        };
        for v in values {
            rules.add.push((n.clone(), template(&p, &v)?));
        }
    }
    Ok(rules)
}

/// Validates and prepares a configuration.
pub fn prepare(c: Config) -> Result<Prepared, ConfigError> {
    if let Some(rw) = &c.path_prefix_rewrite {
        if !rw.prefix.starts_with('/') {
            return Err(ConfigError::field(
                "path_prefix_rewrite.prefix",
                "must start with '/'",
            ));
        }
    }
    Ok(Prepared {
        request: prepare_edits("request", c.request)?,
        response: prepare_edits("response", c.response)?,
        path_prefix_rewrite: c.path_prefix_rewrite,
    })
}

/// Parses and prepares the plugin configuration bytes (`None`: empty config).
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
    fn prepares() {
        let p = load_str(
            r#"{"request":{"set":{"X-Env":"prod"},"add":{"x-via":["a","b"]},"remove":["X-Debug"]},
                "response":{"add":{"x-one":"1"}},
                "path_prefix_rewrite":{"prefix":"/api/","replacement":"/"}}"#,
        )
        .unwrap();
        assert_eq!(p.request.remove, vec!["x-debug"]);
        assert_eq!(p.request.set[0].0, "x-env");
        assert_eq!(p.request.add.len(), 2);
        assert_eq!(p.response.add.len(), 1);
        assert!(load_str("").is_ok());
    }

    #[test]
    fn rejects_with_field() {
        let e = load_str(r#"{"request":{"set":{"bad name":"x"}}}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("request.set.bad name: invalid header name"),
            "{e}"
        );
        let e = load_str(r#"{"response":{"set":{"x":"%open"}}}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("response.set.x: invalid template"),
            "{e}"
        );
        let e = load_str(r#"{"request":{"sett":{}}}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("request.sett: unknown field"),
            "{e}"
        );
        let e =
            load_str(r#"{"path_prefix_rewrite":{"prefix":"api","replacement":"/"}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "path_prefix_rewrite.prefix: must start with '/'"
        );
    }

    #[test]
    fn rewrites_prefix() {
        let rw = PrefixRewrite {
            prefix: "/api/v1".into(),
            replacement: "/v1".into(),
        };
        assert_eq!(rw.rewrite("/api/v1/x?q=1").as_deref(), Some("/v1/x?q=1"));
        assert_eq!(rw.rewrite("/other"), None);
        let rw = PrefixRewrite {
            prefix: "/api".into(),
            replacement: "".into(),
        };
        assert_eq!(rw.rewrite("/api").as_deref(), Some("/"));
        assert_eq!(rw.rewrite("/api/x").as_deref(), Some("/x"));
    }
}
