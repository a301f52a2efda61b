//! `/radio resume`: continue a paused station.

use twilight_util::builder::command::SubCommandBuilder;

use super::Ctx;
use crate::interaction::Reply;
use crate::user_error::CommandError;

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("resume", "Resume the music")
}

/// Resumes.
pub async fn run(ctx: &Ctx) -> Result<(), CommandError> {
    ctx.station().resume().await?;
    ctx.responder.send(Reply::text("▶️ Resumed.")).await;
    Ok(())
}
