//! weir built-in filter `auth`: authentication (JWT, API keys, mTLS peer identity)
//! and authorization rules, verified inside the wasm filter. A proxy-wasm module
//! (compiled to wasm by `scripts/build-filters.sh`).
//!
//! Example config:
//!
//! ```json
//! {
//!   "jwt": {"issuer": "https://issuer.example", "audiences": ["orders"],
//!           "keys": {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": "...", "y": "..."}]},
//!           "clock_skew": "60s", "claims_to_headers": {"sub": "x-user"}},
//!   "api_keys": {"header": "x-api-key", "keys": {"s3cr3t": "batch-job"}},
//!   "rules": [{"action": "deny", "methods": ["DELETE"]},
//!             {"action": "allow", "principals": ["*"]}],
//!   "principal_header": "x-weir-principal"
//! }
//! ```
//!
//! Order: (1) headers this filter sets are stripped from the incoming request;
//! (2) a JWT, if the token header is present, must verify (else 401); (3) else an
//! API key, if its header is present, must be known (else 401); (4) else the mTLS
//! peer certificate's URI SAN (`connection.uri_san_peer_certificate`) is the
//! principal; (5) no principal and `allow_anonymous: false` → 401 with
//! `www-authenticate`; (6) rules: deny wins → 403; with allow rules, one must match.

#![forbid(unsafe_code)]

pub mod config;
pub mod jwt;
pub mod rules;

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use weir_sdk::{headers, properties, respond};

use crate::config::Prepared;
use crate::rules::Verdict;

// The stream callbacks this filter implements: weir calls no others (weir-sdk `callbacks!`).
#[cfg(not(feature = "bundled"))]
weir_sdk::callbacks!(request_headers);

// Built alone, this crate is a module of its own; with feature `bundled` it is a library for
// the `policies` bundle (filters/policies), which has the entry point and the section.
#[cfg(not(feature = "bundled"))]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(root_context);
}}

/// A new root context of this filter (the module's entry point, and the `policies` bundle's).
pub fn root_context(_root_id: u32) -> Box<dyn RootContext> {
    Box::new(AuthRoot {
        prepared: Rc::new(Prepared::default()),
    })
}

/// Root context: holds the prepared configuration (keys parsed once).
struct AuthRoot {
    prepared: Rc<Prepared>,
}

impl Context for AuthRoot {}

impl RootContext for AuthRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        match config::load(self.get_plugin_configuration()) {
            Ok(p) => {
                self.prepared = Rc::new(p);
                true
            }
            Err(e) => {
                log::error!("auth: invalid config: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Auth {
            prepared: Rc::clone(&self.prepared),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Per-request context.
struct Auth {
    prepared: Rc<Prepared>,
}

impl Auth {
    fn unauthorized(&self, challenge: &str, message: &str) -> Action {
        let _ = respond::send_error(
            401,
            "unauthorized",
            message,
            &[("www-authenticate", challenge)],
        );
        Action::Pause
    }

    fn invalid_token(&self, message: &str) -> Action {
        let realm_challenge = &self.prepared.challenge;
        let challenge =
            format!("{realm_challenge}, error=\"invalid_token\", error_description=\"{message}\"");
        self.unauthorized(&challenge, message)
    }

    /// Authenticates the request: `Ok(principal)` or the action already taken.
    fn authenticate(&self) -> Result<Option<String>, Action> {
        let p = &self.prepared;
        if let Some(j) = &p.jwt {
            if let Some(raw) = headers::get_header(&j.header) {
                let token = if j.bearer {
                    match raw.trim().split_once(' ') {
                        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => {
                            t.trim().to_string()
                        }
                        _ => return Err(self.invalid_token("expected a Bearer token")),
                    }
                } else {
                    raw.trim().to_string()
                };
                let now = proxy_wasm::hostcalls::get_current_time()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                let claims = jwt::verify(&token, &j.keys, &j.validation, now)
                    .map_err(|e| self.invalid_token(&e.to_string()))?;
                for (claim, header) in &j.claims_to_headers {
                    if let Some(v) = claims.get(claim) {
                        let text = jwt::claim_text(v);
                        if !text.contains(['\r', '\n', '\0']) {
                            headers::set_header(header, Some(&text));
                        }
                    }
                }
                if !j.forward {
                    headers::set_header(&j.header, None);
                }
                let principal = claims.get(&j.principal_claim).map(jwt::claim_text);
                return Ok(principal);
            }
        }
        if let Some(a) = &p.api_keys {
            if let Some(key) = headers::get_header(&a.header) {
                return match a.keys.get(key.trim()) {
                    Some(principal) => Ok(Some(principal.clone())),
                    None => Err(self.unauthorized(&p.challenge, "unknown API key")),
                };
            }
        }
        Ok(properties::peer_uri_san())
    }
}

impl Context for Auth {}

impl HttpContext for Auth {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let p = Rc::clone(&self.prepared);
        // Never trust identity headers coming from the client.
        if let Some(h) = &p.principal_header {
            headers::set_header(h, None);
        }
        if let Some(j) = &p.jwt {
            for (_, h) in &j.claims_to_headers {
                headers::set_header(h, None);
            }
        }
        let principal = match self.authenticate() {
            Ok(principal) => principal,
            Err(action) => return action,
        };
        if principal.is_none() && !p.allow_anonymous {
            return self.unauthorized(&p.challenge, "missing credential");
        }
        if !p.rules.is_empty() {
            let method = headers::get_header(":method").unwrap_or_default();
            let path = headers::get_header(":path").unwrap_or_default();
            if rules::evaluate(&p.rules, principal.as_deref(), &method, &path) == Verdict::Deny {
                let _ = respond::send_error(403, "forbidden", "denied by policy", &[]);
                return Action::Pause;
            }
        }
        if let (Some(h), Some(pr)) = (&p.principal_header, &principal) {
            if !pr.contains(['\r', '\n', '\0']) {
                headers::set_header(h, Some(pr));
            }
        }
        Action::Continue
    }
}
