//! Issue 5, point 5: the zero-drop proof. 16 keep-alive connections send requests back to back
//! for 20 s while 50 swaps alternate between two versions of the filter chain and route:
//! v1 = header_rewrite sets `x-version: 1` and the route goes to cluster `blue`; v2 sets
//! `x-version: 2` and goes to `green`. Every swap also sets `x-gen: <swap number>`, so each
//! response names the exact snapshot that served it.
//!
//! Asserted: no request fails or is reset; every response has exactly one `x-version`, `x-gen`
//! and `x-upstream`, and they agree (filter chain and route from the same snapshot); a request
//! that started after swap k was acknowledged is served by swap k or by a swap that had already
//! begun when it ended (the request took the snapshot at its start; nothing older). Run over
//! HTTP/1.1 and h2c, with `POST /reload` as the swap driver, and once through `weir-control`
//! (push, then the node's ACK in `weir-control`'s status).

use crate::support::{
    filter, version_config, write_atomic, Conn, Control, Proto, TempDir, Upstream, Weir,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const CONNECTIONS: usize = 16;
pub const DURATION: Duration = Duration::from_secs(20);
pub const SWAPS: u64 = 50;

/// Which version a swap number installs: odd → v2, even → v1.
pub fn tag_of(gen: u64) -> &'static str {
    if gen % 2 == 1 {
        "2"
    } else {
        "1"
    }
}

fn cluster_of(gen: u64) -> &'static str {
    if gen % 2 == 1 {
        "green"
    } else {
        "blue"
    }
}

/// What one response said.
#[derive(Debug, Clone)]
pub struct Seen {
    pub status: u16,
    pub versions: Vec<String>,
    pub gens: Vec<String>,
    pub upstreams: Vec<String>,
    pub body: String,
}

/// One request of the load.
#[derive(Debug, Clone)]
pub struct Sample {
    pub conn: usize,
    pub start: Instant,
    pub end: Instant,
    pub outcome: Result<Seen, String>,
}

/// Runs `conns` keep-alive connections to `addr`, each sending GETs back to back until `stop`
/// turns true. A failed request is recorded and its connection replaced.
pub async fn load(
    addr: SocketAddr,
    proto: Proto,
    conns: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<Sample> {
    let mut tasks = Vec::new();
    for c in 0..conns {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let idx = c;
            let mut out = Vec::new();
            let mut conn: Option<Conn> = None;
            let mut n = 0u64;
            while !*stop.borrow() {
                let start = Instant::now();
                let outcome = async {
                    if conn.is_none() {
                        conn = Some(Conn::connect(addr, proto).await?);
                    }
                    let c = conn.as_mut().expect("connected");
                    c.get(&format!("/load/{idx}/{n}")).await
                }
                .await;
                n += 1;
                let end = Instant::now();
                let outcome = outcome.map(|r| Seen {
                    status: r.status,
                    versions: r.all("x-version"),
                    gens: r.all("x-gen"),
                    upstreams: r.all("x-upstream"),
                    body: String::from_utf8_lossy(&r.body).into_owned(),
                });
                if outcome.is_err() {
                    conn = None;
                }
                out.push(Sample {
                    conn: c,
                    start,
                    end,
                    outcome,
                });
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    all
}

/// One completed swap: its number, when the driver began it, when it was acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct SwapRecord {
    pub gen: u64,
    pub began: Instant,
    pub acked: Instant,
}

/// How swaps are made.
pub enum Driver {
    /// Rewrite the file, `POST /reload` (answers once the snapshot is published).
    Reload { weir: Weir, file: PathBuf },
    /// `weir-control push`, then poll `weir-control`'s status until the node ACKed it.
    Control {
        weir: Weir,
        control: Box<Control>,
        node: String,
        file: PathBuf,
    },
}

/// A proxy serving the v1 config (swap number 0) and a way to swap it.
pub struct Setup {
    /// Holds the config, logs and the control plane's directory.
    pub _dir: TempDir,
    pub blue: Upstream,
    pub green: Upstream,
    pub module: String,
    pub edge: SocketAddr,
    pub driver: Driver,
}

impl Setup {
    pub async fn standalone(workers: usize) -> Setup {
        let dir = TempDir::new("zero-drop");
        let blue = Upstream::start("blue").await;
        let green = Upstream::start("green").await;
        let module = filter("header_rewrite.wasm").display().to_string();
        let file = dir.join("weir.yaml");
        write_atomic(
            &file,
            version_config(&module, "1", 0, "blue", blue.addr, green.addr),
        );
        let weir = Weir::standalone(&file, workers, false, &dir.join("weir.log")).await;
        let edge = weir.listeners["edge"];
        Setup {
            _dir: dir,
            blue,
            green,
            module,
            edge,
            driver: Driver::Reload { weir, file },
        }
    }

    pub async fn managed(workers: usize) -> Setup {
        let dir = TempDir::new("zero-drop-managed");
        let blue = Upstream::start("blue").await;
        let green = Upstream::start("green").await;
        std::fs::copy(filter("header_rewrite.wasm"), dir.join("version.wasm")).unwrap();
        let module = "version.wasm".to_string();
        let state = dir.join("state");
        std::fs::create_dir_all(&state).unwrap();
        let control = Control::start(&state, "127.0.0.1:0", &dir.join("control.log")).await;
        let node = "zero-drop".to_string();
        let weir = Weir::managed(&control.url, &node, None, workers, &dir.join("weir.log")).await;
        let file = dir.join("push.yaml");
        write_atomic(
            &file,
            version_config(&module, "1", 0, "blue", blue.addr, green.addr),
        );
        let v = control.push(&file).await.expect("push v1");
        control.wait_acked(&node, v).await;
        let edge = weir.wait_listener("edge").await;
        Setup {
            _dir: dir,
            blue,
            green,
            module,
            edge,
            driver: Driver::Control {
                weir,
                control: Box::new(control),
                node,
                file,
            },
        }
    }

    pub fn weir(&self) -> &Weir {
        match &self.driver {
            Driver::Reload { weir, .. } | Driver::Control { weir, .. } => weir,
        }
    }

    fn config(&self, gen: u64) -> String {
        version_config(
            &self.module,
            tag_of(gen),
            gen,
            cluster_of(gen),
            self.blue.addr,
            self.green.addr,
        )
    }

    /// Installs swap number `gen`; returns once it is acknowledged.
    pub async fn swap(&self, gen: u64) -> SwapRecord {
        let began = Instant::now();
        match &self.driver {
            Driver::Reload { weir, file } => {
                write_atomic(file, self.config(gen));
                let (code, body) = weir.admin_post("/reload").await;
                assert_eq!(code, 200, "reload {gen}: {body}");
            }
            Driver::Control {
                control,
                node,
                file,
                ..
            } => {
                write_atomic(file, self.config(gen));
                let v = control
                    .push(file)
                    .await
                    .unwrap_or_else(|e| panic!("push {gen}: {e}"));
                control.wait_acked(node, v).await;
            }
        }
        SwapRecord {
            gen,
            began,
            acked: Instant::now(),
        }
    }
}

/// Runs the load for `duration` while `swaps` swaps are spread evenly over it; returns the
/// samples and the swap records (swap 0, the initial config, counts as acked before the load).
pub async fn run(
    setup: &Setup,
    proto: Proto,
    duration: Duration,
    swaps: u64,
) -> (Vec<Sample>, Vec<SwapRecord>) {
    let t0 = Instant::now();
    let mut records = vec![SwapRecord {
        gen: 0,
        began: t0,
        acked: t0,
    }];
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(load(setup.edge, proto, CONNECTIONS, stop_rx));
    let start = tokio::time::Instant::now();
    for gen in 1..=swaps {
        // A schedule, not a synchronisation: swaps are spread over the run.
        tokio::time::sleep_until(start + duration.mul_f64(gen as f64 / (swaps + 1) as f64)).await;
        records.push(setup.swap(gen).await);
    }
    tokio::time::sleep_until(start + duration).await;
    let _ = stop_tx.send(true);
    let samples = load.await.expect("load");
    (samples, records)
}

/// The assertions of point 5; returns a one-line summary.
pub fn check(samples: &[Sample], records: &[SwapRecord], label: &str) -> String {
    let errors: Vec<&Sample> = samples.iter().filter(|s| s.outcome.is_err()).collect();
    assert!(
        errors.is_empty(),
        "{label}: {} of {} requests failed; first: {:?}",
        errors.len(),
        samples.len(),
        errors.first()
    );
    let mut strict = 0usize;
    let mut served_by = std::collections::BTreeMap::<u64, usize>::new();
    for s in samples {
        let seen = s.outcome.as_ref().expect("checked above");
        assert_eq!(seen.status, 200, "{label}: {s:?}");
        assert_eq!(
            seen.versions.len(),
            1,
            "{label}: exactly one x-version: {s:?}"
        );
        assert_eq!(seen.gens.len(), 1, "{label}: exactly one x-gen: {s:?}");
        assert_eq!(seen.upstreams.len(), 1, "{label}: one x-upstream: {s:?}");
        let gen: u64 = seen.gens[0].parse().expect("numeric x-gen");
        assert_eq!(
            seen.versions[0],
            tag_of(gen),
            "{label}: chain of one snapshot: {s:?}"
        );
        assert_eq!(
            seen.upstreams[0],
            cluster_of(gen),
            "{label}: route and filter chain from the same snapshot: {s:?}"
        );
        assert!(seen.body.starts_with(cluster_of(gen)), "{label}: {s:?}");
        // The newest swap acknowledged before the request started, and the newest swap begun
        // before it ended.
        let acked = records
            .iter()
            .filter(|r| r.acked <= s.start)
            .map(|r| r.gen)
            .max()
            .unwrap_or(0);
        let begun = records
            .iter()
            .filter(|r| r.began <= s.end)
            .map(|r| r.gen)
            .max()
            .unwrap_or(0);
        assert!(
            acked <= gen && gen <= begun,
            "{label}: a request started after swap {acked} was acknowledged (and ended before \
             swap {} began) was served by swap {gen}: {s:?}",
            begun + 1
        );
        if acked == begun {
            strict += 1;
        }
        *served_by.entry(gen).or_default() += 1;
    }
    let conns: std::collections::BTreeSet<usize> = samples.iter().map(|s| s.conn).collect();
    assert_eq!(
        conns.len(),
        CONNECTIONS,
        "{label}: every connection sent requests"
    );
    let summary = format!(
        "{label}: {} requests on {CONNECTIONS} connections, 0 failed, {} swaps, {} of {} \
         snapshots seen serving, {strict} requests entirely between two swaps",
        samples.len(),
        records.len() - 1,
        served_by.len(),
        records.len(),
    );
    eprintln!("{summary}");
    summary
}

async fn prove(setup: Setup, proto: Proto, label: &str) {
    let (samples, records) = run(&setup, proto, DURATION, SWAPS).await;
    assert_eq!(records.len() as u64, SWAPS + 1);
    check(&samples, &records, label);
    let weir = setup.weir();
    let applied = weir
        .metric(r#"weir_config_swaps_total{result="applied"}"#)
        .await;
    assert!(applied >= SWAPS as f64, "{label}: {applied} swaps applied");
    assert_eq!(
        weir.metric(r#"weir_config_swaps_total{result="rejected"}"#)
            .await,
        0.0
    );
    // The connections were never reset by the swaps: the listener is the one we started with.
    assert_eq!(weir.wait_listener("edge").await, setup.edge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_drop_http1_reload() {
    prove(
        Setup::standalone(2).await,
        Proto::H1,
        "HTTP/1.1, POST /reload",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_drop_http2_reload() {
    prove(
        Setup::standalone(2).await,
        Proto::H2,
        "HTTP/2, POST /reload",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_drop_http1_weir_control() {
    prove(Setup::managed(2).await, Proto::H1, "HTTP/1.1, weir-control").await;
}
