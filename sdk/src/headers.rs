//! Header access that never panics on non-UTF-8 values (the `proxy-wasm` crate's
//! `String` getters unwrap UTF-8 conversion; these return `None` instead).

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

fn get(map: MapType, name: &str) -> Option<String> {
    let bytes = hostcalls::get_map_value_bytes(map, name).ok().flatten()?;
    String::from_utf8(bytes).ok()
}

/// The request header `name` (lower-case; pseudo-headers such as `:path` work),
/// or `None` if absent or not UTF-8. Call from a request phase or later.
pub fn get_header(name: &str) -> Option<String> {
    get(MapType::HttpRequestHeaders, name)
}

/// The response header `name`, or `None` if absent or not UTF-8.
pub fn get_response_header(name: &str) -> Option<String> {
    get(MapType::HttpResponseHeaders, name)
}

/// Replaces (or with `None` removes) the request header `name`.
pub fn set_header(name: &str, value: Option<&str>) {
    let _ =
        hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, value.map(str::as_bytes));
}

/// Appends a value to the request header `name`.
pub fn add_header(name: &str, value: &str) {
    let _ = hostcalls::add_map_value_bytes(MapType::HttpRequestHeaders, name, value.as_bytes());
}

/// Replaces (or with `None` removes) the response header `name`.
pub fn set_response_header(name: &str, value: Option<&str>) {
    let _ = hostcalls::set_map_value_bytes(
        MapType::HttpResponseHeaders,
        name,
        value.map(str::as_bytes),
    );
}

/// Appends a value to the response header `name`.
pub fn add_response_header(name: &str, value: &str) {
    let _ = hostcalls::add_map_value_bytes(MapType::HttpResponseHeaders, name, value.as_bytes());
}

/// All request headers whose name and value are UTF-8, in order.
pub fn request_headers() -> Vec<(String, String)> {
    hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| String::from_utf8(v).ok().map(|v| (k, v)))
        .collect()
}
