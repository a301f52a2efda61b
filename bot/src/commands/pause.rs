//! `/radio pause`: hold the current track.

use twilight_util::builder::command::SubCommandBuilder;

use super::Ctx;
use crate::interaction::Reply;
use crate::user_error::CommandError;

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("pause", "Pause the music")
}

/// Pauses.
pub async fn run(ctx: &Ctx) -> Result<(), CommandError> {
    ctx.station().pause().await?;
    ctx.responder
        .send(Reply::text("⏸️ Paused. `/radio resume` continues."))
        .await;
    Ok(())
}
