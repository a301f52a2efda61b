//! The gateway loop: one shard, read event by event. Voice updates go to songbird, guild data to the
//! cache, interactions to a task each. A message that cannot be read is skipped with a warning.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use twilight_gateway::{CloseFrame, Event, EventTypeFlags, Shard, StreamExt as _};
use twilight_model::id::Id;

use crate::commands;
use crate::state::State;
use crate::station::Msg;

/// How long the shard may take to close cleanly at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the gateway loop ended without being asked to.
#[derive(Debug, thiserror::Error)]
#[error(
    "Discord closed the gateway connection for good: check DISCORD_TOKEN (Bot → Reset Token) and \
     that the bot may use the Guilds and Guild Voice States intents"
)]
pub struct GatewayClosed;

/// Runs the shard until `shutdown`, then closes it. Ends early with [`GatewayClosed`] when Discord
/// refuses the session for good (invalid token, disallowed intents).
pub(crate) async fn run(
    mut shard: Shard,
    state: Arc<State>,
    shutdown: CancellationToken,
) -> Result<(), GatewayClosed> {
    loop {
        let item = tokio::select! {
            item = shard.next_event(EventTypeFlags::all()) => item,
            () = shutdown.cancelled() => break,
        };
        let Some(item) = item else {
            error!("the gateway connection ended for good");
            state.gateway_ready.send_replace(false);
            // The shard is finished; it must not be polled again.
            return Err(GatewayClosed);
        };
        let event = match item {
            Ok(event) => event,
            Err(source) => {
                warn!(error = %source, "skipping a gateway message that could not be read");
                continue;
            }
        };
        handle(&state, event).await;
    }
    state.gateway_ready.send_replace(false);
    shard.close(CloseFrame::NORMAL);
    let drain = async {
        while let Some(item) = shard.next_event(EventTypeFlags::empty()).await {
            if matches!(item, Ok(Event::GatewayClose(_))) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
    Ok(())
}

async fn handle(state: &Arc<State>, event: Event) {
    state.voice.process(&event).await;
    state.guilds.update(&event, state.bot_user.get().copied());
    match event {
        Event::Ready(ready) => {
            let first = state.application_id.set(ready.application.id).is_ok();
            let _ = state.bot_user.set(ready.user.id);
            state.voice.init(ready.user.id);
            info!(
                user = %ready.user.name,
                guilds = ready.guilds.len(),
                "connected to the Discord gateway"
            );
            if first {
                tokio::spawn(register_commands(state.clone()));
            }
            state.gateway_ready.send_replace(true);
        }
        Event::Resumed => {
            state.gateway_ready.send_replace(true);
        }
        Event::GatewayClose(frame) => {
            warn!(?frame, "the gateway closed the connection; reconnecting");
        }
        Event::VoiceStateUpdate(update) => {
            let ours = state.bot_user.get() == Some(&update.0.user_id);
            if ours
                && update.0.channel_id.is_none()
                && let Some(station) = update.0.guild_id.and_then(|g| state.stations.get(g.get()))
            {
                station.send(Msg::VoiceLost);
            }
        }
        Event::InteractionCreate(interaction) => {
            tokio::spawn(commands::handle(state.clone(), interaction.0));
        }
        _ => {}
    }
}

/// Registers `/radio` in `DISCORD_GUILD_ID` (appears at once) or globally.
async fn register_commands(state: Arc<State>) {
    let Some(application) = state.application_id.get().copied() else {
        return;
    };
    let command = commands::definition();
    let client = state.http.interaction(application);
    let (scope, result) = match state.config.guild_id.and_then(Id::new_checked) {
        Some(guild) => (
            "guild",
            client
                .set_guild_commands(guild, std::slice::from_ref(&command))
                .await
                .map(drop),
        ),
        None => (
            "global",
            client
                .set_global_commands(std::slice::from_ref(&command))
                .await
                .map(drop),
        ),
    };
    match result {
        Ok(()) => info!(scope, "registered /radio"),
        Err(e) => {
            error!(scope, error = %e, "registering /radio failed; the command will be missing in Discord")
        }
    }
}
