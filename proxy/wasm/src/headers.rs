//! [`HeaderList`]: an ordered list of header (or trailer) pairs as proxy-wasm sees them,
//! including the HTTP/2-style pseudo headers (`:method`, `:path`, `:authority`, `:scheme` on
//! requests, `:status` on responses), with conversions from and to `http` types.

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

/// Ordered header pairs; names are stored lower-case. Values are raw bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A header list that cannot be turned back into an `http` request/response head.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("missing pseudo header {0}")]
    Missing(&'static str),
    #[error("invalid value for {0}")]
    Invalid(String),
}

fn lower(name: &[u8]) -> Vec<u8> {
    name.to_ascii_lowercase()
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
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
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
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of `name`.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }

    /// Append a pair (name lower-cased).
    pub fn add(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.entries
            .push((lower(name.as_ref()), value.as_ref().to_vec()));
    }

    /// Replace the first value of `name` in place and drop the others; append if absent.
    pub fn set(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let name = name.as_ref();
        let value = value.as_ref();
        let mut found = false;
        self.entries.retain_mut(|(k, v)| {
            if k.eq_ignore_ascii_case(name) {
                if found {
                    return false;
                }
                found = true;
                *v = value.to_vec();
            }
            true
        });
        if !found {
            self.entries.push((lower(name), value.to_vec()));
        }
    }

    /// Remove every value of `name`.
    pub fn remove(&mut self, name: impl AsRef<[u8]>) {
        let name = name.as_ref();
        self.entries.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    /// Drop everything.
    pub fn clear(&mut self) {
        self.entries.clear();
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
        list.add(":method", method.as_str());
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        list.add(":path", path);
        let authority = uri
            .authority()
            .map(|a| a.as_str().as_bytes().to_vec())
            .or_else(|| {
                headers
                    .get(http::header::HOST)
                    .map(|h| h.as_bytes().to_vec())
            })
            .unwrap_or_default();
        list.add(":authority", authority);
        list.add(":scheme", uri.scheme_str().unwrap_or(scheme));
        for (name, value) in headers {
            if name == http::header::HOST {
                continue;
            }
            list.entries
                .push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
        list
    }

    /// Turn a request list back into method, origin-form URI (path and query) and headers; the
    /// `:authority` becomes the `host` header.
    pub fn to_request_parts(&self) -> Result<(Method, Uri, HeaderMap), HeaderError> {
        let method = self.get(":method").ok_or(HeaderError::Missing(":method"))?;
        let method =
            Method::from_bytes(method).map_err(|_| HeaderError::Invalid(":method".into()))?;
        let path = self.get(":path").ok_or(HeaderError::Missing(":path"))?;
        let uri = Uri::try_from(path).map_err(|_| HeaderError::Invalid(":path".into()))?;
        let mut map = HeaderMap::with_capacity(self.len());
        if let Some(authority) = self.get(":authority") {
            if !authority.is_empty() {
                let v = HeaderValue::from_bytes(authority)
                    .map_err(|_| HeaderError::Invalid(":authority".into()))?;
                map.insert(http::header::HOST, v);
            }
        }
        self.fill_regular(&mut map)?;
        Ok((method, uri, map))
    }

    /// The response head as proxy-wasm sees it: `:status` then every header.
    pub fn from_response(status: StatusCode, headers: &HeaderMap) -> Self {
        let mut list = HeaderList::with_capacity(headers.len() + 1);
        list.add(":status", status.as_str());
        list.extend_from_map(headers);
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
                .push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
    }

    /// Turn a response list back into status and headers.
    pub fn to_response_parts(&self) -> Result<(StatusCode, HeaderMap), HeaderError> {
        let status = self.get(":status").ok_or(HeaderError::Missing(":status"))?;
        let status = std::str::from_utf8(status)
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(|| HeaderError::Invalid(":status".into()))?;
        let mut map = HeaderMap::with_capacity(self.len());
        self.fill_regular(&mut map)?;
        Ok((status, map))
    }

    /// Every non-pseudo pair as a `HeaderMap` (trailers).
    pub fn to_header_map(&self) -> Result<HeaderMap, HeaderError> {
        let mut map = HeaderMap::with_capacity(self.len());
        self.fill_regular(&mut map)?;
        Ok(map)
    }

    fn fill_regular(&self, map: &mut HeaderMap) -> Result<(), HeaderError> {
        for (k, v) in &self.entries {
            if k.first() == Some(&b':') {
                continue;
            }
            let name = HeaderName::from_bytes(k)
                .map_err(|_| HeaderError::Invalid(String::from_utf8_lossy(k).into_owned()))?;
            let value = HeaderValue::from_bytes(v)
                .map_err(|_| HeaderError::Invalid(String::from_utf8_lossy(k).into_owned()))?;
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
