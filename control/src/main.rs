//! The `weir-control` binary: `serve`, `push` and `status` (DESIGN.md §4).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weir_control::{client, server};

#[derive(Parser)]
#[command(name = "weir-control", version, about = "The weir control plane")]
struct Cli {
    /// Log format on stderr: text or json (filter with RUST_LOG).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch DIR (weir.yaml + .wasm) and serve every valid change as a new version.
    Serve {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7000")]
        listen: SocketAddr,
    },
    /// Validate FILE.yaml locally, upload its modules and publish it as a new version.
    Push {
        #[arg(long, env = "WEIR_CONTROL")]
        server: String,
        file: PathBuf,
    },
    /// Every node's acked version and last NACK.
    Status {
        #[arg(long, env = "WEIR_CONTROL")]
        server: String,
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    match cli.command {
        Command::Serve { dir, listen } => {
            let handle = match server::start(server::ServeOptions::new(dir, listen)).await {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("weir-control: {e}");
                    return ExitCode::FAILURE;
                }
            };
            println!(
                "{}",
                serde_json::json!({"event": "ready", "listen": handle.local_addr().to_string()})
            );
            wait_for_signal().await;
            tracing::info!("shutting down");
            handle.shutdown().await;
            ExitCode::SUCCESS
        }
        Command::Push { server, file } => match client::push_file(&server, &file).await {
            Ok(version) => {
                println!("{}", serde_json::json!({"version": version}));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Status { server, json } => match client::status(&server).await {
            Ok(s) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                } else {
                    print!("{}", client::format_status(&s));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
