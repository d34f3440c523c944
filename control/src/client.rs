//! The CLI side of `weir-control push` and `weir-control status`: talks to a running server.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use weir::control::wire::{ErrorResponse, PushResponse, Status};

use crate::desired::{self, PathRefs};

const TIMEOUT: Duration = Duration::from_secs(60);
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The file is not a valid desired state (checked locally, nothing was sent).
    #[error("{0}")]
    Invalid(desired::Invalid),
    /// The server refused the push (with every error it found).
    #[error("server refused the push:\n{}", .0.join("\n"))]
    Refused(Vec<String>),
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    #[error("invalid server url {0:?} (expected http://HOST:PORT)")]
    Url(String),
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
}

fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends one request; returns (status, body).
async fn call(
    method: http::Method,
    url: &str,
    body: Bytes,
    content_type: &str,
) -> Result<(u16, Bytes), ClientError> {
    let uri: http::Uri = url.parse().map_err(|_| ClientError::Url(url.into()))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(ClientError::Url(url.into()));
    }
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(body))
        .map_err(|_| ClientError::Url(url.into()))?;
    let transport = |message: String| ClientError::Transport {
        url: url.to_string(),
        message,
    };
    let fut = async {
        let resp = http_client()
            .request(req)
            .await
            .map_err(|e| transport(weir::http::error::error_chain(&e)))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .map_err(|_| transport("timed out".into()))?
}

fn error_message(body: &[u8]) -> (String, Vec<String>) {
    match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(e) => (e.error, e.errors),
        Err(_) => (String::from_utf8_lossy(body).into_owned(), Vec::new()),
    }
}

fn base(server: &str) -> &str {
    server.trim_end_matches('/')
}

/// Validates `file` locally (module paths relative to it) as `weir validate` does — the YAML,
/// then every filter compiled, instantiated and configured — and only then uploads its modules
/// and publishes it. Returns the version the server now publishes. An invalid file is
/// [`ClientError::Invalid`] and nothing is sent.
pub async fn push_file(server: &str, file: &Path) -> Result<u64, ClientError> {
    let label = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| ClientError::Read(label.clone(), e))?;
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let d = tokio::task::spawn_blocking(move || {
        desired::resolve_checked(&label, &text, &dir, PathRefs::Allowed, &|_| None)
    })
    .await
    .map_err(|e| ClientError::Invalid(desired::Invalid(vec![format!("validation failed: {e}")])))?
    .map_err(ClientError::Invalid)?;
    let server = base(server);
    for (hex, bytes) in &d.blobs {
        let url = format!("{server}/v1/modules/{hex}");
        let (status, body) =
            call(http::Method::PUT, &url, bytes.clone(), "application/wasm").await?;
        if !(200..300).contains(&status) {
            return Err(ClientError::Status {
                url,
                status,
                message: error_message(&body).0,
            });
        }
    }
    let url = format!("{server}/v1/push");
    let (status, body) = call(
        http::Method::POST,
        &url,
        Bytes::from(d.config),
        "application/yaml",
    )
    .await?;
    match status {
        200..=299 => serde_json::from_slice::<PushResponse>(&body)
            .map(|r| r.version)
            .map_err(|e| ClientError::Transport {
                url,
                message: format!("bad response: {e}"),
            }),
        400 => {
            let (error, errors) = error_message(&body);
            Err(ClientError::Refused(if errors.is_empty() {
                vec![error]
            } else {
                errors
            }))
        }
        _ => Err(ClientError::Status {
            url,
            status,
            message: error_message(&body).0,
        }),
    }
}

/// `GET /v1/status`.
pub async fn status(server: &str) -> Result<Status, ClientError> {
    let url = format!("{}/v1/status", base(server));
    let (status, body) = call(http::Method::GET, &url, Bytes::new(), "application/json").await?;
    if status != 200 {
        return Err(ClientError::Status {
            url,
            status,
            message: error_message(&body).0,
        });
    }
    serde_json::from_slice(&body).map_err(|e| ClientError::Transport {
        url,
        message: format!("bad response: {e}"),
    })
}

/// The `weir-control status` table.
pub fn format_status(s: &Status) -> String {
    let mut rows = vec![[
        "NODE".to_string(),
        "CONNECTED".into(),
        "ACKED".into(),
        "LAST NACK".into(),
        "ERROR".into(),
    ]];
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for n in &s.nodes {
        let (nack, err) = match &n.last_nack {
            Some(k) => (k.version.to_string(), k.error.replace('\n', " | ")),
            None => ("-".into(), "-".into()),
        };
        rows.push([
            n.node.clone(),
            if n.connected { "yes" } else { "no" }.into(),
            opt(n.acked_version),
            nack,
            err,
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!("version: {}\n", opt(s.version));
    if let Some(e) = &s.desired_error {
        out.push_str(&format!(
            "desired state not published: {}\n",
            e.replace('\n', " | ")
        ));
    }
    for r in rows {
        for (i, w) in widths.iter().enumerate() {
            out.push_str(&format!("{:<w$}  ", r[i], w = *w));
        }
        out.push_str(&r[4]);
        out.push('\n');
    }
    out
}
