//! `weir validate --config F` with a bad config for each filter: exit 1, and stderr names
//! the filter and the field (the guest's configure error travels in the host's error).

use crate::one_filter_yaml;
use crate::support::weir::run_weir;
use crate::support::TempDir;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filter_configs_are_rejected_naming_filter_and_field() {
    let cases = [
        ("rate_limit", json!({"rate": -1}), "rate"),
        ("rate_limit", json!({"rate": 10, "per": "fortnight"}), "per"),
        ("rate_limit", json!({"rate": 10, "key": "cookie:x"}), "key"),
        ("auth", json!({"rules": [{"action": "maybe"}]}), "rules"),
        (
            "auth",
            json!({"jwt": {"secret": "s", "clock_skew": "a while"}}),
            "jwt.clock_skew",
        ),
        (
            "header_rewrite",
            json!({"request": {"set": {"bad name": "x"}}}),
            "request.set.bad name",
        ),
        (
            "header_rewrite",
            json!({"path_prefix_rewrite": {"prefix": "api", "replacement": "/"}}),
            "path_prefix_rewrite.prefix",
        ),
        ("fault", json!({"abort": {"status": 42}}), "abort.status"),
        (
            "fault",
            json!({"delay": {"fixed": "200ms", "percent": 101}}),
            "delay.percent",
        ),
        ("example_rust", json!({"greting": "typo"}), "greting"),
    ];
    let dir = TempDir::new("validate-filters");
    for (i, (filter, cfg, field)) in cases.iter().enumerate() {
        let yaml = one_filter_yaml("127.0.0.1:9", filter, cfg)
            .replace("name: f\n", &format!("name: my_{filter}\n"))
            .replace("filters: [f]", &format!("filters: [my_{filter}]"));
        let path = dir.join(&format!("bad{i}.yaml"));
        std::fs::write(&path, &yaml).expect("write config");
        let (code, _out, err) =
            run_weir(&["validate", "--config", &path.display().to_string()]).await;
        assert_eq!(code, Some(1), "{filter} {cfg}: exit code; stderr:\n{err}");
        assert!(
            err.contains(&format!("my_{filter}")),
            "{filter} {cfg}: filter not named:\n{err}"
        );
        assert!(
            err.contains(field),
            "{filter} {cfg}: field {field} not named:\n{err}"
        );
    }
    // The same filters with good configs validate.
    for (filter, cfg) in [
        ("rate_limit", json!({"rate": 10})),
        ("auth", json!({"api_keys": {"keys": {"k": "p"}}})),
        ("header_rewrite", json!({})),
        ("fault", json!({})),
    ] {
        let path = dir.join(&format!("good-{filter}.yaml"));
        std::fs::write(&path, one_filter_yaml("127.0.0.1:9", filter, &cfg)).expect("write");
        let (code, _out, err) =
            run_weir(&["validate", "--config", &path.display().to_string()]).await;
        assert_eq!(code, Some(0), "{filter}: {err}");
    }
}
