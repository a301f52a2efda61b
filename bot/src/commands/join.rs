//! `/radio join`: join the user's voice channel (the station keeps its state).

use twilight_util::builder::command::SubCommandBuilder;

use super::Ctx;
use crate::interaction::Reply;
use crate::user_error::CommandError;

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("join", "Join your voice channel")
}

/// Joins.
pub async fn run(ctx: &Ctx) -> Result<(), CommandError> {
    let channel = ctx.user_voice_channel()?;
    ctx.responder.defer(false).await;
    ctx.station().join(channel).await?;
    ctx.responder
        .send(Reply::text(format!(
            "🔊 Joined <#{channel}>. Start the music with `/radio play`."
        )))
        .await;
    Ok(())
}
