//! `auth` configuration: the JSON schema and its prepared form.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use weir_sdk::config::{self, ConfigError};

use crate::jwt::{self, Jwk, Key, Validation};
use crate::rules::Rule;

/// The JSON configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// JWT bearer tokens.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// Static API keys.
    #[serde(default)]
    pub api_keys: Option<ApiKeysConfig>,
    /// Authorization rules (deny wins).
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Let requests without any credential through to the rules (default false: 401).
    #[serde(default)]
    pub allow_anonymous: bool,
    /// Request header that receives the authenticated principal (removed from
    /// incoming requests first), e.g. `x-weir-principal`.
    #[serde(default)]
    pub principal_header: Option<String>,
    /// Realm in `www-authenticate` (default `weir`).
    #[serde(default)]
    pub realm: Option<String>,
}

/// `jwt:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted `aud` values (any one must be present).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Verification keys: a JWKS object `{"keys": [...]}`, PEM text, or a list of JWKs / PEM strings.
    #[serde(default)]
    pub keys: Option<KeysConfig>,
    /// A plain-text HS256 secret (alternative to an `oct` JWK).
    #[serde(default)]
    pub secret: Option<String>,
    /// Allowed clock difference for `exp`/`nbf` (default `60s`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub clock_skew: Option<Duration>,
    /// Header carrying the token. `authorization` (the default) expects
    /// `Bearer <token>`; any other header holds the bare token.
    #[serde(default)]
    pub header: Option<String>,
    /// Claim → request header to copy verified claims into.
    #[serde(default)]
    pub claims_to_headers: HashMap<String, String>,
    /// Claim naming the principal (default `sub`).
    #[serde(default)]
    pub principal_claim: Option<String>,
    /// Keep the token header when forwarding upstream (default true).
    #[serde(default)]
    pub forward: Option<bool>,
}

fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    weir_sdk::duration::deserialize(d).map(Some)
}

/// Keys in any of the accepted shapes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum KeysConfig {
    /// PEM text (one or more blocks).
    Pem(String),
    /// An inline JWKS document.
    Jwks {
        /// The keys.
        keys: Vec<Jwk>,
    },
    /// A list of JWKs and/or PEM strings.
    List(Vec<KeyEntry>),
}

/// One entry of a key list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum KeyEntry {
    /// PEM text.
    Pem(String),
    /// A JWK.
    Jwk(Jwk),
}

/// `api_keys:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// Header carrying the key (default `x-api-key`).
    #[serde(default)]
    pub header: Option<String>,
    /// Key → principal.
    pub keys: HashMap<String, String>,
}

/// Prepared JWT settings.
#[derive(Debug)]
pub struct JwtPrepared {
    /// Verification keys.
    pub keys: Vec<Key>,
    /// iss/aud/skew.
    pub validation: Validation,
    /// Lower-case header name.
    pub header: String,
    /// Whether the header holds `Bearer <token>`.
    pub bearer: bool,
    /// (claim, lower-case header) pairs.
    pub claims_to_headers: Vec<(String, String)>,
    /// Principal claim.
    pub principal_claim: String,
    /// Keep the token header.
    pub forward: bool,
}

/// Prepared API-key settings.
#[derive(Debug)]
pub struct ApiKeysPrepared {
    /// Lower-case header name.
    pub header: String,
    /// Key → principal (hashbrown's foldhash: the lookup runs on every request; SipHash's
    /// flooding resistance is not needed for keys that come from the configuration).
    pub keys: hashbrown::HashMap<String, String>,
}

/// The whole prepared configuration.
#[derive(Debug, Default)]
pub struct Prepared {
    /// JWT, when configured.
    pub jwt: Option<JwtPrepared>,
    /// API keys, when configured.
    pub api_keys: Option<ApiKeysPrepared>,
    /// Normalized rules.
    pub rules: Vec<crate::rules::Rule>,
    /// See [`Config::allow_anonymous`].
    pub allow_anonymous: bool,
    /// Lower-case principal header.
    pub principal_header: Option<String>,
    /// `www-authenticate` challenge for a missing credential.
    pub challenge: String,
}

fn header_name(path: &str, name: &str) -> Result<String, ConfigError> {
    let n = name.trim().to_ascii_lowercase();
    if n.is_empty()
        || !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(ConfigError::field(
            path,
            format!("invalid header name {name:?}"),
        ));
    }
    Ok(n)
}

fn prepare_keys(k: KeysConfig) -> Result<Vec<Key>, ConfigError> {
    let at = |i: usize| format!("jwt.keys[{i}]");
    match k {
        KeysConfig::Pem(pem) => {
            jwt::keys_from_pem(&pem).map_err(|e| ConfigError::field("jwt.keys", e))
        }
        KeysConfig::Jwks { keys } => keys
            .iter()
            .enumerate()
            .map(|(i, j)| {
                jwt::key_from_jwk(j)
                    .map_err(|e| ConfigError::field(format!("jwt.keys.keys[{i}]"), e))
            })
            .collect(),
        KeysConfig::List(list) => {
            let mut out = Vec::new();
            for (i, e) in list.iter().enumerate() {
                match e {
                    KeyEntry::Pem(p) => {
                        out.extend(jwt::keys_from_pem(p).map_err(|e| ConfigError::field(at(i), e))?)
                    }
                    KeyEntry::Jwk(j) => {
                        out.push(jwt::key_from_jwk(j).map_err(|e| ConfigError::field(at(i), e))?)
                    }
                }
            }
            Ok(out)
        }
    }
}

fn prepare_jwt(j: JwtConfig) -> Result<JwtPrepared, ConfigError> {
    let mut keys = match j.keys {
        Some(k) => prepare_keys(k)?,
        None => Vec::new(),
    };
    if let Some(secret) = j.secret {
        if secret.is_empty() {
            return Err(ConfigError::field("jwt.secret", "must not be empty"));
        }
        keys.push(Key {
            kid: None,
            material: jwt::KeyMaterial::Hmac(secret.into_bytes()),
        });
    }
    if keys.is_empty() {
        return Err(ConfigError::field(
            "jwt.keys",
            "at least one key is required (jwt.keys or jwt.secret)",
        ));
    }
    let header = match j.header {
        Some(h) => header_name("jwt.header", &h)?,
        None => "authorization".to_string(),
    };
    let mut claims_to_headers = Vec::new();
    let mut pairs: Vec<_> = j.claims_to_headers.into_iter().collect();
    pairs.sort();
    for (claim, h) in pairs {
        let h = header_name(&format!("jwt.claims_to_headers.{claim}"), &h)?;
        claims_to_headers.push((claim, h));
    }
    Ok(JwtPrepared {
        keys,
        validation: Validation {
            issuer: j.issuer,
            audiences: j.audiences,
            clock_skew_secs: j.clock_skew.unwrap_or(Duration::from_secs(60)).as_secs(),
        },
        bearer: header == "authorization",
        header,
        claims_to_headers,
        principal_claim: j.principal_claim.unwrap_or_else(|| "sub".to_string()),
        forward: j.forward.unwrap_or(true),
    })
}

/// Validates and prepares a configuration.
pub fn prepare(c: Config) -> Result<Prepared, ConfigError> {
    let jwt = c.jwt.map(prepare_jwt).transpose()?;
    let api_keys = match c.api_keys {
        Some(a) => {
            if a.keys.keys().any(|k| k.is_empty()) {
                return Err(ConfigError::field("api_keys.keys", "empty key"));
            }
            Some(ApiKeysPrepared {
                header: match a.header {
                    Some(h) => header_name("api_keys.header", &h)?,
                    None => "x-api-key".to_string(),
                },
                keys: a.keys.into_iter().collect(),
            })
        }
        None => None,
    };
    for (i, r) in c.rules.iter().enumerate() {
        for (j, p) in r.paths.iter().enumerate() {
            if !p.starts_with('/') {
                return Err(ConfigError::field(
                    format!("rules[{i}].paths[{j}]"),
                    "a path prefix must start with '/'",
                ));
            }
        }
    }
    let principal_header = c
        .principal_header
        .map(|h| header_name("principal_header", &h))
        .transpose()?;
    let realm = c.realm.unwrap_or_else(|| "weir".to_string());
    if realm.contains(['"', '\\', '\r', '\n']) {
        return Err(ConfigError::field(
            "realm",
            "must not contain quotes, backslashes or newlines",
        ));
    }
    let challenge = match (&jwt, &api_keys) {
        (None, Some(a)) => format!("ApiKey realm=\"{realm}\", header=\"{}\"", a.header),
        _ => format!("Bearer realm=\"{realm}\""),
    };
    Ok(Prepared {
        jwt,
        api_keys,
        rules: c.rules.into_iter().map(Rule::normalize).collect(),
        allow_anonymous: c.allow_anonymous,
        principal_header,
        challenge,
    })
}

/// Parses and prepares the plugin configuration.
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
    fn accepts_every_key_shape() {
        let pem = include_str!("../testdata/rsa-public.pem");
        let p = load_str(&serde_json::json!({"jwt": {"keys": pem}}).to_string()).unwrap();
        assert_eq!(p.jwt.unwrap().keys.len(), 1);
        let p = load_str(
            &serde_json::json!({"jwt": {"keys": {"keys": [{"kty":"oct","k":"c2VjcmV0","kid":"a"}]},
                "claims_to_headers": {"sub": "X-User"}, "header": "x-token", "clock_skew": "5s"}})
            .to_string(),
        )
        .unwrap();
        let j = p.jwt.unwrap();
        assert_eq!(
            j.claims_to_headers,
            vec![("sub".to_string(), "x-user".to_string())]
        );
        assert!(!j.bearer);
        assert_eq!(j.validation.clock_skew_secs, 5);
        let p = load_str(
            &serde_json::json!({"jwt": {"keys": [pem, {"kty":"oct","k":"c2VjcmV0"}]}}).to_string(),
        )
        .unwrap();
        assert_eq!(p.jwt.unwrap().keys.len(), 2);
        let p = load_str(r#"{"api_keys":{"keys":{"k1":"alice"}}}"#).unwrap();
        assert_eq!(p.api_keys.unwrap().header, "x-api-key");
        assert!(p.challenge.starts_with("ApiKey"));
    }

    #[test]
    fn rejects_with_field() {
        let e = load_str(r#"{"jwt":{}}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("jwt.keys: at least one key"),
            "{e}"
        );
        let e = load_str(r#"{"jwt":{"keys":{"keys":[{"kty":"RSA","n":"AQAB"}]}}}"#).unwrap_err();
        assert_eq!(e.to_string(), "jwt.keys.keys[0]: missing `e`");
        let e = load_str(r#"{"jwt":{"keys":"not pem"}}"#).unwrap_err();
        assert_eq!(e.to_string(), "jwt.keys: no PEM block found");
        let e = load_str(r#"{"rules":[{"action":"maybe"}]}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("rules[0].action: unknown variant"),
            "{e}"
        );
        let e = load_str(r#"{"rules":[{"action":"deny","paths":["admin"]}]}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "rules[0].paths[0]: a path prefix must start with '/'"
        );
        let e = load_str(r#"{"jwtt":{}}"#).unwrap_err();
        assert!(e.to_string().starts_with("jwtt: unknown field"), "{e}");
    }
}
