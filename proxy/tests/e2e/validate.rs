//! Issue 2, point 8: `weir validate --config F` and `weir run` report every error of a config in
//! one go as `file:line:column: message` (unknown keys included) and exit 1.

use crate::support::weir::run_weir;
use crate::support::TempDir;

const GOOD: &str = r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: { path_prefix: / }
        cluster: backend
clusters:
  - name: backend
    endpoints: [127.0.0.1:9]
"#;

// Line 6 has an unknown key `colour` (column 9); line 9 routes to a cluster that does not
// exist; line 13 has an unknown key `wieght` in a cluster (column 5).
const BAD: &str = "listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: { path_prefix: / }
        colour: blue
        cluster: backend
      - match: { path_prefix: /x }
        cluster: nowhere
clusters:
  - name: backend
    endpoints: [127.0.0.1:9]
    wieght: 3
";

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_accepts_a_good_config() {
    let dir = TempDir::new("validate-ok");
    let f = write(&dir, "good.yaml", GOOD);
    let (code, out, err) = run_weir(&["validate", "--config", &f]).await;
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
    assert!(out.contains("ok"), "stdout: {out}");
}

fn check_errors(f: &str, code: Option<i32>, out: &str, err: &str) {
    assert_eq!(code, Some(1), "stdout: {out}\nstderr: {err}");
    let all = format!("{out}\n{err}");
    let lines: Vec<&str> = all.lines().filter(|l| l.starts_with(f)).collect();
    let at = |line: usize, word: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{f}:{line}:")) && l.contains(word))
    };
    assert!(
        at(6, "colour"),
        "unknown key `colour` reported at line 6 in:\n{all}"
    );
    assert!(
        at(13, "wieght"),
        "unknown key `wieght` reported at line 13 in:\n{all}"
    );
    assert!(
        at(9, "nowhere"),
        "unknown cluster `nowhere` reported at line 9 in:\n{all}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("{f}:6:9:"))),
        "column of `colour` is 9:\n{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_every_error_with_location() {
    let dir = TempDir::new("validate-bad");
    let f = write(&dir, "bad.yaml", BAD);
    let (code, out, err) = run_weir(&["validate", "--config", &f]).await;
    check_errors(&f, code, &out, &err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_a_bad_config_fails_the_same_way() {
    let dir = TempDir::new("run-bad");
    let f = write(&dir, "bad.yaml", BAD);
    let (code, out, err) = run_weir(&[
        "run",
        "--config",
        &f,
        "--workers",
        "1",
        "--admin",
        "127.0.0.1:0",
    ])
    .await;
    check_errors(&f, code, &out, &err);
    assert!(
        !out.contains("\"ready\""),
        "weir reported ready with a bad config: {out}"
    );
}

/// Errors of every stage in one run: values of the wrong type (left at their defaults for the
/// rest of the checks), an unknown key, semantic errors (regex, cluster and filter references,
/// endpoint) and a filter module that does not compile.
const MIXED: &str = "listeners:
  - name: edge
    address: 127.0.0.1:0
    filters: [f1, missing]
    bogus: 1
    routes:
      - match: { path_regex: \"([\" }
        cluster: nope
      - match: { path_prefix: / }
        cluster: c
        timeout: abc
clusters:
  - name: c
    endpoints: [not-an-address]
    lb: weird
filters:
  - name: f1
    module: bad.wasm
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_errors_of_every_stage_in_one_run() {
    let dir = TempDir::new("validate-mixed");
    std::fs::write(dir.join("bad.wasm"), "not wasm").expect("write module");
    let f = write(&dir, "mixed.yaml", MIXED);
    let (code, out, err) = run_weir(&["validate", "--config", &f]).await;
    assert_eq!(code, Some(1), "stdout: {out}\nstderr: {err}");
    let all = format!("{out}\n{err}");
    for (line, word) in [
        (4, "missing"),
        (5, "bogus"),
        (7, "regex"),
        (8, "nope"),
        (11, "abc"),
        (14, "not-an-address"),
        (15, "weird"),
        (18, "f1"),
    ] {
        assert!(
            all.lines()
                .any(|l| l.starts_with(&format!("{f}:{line}:")) && l.contains(word)),
            "an error about `{word}` at line {line} in:\n{all}"
        );
    }
    assert_eq!(
        all.lines().filter(|l| l.starts_with(&f)).count(),
        8,
        "one line per error:\n{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_yaml_syntax_and_missing_file() {
    let dir = TempDir::new("validate-syntax");
    let f = write(
        &dir,
        "syntax.yaml",
        "listeners:\n  - name: edge\n    address: [unclosed\n",
    );
    let (code, out, err) = run_weir(&["validate", "--config", &f]).await;
    assert_eq!(code, Some(1), "stdout: {out}\nstderr: {err}");
    assert!(
        format!("{out}{err}").contains(&format!("{f}:")),
        "error names the file: {out}{err}"
    );

    let missing = dir.join("missing.yaml").display().to_string();
    let (code, out, err) = run_weir(&["validate", "--config", &missing]).await;
    assert_eq!(code, Some(1), "stdout: {out}\nstderr: {err}");
}

/// The example config the crate docs and README point at stays valid (filters compiled and
/// configured from `target/filters/`, as `weir validate` does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_config_validates() {
    let f = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/weir.yaml");
    let (code, out, err) = run_weir(&["validate", "--config", f]).await;
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
}

/// `weir validate` checks a config; it does not start anything: no access-log file appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_has_no_side_effects() {
    let dir = TempDir::new("validate-pure");
    let log = dir.join("access.log");
    let text = format!("{GOOD}access_log: {{ path: {} }}\n", log.display());
    let f = write(&dir, "good.yaml", &text);
    let (code, out, err) = run_weir(&["validate", "--config", &f]).await;
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
    assert!(!log.exists(), "validate created {}", log.display());
}
