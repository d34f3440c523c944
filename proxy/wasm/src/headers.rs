//! [`HeaderList`]: an ordered list of header (or trailer) pairs as proxy-wasm sees them,
//! including the HTTP/2-style pseudo headers (`:method`, `:path`, `:authority`, `:scheme` on
//! requests, `:status` on responses), with conversions from and to `http` types.

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

/// Ordered header pairs; names are stored lower-case. Values are raw bytes.
///
/// A list made from an `http` head ([`HeaderList::from_request`], [`HeaderList::from_response`])
/// remembers which names filters changed since, so that [`HeaderList::apply_to_request`] /
/// [`HeaderList::apply_to_response`] rewrite only those names in the original head instead of
/// rebuilding every header. Equality compares the pairs only.
#[derive(Debug, Clone, Default)]
pub struct HeaderList {
    entries: Vec<(Field, Field)>,
    origin: Origin,
}

/// One header name or value. Pairs taken from an `http` head keep hyper's `HeaderName` /
/// `HeaderValue` (a reference-count increment, no copy), so converting a head into a list and
/// back costs no allocation per header; only what filters write is owned bytes.
#[derive(Clone)]
enum Field {
    Static(&'static [u8]),
    Name(HeaderName),
    Value(HeaderValue),
    /// `:path` from the request URI (a reference-count increment).
    Path(http::uri::PathAndQuery),
    /// `:authority` from the request URI (a reference-count increment).
    Authority(http::uri::Authority),
    /// `:status` of a response (no allocation).
    Status(StatusCode),
    Owned(Vec<u8>),
}

impl Field {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Field::Static(b) => b,
            Field::Name(n) => n.as_str().as_bytes(),
            Field::Value(v) => v.as_bytes(),
            Field::Path(p) => p.as_str().as_bytes(),
            Field::Authority(a) => a.as_str().as_bytes(),
            Field::Status(s) => s.as_str().as_bytes(),
            Field::Owned(b) => b,
        }
    }

    /// Whether this (lower-case) name is `lower_name`, a name already passed through
    /// [`lowered`]: a length check and a `memcmp`, no case folding per byte.
    fn is(&self, lower_name: &[u8]) -> bool {
        self.as_bytes() == lower_name
    }

    /// As a header value (no copy when it came from one).
    fn to_value(&self) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
        match self {
            Field::Value(v) => Ok(v.clone()),
            other => HeaderValue::from_bytes(other.as_bytes()),
        }
    }

    /// As a header name (no copy when it came from one).
    fn to_name(&self) -> Result<HeaderName, http::header::InvalidHeaderName> {
        match self {
            Field::Name(n) => Ok(n.clone()),
            other => HeaderName::from_bytes(other.as_bytes()),
        }
    }
}

impl PartialEq for Field {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Field {}

impl std::fmt::Debug for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// A header value taken out of a list (see [`HeaderList::get_held`]).
pub(crate) struct HeldValue(Field);

impl AsRef<[u8]> for HeldValue {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// What a list knows about the `http` head it came from.
#[derive(Debug, Clone, Default)]
enum Origin {
    /// Not made from a head, or replaced wholesale: converting back rebuilds everything.
    #[default]
    Rebuild,
    /// Made from a head; the (lower-case) names changed since, parsed as header names where
    /// `http` takes them (no allocation for names already in the name cache).
    Tracked(Vec<Field>),
}

impl PartialEq for HeaderList {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for HeaderList {}

/// A header list that cannot be turned back into an `http` request/response head.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("missing pseudo header {0}")]
    Missing(&'static str),
    #[error("invalid value for {0}")]
    Invalid(String),
}

/// `:method` without a copy for the standard methods.
fn method_field(m: &Method) -> Field {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    match STANDARD.iter().find(|s| **s == m.as_str()) {
        Some(s) => Field::Static(s.as_bytes()),
        None => Field::Owned(m.as_str().as_bytes().to_vec()),
    }
}

fn lower(name: &[u8]) -> Vec<u8> {
    name.to_ascii_lowercase()
}

/// `name` lower-cased, to compare with a list's names (always stored lower-case): borrowed when
/// it has no upper-case letter, as names filters pass usually have not.
fn lowered(name: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if name.iter().any(u8::is_ascii_uppercase) {
        std::borrow::Cow::Owned(lower(name))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// A name written by a filter: parsed into a `HeaderName` once (lower-cased; no allocation for
/// standard names), so writing it back into a head needs no second parse; names `http`
/// rejects (pseudo headers among them: `:` is not a token character) stay lower-cased bytes.
fn name_field(name: &[u8]) -> Field {
    if let Some(p) = PSEUDO.iter().find(|p| p.as_bytes() == name) {
        return Field::Static(p.as_bytes());
    }
    match parsed_name(name) {
        Some(n) => Field::Name(n),
        None => Field::Owned(lower(name)),
    }
}

/// The pseudo headers proxy-wasm heads carry (kept as static bytes, never parsed).
const PSEUDO: [&str; 5] = [":method", ":path", ":authority", ":scheme", ":status"];

/// Distinct names a worker thread keeps parsed (past it, new names are parsed every time).
const NAME_CACHE_MAX: usize = 1024;

thread_local! {
    /// Header names filters write, as written → parsed. Filters mostly write the same few
    /// names (constants in their code: `x-ratelimit-remaining`), so each is parsed, lower-cased
    /// and allocated once per thread instead of once per request, and the clone written into
    /// the head is a reference-count increment. Bounded by [`NAME_CACHE_MAX`], since a filter
    /// may also write names that come from client input; hashed with foldhash seeded per
    /// process (a quarter of SipHash's cost), so such names cannot be chosen to collide.
    static NAME_CACHE: std::cell::RefCell<foldhash::HashMap<Box<[u8]>, HeaderName>> =
        Default::default();
}

/// `name` as a `HeaderName` (`None` when `http` rejects it, pseudo headers among them).
fn parsed_name(name: &[u8]) -> Option<HeaderName> {
    NAME_CACHE.with(|cache| {
        if let Some(n) = cache.borrow().get(name) {
            return Some(n.clone());
        }
        let n = HeaderName::from_bytes(name).ok()?;
        let mut cache = cache.borrow_mut();
        if cache.len() < NAME_CACHE_MAX {
            cache.insert(name.into(), n.clone());
        }
        Some(n)
    })
}

/// A value written by a filter: a `HeaderValue` when valid (one copy, reused when the list is
/// written back into a head), raw bytes otherwise.
fn value_field(value: &[u8]) -> Field {
    match HeaderValue::from_bytes(value) {
        Ok(v) => Field::Value(v),
        Err(_) => Field::Owned(value.to_vec()),
    }
}

impl HeaderList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// A list with room for `n` pairs.
    pub fn with_capacity(n: usize) -> Self {
        HeaderList {
            entries: Vec::with_capacity(n),
            origin: Origin::Rebuild,
        }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.get_bytes(name.as_bytes())
    }

    /// The first value of `name` as UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of a byte name (case-insensitive).
    pub fn get_bytes(&self, name: &[u8]) -> Option<&[u8]> {
        self.first(name).map(Field::as_bytes)
    }

    /// The first value of a byte name, held without borrowing the list (a reference-count
    /// increment for values taken from a head), for a hostcall that must copy it into the guest
    /// after letting go of the stream.
    pub(crate) fn get_held(&self, name: &[u8]) -> Option<HeldValue> {
        self.first(name).cloned().map(HeldValue)
    }

    /// The first value of `name` (case-insensitive).
    fn first(&self, name: &[u8]) -> Option<&Field> {
        let name = lowered(name);
        self.entries
            .iter()
            .find(|(k, _)| k.is(&name))
            .map(|(_, v)| v)
    }

    /// Every value of `name`.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let name = lowered(name.as_bytes());
        self.entries
            .iter()
            .filter(move |(k, _)| k.is(&name))
            .map(|(_, v)| v.as_bytes())
    }

    /// Append a pair (name lower-cased).
    pub fn add(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let name = lowered(name.as_ref());
        let field = self.touch(&name).unwrap_or_else(|| name_field(&name));
        self.entries.push((field, value_field(value.as_ref())));
    }

    /// Note that `name` (lower-case) changed (for lists made from an `http` head); returns
    /// the name as tracked (parsed once), for the caller to reuse.
    fn touch(&mut self, name: &[u8]) -> Option<Field> {
        let Origin::Tracked(names) = &mut self.origin else {
            return None;
        };
        if let Some(n) = names.iter().find(|n| n.is(name)) {
            return Some(n.clone());
        }
        let field = name_field(name);
        names.push(field.clone());
        Some(field)
    }

    /// Replace the first value of `name` in place and drop the others; append if absent.
    pub fn set(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let name = lowered(name.as_ref());
        let value = value.as_ref();
        let tracked = self.touch(&name);
        // A scan that stops at the first match; the list is compacted only when the name
        // repeats (rare), instead of a `retain` over every pair on each write.
        match self.entries.iter().position(|(k, _)| k.is(&name)) {
            Some(first) => {
                self.entries[first].1 = value_field(value);
                let rest = first + 1;
                if self.entries[rest..].iter().any(|(k, _)| k.is(&name)) {
                    let mut i = 0;
                    self.entries.retain(|(k, _)| {
                        i += 1;
                        i <= rest || !k.is(&name)
                    });
                }
            }
            None => {
                let field = tracked.unwrap_or_else(|| name_field(&name));
                self.entries.push((field, value_field(value)));
            }
        }
    }

    /// Remove every value of `name`. Removing a name the list does not have changes nothing,
    /// so the name is not tracked (the head it mirrors has no such header either).
    pub fn remove(&mut self, name: impl AsRef<[u8]>) {
        let name = lowered(name.as_ref());
        if self.entries.iter().any(|(k, _)| k.is(&name)) {
            self.touch(&name);
            self.entries.retain(|(k, _)| !k.is(&name));
        }
    }

    /// Drop everything.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.origin = Origin::Rebuild;
    }

    /// Build from pairs (names lower-cased).
    pub fn from_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut list = HeaderList::new();
        for (k, v) in pairs {
            list.add(k, v);
        }
        list
    }

    /// The request head as proxy-wasm sees it: `:method`, `:path` (path and query),
    /// `:authority` (from the URI, else the `host` header), `:scheme`, then every header
    /// except `host` (which becomes `:authority`, as in Envoy).
    pub fn from_request(method: &Method, uri: &Uri, scheme: &str, headers: &HeaderMap) -> Self {
        let mut list = HeaderList::with_capacity(headers.len() + 4);
        let mut pseudo = |name: &'static str, value: Field| {
            list.entries.push((Field::Static(name.as_bytes()), value))
        };
        pseudo(":method", method_field(method));
        let path = match uri.path_and_query() {
            Some(p) => Field::Path(p.clone()),
            None => Field::Static(b"/"),
        };
        pseudo(":path", path);
        let authority = match (uri.authority(), headers.get(http::header::HOST)) {
            (Some(a), _) => Field::Authority(a.clone()),
            (None, Some(h)) => Field::Value(h.clone()),
            (None, None) => Field::Static(b""),
        };
        pseudo(":authority", authority);
        let scheme = match uri.scheme_str().unwrap_or(scheme) {
            "http" => Field::Static(b"http"),
            "https" => Field::Static(b"https"),
            other => Field::Owned(other.as_bytes().to_vec()),
        };
        pseudo(":scheme", scheme);
        for (name, value) in headers {
            if name == http::header::HOST {
                continue;
            }
            list.entries
                .push((Field::Name(name.clone()), Field::Value(value.clone())));
        }
        list.origin = Origin::Tracked(Vec::new());
        list
    }

    /// Turn a request list back into method, origin-form URI (path and query) and headers; the
    /// `:authority` becomes the `host` header.
    pub fn to_request_parts(&self) -> Result<(Method, Uri, HeaderMap), HeaderError> {
        let (method, uri) = (self.method()?, self.uri()?);
        let mut map = HeaderMap::with_capacity(self.len());
        if let Some(host) = self.host()? {
            map.insert(http::header::HOST, host);
        }
        self.fill_regular(&mut map)?;
        Ok((method, uri, map))
    }

    /// `:method` as a method.
    fn method(&self) -> Result<Method, HeaderError> {
        let m = self.get(":method").ok_or(HeaderError::Missing(":method"))?;
        Method::from_bytes(m).map_err(|_| HeaderError::Invalid(":method".into()))
    }

    /// `:path` as an origin-form URI.
    fn uri(&self) -> Result<Uri, HeaderError> {
        let p = self.get(":path").ok_or(HeaderError::Missing(":path"))?;
        Uri::try_from(p).map_err(|_| HeaderError::Invalid(":path".into()))
    }

    /// `:authority` as the `host` header value (`None` when absent or empty).
    fn host(&self) -> Result<Option<HeaderValue>, HeaderError> {
        match self.get(":authority").filter(|a| !a.is_empty()) {
            Some(a) => HeaderValue::from_bytes(a)
                .map(Some)
                .map_err(|_| HeaderError::Invalid(":authority".into())),
            None => Ok(None),
        }
    }

    /// The response head as proxy-wasm sees it: `:status` then every header.
    pub fn from_response(status: StatusCode, headers: &HeaderMap) -> Self {
        let mut list = HeaderList::with_capacity(headers.len() + 1);
        list.entries
            .push((Field::Static(b":status"), Field::Status(status)));
        list.extend_from_map(headers);
        list.origin = Origin::Tracked(Vec::new());
        list
    }

    /// Regular headers only (trailers).
    pub fn from_header_map(headers: &HeaderMap) -> Self {
        let mut list = HeaderList::with_capacity(headers.len());
        list.extend_from_map(headers);
        list
    }

    fn extend_from_map(&mut self, headers: &HeaderMap) {
        for (name, value) in headers {
            self.entries
                .push((Field::Name(name.clone()), Field::Value(value.clone())));
        }
    }

    /// Turn a response list back into status and headers.
    pub fn to_response_parts(&self) -> Result<(StatusCode, HeaderMap), HeaderError> {
        let status = self.status()?;
        let mut map = HeaderMap::with_capacity(self.len());
        self.fill_regular(&mut map)?;
        Ok((status, map))
    }

    /// Writes the list back into the request head it was made from: only the names filters
    /// changed are rewritten (`:authority` is the `host` header; `:method` and `:path` replace
    /// the method and URI); a list that was replaced wholesale is converted whole.
    pub fn apply_to_request(
        &self,
        method: &mut Method,
        uri: &mut Uri,
        headers: &mut HeaderMap,
    ) -> Result<(), HeaderError> {
        let Origin::Tracked(names) = &self.origin else {
            (*method, *uri, *headers) = self.to_request_parts()?;
            return Ok(());
        };
        for name in names {
            match name.as_bytes() {
                b":method" => *method = self.method()?,
                b":path" => *uri = self.uri()?,
                b":authority" => {
                    headers.remove(http::header::HOST);
                    if let Some(host) = self.host()? {
                        headers.insert(http::header::HOST, host);
                    }
                }
                n if n.first() == Some(&b':') => {} // :scheme and others: not sent upstream
                _ => self.rewrite(name, headers)?,
            }
        }
        Ok(())
    }

    /// Writes the list back into the response head it was made from (see
    /// [`HeaderList::apply_to_request`]).
    pub fn apply_to_response(
        &self,
        status: &mut StatusCode,
        headers: &mut HeaderMap,
    ) -> Result<(), HeaderError> {
        let Origin::Tracked(names) = &self.origin else {
            (*status, *headers) = self.to_response_parts()?;
            return Ok(());
        };
        for name in names {
            match name.as_bytes() {
                b":status" => *status = self.status()?,
                n if n.first() == Some(&b':') => {}
                _ => self.rewrite(name, headers)?,
            }
        }
        Ok(())
    }

    /// The `:status` pseudo header as a status code.
    fn status(&self) -> Result<StatusCode, HeaderError> {
        let status = self.get(":status").ok_or(HeaderError::Missing(":status"))?;
        std::str::from_utf8(status)
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(|| HeaderError::Invalid(":status".into()))
    }

    /// Replaces every value of the regular header `name` in `headers` with the list's.
    fn rewrite(&self, field: &Field, headers: &mut HeaderMap) -> Result<(), HeaderError> {
        let name = field.as_bytes();
        let invalid = || HeaderError::Invalid(String::from_utf8_lossy(name).into_owned());
        // Touched names are parsed already unless `http` rejects them.
        let hn = match field {
            Field::Name(n) => n.clone(),
            _ => return Err(invalid()),
        };
        // The first value replaces the head's (one map operation), later ones are appended.
        let mut first = true;
        for (k, v) in &self.entries {
            if k.is(name) {
                let value = v.to_value().map_err(|_| invalid())?;
                if std::mem::take(&mut first) {
                    headers.insert(hn.clone(), value);
                } else {
                    headers.append(hn.clone(), value);
                }
            }
        }
        if first {
            headers.remove(&hn);
        }
        Ok(())
    }

    /// Every non-pseudo pair as a `HeaderMap` (trailers).
    pub fn to_header_map(&self) -> Result<HeaderMap, HeaderError> {
        let mut map = HeaderMap::with_capacity(self.len());
        self.fill_regular(&mut map)?;
        Ok(map)
    }

    fn fill_regular(&self, map: &mut HeaderMap) -> Result<(), HeaderError> {
        for (k, v) in &self.entries {
            if k.as_bytes().first() == Some(&b':') {
                continue;
            }
            let invalid =
                || HeaderError::Invalid(String::from_utf8_lossy(k.as_bytes()).into_owned());
            let name = k.to_name().map_err(|_| invalid())?;
            let value = v.to_value().map_err(|_| invalid())?;
            map.append(name, value);
        }
        Ok(())
    }

    /// proxy-wasm serialization: u32 count, (u32 key_len, u32 value_len)*, then each key and
    /// value followed by a NUL byte; all integers little-endian.
    pub fn serialize(&self) -> Vec<u8> {
        crate::abi::serialize_pairs(self.iter())
    }

    /// Parse the proxy-wasm serialization; `None` when malformed.
    pub fn deserialize(bytes: &[u8]) -> Option<Self> {
        let pairs = crate::abi::deserialize_pairs(bytes)?;
        Some(HeaderList::from_pairs(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> (Method, Uri, HeaderMap) {
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, HeaderValue::from_static("shop.example"));
        h.insert("x-a", HeaderValue::from_static("1"));
        h.append("x-multi", HeaderValue::from_static("one"));
        h.append("x-multi", HeaderValue::from_static("two"));
        (Method::GET, Uri::from_static("/p?q=1"), h)
    }

    #[test]
    fn pseudo_header_names_stay_bytes() {
        assert!(matches!(name_field(b":path"), Field::Static(b":path")));
        assert!(matches!(name_field(b":other"), Field::Owned(_)));
        assert!(matches!(name_field(b"X-Env"), Field::Name(_)));
    }

    #[test]
    fn names_match_whatever_case_the_filter_uses() {
        let (mut m, mut u, mut h) = request();
        let mut list = HeaderList::from_request(&m, &u, "http", &h);
        assert_eq!(list.get("X-A"), Some(&b"1"[..]));
        assert_eq!(list.get_all("X-MULTI").count(), 2);
        list.set("X-Env", "bench");
        list.set("x-ENV", "prod");
        list.add("X-Added", "1");
        list.remove("X-MULTI");
        assert_eq!(list.get("x-env"), Some(&b"prod"[..]));
        assert_eq!(list.get_all("x-env").count(), 1);
        list.apply_to_request(&mut m, &mut u, &mut h).unwrap();
        assert_eq!(h["x-env"], "prod");
        assert_eq!(h["x-added"], "1");
        assert!(!h.contains_key("x-multi"));
        assert_eq!(h["x-a"], "1");
    }

    #[test]
    fn cached_names_parse_like_http() {
        for _ in 0..2 {
            assert_eq!(parsed_name(b"X-Env").unwrap().as_str(), "x-env");
            assert_eq!(
                parsed_name(b"content-type"),
                Some(http::header::CONTENT_TYPE)
            );
            assert_eq!(parsed_name(b"bad name"), None);
            assert_eq!(parsed_name(b":path"), None);
        }
        // Past the cap, names are still parsed, just not kept.
        for i in 0..NAME_CACHE_MAX + 10 {
            let name = format!("x-n{i}");
            assert_eq!(parsed_name(name.as_bytes()).unwrap().as_str(), name);
        }
        assert!(NAME_CACHE.with(|c| c.borrow().len()) <= NAME_CACHE_MAX);
    }

    #[test]
    fn untouched_request_is_left_as_is() {
        let (mut m, mut u, mut h) = request();
        let before = h.clone();
        let list = HeaderList::from_request(&m, &u, "http", &h);
        list.apply_to_request(&mut m, &mut u, &mut h).unwrap();
        assert_eq!(
            (m, u.to_string(), h),
            (Method::GET, "/p?q=1".into(), before)
        );
    }

    #[test]
    fn only_changed_names_are_rewritten() {
        let (mut m, mut u, mut h) = request();
        let mut list = HeaderList::from_request(&m, &u, "http", &h);
        list.set("x-a", "2");
        list.add("x-new", "n");
        list.remove("x-multi");
        list.set(":path", "/other");
        list.set(":authority", "api.example");
        list.set(":method", "POST");
        list.apply_to_request(&mut m, &mut u, &mut h).unwrap();
        assert_eq!(m, Method::POST);
        assert_eq!(u, "/other");
        assert_eq!(h["host"], "api.example");
        assert_eq!(h["x-a"], "2");
        assert_eq!(h["x-new"], "n");
        assert!(!h.contains_key("x-multi"));
        // The same outcome as converting the whole list.
        let (m2, u2, h2) = list.to_request_parts().unwrap();
        assert_eq!((m2, u2), (m, u));
        let mut a: Vec<_> = h.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut b: Vec<_> = h2.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        a.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
        b.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
        assert_eq!(a, b);
    }

    #[test]
    fn multi_valued_header_keeps_the_lists_values() {
        let (mut m, mut u, mut h) = request();
        let mut list = HeaderList::from_request(&m, &u, "http", &h);
        list.add("x-multi", "three");
        list.apply_to_request(&mut m, &mut u, &mut h).unwrap();
        let v: Vec<_> = h.get_all("x-multi").iter().collect();
        assert_eq!(v, ["one", "two", "three"]);
    }

    #[test]
    fn set_replaces_the_first_value_in_place_and_drops_the_rest() {
        let mut list = HeaderList::from_pairs([
            ("a", "1"),
            ("x-dup", "first"),
            ("b", "2"),
            ("X-Dup", "second"),
            ("c", "3"),
            ("x-dup", "third"),
        ]);
        list.set("x-DUP", "new");
        let pairs: Vec<_> = list.iter().collect();
        let want: [(&[u8], &[u8]); 4] =
            [(b"a", b"1"), (b"x-dup", b"new"), (b"b", b"2"), (b"c", b"3")];
        assert_eq!(pairs, want);
        list.set("d", "4");
        assert_eq!(list.iter().last(), Some((&b"d"[..], &b"4"[..])));
        list.remove("b");
        list.remove("absent");
        assert_eq!(list.len(), 4);
        assert_eq!(list.get("b"), None);
    }

    #[test]
    fn replaced_list_is_converted_whole() {
        let (mut m, mut u, mut h) = request();
        let list = HeaderList::from_request(&m, &u, "http", &h);
        // proxy_set_header_map_pairs: a new list from pairs.
        let mut new = HeaderList::from_pairs(list.iter().filter(|(k, _)| *k != b"x-a"));
        new.add("x-only", "1");
        new.apply_to_request(&mut m, &mut u, &mut h).unwrap();
        assert!(!h.contains_key("x-a"));
        assert_eq!(h["x-only"], "1");
        assert_eq!(h["host"], "shop.example");
    }

    #[test]
    fn response_status_and_headers() {
        let mut h = HeaderMap::new();
        h.insert("server", HeaderValue::from_static("up"));
        let mut status = StatusCode::OK;
        let mut list = HeaderList::from_response(status, &h);
        list.set("x-proxied-by", "weir");
        list.set(":status", "201");
        list.apply_to_response(&mut status, &mut h).unwrap();
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(h["x-proxied-by"], "weir");
        assert_eq!(h["server"], "up");
        let mut bad = HeaderList::from_response(status, &h);
        bad.set(":status", "abc");
        assert!(bad.apply_to_response(&mut status, &mut h).is_err());
    }
}
