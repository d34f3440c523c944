//! JWT verification inside the filter: HS256, RS256 and ES256 with pure-Rust
//! crypto (RustCrypto), keys from an inline JWKS or PEM, `iss`/`aud`/`exp`/`nbf`
//! checks with clock skew.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Verifier as _;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

/// base64url, padding optional (JWTs omit it; some JWKS include it).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes base64url with or without padding.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    B64URL.decode(s.trim()).ok()
}

/// Encodes base64url without padding.
pub fn b64url_encode(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

/// Signature algorithms accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// HMAC with SHA-256.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
}

impl Alg {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "HS256" => Some(Self::Hs256),
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }
}

/// Key material for one algorithm family.
#[derive(Clone)]
pub enum KeyMaterial {
    /// HS256 secret.
    Hmac(Vec<u8>),
    /// RS256 public key.
    Rsa(rsa::pkcs1v15::VerifyingKey<Sha256>),
    /// ES256 public key.
    Ec(p256::ecdsa::VerifyingKey),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Hmac(_) => "Hmac(..)",
            Self::Rsa(_) => "Rsa(..)",
            Self::Ec(_) => "Ec(..)",
        })
    }
}

/// A verification key with its optional `kid`.
#[derive(Debug, Clone)]
pub struct Key {
    /// JWKS key id; tokens naming a `kid` are checked against keys with that id.
    pub kid: Option<String>,
    /// The key.
    pub material: KeyMaterial,
}

impl Key {
    fn alg(&self) -> Alg {
        match self.material {
            KeyMaterial::Hmac(_) => Alg::Hs256,
            KeyMaterial::Rsa(_) => Alg::Rs256,
            KeyMaterial::Ec(_) => Alg::Es256,
        }
    }

    fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::Hmac(secret) => {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
                    return false;
                };
                mac.update(message);
                mac.verify_slice(sig).is_ok()
            }
            KeyMaterial::Rsa(vk) => rsa::pkcs1v15::Signature::try_from(sig)
                .map(|s| vk.verify(message, &s).is_ok())
                .unwrap_or(false),
            KeyMaterial::Ec(vk) => p256::ecdsa::Signature::from_slice(sig)
                .map(|s| vk.verify(message, &s).is_ok())
                .unwrap_or(false),
        }
    }
}

/// One JSON Web Key (RFC 7517); unknown members are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    /// `RSA`, `EC` or `oct`.
    pub kty: String,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// Declared algorithm (checked when present).
    #[serde(default)]
    pub alg: Option<String>,
    /// RSA modulus.
    #[serde(default)]
    pub n: Option<String>,
    /// RSA exponent.
    #[serde(default)]
    pub e: Option<String>,
    /// EC curve (`P-256`).
    #[serde(default)]
    pub crv: Option<String>,
    /// EC x coordinate.
    #[serde(default)]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(default)]
    pub y: Option<String>,
    /// Symmetric key (base64url).
    #[serde(default)]
    pub k: Option<String>,
}

fn member(v: &Option<String>, name: &str) -> Result<Vec<u8>, String> {
    let s = v.as_deref().ok_or_else(|| format!("missing `{name}`"))?;
    b64url_decode(s).ok_or_else(|| format!("`{name}` is not base64url"))
}

/// Builds a verification key from a JWK.
pub fn key_from_jwk(jwk: &Jwk) -> Result<Key, String> {
    let material = match jwk.kty.as_str() {
        "oct" => KeyMaterial::Hmac(member(&jwk.k, "k")?),
        "RSA" => {
            let n = rsa::BigUint::from_bytes_be(&member(&jwk.n, "n")?);
            let e = rsa::BigUint::from_bytes_be(&member(&jwk.e, "e")?);
            let pk = rsa::RsaPublicKey::new(n, e).map_err(|e| format!("bad RSA key: {e}"))?;
            KeyMaterial::Rsa(rsa::pkcs1v15::VerifyingKey::new(pk))
        }
        "EC" => {
            if jwk.crv.as_deref() != Some("P-256") {
                return Err(format!(
                    "unsupported curve {:?} (only P-256)",
                    jwk.crv.as_deref().unwrap_or("")
                ));
            }
            let x = member(&jwk.x, "x")?;
            let y = member(&jwk.y, "y")?;
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates must be 32 bytes".into());
            }
            // SEC1 uncompressed point: 0x04 || x || y.
            let mut sec1 = Vec::with_capacity(65);
            sec1.push(4u8);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .map_err(|_| "EC point is not on P-256".to_string())?;
            KeyMaterial::Ec(vk)
        }
        other => return Err(format!("unsupported kty {other:?}")),
    };
    let key = Key {
        kid: jwk.kid.clone(),
        material,
    };
    if let Some(alg) = &jwk.alg {
        if Alg::parse(alg) != Some(key.alg()) {
            return Err(format!("alg {alg:?} does not fit kty {:?}", jwk.kty));
        }
    }
    Ok(key)
}

/// Builds verification keys from PEM text (one or more `PUBLIC KEY` /
/// `RSA PUBLIC KEY` blocks; RSA or P-256).
pub fn keys_from_pem(pem: &str) -> Result<Vec<Key>, String> {
    let mut keys = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block_start = &rest[start..];
        let label_end = block_start[11..]
            .find("-----")
            .ok_or("malformed PEM header")?;
        let label = &block_start[11..11 + label_end];
        let end_marker = format!("-----END {label}-----");
        let end = block_start
            .find(&end_marker)
            .ok_or_else(|| format!("PEM block {label:?} has no END line"))?;
        let block = &block_start[..end + end_marker.len()];
        let material = match label {
            "RSA PUBLIC KEY" => rsa::RsaPublicKey::from_pkcs1_pem(block)
                .map(|k| KeyMaterial::Rsa(rsa::pkcs1v15::VerifyingKey::new(k)))
                .map_err(|e| format!("bad RSA PUBLIC KEY: {e}"))?,
            "PUBLIC KEY" => {
                if let Ok(k) = rsa::RsaPublicKey::from_public_key_pem(block) {
                    KeyMaterial::Rsa(rsa::pkcs1v15::VerifyingKey::new(k))
                } else {
                    let pk = p256::PublicKey::from_public_key_pem(block)
                        .map_err(|_| "PUBLIC KEY is neither RSA nor EC P-256".to_string())?;
                    KeyMaterial::Ec(p256::ecdsa::VerifyingKey::from(pk))
                }
            }
            other => {
                return Err(format!(
                    "unsupported PEM block {other:?} (expected PUBLIC KEY or RSA PUBLIC KEY)"
                ))
            }
        };
        keys.push(Key {
            kid: None,
            material,
        });
        rest = &block_start[end + end_marker.len()..];
    }
    if keys.is_empty() {
        return Err("no PEM block found".into());
    }
    Ok(keys)
}

/// The checks besides the signature.
#[derive(Debug, Clone, Default)]
pub struct Validation {
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Accepted audiences; the token's `aud` must contain one (when non-empty).
    pub audiences: Vec<String>,
    /// Allowed clock difference for `exp` / `nbf`, in seconds.
    pub clock_skew_secs: u64,
}

/// Why a token was refused (the text goes into `www-authenticate`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url JSON parts.
    #[error("malformed token")]
    Malformed,
    /// Unsupported or missing `alg` (including `none`).
    #[error("unsupported alg")]
    Alg,
    /// No key verified the signature.
    #[error("invalid signature")]
    Signature,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// Wrong or missing `iss`.
    #[error("wrong issuer")]
    Issuer,
    /// No accepted audience.
    #[error("wrong audience")]
    Audience,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

fn numeric(claims: &Value, name: &str) -> Result<Option<f64>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or(JwtError::Malformed),
    }
}

/// Verifies `token` against `keys` and `validation` at `now_secs` (Unix time);
/// returns the claims.
pub fn verify(
    token: &str,
    keys: &[Key],
    validation: &Validation,
    now_secs: u64,
) -> Result<serde_json::Map<String, Value>, JwtError> {
    let mut parts = token.trim().split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Header = b64url_decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    let alg = Alg::parse(&header.alg).ok_or(JwtError::Alg)?;
    let sig = b64url_decode(s).ok_or(JwtError::Malformed)?;
    let message = &token.trim().as_bytes()[..h.len() + 1 + c.len()];

    let by_kid = header
        .kid
        .as_deref()
        .filter(|kid| keys.iter().any(|k| k.kid.as_deref() == Some(*kid)));
    let verified = keys
        .iter()
        .filter(|k| k.alg() == alg)
        .filter(|k| by_kid.is_none() || k.kid.as_deref() == by_kid)
        .any(|k| k.verify(message, &sig));
    if !verified {
        return Err(JwtError::Signature);
    }

    let claims: Value = b64url_decode(c)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    let Value::Object(claims) = claims else {
        return Err(JwtError::Malformed);
    };
    let claims_v = Value::Object(claims);
    let now = now_secs as f64;
    let skew = validation.clock_skew_secs as f64;
    if let Some(exp) = numeric(&claims_v, "exp")? {
        if now >= exp + skew {
            return Err(JwtError::Expired);
        }
    }
    if let Some(nbf) = numeric(&claims_v, "nbf")? {
        if now + skew < nbf {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(iss) = &validation.issuer {
        if claims_v.get("iss").and_then(Value::as_str) != Some(iss.as_str()) {
            return Err(JwtError::Issuer);
        }
    }
    if !validation.audiences.is_empty() {
        let ok = match claims_v.get("aud") {
            Some(Value::String(a)) => validation.audiences.iter().any(|x| x == a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| validation.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !ok {
            return Err(JwtError::Audience);
        }
    }
    let Value::Object(claims) = claims_v else {
        return Err(JwtError::Malformed);
    };
    Ok(claims)
}

/// A claim rendered for a header: strings raw, other values as compact JSON.
pub fn claim_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn sign_hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url_encode(header.to_string().as_bytes()),
            b64url_encode(claims.to_string().as_bytes())
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", b64url_encode(&mac.finalize().into_bytes()))
    }

    fn sign_rs256(header: &Value, claims: &Value) -> String {
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::signature::{SignatureEncoding, Signer};
        let pk = rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("../testdata/rsa-private.pem"))
            .unwrap();
        let sk = rsa::pkcs1v15::SigningKey::<Sha256>::new(pk);
        let input = format!(
            "{}.{}",
            b64url_encode(header.to_string().as_bytes()),
            b64url_encode(claims.to_string().as_bytes())
        );
        let sig = sk.sign(input.as_bytes()).to_vec();
        format!("{input}.{}", b64url_encode(&sig))
    }

    fn es_key() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    fn sign_es256(header: &Value, claims: &Value) -> String {
        use p256::ecdsa::signature::Signer;
        let input = format!(
            "{}.{}",
            b64url_encode(header.to_string().as_bytes()),
            b64url_encode(claims.to_string().as_bytes())
        );
        let sig: p256::ecdsa::Signature = es_key().sign(input.as_bytes());
        format!("{input}.{}", b64url_encode(&sig.to_bytes()))
    }

    fn es_jwk() -> Jwk {
        let point = es_key().verifying_key().to_encoded_point(false);
        serde_json::from_value(json!({
            "kty": "EC", "crv": "P-256", "kid": "ec1",
            "x": b64url_encode(point.x().unwrap()),
            "y": b64url_encode(point.y().unwrap()),
        }))
        .unwrap()
    }

    const NOW: u64 = 1_700_000_000;

    fn v() -> Validation {
        Validation {
            issuer: Some("https://issuer.test".into()),
            audiences: vec!["api".into()],
            clock_skew_secs: 30,
        }
    }

    fn claims() -> Value {
        json!({"iss": "https://issuer.test", "aud": ["other", "api"], "sub": "alice",
               "exp": NOW + 60, "nbf": NOW - 10})
    }

    #[test]
    fn hs256_roundtrip_and_checks() {
        let keys = vec![key_from_jwk(
            &serde_json::from_value(json!({"kty":"oct","k": b64url_encode(b"secret")})).unwrap(),
        )
        .unwrap()];
        let t = sign_hs256(b"secret", &json!({"alg":"HS256","typ":"JWT"}), &claims());
        assert_eq!(verify(&t, &keys, &v(), NOW).unwrap()["sub"], "alice");
        // Wrong secret.
        let bad = sign_hs256(b"nope", &json!({"alg":"HS256"}), &claims());
        assert_eq!(verify(&bad, &keys, &v(), NOW), Err(JwtError::Signature));
        // Expiry with skew: still valid 29 s after exp, not at 30 s.
        assert!(verify(&t, &keys, &v(), NOW + 60 + 29).is_ok());
        assert_eq!(
            verify(&t, &keys, &v(), NOW + 60 + 30),
            Err(JwtError::Expired)
        );
        // nbf with skew.
        assert!(verify(&t, &keys, &v(), NOW - 10 - 30).is_ok());
        assert_eq!(
            verify(&t, &keys, &v(), NOW - 10 - 31),
            Err(JwtError::NotYetValid)
        );
        // Issuer and audience.
        let mut c = claims();
        c["iss"] = json!("evil");
        let t2 = sign_hs256(b"secret", &json!({"alg":"HS256"}), &c);
        assert_eq!(verify(&t2, &keys, &v(), NOW), Err(JwtError::Issuer));
        let mut c = claims();
        c["aud"] = json!("web");
        let t3 = sign_hs256(b"secret", &json!({"alg":"HS256"}), &c);
        assert_eq!(verify(&t3, &keys, &v(), NOW), Err(JwtError::Audience));
        // alg none and garbage.
        let none = format!(
            "{}.{}.",
            b64url_encode(br#"{"alg":"none"}"#),
            b64url_encode(claims().to_string().as_bytes())
        );
        assert_eq!(verify(&none, &keys, &v(), NOW), Err(JwtError::Alg));
        for g in ["", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.e30"] {
            assert!(verify(g, &keys, &v(), NOW).is_err(), "{g}");
        }
    }

    #[test]
    fn rs256_pem_and_jwk() {
        let keys = keys_from_pem(include_str!("../testdata/rsa-public.pem")).unwrap();
        let t = sign_rs256(&json!({"alg":"RS256"}), &claims());
        assert!(verify(&t, &keys, &v(), NOW).is_ok());
        // Tampered claims fail.
        let mut parts: Vec<&str> = t.split('.').collect();
        let mut c = claims();
        c["sub"] = json!("mallory");
        let forged = b64url_encode(c.to_string().as_bytes());
        parts[1] = &forged;
        assert_eq!(
            verify(&parts.join("."), &keys, &v(), NOW),
            Err(JwtError::Signature)
        );
        // An HS256 token signed with the public key text must not pass (alg confusion).
        let conf = sign_hs256(
            include_str!("../testdata/rsa-public.pem").as_bytes(),
            &json!({"alg":"HS256"}),
            &claims(),
        );
        assert_eq!(verify(&conf, &keys, &v(), NOW), Err(JwtError::Signature));
    }

    #[test]
    fn es256_jwk_with_kid() {
        let keys = vec![key_from_jwk(&es_jwk()).unwrap()];
        let t = sign_es256(&json!({"alg":"ES256","kid":"ec1"}), &claims());
        assert!(verify(&t, &keys, &v(), NOW).is_ok());
        let t = sign_es256(&json!({"alg":"ES256"}), &claims());
        assert!(verify(&t, &keys, &v(), NOW).is_ok());
        let t = sign_es256(&json!({"alg":"RS256"}), &claims());
        assert_eq!(verify(&t, &keys, &v(), NOW), Err(JwtError::Signature));
    }

    #[test]
    fn bad_keys_are_reported() {
        assert!(keys_from_pem("nothing").is_err());
        assert!(
            keys_from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----").is_err()
        );
        let j: Jwk =
            serde_json::from_value(json!({"kty":"EC","crv":"P-384","x":"AA","y":"AA"})).unwrap();
        assert!(key_from_jwk(&j).unwrap_err().contains("P-384"));
        let j: Jwk = serde_json::from_value(json!({"kty":"RSA","n":"AQAB"})).unwrap();
        assert!(key_from_jwk(&j).unwrap_err().contains("missing `e`"));
    }
}
