//! Test harness: temp dirs, certificates, upstream servers, clients and the `Weir` process guard.

pub mod certs;
pub mod client;
pub mod tmp;
pub mod upstream;
pub mod weir;

pub use certs::Certs;
pub use client::Client;
pub use tmp::TempDir;
pub use upstream::Upstream;
pub use weir::Weir;

use std::future::Future;
use std::time::{Duration, Instant};

/// Generous bound for anything that should happen "soon" (CI machines are slow and shared).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Re-evaluates `cond` every `every` until it holds or `within` passes; panics with `what`
/// then. For conditions that have no event to wait on (a file growing, a health check
/// flipping): the loop is bounded in time and in count.
pub async fn eventually<F, Fut>(what: &str, within: Duration, every: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    let max_rounds = (within.as_millis() / every.as_millis().max(1)) as usize + 2;
    for _ in 0..max_rounds {
        if cond().await {
            return;
        }
        if start.elapsed() > within {
            break;
        }
        tokio::time::sleep(every).await;
    }
    panic!("timed out after {within:?} waiting for: {what}");
}

/// An address on 127.0.0.1 where nothing listens (bound, then released).
pub fn dead_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}
