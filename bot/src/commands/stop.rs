//! `/radio stop`: stop playback, drop the queue and cancel unfinished jobs; stay in the channel.

use twilight_util::builder::command::SubCommandBuilder;

use super::Ctx;
use crate::interaction::Reply;
use crate::user_error::CommandError;

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("stop", "Stop the station and clear its queue")
}

/// Stops.
pub async fn run(ctx: &Ctx) -> Result<(), CommandError> {
    ctx.station().stop().await?;
    ctx.responder
        .send(Reply::text(
            "⏹️ Stopped and cleared the queue. `/radio play` starts again.",
        ))
        .await;
    Ok(())
}
