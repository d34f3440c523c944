//! [`Proc`]: `weir run` with chosen extra arguments and environment (`--log-format json`,
//! `RUST_LOG`), stderr kept in a file, the `ready` line parsed; killed on drop.

use crate::support::client::Client;
use crate::support::{TempDir, DEADLINE};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub struct Proc {
    pub dir: TempDir,
    pub admin: SocketAddr,
    pub listeners: HashMap<String, SocketAddr>,
    pub stderr: PathBuf,
    pub config: PathBuf,
    /// Lines weir wrote to stdout after its ready line.
    pub stdout: mpsc::UnboundedReceiver<String>,
    _child: Child,
}

/// Options of [`Proc::start`].
#[derive(Default)]
pub struct Opts {
    pub workers: usize,
    pub args: Vec<String>,
    pub rust_log: Option<String>,
}

impl Proc {
    /// Writes `yaml` (with `$DIR` replaced by the temp dir) and runs `weir run` on it.
    pub async fn start(yaml: &str, opts: Opts) -> Proc {
        Self::start_in(TempDir::new("observe"), yaml, opts).await
    }

    pub async fn start_in(dir: TempDir, yaml: &str, opts: Opts) -> Proc {
        let config = dir.join("weir.yaml");
        std::fs::write(
            &config,
            yaml.replace("$DIR", &dir.path().display().to_string()),
        )
        .expect("write config");
        let stderr = dir.join("stderr.log");
        let err_file = std::fs::File::create(&stderr).expect("stderr file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(&opts.args)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--workers")
            .arg(opts.workers.max(1).to_string())
            .arg("--admin")
            .arg("127.0.0.1:0")
            .env("RUST_LOG", opts.rust_log.as_deref().unwrap_or("warn"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err_file))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn weir");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["event"] == "ready" {
                        return Some(v);
                    }
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "weir did not start; stderr:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            )
        });
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = tx.send(l);
            }
        });
        let addr =
            |v: &Value| -> SocketAddr { v.as_str().and_then(|s| s.parse().ok()).expect("address") };
        let listeners = ready["listeners"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), addr(v))).collect())
            .unwrap_or_default();
        Proc {
            admin: addr(&ready["admin"]),
            listeners,
            stderr,
            config,
            stdout: rx,
            dir,
            _child: child,
        }
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        self.listeners[name]
    }

    pub async fn h1(&self, name: &str) -> Client {
        Client::h1(self.addr(name)).await
    }

    /// `GET path` on the admin endpoint: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let mut c = Client::h1(self.admin).await;
        let r = c.get(path).await;
        (r.status, r.text())
    }

    /// `/metrics`, checked by the exposition-format validator.
    pub async fn scrape(&self) -> crate::prom::Exposition {
        let (status, text) = self.admin_get("/metrics").await;
        assert_eq!(status, 200);
        crate::prom::parse(&text).unwrap_or_else(|e| panic!("invalid /metrics: {e}\n{text}"))
    }

    /// `POST /reload` on the admin endpoint: the new version.
    pub async fn reload(&self) -> u64 {
        let mut c = Client::h1(self.admin).await;
        let req = c
            .request(http::Method::POST, "/reload")
            .body(crate::support::empty())
            .expect("request");
        let r = c.fetch(req).await.expect("reload");
        assert_eq!(r.status, 200, "reload: {}", r.text());
        r.json()["version"].as_u64().expect("version")
    }

    /// The JSON lines of `file` so far.
    pub fn json_lines(file: &std::path::Path) -> Vec<Value> {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (bounded) until `file` holds at least `n` JSON lines matching `pred`.
    pub async fn wait_lines(
        file: &std::path::Path,
        n: usize,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        for _ in 0..3000 {
            let found: Vec<Value> = Self::json_lines(file)
                .into_iter()
                .filter(|v| pred(v))
                .collect();
            if found.len() >= n {
                return found;
            }
            if start.elapsed() > DEADLINE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "fewer than {n} matching lines in {} within {DEADLINE:?}:\n{}",
            file.display(),
            std::fs::read_to_string(file).unwrap_or_default()
        );
    }
}
