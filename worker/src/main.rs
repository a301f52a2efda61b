//! `radio-worker`: parses the command line, sets up logging and hands over to the library.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use radio_shared::config::{Env, load_dotenv};
use radio_worker::{
    config::WorkerConfig, generate, http, pack_verify, plan_command, service, write_command,
};
use tokio_util::sync::CancellationToken;

/// The Ace Radio GPU worker.
#[derive(Debug, Parser)]
#[command(name = "radio-worker", version, about)]
struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    command: Option<Command>,
}

/// One variant per subcommand; each hands its arguments to one function in the library.
#[derive(Debug, Subcommand)]
enum Command {
    /// Claim jobs from Redis and render them until SIGTERM or Ctrl-C (the default).
    Run,
    /// Render one song to a file, without Redis.
    Generate(generate::GenerateArgs),
    /// Write one song description for a station (title, caption, lyrics), without rendering audio.
    Write(write_command::WriteArgs),
    /// Check model packs.
    #[command(subcommand)]
    Pack(pack_verify::PackCommand),
    /// Print the memory plan a profile gives, without loading anything.
    Plan(plan_command::PlanArgs),
    /// Exit 0 when the worker on METRICS_ADDR answers /healthz (for container health checks).
    Healthcheck,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run);
    let default_log = if matches!(command, Command::Run) {
        "info"
    } else {
        "warn"
    };
    radio_shared::telemetry::init_logging(default_log);
    let result = match command {
        Command::Run => run(),
        Command::Generate(args) => generate::run(args),
        Command::Write(args) => write_command::run(args),
        Command::Pack(command) => pack_verify::run(command),
        Command::Plan(args) => plan_command::run(args),
        Command::Healthcheck => healthcheck(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run() -> anyhow::Result<()> {
    load_dotenv()?;
    let config = WorkerConfig::from_env(&Env)?;
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.metrics_addr)
            .await
            .with_context(|| format!("listening on METRICS_ADDR={}", config.metrics_addr))?;
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        service::start(config, listener, shutdown).await
    })
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C; a second signal exits at once.
async fn stop_on_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    for n in 0.. {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        if n == 0 {
            tracing::info!("shutting down: no new jobs; a second signal stops at once");
            shutdown.cancel();
        } else {
            tracing::warn!(
                "second signal: exiting now; a running job will be reclaimed by another worker"
            );
            std::process::exit(130);
        }
    }
}

fn healthcheck() -> anyhow::Result<()> {
    let addr = std::env::var("METRICS_ADDR")
        .unwrap_or_else(|_| radio_worker::config::DEFAULT_METRICS_ADDR.into());
    runtime()?
        .block_on(http::check_health(&addr, Duration::from_secs(3)))
        .map_err(anyhow::Error::msg)
}
