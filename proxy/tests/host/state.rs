//! Issue 3, point 7: shared data with CAS is exact under contention across `--workers 4`;
//! shared queues: register, resolve, enqueue, dequeue, with `on_queue_ready` delivered on the
//! worker whose VM registered the queue.

use crate::support::Client;
use crate::upstream::HostUpstream;
use crate::util::{act, e2e, simple, start};
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_data_cas_is_exact_across_workers() {
    const CONNS: usize = 16;
    const PER_CONN: usize = 25;
    let up = HostUpstream::start().await;
    let weir = start(&simple(&up, &["f"], &e2e("f", "F", "vm_id: cas")), 4).await;
    assert_eq!(weir.workers, 4);
    let addr = weir.addr("edge");
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::h1(addr).await;
            let who = act(&mut c, "/x", "whoami", &[]).await.text();
            for _ in 0..PER_CONN {
                let r = act(&mut c, "/x", "cas", &[]).await;
                assert_eq!(r.status, 200, "{}", r.text());
            }
            who
        }));
    }
    let mut vms = BTreeSet::new();
    for t in tasks {
        vms.insert(t.await.expect("client task"));
    }
    assert!(
        vms.len() >= 2,
        "requests spread over several workers: {vms:?}"
    );
    let mut c = Client::h1(addr).await;
    let r = act(&mut c, "/x", "get", &[("x-key", "counter")]).await;
    assert_eq!(r.text(), (CONNS * PER_CONN).to_string());
    // One VM per (filter, worker), made at startup, none per request: each VM took one number
    // from `vm-seq` in its proxy_on_configure.
    let r = act(&mut c, "/x", "get", &[("x-key", "vm-seq")]).await;
    assert_eq!(r.text(), "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_queue_ready_runs_on_the_registering_worker() {
    let up = HostUpstream::start().await;
    let weir = start(&simple(&up, &["f"], &e2e("f", "F", "vm_id: queues")), 2).await;
    let addr = weir.addr("edge");
    // Two connections served by different workers (different VMs).
    let mut first = Client::h1(addr).await;
    let a = act(&mut first, "/x", "whoami", &[]).await.text();
    let mut other = None;
    let mut seen = Vec::new();
    for _ in 0..64 {
        let mut c = Client::h1(addr).await;
        let b = act(&mut c, "/x", "whoami", &[]).await.text();
        if b != a {
            other = Some((c, b));
            break;
        }
        seen.push(b);
    }
    let Some((mut c, b)) = other else {
        panic!(
            "no connection on the other worker within 64 tries (first: {a}, then {seen:?}); stderr:\n{}",
            weir.stderr_text()
        )
    };
    // From worker b, enqueue onto the queue VM a registered; a's on_queue_ready records it.
    let r = act(&mut c, "/x", "enqueue", &[("x-key", &a)]).await;
    assert_eq!(r.text(), "Ok(\"ok\")");
    let key = format!("seen-{a}");
    let mut seen = String::new();
    for _ in 0..500 {
        seen = act(&mut c, "/x", "get", &[("x-key", &key)]).await.text();
        if seen != "<none>" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(seen, format!("{a}:hello"), "dequeued by VM {a}, not {b}");
    assert_eq!(
        act(&mut c, "/x", "get", &[("x-key", &format!("seen-{b}"))])
            .await
            .text(),
        "<none>"
    );
}
