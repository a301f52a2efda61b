//! The state every task of the bot shares, passed around as `Arc<State>`.

use std::sync::{Arc, OnceLock};

use radio_shared::queue::Queue;
use radio_shared::station::StationStore;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use twilight_http::Client;
use twilight_model::id::Id;
use twilight_model::id::marker::{ApplicationMarker, UserMarker};

use crate::config::BotConfig;
use crate::guilds::GuildCache;
use crate::metrics::BotMetrics;
use crate::player::Player;
use crate::station::Stations;
use crate::track_cache::TrackCache;
use crate::voice::Voice;

/// Shared by the gateway loop, the interaction handlers, the event follower and the stations.
#[derive(Debug)]
pub struct State {
    /// The settings.
    pub config: BotConfig,
    /// The job queue: the only way to the workers.
    pub queue: Queue,
    /// Where stations are persisted.
    pub store: StationStore,
    /// Discord's REST API.
    pub http: Arc<Client>,
    /// The application's id, from READY.
    pub application_id: OnceLock<Id<ApplicationMarker>>,
    /// The bot's user id, from READY.
    pub bot_user: OnceLock<Id<UserMarker>>,
    /// Voice joins and leaves.
    pub voice: Arc<Voice>,
    /// Playback.
    pub player: Arc<dyn Player>,
    /// The audio of the tracks stations still need, taken out of Redis.
    pub tracks: TrackCache,
    /// Roles, channels and voice states seen on the gateway.
    pub guilds: GuildCache,
    /// The stations running in this process.
    pub stations: Stations,
    /// Prometheus metrics.
    pub metrics: BotMetrics,
    /// When the bot started (uptime in `/radio stats`).
    pub started: Instant,
    /// True once the gateway session is ready (voice joins need it).
    pub gateway_ready: watch::Sender<bool>,
    /// Fires when the bot shuts down.
    pub shutdown: CancellationToken,
}

impl State {
    /// Waits until the gateway session is ready, or the bot shuts down (then `false`).
    pub async fn wait_gateway_ready(&self) -> bool {
        let mut ready = self.gateway_ready.subscribe();
        tokio::select! {
            result = ready.wait_for(|r| *r) => result.is_ok(),
            () = self.shutdown.cancelled() => false,
        }
    }
}
