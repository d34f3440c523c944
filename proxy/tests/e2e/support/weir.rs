//! The `Weir` guard: writes a YAML config into a temp dir, starts `weir run`, waits for the
//! `{"event":"ready",...}` line on stdout, exposes the listener and admin addresses, reads the
//! access log, sends SIGTERM, and kills the process on drop.

use super::client::Client;
use super::{TempDir, DEADLINE};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Path of the binary under test.
pub fn weir_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weir")
}

pub struct Weir {
    /// Holds the config, certificates and logs; removed on drop.
    _dir: TempDir,
    pub pid: u32,
    pub admin: SocketAddr,
    pub listeners: HashMap<String, SocketAddr>,
    pub workers: u64,
    pub access_log: PathBuf,
    pub stderr: PathBuf,
    child: Child,
}

/// Replaces `$DIR` in `yaml` with the directory and adds a top-level access log at
/// `$DIR/access.log` unless the text configures `access_log` itself.
fn expand(yaml: &str, dir: &TempDir) -> String {
    let mut text = yaml.replace("$DIR", &dir.path().display().to_string());
    if !text.contains("access_log") {
        text.push_str(&format!(
            "\naccess_log: {{ path: {} }}\n",
            dir.join("access.log").display()
        ));
    }
    text
}

impl Weir {
    /// `weir run --config <yaml> --workers 1 --admin 127.0.0.1:0`.
    pub async fn start(yaml: &str) -> Weir {
        Self::start_with(yaml, 1, TempDir::new("weir")).await
    }

    /// Same with `--workers N` and a directory the caller already filled (certificates...).
    pub async fn start_with(yaml: &str, workers: usize, dir: TempDir) -> Weir {
        match Self::try_start(yaml, workers, dir).await {
            Ok(w) => w,
            Err(e) => panic!("{e}"),
        }
    }

    pub async fn try_start(yaml: &str, workers: usize, dir: TempDir) -> Result<Weir, String> {
        Self::try_start_env(yaml, workers, dir, &[]).await
    }

    /// Same with more environment variables for the weir process.
    pub async fn try_start_env(
        yaml: &str,
        workers: usize,
        dir: TempDir,
        env: &[(&str, &std::path::Path)],
    ) -> Result<Weir, String> {
        let config = dir.join("weir.yaml");
        std::fs::write(&config, expand(yaml, &dir)).expect("write config");
        let stderr = dir.join("stderr.log");
        let err_file = std::fs::File::create(&stderr).expect("stderr file");
        let mut child = Command::new(weir_bin())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--workers")
            .arg(workers.to_string())
            .arg("--admin")
            .arg("127.0.0.1:0")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err_file))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", weir_bin()))?;
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
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
        .await;
        let ready = match ready {
            Ok(Some(v)) => v,
            other => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                let log = std::fs::read_to_string(&stderr).unwrap_or_default();
                let why = if other.is_err() {
                    "no ready line within 60s"
                } else {
                    "stdout closed before the ready line"
                };
                return Err(format!(
                    "weir did not start ({why}); config:\n{}\nstderr:\n{log}",
                    std::fs::read_to_string(&config).unwrap_or_default()
                ));
            }
        };
        // Keep draining stdout (an access log may go there) so the process never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let parse = |v: &Value| -> SocketAddr {
            v.as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("bad address in ready line: {ready}"))
        };
        let admin = parse(&ready["admin"]);
        let listeners = ready["listeners"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), parse(v))).collect())
            .unwrap_or_default();
        let workers = ready["workers"].as_u64().unwrap_or(0);
        let access_log = dir.join("access.log");
        Ok(Weir {
            pid,
            admin,
            listeners,
            workers,
            access_log,
            stderr,
            _dir: dir,
            child,
        })
    }

    /// Address of the listener called `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        *self
            .listeners
            .get(name)
            .unwrap_or_else(|| panic!("no listener {name} in {:?}", self.listeners))
    }

    /// A keep-alive HTTP/1.1 client to listener `name`.
    pub async fn h1(&self, name: &str) -> Client {
        Client::h1(self.addr(name)).await
    }

    /// `GET path` on the admin endpoint: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let mut c = Client::h1(self.admin).await;
        let r = c.get(path).await;
        (r.status, r.text())
    }

    /// Every JSON line of the access log so far.
    pub fn access_log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (bounded) for an access-log entry matching `pred` and returns it.
    pub async fn wait_log(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        for _ in 0..3000 {
            if let Some(v) = self.access_log_lines().into_iter().find(|v| pred(v)) {
                return v;
            }
            if start.elapsed() > DEADLINE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "no access-log entry for {what} in {DEADLINE:?}; log:\n{}",
            std::fs::read_to_string(&self.access_log).unwrap_or_default()
        );
    }

    /// Resident set size of the weir process, in bytes (/proc/PID/status VmRSS).
    pub fn rss(&self) -> u64 {
        rss_of(self.pid)
    }

    /// Sends SIGTERM (through `kill`, no libc needed).
    pub fn sigterm(&self) {
        let st = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -TERM {} failed", self.pid);
    }

    /// Waits for the process to exit, at most `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// stderr of the process so far (for failure messages).
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// Runs `weir ARGS...` to completion (bounded): (exit code, stdout, stderr).
pub async fn run_weir(args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(weir_bin())
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("weir exits within 60s")
    .expect("run weir");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Resident set size of process `pid`, in bytes (0 when unreadable).
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
