//! `radio-bot`: the Discord side of Ace Radio. Slash commands (`/radio …`), one station per guild
//! that never goes silent, playback through songbird.
//!
//! **Invariant:** the bot never talks to a worker. It enqueues jobs and follows their events through
//! [`radio_shared::queue::Queue`], and persists its stations through
//! [`radio_shared::station::StationStore`].
//!
//! `main` parses the configuration and calls [`run`]; tests call [`run_with`] with a fake player and
//! a fake Discord (see `DISCORD_API_PROXY` and `DISCORD_GATEWAY_URL`).

pub mod commands;
pub mod config;
mod events;
mod gateway;
pub mod guilds;
pub mod http;
pub mod interaction;
pub mod metrics;
pub mod player;
pub mod render;
pub mod state;
pub mod station;
pub mod track_cache;
pub mod user_error;
pub mod voice;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use radio_shared::queue::Queue;
use radio_shared::station::StationStore;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use twilight_gateway::{ConfigBuilder, Intents, Shard, ShardId};

pub use config::BotConfig;
pub use player::Player;

use crate::guilds::GuildCache;
use crate::metrics::BotMetrics;
use crate::player::songbird::SongbirdPlayer;
use crate::state::State;
use crate::station::Stations;
use crate::track_cache::TrackCache;
use crate::voice::Voice;

/// The gateway intents the bot needs: guilds (roles, channels) and voice states.
pub const INTENTS: Intents = Intents::GUILDS.union(Intents::GUILD_VOICE_STATES);

/// How audio is played.
#[derive(Debug, Clone)]
pub enum Playback {
    /// Production: songbird joins voice channels fully (gateway, voice WebSocket, UDP) and plays
    /// through its queue.
    Songbird,
    /// Any other player (tests, measurements). Voice joins do the gateway half only (songbird's
    /// `join_gateway`), since a voice server cannot be faked.
    Custom(Arc<dyn Player>),
}

/// Runs the bot until `shutdown` fires: gateway, stations, event follower, and `/metrics` +
/// `/healthz` on `listener`.
pub async fn run(
    config: BotConfig,
    queue: Queue,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with(config, queue, listener, shutdown, Playback::Songbird).await
}

/// [`run`] with a choice of player.
pub async fn run_with(
    config: BotConfig,
    queue: Queue,
    listener: TcpListener,
    shutdown: CancellationToken,
    playback: Playback,
) -> anyhow::Result<()> {
    let token = config.token.expose_secret().to_string();
    let mut http = twilight_http::Client::builder()
        .token(token.clone())
        .timeout(Duration::from_secs(15));
    if let Some(proxy) = &config.api_proxy {
        http = http.proxy(proxy.clone(), true);
    }
    let mut gateway = ConfigBuilder::new(token, INTENTS);
    if let Some(url) = &config.gateway_url {
        gateway = gateway.proxy_url(url.clone());
    }
    let shard = Shard::with_config(ShardId::ONE, gateway.build());
    let voice = Arc::new(Voice::new(
        shard.sender(),
        matches!(playback, Playback::Songbird),
    ));
    let player: Arc<dyn Player> = match playback {
        Playback::Songbird => Arc::new(SongbirdPlayer::new(voice.clone())),
        Playback::Custom(player) => player,
    };
    let tracks = TrackCache::open(&config.cache_dir, config.cache_max_bytes)
        .context("opening the track cache (BOT_CACHE_DIR)")?;
    let (gateway_ready, _) = watch::channel(false);
    let state = Arc::new(State {
        store: StationStore::new(queue.clone()),
        config,
        queue,
        http: Arc::new(http.build()),
        application_id: std::sync::OnceLock::new(),
        bot_user: std::sync::OnceLock::new(),
        voice,
        player,
        tracks,
        guilds: GuildCache::default(),
        stations: Stations::default(),
        metrics: BotMetrics::new(),
        started: tokio::time::Instant::now(),
        gateway_ready,
        shutdown: shutdown.clone(),
    });

    let metrics_server = tokio::spawn(http::serve(listener, state.clone(), shutdown.clone()));
    match state.store.resumable().await {
        Ok(guilds) => {
            for guild in guilds.iter().filter_map(|g| g.parse::<u64>().ok()) {
                state.stations.get_or_start(&state, guild);
            }
            if !guilds.is_empty() {
                info!(stations = guilds.len(), "resuming stations");
            }
        }
        Err(e) => {
            warn!(error = %e, "cannot list the stations to resume; they resume on their next command")
        }
    }
    let follower = tokio::spawn(events::follow(state.clone(), shutdown.clone()));
    info!(buffer_size = state.config.buffer_size, "radio-bot started");

    let gateway = gateway::run(shard, state.clone(), shutdown.clone()).await;
    shutdown.cancel();

    state.stations.shutdown(Duration::from_secs(5)).await;
    let _ = follower.await;
    let _ = metrics_server.await;
    info!("radio-bot stopped");
    gateway.map_err(Into::into)
}
