//! Issue 3, point 10: a filter looping forever is stopped by its deadline (its request gets a
//! 5xx within deadline + 1 s, and the same single worker keeps serving other routes); growing
//! memory past the cap traps cleanly; `on_error: fail_closed | fail_open | reload` behave as
//! DESIGN §3 says and `weir_filter_errors_total{filter,kind}` counts every failure.

use crate::upstream::HostUpstream;
use crate::util::{act, clusters, e2e, metric, metrics, start};
use std::time::{Duration, Instant};

/// Listener `edge`, route `/NAME...` → filter NAME for each name, and `/` without filters.
fn per_route(up: &HostUpstream, filters: &[(&str, &str)]) -> String {
    let mut y = String::from("listeners:\n  - name: edge\n    address: 127.0.0.1:0\n    routes:\n");
    for (name, _) in filters {
        y.push_str(&format!(
            "      - name: {name}\n        match: {{ path_prefix: /{name} }}\n        cluster: up\n        filters: [{name}]\n"
        ));
    }
    y.push_str("      - name: plain\n        match: { path_prefix: / }\n        cluster: up\n");
    y.push_str(&clusters(up));
    y.push_str("filters:\n");
    for (name, extra) in filters {
        y.push_str(&e2e(name, &name.to_uppercase(), extra));
    }
    y
}

fn errors(text: &str, filter: &str, kind: &str) -> f64 {
    metric(
        text,
        &format!("weir_filter_errors_total{{filter=\"{filter}\",kind=\"{kind}\"}}"),
    )
    .unwrap_or_else(|| panic!("no weir_filter_errors_total for {filter}/{kind}:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_filter_is_stopped_and_the_worker_keeps_serving() {
    let up = HostUpstream::start().await;
    let yaml = per_route(
        &up,
        &[
            ("spin", "limits: { callback_deadline: 100ms }"),
            ("other", ""),
        ],
    );
    let weir = start(&yaml, 1).await;
    let mut c = weir.h1("edge").await;
    let t = Instant::now();
    let r = act(&mut c, "/spin", "loop", &[]).await;
    let took = t.elapsed();
    assert!((500..600).contains(&r.status), "{} {}", r.status, r.text());
    assert!(
        took < Duration::from_millis(100) + Duration::from_secs(1),
        "stopped within deadline + 1 s: {took:?}"
    );
    // The one worker still serves: another filter's route and a route without filters.
    let mut c2 = weir.h1("edge").await;
    let r = c2.get("/other").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-order").as_deref(), Some("OTHER"));
    assert_eq!(c2.get("/plain").await.status, 200);
    // fail_closed (the default): the failed filter keeps answering 503.
    assert_eq!(c2.get("/spin").await.status, 503);
    let text = metrics(&weir).await;
    assert_eq!(errors(&text, "spin", "timeout"), 1.0);
    assert_eq!(errors(&text, "other", "timeout"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_growth_past_the_cap_traps_cleanly() {
    let up = HostUpstream::start().await;
    let yaml = per_route(
        &up,
        &[
            (
                "hog",
                "limits: { memory: 8MiB, callback_deadline: 2s }\non_error: reload",
            ),
            ("other", ""),
        ],
    );
    let weir = start(&yaml, 1).await;
    let mut c = weir.h1("edge").await;
    let r = act(&mut c, "/hog", "oom", &[]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    let mut c = weir.h1("edge").await;
    assert_eq!(c.get("/other").await.status, 200);
    // Reloaded from the compiled module: serves again.
    let r = c.get("/hog").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-order").as_deref(), Some("HOG"));
    let text = metrics(&weir).await;
    assert_eq!(errors(&text, "hog", "oom"), 1.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_fail_closed_fail_open_and_reload() {
    let up = HostUpstream::start().await;
    let yaml = per_route(
        &up,
        &[
            ("closed", "on_error: fail_closed"),
            ("open", "on_error: fail_open"),
            ("reload", "on_error: reload"),
        ],
    );
    let weir = start(&yaml, 1).await;
    let mut c = weir.h1("edge").await;

    // fail_closed: 503 now and for later streams.
    assert_eq!(act(&mut c, "/closed", "trap", &[]).await.status, 503);
    assert_eq!(c.get("/closed").await.status, 503);

    // fail_open: the failing stream goes on without the filter, and so do later ones.
    let r = act(&mut c, "/open", "trap", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-order"), None);
    let r = c.get("/open").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-order"), None);

    // reload: 503 for the failing stream, then a fresh VM from the compiled module.
    assert_eq!(act(&mut c, "/reload", "trap", &[]).await.status, 503);
    let r = c.get("/reload").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-order").as_deref(), Some("RELOAD"));

    let text = metrics(&weir).await;
    for f in ["closed", "open", "reload"] {
        assert_eq!(errors(&text, f, "trap"), 1.0, "{f}:\n{text}");
    }
    assert_eq!(c.get("/plain").await.status, 200);
}
