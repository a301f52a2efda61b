//! `radio-bot`: reads the configuration, connects to Redis, binds the metrics address and runs the
//! bot until SIGTERM or Ctrl-C. `radio-bot healthcheck` asks a running bot's `/healthz`.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use radio_bot::BotConfig;
use radio_shared::config::{Env, RedisConfig, load_dotenv};
use radio_shared::queue::{Queue, QueueSettings};
use tokio_util::sync::CancellationToken;

/// Ace Radio's Discord bot. Settings come from the environment and `.env`.
#[derive(Debug, Parser)]
#[command(name = "radio-bot", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the bot (the default).
    Run,
    /// Exit 0 if the bot's /healthz on BOT_METRICS_ADDR answers 200 (for container health checks).
    Healthcheck,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = load_dotenv() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Cmd::Run) {
        Cmd::Healthcheck => runtime.block_on(healthcheck()),
        Cmd::Run => runtime.block_on(run()),
    }
}

async fn healthcheck() -> ExitCode {
    let env = Env;
    let addr = match env.parse(
        "BOT_METRICS_ADDR",
        radio_bot::config::DEFAULT_METRICS_ADDR
            .parse()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 9401))),
        "an address like 0.0.0.0:9401",
    ) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match radio_bot::http::healthcheck(addr).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    radio_shared::telemetry::init_logging("info,songbird=warn,twilight_gateway=info");
    let env = Env;
    let settings = BotConfig::from_env(&env).and_then(|config| {
        Ok((
            config,
            RedisConfig::from_env(&env)?,
            QueueSettings::from_env(&env)?,
        ))
    });
    let (config, redis, queue_settings) = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match serve(config, redis, queue_settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: BotConfig,
    redis: RedisConfig,
    queue_settings: QueueSettings,
) -> anyhow::Result<()> {
    let queue = Queue::connect_waiting(&redis, queue_settings)
        .await
        .with_context(|| format!("connecting to Redis at {}", redis.display_url()))?;
    let listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .with_context(|| format!("binding BOT_METRICS_ADDR={}", config.metrics_addr))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    radio_bot::run(config, queue, listener, shutdown).await
}

async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the bot");
                let _ = tokio::signal::ctrl_c().await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
