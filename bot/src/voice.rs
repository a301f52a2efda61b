//! Joining and leaving voice channels through songbird, over the bot's gateway shard.
//!
//! With the production player, a join is songbird's full `join` (gateway handshake, then the voice
//! WebSocket and UDP session of its driver). With any other player (tests, measurements) it is
//! `join_gateway`: the same gateway handshake, without a voice session, since a voice server cannot be
//! faked.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use songbird::Songbird;
use songbird::driver::{Scheduler, SchedulerConfig};
use songbird::shards::TwilightMap;
use twilight_gateway::MessageSender;
use twilight_model::gateway::event::Event;
use twilight_model::id::Id;
use twilight_model::id::marker::UserMarker;

/// Why a voice join failed.
#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    /// The gateway session is not ready yet.
    #[error("the Discord gateway is not connected yet")]
    NotReady,
    /// Songbird could not join.
    #[error("joining the voice channel failed: {0}")]
    Join(String),
}

/// The bot's voice manager: a songbird instance created when the gateway says who the bot is.
#[derive(Debug)]
pub struct Voice {
    sender: MessageSender,
    songbird: OnceLock<Arc<Songbird>>,
    /// Run songbird's voice driver (UDP); off for players that do not use it.
    connect_driver: bool,
}

impl Voice {
    /// A manager sending voice state updates through `sender` (shard 0, the only shard).
    pub fn new(sender: MessageSender, connect_driver: bool) -> Self {
        Self {
            sender,
            songbird: OnceLock::new(),
            connect_driver,
        }
    }

    /// Creates songbird once the bot's user id is known (gateway READY). Later calls do nothing.
    pub fn init(&self, user_id: Id<UserMarker>) {
        self.songbird.get_or_init(|| {
            let map = TwilightMap::new(HashMap::from([(0, self.sender.clone())]));
            // Songbird's default mixer scheduler is a process-wide static whose task lives on the first
            // runtime that used it. Our own keeps the mixers on this bot's runtime, so a bot started
            // again in the same process (the tests do) never hands a call to a scheduler that is gone.
            let scheduler = Scheduler::new(SchedulerConfig::default());
            let config = songbird::Config::default().scheduler(scheduler);
            Arc::new(Songbird::twilight_from_config(
                Arc::new(map),
                user_id,
                config,
            ))
        });
    }

    /// Songbird, once initialised.
    pub fn songbird(&self) -> Option<&Arc<Songbird>> {
        self.songbird.get()
    }

    /// Hands voice state and server updates to songbird. Call it from the gateway task, never from
    /// the task that joins (songbird's join waits for these updates).
    pub async fn process(&self, event: &Event) {
        if let Some(songbird) = self.songbird.get() {
            songbird.process(event).await;
        }
    }

    /// Joins (or moves to) a voice channel.
    pub async fn join(&self, guild: u64, channel: u64) -> Result<(), VoiceError> {
        let songbird = self.songbird.get().ok_or(VoiceError::NotReady)?;
        let (guild, channel) = (nonzero(guild)?, nonzero(channel)?);
        if self.connect_driver {
            songbird
                .join(guild, channel)
                .await
                .map(|_| ())
                .map_err(|e| VoiceError::Join(e.to_string()))
        } else {
            songbird
                .join_gateway(guild, channel)
                .await
                .map(|_| ())
                .map_err(|e| VoiceError::Join(e.to_string()))
        }
    }

    /// Leaves the guild's voice channel and drops its call.
    pub async fn leave(&self, guild: u64) {
        let Some(songbird) = self.songbird.get() else {
            return;
        };
        let Some(guild) = std::num::NonZeroU64::new(guild) else {
            return;
        };
        if let Err(e) = songbird.remove(guild).await {
            tracing::debug!(guild_id = guild.get(), error = %e, "leaving voice");
        }
    }
}

fn nonzero(id: u64) -> Result<std::num::NonZeroU64, VoiceError> {
    std::num::NonZeroU64::new(id).ok_or_else(|| VoiceError::Join("id 0".into()))
}
