//! `/radio leave`: stop and leave the voice channel.

use twilight_util::builder::command::SubCommandBuilder;

use super::Ctx;
use crate::interaction::Reply;
use crate::user_error::CommandError;

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("leave", "Stop the station and leave the voice channel")
}

/// Leaves.
pub async fn run(ctx: &Ctx) -> Result<(), CommandError> {
    ctx.station().leave().await?;
    ctx.responder
        .send(Reply::text("👋 Left the voice channel."))
        .await;
    Ok(())
}
