//! `/radio nowplaying`: the current track's card.

use twilight_util::builder::command::SubCommandBuilder;

use super::Ctx;
use crate::interaction::Reply;
use crate::render;
use crate::user_error::{CommandError, UserError};

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("nowplaying", "Show the track playing now")
}

/// Shows it.
pub async fn run(ctx: &Ctx) -> Result<(), CommandError> {
    let view = ctx.station().view().await?;
    let track = view
        .state
        .now_playing
        .as_ref()
        .ok_or(UserError::NothingPlaying)?;
    let line = match view.state.status {
        radio_shared::station::PlaybackStatus::Paused => "⏸️ Paused",
        _ => "▶️ Now playing",
    };
    ctx.responder
        .send(Reply::embed(Some(line.into()), render::now_playing(track)))
        .await;
    Ok(())
}
