//! Local responses with a JSON body.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;
use serde::Serialize;

/// Answers the current request locally with `status`, a JSON body made from
/// `value`, `content-type: application/json`, and `extra_headers`. The filter
/// should then return `Action::Pause` from the current phase.
pub fn send_json<T: Serialize + ?Sized>(
    status: u32,
    value: &T,
    extra_headers: &[(&str, &str)],
) -> Result<(), Status> {
    let body = serde_json::to_vec(value).map_err(|_| Status::SerializationFailure)?;
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(extra_headers.len() + 1);
    headers.push(("content-type", "application/json"));
    headers.extend_from_slice(extra_headers);
    hostcalls::send_http_response(status, headers, Some(&body))
}

/// `{"error": code, "message": message}` with `status`: the shape every built-in
/// filter uses for its local answers.
pub fn send_error(
    status: u32,
    code: &str,
    message: &str,
    extra_headers: &[(&str, &str)],
) -> Result<(), Status> {
    send_json(
        status,
        &serde_json::json!({ "error": code, "message": message }),
        extra_headers,
    )
}
