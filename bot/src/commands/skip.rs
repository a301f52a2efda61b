//! `/radio skip`: end the current track; the next one starts at once.

use twilight_util::builder::command::SubCommandBuilder;

use super::Ctx;
use crate::interaction::Reply;
use crate::user_error::CommandError;

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("skip", "Skip the current track")
}

/// Skips.
pub async fn run(ctx: &Ctx) -> Result<(), CommandError> {
    ctx.station().skip().await?;
    ctx.responder.send(Reply::text("⏭️ Skipped.")).await;
    Ok(())
}
