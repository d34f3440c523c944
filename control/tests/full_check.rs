//! `weir-control push` and `weir-control serve --dir` run the full check of `weir validate`
//! (every filter compiled, instantiated and configured) before publishing anything (DESIGN.md
//! §4, §7): a config a proxy would NACK never becomes a version. Real sockets on 127.0.0.1, the
//! `weir-control` binary for the CLI, and `target/filters/header_rewrite.wasm` (built by
//! `scripts/build-filters.sh`) as the filter whose `proxy_on_configure` rejects a bad config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use weir::control::wire::{sha256_hex, Status};
use weir::control::{Bundle, ControlClient};
use weir_control::{client, ServeError, ServeOptions, ServerHandle};

mod common;

const WAIT: Duration = Duration::from_secs(30);
const BIN: &str = env!("CARGO_BIN_EXE_weir-control");

// === helpers ===

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "weir-control-check-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a file atomically, as an editor or `cp` + `mv` would.
fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `headers.wasm` in `dir`: the real header_rewrite filter.
fn put_header_rewrite(dir: &Path) -> Vec<u8> {
    let bytes = std::fs::read(common::built_filter("header_rewrite.wasm")).unwrap();
    write(&dir.join("headers.wasm"), &bytes);
    bytes
}

/// One listener with the filter `headers` (module `module`) configured with `config` (YAML
/// flow). The filter's `config:` key is on line 15, column 5.
fn yaml(module: &str, config: &str) -> String {
    format!(
        "listeners:
  - name: edge
    address: 127.0.0.1:0
    filters: [headers]
    routes:
      - name: all
        match: {{ path_prefix: / }}
        cluster: up
clusters:
  - name: up
    endpoints: [127.0.0.1:9]
filters:
  - name: headers
    module: {module}
    config: {config}
"
    )
}

const GOOD: &str = "{ request: { set: { x-env: prod } } }";
const GOOD_2: &str = "{ request: { set: { x-env: staging } } }";
/// header_rewrite's `proxy_on_configure` refuses it (`request` must be a mapping).
const REJECTED: &str = "{ request: 5 }";

async fn start(dir: &Path) -> ServerHandle {
    let mut opts = ServeOptions::new(dir, "127.0.0.1:0".parse::<SocketAddr>().unwrap());
    opts.poll_interval = Duration::from_millis(50);
    weir_control::start(opts).await.unwrap()
}

/// `weir-control push --server URL FILE` (off the runtime: the server under test runs on it).
async fn push_cli(url: &str, file: &Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["push", "--server", url, file.to_str().unwrap()]);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn version(url: &str) -> Option<u64> {
    client::status(url).await.unwrap().version
}

/// Polls `/v1/status` (bounded) until `pred` holds.
async fn wait_status(url: &str, pred: impl Fn(&Status) -> bool) -> Status {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = client::status(url).await.unwrap();
        if pred(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never matched: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A watching node whose `apply` records each version it is sent (and accepts it).
fn watcher(url: &str) -> (tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<u64>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(ControlClient::new(url, "node-a").run(move |b: Bundle| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(b.version);
            Ok::<(), String>(())
        }
    }));
    (task, rx)
}

async fn next_version(rx: &mut mpsc::UnboundedReceiver<u64>) -> u64 {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no version in time")
        .expect("watcher stopped")
}

// === push ===

#[tokio::test]
async fn push_compiles_and_configures_every_filter_before_publishing() {
    let dir = temp_dir("push-server");
    let server = start(&dir).await;
    let url = format!("http://{}", server.local_addr());
    let src = temp_dir("push-src");
    put_header_rewrite(&src);

    // A valid config is published.
    write(&src.join("weir.yaml"), yaml("headers.wasm", GOOD));
    let out = push_cli(&url, &src.join("weir.yaml")).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let pushed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pushed["version"], 1);

    // proxy_on_configure refuses the filter's config: exit 1, one line naming the filter at
    // its `config:` (file:line:column), nothing published.
    write(&src.join("bad.yaml"), yaml("headers.wasm", REJECTED));
    let out = push_cli(&url, &src.join("bad.yaml")).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let line = format!(
        "{}:15:5: filter headers: proxy_on_configure failed",
        src.join("bad.yaml").display()
    );
    assert!(err.contains(&line), "{err}");
    // (The filter's own log line may come too, through the log on stderr.)
    assert_eq!(
        err.lines().filter(|l| l.contains("bad.yaml:")).count(),
        1,
        "{err}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(version(&url).await, Some(1));

    // The check is local: with no server at all the answer is the same.
    let out = push_cli("http://127.0.0.1:1", &src.join("bad.yaml")).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&line), "{}", stderr(&out));

    // A module file that is not valid wasm (the wasm header, then garbage).
    let mut garbage = b"\0asm\x01\0\0\0".to_vec();
    garbage.extend_from_slice(b"this is not a module");
    write(&src.join("broken.wasm"), &garbage);
    write(&src.join("broken.yaml"), yaml("broken.wasm", GOOD));
    let out = push_cli(&url, &src.join("broken.yaml")).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}:14:5: filter headers: invalid wasm module",
            src.join("broken.yaml").display()
        )),
        "{err}"
    );
    // Not wasm at all.
    write(&src.join("text.wasm"), "hello");
    write(&src.join("text.yaml"), yaml("text.wasm", GOOD));
    let out = push_cli(&url, &src.join("text.yaml")).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("filter headers") && stderr(&out).contains("text.wasm"),
        "{}",
        stderr(&out)
    );
    // Valid wasm, but not a proxy-wasm filter.
    write(&src.join("plain.wasm"), b"\0asm\x01\0\0\0");
    write(&src.join("plain.yaml"), yaml("plain.wasm", GOOD));
    let out = push_cli(&url, &src.join("plain.yaml")).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("filter headers: module exports no known proxy-wasm ABI marker"),
        "{}",
        stderr(&out)
    );

    // Through the library too: `Invalid`, the version unchanged.
    match client::push_file(&url, &src.join("bad.yaml")).await {
        Err(client::ClientError::Invalid(e)) => {
            assert!(e.0.iter().any(|l| l.contains(&line)), "{e}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(version(&url).await, Some(1));

    // A valid change still goes through.
    write(&src.join("weir.yaml"), yaml("headers.wasm", GOOD_2));
    let v = client::push_file(&url, &src.join("weir.yaml"))
        .await
        .unwrap();
    assert_eq!(v, 2);
    assert_eq!(version(&url).await, Some(2));
    server.shutdown().await;
}

/// A push that bypasses the CLI (`POST /v1/push` with modules uploaded by digest) is checked
/// by the server the same way.
#[tokio::test]
async fn server_refuses_a_push_whose_filter_fails_to_configure() {
    use http_body_util::{BodyExt, Full};
    let dir = temp_dir("raw-push");
    let server = start(&dir).await;
    let url = format!("http://{}", server.local_addr());
    let module = put_header_rewrite(&temp_dir("raw-push-src"));
    let hex = sha256_hex(&module);
    let http = |method: &str, path: String, body: Vec<u8>| {
        let uri = format!("{url}{path}");
        let method: http::Method = method.parse().unwrap();
        async move {
            let c =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Full<bytes::Bytes>>();
            let req = http::Request::builder()
                .method(method)
                .uri(uri)
                .body(Full::new(bytes::Bytes::from(body)))
                .unwrap();
            let resp = c.request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, body) = http("PUT", format!("/v1/modules/{hex}"), module).await;
    assert_eq!(status, 200, "{body}");
    let bad = yaml(&format!("sha256:{hex}"), REJECTED);
    let (status, body) = http("POST", "/v1/push".into(), bad.into_bytes()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("push:15:5: filter headers: proxy_on_configure failed"),
        "{body}"
    );
    assert_eq!(server.version(), None);
    // Nothing was written into the directory either.
    assert!(!dir.join("weir.yaml").exists());
    let good = yaml(&format!("sha256:{hex}"), GOOD);
    let (status, body) = http("POST", "/v1/push".into(), good.into_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.version(), Some(1));
    server.shutdown().await;
}

// === serve --dir ===

#[tokio::test]
async fn serve_dir_keeps_the_last_good_version_when_a_change_fails_the_check() {
    let dir = temp_dir("serve");
    put_header_rewrite(&dir);
    write(&dir.join("weir.yaml"), yaml("headers.wasm", GOOD));
    let server = start(&dir).await;
    let url = format!("http://{}", server.local_addr());
    let (task, mut rx) = watcher(&url);
    assert_eq!(next_version(&mut rx).await, 1);

    // A config proxy_on_configure refuses: not published, the error shown by status.
    write(&dir.join("weir.yaml"), yaml("headers.wasm", REJECTED));
    let s = wait_status(&url, |s| s.desired_error.is_some()).await;
    let error = s.desired_error.unwrap();
    assert!(
        error.contains(&format!(
            "{}:15:5: filter headers: proxy_on_configure failed",
            dir.join("weir.yaml").display()
        )),
        "{error}"
    );
    assert_eq!(s.version, Some(1));
    assert_eq!(server.version(), Some(1));

    // A module that is not valid wasm: not published either.
    write(&dir.join("weir.yaml"), yaml("headers.wasm", GOOD));
    write(&dir.join("headers.wasm"), b"\0asm\x01\0\0\0garbage");
    let s = wait_status(&url, |s| {
        s.desired_error
            .as_deref()
            .is_some_and(|e| e.contains("filter headers: invalid wasm module"))
    })
    .await;
    assert_eq!(s.version, Some(1));
    // The watcher was sent nothing new.
    assert!(rx.try_recv().is_err(), "an invalid state reached a node");

    // Fixed: the next version is published and delivered.
    put_header_rewrite(&dir);
    write(&dir.join("weir.yaml"), yaml("headers.wasm", GOOD_2));
    assert_eq!(next_version(&mut rx).await, 2);
    let s = wait_status(&url, |s| s.version == Some(2)).await;
    assert_eq!(s.desired_error, None);
    task.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn serve_refuses_to_start_on_an_invalid_dir() {
    let dir = temp_dir("serve-invalid");
    put_header_rewrite(&dir);
    write(&dir.join("weir.yaml"), yaml("headers.wasm", REJECTED));
    let opts = ServeOptions::new(&dir, "127.0.0.1:0".parse::<SocketAddr>().unwrap());
    match weir_control::start(opts).await {
        Err(e @ ServeError::Invalid { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("invalid desired state")
                    && msg.contains("filter headers: proxy_on_configure failed"),
                "{msg}"
            );
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("started on an invalid directory"),
    }
    // The binary: exit 1 with the error, before any ready line.
    let out = Command::new(BIN)
        .args([
            "serve",
            "--dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}:15:5: filter headers: proxy_on_configure failed",
            dir.join("weir.yaml").display()
        )),
        "{err}"
    );
    // An empty directory is fine (a push fills it).
    let empty = temp_dir("serve-empty");
    let server = start(&empty).await;
    assert_eq!(server.version(), None);
    server.shutdown().await;
}
