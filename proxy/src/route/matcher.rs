//! Compiled route matchers.
//!
//! A [`Matcher`] is built once from a [`config::RouteMatch`] when a snapshot is built (regexes
//! compiled, header names parsed, hosts lower-cased) and then answers [`Matcher::matches`] for
//! every request without allocating in the common case (a query value is only copied when it
//! contains `%` escapes or `+` and a matcher needs to look at it).
//!
//! Semantics (Envoy's, where the YAML is silent):
//! - all conditions given in one `match:` must hold (AND); an empty `match: {}` matches everything;
//! - `path` is an exact, case-sensitive comparison of the path without its query; `path_prefix`
//!   is a plain string prefix (`/orders` also matches `/orders-old`, as in Envoy); `path_regex`
//!   must match the WHOLE path (Envoy's `safe_regex`);
//! - `method`: one method or a list (any of); names are upper-cased when compiled;
//! - `headers`: a plain string is an exact, case-sensitive value match; `{exact, prefix, regex}`
//!   may be combined (all must hold for one value; a header with several values — repeated
//!   lines — matches when ANY value matches); `present: true` needs the header with any value,
//!   `present: false` needs it absent;
//! - `query`: the same rules on the query parameters, whose names and values are
//!   percent-decoded (and `+` is read as a space, as in `application/x-www-form-urlencoded`);
//!   a parameter without `=` has the empty value;
//! - `hosts`: compared case-insensitively with the `:authority`/`Host` without its port and
//!   without a trailing dot: `a.example.com` (exact), `*.example.com` (any subdomain at any
//!   depth, not the apex `example.com`) or `*` (any host, including none).

use crate::config;
use http::header::HeaderName;
use http::{HeaderMap, Method};
use regex::bytes::Regex;
use std::borrow::Cow;

// === RequestView ===

/// The parts of a request a [`Matcher`] looks at, borrowed from the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// The path without the query.
    pub path: &'a str,
    /// The raw (still percent-encoded) query, without the `?`.
    pub query: Option<&'a str>,
    /// `:authority` or `Host`; may contain a `:port`.
    pub host: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

impl<'a> RequestView<'a> {
    /// A view of request head `parts`: the host comes from the URI authority (HTTP/2
    /// `:authority`, absolute-form HTTP/1) or else from the `Host` header.
    pub fn from_parts(parts: &'a http::request::Parts) -> Self {
        let host = parts.uri.authority().map(|a| a.as_str()).or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        RequestView {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query(),
            host,
            headers: &parts.headers,
        }
    }
}

// === Matcher ===

/// A compiled `match:` block.
#[derive(Debug, Clone)]
pub struct Matcher {
    path: Option<String>,
    path_prefix: Option<String>,
    path_regex: Option<Regex>,
    /// A literal every path matching `path_regex` starts with: checked first, so most
    /// non-matching paths never run the regex.
    path_regex_literal: Option<Box<str>>,
    methods: Option<Box<[Method]>>,
    headers: Box<[(HeaderName, ValueMatcher)]>,
    query: Box<[(String, ValueMatcher)]>,
    hosts: Option<Box<[HostPattern]>>,
}

impl Matcher {
    /// Compiles `m`; an error names the bad regex, header name, method or rule.
    pub fn new(m: &config::RouteMatch) -> Result<Matcher, String> {
        let path_regex = m
            .path_regex
            .as_deref()
            .map(|r| compile_whole(r).map_err(|e| format!("path_regex: {e}")))
            .transpose()?;
        let methods = match &m.method {
            None => None,
            Some(one_or_many) => {
                let names = one_or_many.to_vec();
                if names.is_empty() {
                    return Err("method: empty list".to_string());
                }
                let mut out = Vec::with_capacity(names.len());
                for n in names {
                    let upper = n.trim().to_ascii_uppercase();
                    let method = Method::from_bytes(upper.as_bytes())
                        .map_err(|_| format!("method: invalid method {n:?}"))?;
                    out.push(method);
                }
                Some(out.into_boxed_slice())
            }
        };
        let mut headers = Vec::with_capacity(m.headers.len());
        for (name, vm) in &m.headers {
            let hn = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: invalid header name {name:?}"))?;
            let matcher = ValueMatcher::new(vm).map_err(|e| format!("headers.{name}: {e}"))?;
            headers.push((hn, matcher));
        }
        let mut query = Vec::with_capacity(m.query.len());
        for (name, vm) in &m.query {
            let matcher = ValueMatcher::new(vm).map_err(|e| format!("query.{name}: {e}"))?;
            query.push((name.clone(), matcher));
        }
        let hosts = if m.hosts.is_empty() {
            None
        } else {
            let mut out = Vec::with_capacity(m.hosts.len());
            for h in &m.hosts {
                out.push(HostPattern::new(h)?);
            }
            if out.iter().any(|p| matches!(p, HostPattern::Any)) {
                None
            } else {
                Some(out.into_boxed_slice())
            }
        };
        Ok(Matcher {
            path: m.path.clone(),
            path_prefix: m.path_prefix.clone(),
            path_regex_literal: m
                .path_regex
                .as_deref()
                .and_then(literal_prefix)
                .map(Into::into),
            path_regex,
            methods,
            headers: headers.into_boxed_slice(),
            query: query.into_boxed_slice(),
            hosts,
        })
    }

    /// True when every condition of the `match:` holds for `req`.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        // Cheapest checks first.
        if let Some(p) = &self.path {
            if req.path != p {
                return false;
            }
        }
        if let Some(p) = &self.path_prefix {
            if !req.path.starts_with(p.as_str()) {
                return false;
            }
        }
        if let Some(ms) = &self.methods {
            if !ms.iter().any(|m| m == req.method) {
                return false;
            }
        }
        if let Some(hosts) = &self.hosts {
            let Some(host) = req.host.map(normalize_host) else {
                return false;
            };
            if !hosts.iter().any(|p| p.matches(host)) {
                return false;
            }
        }
        if let Some(lit) = &self.path_regex_literal {
            if !req.path.starts_with(&**lit) {
                return false;
            }
        }
        if let Some(re) = &self.path_regex {
            if !re.is_match(req.path.as_bytes()) {
                return false;
            }
        }
        for (name, vm) in self.headers.iter() {
            let mut values = req
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.as_bytes())
                .peekable();
            if !vm.matches_values(&mut values) {
                return false;
            }
        }
        for (name, vm) in self.query.iter() {
            let mut values = QueryValues::new(req.query.unwrap_or(""), name).peekable();
            if !vm.matches_values(&mut values) {
                return false;
            }
        }
        true
    }
}

/// Index of the first matcher in `matchers` that matches `req` (first match wins).
pub fn first_match(matchers: &[Matcher], req: &RequestView<'_>) -> Option<usize> {
    matchers.iter().position(|m| m.matches(req))
}

/// The first item of `routes` whose matcher matches `req` (first match wins).
pub fn first_match_by<'r, T, F>(routes: &'r [T], matcher: F, req: &RequestView<'_>) -> Option<&'r T>
where
    F: Fn(&T) -> &Matcher,
{
    routes.iter().find(|r| matcher(r).matches(req))
}

/// Compiles `pattern` so that it must match the whole input.
fn compile_whole(pattern: &str) -> Result<Regex, String> {
    regex::bytes::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid regex {pattern:?}: {e}"))
}

/// The literal text every match of the whole-input regex `pattern` must start with, when it
/// is easy to see: the run of plain characters at its start (after an optional `^`), minus the
/// last one if a `?`, `*` or `{` quantifier follows it. Patterns with `|` anywhere yield none
/// (an alternation may be top-level), as do patterns starting with a group, class or escape.
fn literal_prefix(pattern: &str) -> Option<String> {
    if pattern.contains('|') {
        return None;
    }
    let body = pattern.strip_prefix('^').unwrap_or(pattern);
    const META: &[char] = &[
        '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
    ];
    let end = body.find(META).unwrap_or(body.len());
    let mut lit = body[..end].to_string();
    if matches!(body[end..].chars().next(), Some('?' | '*' | '{')) {
        lit.pop();
    }
    (!lit.is_empty()).then_some(lit)
}

// === ValueMatcher ===

/// A compiled header/query value rule.
#[derive(Debug, Clone)]
struct ValueMatcher {
    /// `Some(false)`: the name must be absent; `Some(true)`: present (with the rules below
    /// holding for one value, if any are given).
    present: Option<bool>,
    exact: Option<Box<[u8]>>,
    prefix: Option<Box<[u8]>>,
    regex: Option<Regex>,
}

impl ValueMatcher {
    fn new(vm: &config::ValueMatch) -> Result<ValueMatcher, String> {
        match vm {
            config::ValueMatch::Exact(s) => Ok(ValueMatcher {
                present: None,
                exact: Some(s.as_bytes().into()),
                prefix: None,
                regex: None,
            }),
            config::ValueMatch::Rule(r) => {
                let has_value_rule = r.exact.is_some() || r.prefix.is_some() || r.regex.is_some();
                match r.present {
                    None if !has_value_rule => {
                        return Err(
                            "empty rule: give one of exact, prefix, regex, present".to_string()
                        )
                    }
                    Some(false) if has_value_rule => {
                        return Err(
                            "present: false cannot be combined with exact/prefix/regex".to_string()
                        )
                    }
                    _ => {}
                }
                Ok(ValueMatcher {
                    present: r.present,
                    exact: r.exact.as_deref().map(|s| s.as_bytes().into()),
                    prefix: r.prefix.as_deref().map(|s| s.as_bytes().into()),
                    regex: r.regex.as_deref().map(compile_whole).transpose()?,
                })
            }
        }
    }

    fn value_matches(&self, v: &[u8]) -> bool {
        if let Some(e) = &self.exact {
            if v != &e[..] {
                return false;
            }
        }
        if let Some(p) = &self.prefix {
            if !v.starts_with(p) {
                return false;
            }
        }
        if let Some(re) = &self.regex {
            if !re.is_match(v) {
                return false;
            }
        }
        true
    }

    fn has_value_rule(&self) -> bool {
        self.exact.is_some() || self.prefix.is_some() || self.regex.is_some()
    }

    fn matches_values<V, I>(&self, values: &mut std::iter::Peekable<I>) -> bool
    where
        V: AsRef<[u8]>,
        I: Iterator<Item = V>,
    {
        match self.present {
            Some(false) => return values.peek().is_none(),
            Some(true) if !self.has_value_rule() => return values.peek().is_some(),
            _ => {}
        }
        values.any(|v| self.value_matches(v.as_ref()))
    }
}

// === query parsing ===

/// Iterator over the percent-decoded values of parameter `name` in a raw query string.
struct QueryValues<'q, 'n> {
    rest: &'q str,
    name: &'n str,
}

impl<'q, 'n> QueryValues<'q, 'n> {
    fn new(query: &'q str, name: &'n str) -> Self {
        QueryValues { rest: query, name }
    }
}

impl<'q> Iterator for QueryValues<'q, '_> {
    type Item = Cow<'q, [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let (pair, rest) = match self.rest.find('&') {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, ""),
            };
            self.rest = rest;
            if pair.is_empty() {
                continue;
            }
            let (k, v) = match pair.find('=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, ""),
            };
            if decoded_eq(k.as_bytes(), self.name.as_bytes()) {
                return Some(decode(v.as_bytes()));
            }
        }
        None
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one form-urlencoded byte at `s[i]`: returns (byte, bytes consumed).
fn decode_at(s: &[u8], i: usize) -> (u8, usize) {
    match s[i] {
        b'+' => (b' ', 1),
        b'%' if i + 2 < s.len() => match (hex_val(s[i + 1]), hex_val(s[i + 2])) {
            (Some(h), Some(l)) => (h << 4 | l, 3),
            _ => (b'%', 1),
        },
        b => (b, 1),
    }
}

/// Compares the decoded form of `raw` with `want` without allocating.
fn decoded_eq(raw: &[u8], want: &[u8]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < raw.len() {
        let (b, n) = decode_at(raw, i);
        if j >= want.len() || want[j] != b {
            return false;
        }
        i += n;
        j += 1;
    }
    j == want.len()
}

/// Percent-decodes (and `+` → space) `raw`, borrowing when nothing needs decoding.
/// Malformed escapes are kept literally.
fn decode(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let (b, n) = decode_at(raw, i);
        out.push(b);
        i += n;
    }
    Cow::Owned(out)
}

// === hosts ===

#[derive(Debug, Clone)]
enum HostPattern {
    Any,
    /// Lower-cased host.
    Exact(String),
    /// Lower-cased suffix including the leading dot: `.example.com`.
    Suffix(String),
}

impl HostPattern {
    fn new(h: &str) -> Result<HostPattern, String> {
        let h = h.trim();
        if h.is_empty() {
            return Err("hosts: empty host".to_string());
        }
        if h == "*" {
            return Ok(HostPattern::Any);
        }
        let lower = h.trim_end_matches('.').to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("*.") {
            if rest.is_empty() || rest.contains('*') {
                return Err(format!("hosts: invalid wildcard {h:?}"));
            }
            return Ok(HostPattern::Suffix(format!(".{rest}")));
        }
        if lower.contains('*') {
            return Err(format!(
                "hosts: invalid host {h:?} (only a leading \"*.\" wildcard or \"*\" is allowed)"
            ));
        }
        Ok(HostPattern::Exact(normalize_host(&lower).to_string()))
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(e) => host.eq_ignore_ascii_case(e),
            HostPattern::Suffix(s) => {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

/// Strips a `:port` (keeping `[v6]` brackets' content intact) and a trailing dot.
fn normalize_host(host: &str) -> &str {
    let host = if host.starts_with('[') {
        match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        }
    } else {
        match host.rfind(':') {
            // A bare IPv6 address (several colons) has no port to strip.
            Some(i) if !host[..i].contains(':') => &host[..i],
            _ => host,
        }
    };
    host.strip_suffix('.').unwrap_or(host)
}

// === tests ===

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OneOrMany, RouteMatch, ValueMatch, ValueRule};
    use http::HeaderValue;

    struct Req {
        method: Method,
        path: &'static str,
        query: Option<&'static str>,
        host: Option<&'static str>,
        headers: HeaderMap,
    }

    impl Req {
        fn get(path: &'static str) -> Req {
            Req {
                method: Method::GET,
                path,
                query: None,
                host: None,
                headers: HeaderMap::new(),
            }
        }
        fn method(mut self, m: Method) -> Req {
            self.method = m;
            self
        }
        fn query(mut self, q: &'static str) -> Req {
            self.query = Some(q);
            self
        }
        fn host(mut self, h: &'static str) -> Req {
            self.host = Some(h);
            self
        }
        fn header(mut self, n: &'static str, v: &'static str) -> Req {
            self.headers.append(n, HeaderValue::from_static(v));
            self
        }
        fn view(&self) -> RequestView<'_> {
            RequestView {
                method: &self.method,
                path: self.path,
                query: self.query,
                host: self.host,
                headers: &self.headers,
            }
        }
    }

    fn m(rm: RouteMatch) -> Matcher {
        Matcher::new(&rm).expect("valid matcher")
    }

    fn rule() -> ValueRule {
        ValueRule::default()
    }

    #[test]
    fn empty_match_matches_everything() {
        let mm = m(RouteMatch::default());
        assert!(mm.matches(&Req::get("/").view()));
        assert!(mm.matches(&Req::get("/x/y").method(Method::DELETE).view()));
    }

    #[test]
    fn path_exact_prefix_regex() {
        let exact = m(RouteMatch {
            path: Some("/a".into()),
            ..Default::default()
        });
        assert!(exact.matches(&Req::get("/a").view()));
        assert!(!exact.matches(&Req::get("/a/").view()));
        assert!(!exact.matches(&Req::get("/A").view()));

        let prefix = m(RouteMatch {
            path_prefix: Some("/orders".into()),
            ..Default::default()
        });
        assert!(prefix.matches(&Req::get("/orders").view()));
        assert!(prefix.matches(&Req::get("/orders/1").view()));
        assert!(prefix.matches(&Req::get("/orders-old").view()));
        assert!(!prefix.matches(&Req::get("/order").view()));

        let re = m(RouteMatch {
            path_regex: Some(r"/users/\d+".into()),
            ..Default::default()
        });
        assert!(re.matches(&Req::get("/users/42").view()));
        // Whole-path semantics.
        assert!(!re.matches(&Req::get("/users/42/x").view()));
        assert!(!re.matches(&Req::get("/x/users/42").view()));
        // Alternation is anchored as a group.
        let alt = m(RouteMatch {
            path_regex: Some("/a|/b".into()),
            ..Default::default()
        });
        assert!(alt.matches(&Req::get("/b").view()));
        assert!(!alt.matches(&Req::get("/ab").view()));
        assert!(!alt.matches(&Req::get("/a/b").view()));
    }

    #[test]
    fn regex_literal_prefix() {
        assert_eq!(literal_prefix(r"/users/\d+").as_deref(), Some("/users/"));
        assert_eq!(literal_prefix(r"^/a/b.*").as_deref(), Some("/a/b"));
        assert_eq!(literal_prefix("/items?").as_deref(), Some("/item"));
        assert_eq!(literal_prefix("/ab*c").as_deref(), Some("/a"));
        assert_eq!(literal_prefix("/ab{0,2}").as_deref(), Some("/a"));
        assert_eq!(literal_prefix("/ab+").as_deref(), Some("/ab"));
        assert_eq!(literal_prefix("/é?x").as_deref(), Some("/"));
        assert_eq!(literal_prefix("/a|/b"), None);
        assert_eq!(literal_prefix("(?i)/a"), None);
        assert_eq!(literal_prefix("[/]a"), None);
        assert_eq!(literal_prefix("a?"), None);
        // The prefilter never changes the answer.
        for (re, path, want) in [
            ("/items?", "/item", true),
            ("/items?", "/items", true),
            ("/items?", "/itemz", false),
            ("/ab*c", "/ac", true),
            ("^/v1/.*", "/v1/x", true),
            ("^/v1/.*", "/v2/x", false),
        ] {
            let mm = m(RouteMatch {
                path_regex: Some(re.into()),
                ..Default::default()
            });
            assert_eq!(mm.matches(&Req::get(path).view()), want, "{re} on {path}");
        }
    }

    #[test]
    fn bad_regex_is_an_error() {
        let err = Matcher::new(&RouteMatch {
            path_regex: Some("(".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("path_regex"), "{err}");
        let mut headers = std::collections::BTreeMap::new();
        headers.insert(
            "x".to_string(),
            ValueMatch::Rule(ValueRule {
                regex: Some("[".into()),
                ..rule()
            }),
        );
        let err = Matcher::new(&RouteMatch {
            headers,
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("headers.x"), "{err}");
    }

    #[test]
    fn bad_names_and_rules_are_errors() {
        let mut headers = std::collections::BTreeMap::new();
        headers.insert("bad header".to_string(), ValueMatch::Exact("v".into()));
        assert!(Matcher::new(&RouteMatch {
            headers,
            ..Default::default()
        })
        .is_err());

        let mut headers = std::collections::BTreeMap::new();
        headers.insert("x".to_string(), ValueMatch::Rule(rule()));
        assert!(Matcher::new(&RouteMatch {
            headers,
            ..Default::default()
        })
        .is_err());

        let mut headers = std::collections::BTreeMap::new();
        headers.insert(
            "x".to_string(),
            ValueMatch::Rule(ValueRule {
                present: Some(false),
                exact: Some("v".into()),
                ..rule()
            }),
        );
        assert!(Matcher::new(&RouteMatch {
            headers,
            ..Default::default()
        })
        .is_err());

        let bad_method = RouteMatch {
            method: Some(OneOrMany::One("GE T".into())),
            ..Default::default()
        };
        assert!(Matcher::new(&bad_method).is_err());
        for h in ["", "a.*.com", "*a.com", "*."] {
            let r = RouteMatch {
                hosts: vec![h.into()],
                ..Default::default()
            };
            assert!(Matcher::new(&r).is_err(), "{h:?} should be rejected");
        }
    }

    #[test]
    fn method_one_or_many() {
        let one = m(RouteMatch {
            method: Some(OneOrMany::One("post".into())),
            ..Default::default()
        });
        assert!(one.matches(&Req::get("/").method(Method::POST).view()));
        assert!(!one.matches(&Req::get("/").view()));

        let many = m(RouteMatch {
            method: Some(OneOrMany::Many(vec!["GET".into(), "HEAD".into()])),
            ..Default::default()
        });
        assert!(many.matches(&Req::get("/").view()));
        assert!(many.matches(&Req::get("/").method(Method::HEAD).view()));
        assert!(!many.matches(&Req::get("/").method(Method::PUT).view()));
    }

    fn with_header(name: &str, vm: ValueMatch) -> Matcher {
        let mut headers = std::collections::BTreeMap::new();
        headers.insert(name.to_string(), vm);
        m(RouteMatch {
            headers,
            ..Default::default()
        })
    }

    #[test]
    fn header_exact_prefix_regex_present() {
        let exact = with_header("x-canary", ValueMatch::Exact("true".into()));
        assert!(exact.matches(&Req::get("/").header("x-canary", "true").view()));
        assert!(!exact.matches(&Req::get("/").header("x-canary", "True").view()));
        assert!(!exact.matches(&Req::get("/").header("x-canary", "true2").view()));
        assert!(!exact.matches(&Req::get("/").view()));
        // Header names are case-insensitive.
        let upper = with_header("X-Canary", ValueMatch::Exact("true".into()));
        assert!(upper.matches(&Req::get("/").header("x-canary", "true").view()));

        let prefix = with_header(
            "x-v",
            ValueMatch::Rule(ValueRule {
                prefix: Some("v2".into()),
                ..rule()
            }),
        );
        assert!(prefix.matches(&Req::get("/").header("x-v", "v2.1").view()));
        assert!(!prefix.matches(&Req::get("/").header("x-v", "v1").view()));

        let re = with_header(
            "x-user",
            ValueMatch::Rule(ValueRule {
                regex: Some("[a-z]+-\\d".into()),
                ..rule()
            }),
        );
        assert!(re.matches(&Req::get("/").header("x-user", "bob-1").view()));
        assert!(!re.matches(&Req::get("/").header("x-user", "bob-12").view()));
        // Non-UTF-8 header values are matched as bytes and never panic.
        let mut r = Req::get("/");
        r.headers
            .insert("x-user", HeaderValue::from_bytes(b"\xffbob-1").unwrap());
        assert!(!re.matches(&r.view()));

        let present = with_header(
            "x-debug",
            ValueMatch::Rule(ValueRule {
                present: Some(true),
                ..rule()
            }),
        );
        assert!(present.matches(&Req::get("/").header("x-debug", "").view()));
        assert!(!present.matches(&Req::get("/").view()));

        let absent = with_header(
            "x-debug",
            ValueMatch::Rule(ValueRule {
                present: Some(false),
                ..rule()
            }),
        );
        assert!(absent.matches(&Req::get("/").view()));
        assert!(!absent.matches(&Req::get("/").header("x-debug", "1").view()));

        let combined = with_header(
            "x-v",
            ValueMatch::Rule(ValueRule {
                prefix: Some("v".into()),
                regex: Some("v\\d+".into()),
                present: Some(true),
                ..rule()
            }),
        );
        assert!(combined.matches(&Req::get("/").header("x-v", "v10").view()));
        assert!(!combined.matches(&Req::get("/").header("x-v", "vx").view()));
    }

    #[test]
    fn header_any_of_multiple_values() {
        let exact = with_header("x-tag", ValueMatch::Exact("b".into()));
        let r = Req::get("/").header("x-tag", "a").header("x-tag", "b");
        assert!(exact.matches(&r.view()));
        let r = Req::get("/").header("x-tag", "a").header("x-tag", "c");
        assert!(!exact.matches(&r.view()));
    }

    fn with_query(name: &str, vm: ValueMatch) -> Matcher {
        let mut query = std::collections::BTreeMap::new();
        query.insert(name.to_string(), vm);
        m(RouteMatch {
            query,
            ..Default::default()
        })
    }

    #[test]
    fn query_params_decoded() {
        let exact = with_query("q", ValueMatch::Exact("hello world/é".into()));
        assert!(exact.matches(&Req::get("/").query("a=1&q=hello%20world%2F%C3%A9").view()));
        assert!(exact.matches(&Req::get("/").query("q=hello+world/%c3%a9").view()));
        assert!(!exact.matches(&Req::get("/").query("q=hello").view()));
        assert!(!exact.matches(&Req::get("/").view()));

        // Names are decoded too; any of several values.
        let name = with_query("user id", ValueMatch::Exact("7".into()));
        assert!(name.matches(&Req::get("/").query("user%20id=1&user+id=7").view()));

        let present = with_query(
            "debug",
            ValueMatch::Rule(ValueRule {
                present: Some(true),
                ..rule()
            }),
        );
        assert!(present.matches(&Req::get("/").query("debug").view()));
        assert!(present.matches(&Req::get("/").query("x=1&debug=").view()));
        assert!(!present.matches(&Req::get("/").query("debugx=1").view()));

        let absent = with_query(
            "debug",
            ValueMatch::Rule(ValueRule {
                present: Some(false),
                ..rule()
            }),
        );
        assert!(absent.matches(&Req::get("/").query("x=1").view()));
        assert!(!absent.matches(&Req::get("/").query("debug=1").view()));

        let re = with_query(
            "v",
            ValueMatch::Rule(ValueRule {
                regex: Some("\\d+".into()),
                ..rule()
            }),
        );
        assert!(re.matches(&Req::get("/").query("v=%31%32").view()));
        assert!(!re.matches(&Req::get("/").query("v=1a").view()));

        // Malformed escapes are kept literally and never panic.
        let lit = with_query("p", ValueMatch::Exact("%zz%".into()));
        assert!(lit.matches(&Req::get("/").query("p=%zz%").view()));
        let lit = with_query("p", ValueMatch::Exact("%4".into()));
        assert!(lit.matches(&Req::get("/").query("p=%4").view()));
        assert!(!lit.matches(&Req::get("/").query("p=%").view()));
        let empty = with_query("p", ValueMatch::Exact("".into()));
        assert!(empty.matches(&Req::get("/").query("&&p&").view()));
    }

    fn with_hosts(hosts: &[&str]) -> Matcher {
        m(RouteMatch {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn hosts_exact_wildcard_any() {
        let exact = with_hosts(&["a.example.com"]);
        assert!(exact.matches(&Req::get("/").host("a.example.com").view()));
        assert!(exact.matches(&Req::get("/").host("A.Example.COM:8080").view()));
        assert!(exact.matches(&Req::get("/").host("a.example.com.").view()));
        assert!(!exact.matches(&Req::get("/").host("b.example.com").view()));
        assert!(!exact.matches(&Req::get("/").view()));

        let wild = with_hosts(&["*.Example.com"]);
        assert!(wild.matches(&Req::get("/").host("a.example.com").view()));
        assert!(wild.matches(&Req::get("/").host("x.y.EXAMPLE.com:443").view()));
        assert!(!wild.matches(&Req::get("/").host("example.com").view()));
        assert!(!wild.matches(&Req::get("/").host(".example.com").view()));
        assert!(!wild.matches(&Req::get("/").host("badexample.com").view()));

        let any = with_hosts(&["a.test", "*"]);
        assert!(any.matches(&Req::get("/").host("whatever").view()));
        assert!(any.matches(&Req::get("/").view()));

        let list = with_hosts(&["a.test", "*.b.test"]);
        assert!(list.matches(&Req::get("/").host("a.test").view()));
        assert!(list.matches(&Req::get("/").host("x.b.test").view()));
        assert!(!list.matches(&Req::get("/").host("b.test").view()));

        let v6 = with_hosts(&["[::1]"]);
        assert!(v6.matches(&Req::get("/").host("[::1]:8080").view()));
        assert!(v6.matches(&Req::get("/").host("[::1]").view()));
        let ip = with_hosts(&["127.0.0.1"]);
        assert!(ip.matches(&Req::get("/").host("127.0.0.1:80").view()));
        // Multi-byte hosts never panic on slicing.
        assert!(!wild.matches(&Req::get("/").host("ééééééééééééé").view()));
    }

    #[test]
    fn all_conditions_are_anded() {
        let mut headers = std::collections::BTreeMap::new();
        headers.insert("x-canary".to_string(), ValueMatch::Exact("true".into()));
        let mm = m(RouteMatch {
            path_prefix: Some("/orders".into()),
            method: Some(OneOrMany::One("GET".into())),
            headers,
            hosts: vec!["shop.test".into()],
            ..Default::default()
        });
        let ok = Req::get("/orders/1")
            .host("shop.test")
            .header("x-canary", "true");
        assert!(mm.matches(&ok.view()));
        let r = Req::get("/orders/1").host("shop.test");
        assert!(!mm.matches(&r.view()));
        let r = Req::get("/orders/1")
            .host("x.test")
            .header("x-canary", "true");
        assert!(!mm.matches(&r.view()));
        let r = Req::get("/orders/1")
            .method(Method::POST)
            .host("shop.test")
            .header("x-canary", "true");
        assert!(!mm.matches(&r.view()));
        let r = Req::get("/other")
            .host("shop.test")
            .header("x-canary", "true");
        assert!(!mm.matches(&r.view()));
    }

    #[test]
    fn first_match_wins() {
        let mut headers = std::collections::BTreeMap::new();
        headers.insert("x-canary".to_string(), ValueMatch::Exact("true".into()));
        let routes = vec![
            m(RouteMatch {
                path_prefix: Some("/orders".into()),
                headers,
                ..Default::default()
            }),
            m(RouteMatch {
                path_prefix: Some("/orders".into()),
                ..Default::default()
            }),
            m(RouteMatch {
                path_prefix: Some("/".into()),
                ..Default::default()
            }),
        ];
        assert_eq!(
            first_match(
                &routes,
                &Req::get("/orders").header("x-canary", "true").view()
            ),
            Some(0)
        );
        assert_eq!(first_match(&routes, &Req::get("/orders").view()), Some(1));
        assert_eq!(first_match(&routes, &Req::get("/x").view()), Some(2));
        assert_eq!(first_match(&routes[..2], &Req::get("/x").view()), None);

        let named: Vec<(&str, Matcher)> = vec![
            (
                "a",
                m(RouteMatch {
                    path: Some("/a".into()),
                    ..Default::default()
                }),
            ),
            ("any", m(RouteMatch::default())),
        ];
        let hit = first_match_by(&named, |r| &r.1, &Req::get("/a").view()).map(|r| r.0);
        assert_eq!(hit, Some("a"));
        let hit = first_match_by(&named, |r| &r.1, &Req::get("/b").view()).map(|r| r.0);
        assert_eq!(hit, Some("any"));
    }

    #[test]
    fn view_from_parts() {
        let req = http::Request::builder()
            .method("PUT")
            .uri("/p/q?x=1")
            .header("host", "h.test:81")
            .body(())
            .unwrap();
        let (parts, _) = req.into_parts();
        let v = RequestView::from_parts(&parts);
        assert_eq!(v.path, "/p/q");
        assert_eq!(v.query, Some("x=1"));
        assert_eq!(v.host, Some("h.test:81"));
        assert_eq!(v.method, Method::PUT);

        let req = http::Request::builder()
            .uri("http://auth.test/z")
            .body(())
            .unwrap();
        let (parts, _) = req.into_parts();
        assert_eq!(RequestView::from_parts(&parts).host, Some("auth.test"));
    }
}
