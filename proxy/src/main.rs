//! The `weir` binary (DESIGN.md §4): `run`, `validate`, `demo`.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// mimalloc instead of the system allocator: the request path makes many small short-lived
/// allocations (header maps, bodies, futures), which glibc malloc serves at roughly twice the
/// cost (measured with `benches/compare.sh`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "A WebAssembly-programmable service proxy"
)]
struct Cli {
    /// Log format on stderr (filter with RUST_LOG).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

/// `--log-format`: anything else is a usage error (exit 2), as for weir-control.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy.
    Run {
        /// The config file (standalone); not with --control.
        #[arg(long, required_unless_present = "control")]
        config: Option<PathBuf>,
        /// Managed mode: the weir-control URL (http://HOST:PORT).
        #[arg(long, conflicts_with = "config")]
        control: Option<String>,
        /// Managed mode: keep the last good bundle here, and start from it.
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Reload when the config file changes.
        #[arg(long)]
        watch: bool,
        /// Worker threads (default: number of cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Admin address (overrides `admin:` of the config).
        #[arg(long)]
        admin: Option<String>,
        /// Node name (for the control plane and properties).
        #[arg(long, default_value = "weir")]
        node: String,
    },
    /// A tour: in-process upstreams, the proxy on an embedded config with the built-in filters,
    /// and traffic, printing what happens.
    Demo,
    /// Measure the proxy and its filter chain: in-process upstream + proxy + load.
    Bench {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "10s", value_parser = parse_dur)]
        duration: std::time::Duration,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Open-loop total request rate (requests/s); default closed loop.
        #[arg(long)]
        rate: Option<u64>,
        #[arg(long)]
        http2: bool,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 1)]
        workers: usize,
        #[arg(long, default_value = "/bench")]
        path: String,
        /// Also measure the run without filters with a JSON access log written to PATH, to
        /// show the access log's own cost.
        #[arg(long)]
        access_log: Option<String>,
    },
    /// Parse and validate a config; print every error; exit 1 on any.
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
}

fn parse_dur(s: &str) -> Result<std::time::Duration, String> {
    weir::config::parse_duration(s).map(|d| d.get())
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == LogFormat::Json {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let code = match cli.cmd {
        Cmd::Run {
            config,
            control,
            cache_dir,
            watch,
            workers,
            admin,
            node,
        } => weir::app::run(weir::app::RunOptions {
            config: config.unwrap_or_default(),
            control,
            cache_dir,
            workers,
            admin,
            watch,
            node,
        }),
        Cmd::Demo => weir::demo::demo(),
        Cmd::Bench {
            config,
            duration,
            connections,
            rate,
            http2,
            json,
            workers,
            path,
            access_log,
        } => weir::bench::run::bench(weir::bench::run::BenchOptions {
            config,
            duration,
            connections,
            rate,
            http2,
            json,
            workers,
            path,
            access_log,
        }),
        Cmd::Validate { config } => match weir::app::validate(&config) {
            Ok(()) => {
                println!("ok");
                0
            }
            Err(errors) => {
                for e in errors {
                    eprintln!("{e}");
                }
                1
            }
        },
    };
    std::process::exit(code);
}
