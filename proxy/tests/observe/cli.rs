//! `--log-format` (DESIGN.md §4): `text` and `json` are accepted, anything else is a usage error
//! (clap's message with the possible values, exit code 2), as `weir-control` does.

use crate::support::TempDir;
use std::process::Command;

fn weir(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .expect("run weir")
}

#[test]
fn log_format_accepts_text_and_json_and_rejects_anything_else() {
    let dir = TempDir::new("observe-cli");
    let config = dir.join("weir.yaml");
    std::fs::write(
        &config,
        "clusters:\n  - name: app\n    endpoints: [127.0.0.1:9]\n",
    )
    .unwrap();
    let config = config.display().to_string();

    // Before or after the subcommand (the flag is global).
    for args in [
        vec!["--log-format", "text", "validate", "--config", &config],
        vec!["--log-format", "json", "validate", "--config", &config],
        vec!["validate", "--log-format", "json", "--config", &config],
        vec!["validate", "--config", &config],
    ] {
        let out = weir(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "ok",
            "{args:?}"
        );
    }

    for bad in ["xml", "JSON", "Text", ""] {
        for args in [
            vec!["--log-format", bad, "validate", "--config", &config],
            vec!["--log-format", bad, "run", "--config", &config],
        ] {
            let out = weir(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(
                stderr.contains(&if bad.is_empty() {
                    "a value is required for '--log-format".to_string()
                } else {
                    format!("invalid value '{bad}' for '--log-format")
                }) && stderr.contains("[possible values: text, json]"),
                "{args:?}: clap's usage error: {stderr}"
            );
            assert!(out.stdout.is_empty(), "{args:?}: nothing runs");
        }
    }
}
