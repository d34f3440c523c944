//! A response body no filter takes (every filter's `weir.callbacks` leaves out the body
//! callbacks) streams past the chain, and the filters still see what it carried: the
//! `response.size` property in `log` is the number of bytes the client got.

use crate::launch::{Opts, Proc};
use crate::support::{TempDir, Upstream};
use crate::wat;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_sees_the_size_of_a_body_that_bypassed_the_chain() {
    let up = Upstream::start("bypass-up").await;
    let dir = TempDir::new("observe-bypass");
    std::fs::write(dir.join("sizes.wat"), wat::size_logger("obs_body_bytes")).unwrap();
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters: [sizes]
    routes:
      - match: {{ path_prefix: / }}
        cluster: app
clusters:
  - name: app
    endpoints: [{ep}]
filters:
  - name: sizes
    module: $DIR/sizes.wat
"#,
        ep = up.endpoint()
    );
    let p = Proc::start_in(dir, &yaml, Opts::default()).await;
    let mut c = p.h1("edge").await;
    let big = c.get("/download/200000").await;
    assert_eq!((big.status, big.body.len()), (200, 200_000));
    let small = c.get("/download/10").await;
    assert_eq!((small.status, small.body.len()), (200, 10));

    // `log` runs when each response's stream ends, just after its last byte went out.
    let start = std::time::Instant::now();
    loop {
        let total = p.scrape().await.sum("obs_body_bytes", &[]);
        if total == 200_010.0 {
            break;
        }
        assert!(
            total <= 200_010.0 && start.elapsed() < std::time::Duration::from_secs(10),
            "obs_body_bytes is {total}, want 200010"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, filters) = p.admin_get("/filters").await;
    assert!(
        !filters.contains("response_body"),
        "no body callback ran: {filters}"
    );
}
