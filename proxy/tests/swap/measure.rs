//! Issue 5, point 7: figures, not assertions (ignored by default; run with
//! `cargo test -p weir --test swap -- --ignored --nocapture measure::`):
//!
//! - push-to-all-ACK time for 3 proxies on one `weir-control`, when the module is already
//!   cached on the proxies (only the filter config changes) and when it is a new module (a
//!   different digest: fetched, verified and compiled by every proxy);
//! - p50/p99 latency of requests under load without swaps and during swaps.

use crate::support::{
    filter, version_config, write_atomic, Control, Proto, TempDir, Upstream, Weir,
};
use crate::zero_drop::{self, Setup};
use std::time::{Duration, Instant};

const ROUNDS: u64 = 10;

/// `module` with a custom section carrying `tag` appended: same code, another digest.
fn variant(module: &[u8], tag: &str) -> Vec<u8> {
    let name = b"weir-swap-measure";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = module.to_vec();
    out.push(0); // custom section
    let mut n = payload.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&payload);
    out
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "min {:.1} ms, median {:.1} ms, max {:.1} ms (n={})",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1]),
        v.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn push_to_all_ack_3_proxies() {
    let dir = TempDir::new("measure-push");
    let blue = Upstream::start("blue").await;
    let green = Upstream::start("green").await;
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let control = Control::start(&state, "127.0.0.1:0", &dir.join("control.log")).await;
    let nodes = ["m-1", "m-2", "m-3"];
    let mut proxies = Vec::new();
    for n in nodes {
        proxies.push(Weir::managed(&control.url, n, None, 1, &dir.join(format!("{n}.log"))).await);
    }
    let original = std::fs::read(filter("header_rewrite.wasm")).unwrap();
    let file = dir.join("push.yaml");
    let mut gen = 0u64;
    let mut round = |module: &str| {
        gen += 1;
        write_atomic(
            &file,
            version_config(
                module,
                zero_drop::tag_of(gen),
                gen,
                "blue",
                blue.addr,
                green.addr,
            ),
        );
        file.clone()
    };
    std::fs::write(dir.join("m0.wasm"), &original).unwrap();
    let first = control.push(&round("m0.wasm")).await.unwrap();
    for n in nodes {
        control.wait_acked(n, first).await;
    }

    let mut measure = Vec::new();
    for (label, new_module) in [("module already cached", false), ("new module", true)] {
        let mut push_only = Vec::new();
        let mut to_all_ack = Vec::new();
        for r in 0..ROUNDS {
            let module = if new_module {
                let name = format!("m{label_len}-{r}.wasm", label_len = label.len());
                std::fs::write(dir.join(&name), variant(&original, &format!("{r}"))).unwrap();
                name
            } else {
                "m0.wasm".to_string()
            };
            let f = round(&module);
            let t = Instant::now();
            let v = control.push(&f).await.unwrap();
            push_only.push(t.elapsed());
            for n in nodes {
                control.wait_acked(n, v).await;
            }
            to_all_ack.push(t.elapsed());
        }
        let line = format!(
            "push-to-all-ACK, 3 proxies, {label}: {} (the `weir-control push` CLI alone: {})",
            summary(to_all_ack),
            summary(push_only)
        );
        println!("{line}");
        measure.push(line);
    }
    drop(proxies);
}

fn percentiles(samples: &[zero_drop::Sample]) -> (usize, f64, f64, f64) {
    let mut lat: Vec<Duration> = samples.iter().map(|s| s.end - s.start).collect();
    lat.sort();
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    (lat.len(), at(0.5), at(0.99), at(0.999))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn latency_with_and_without_swaps() {
    for proto in [Proto::H1, Proto::H2] {
        let setup = Setup::standalone(2).await;
        let d = Duration::from_secs(10);
        let (quiet, r0) = zero_drop::run(&setup, proto, d, 0).await;
        zero_drop::check(&quiet, &r0, "no swaps");
        let (busy, r1) = zero_drop::run(&setup, proto, d, 50).await;
        zero_drop::check(&busy, &r1, "50 swaps");
        for (label, s) in [("without swaps", &quiet), ("during 50 swaps", &busy)] {
            let (n, p50, p99, p999) = percentiles(s);
            println!(
                "{proto:?} latency {label}: {n} requests in {d:?} on 16 connections, p50 \
                 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms"
            );
        }
    }
}
