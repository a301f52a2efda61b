//! `/radio settings`: the station's settings.

use twilight_util::builder::command::SubCommandBuilder;

use super::Ctx;
use crate::interaction::Reply;
use crate::render;
use crate::user_error::CommandError;

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("settings", "Show the station's settings")
}

/// Shows them.
pub async fn run(ctx: &Ctx) -> Result<(), CommandError> {
    let view = ctx.station().view().await?;
    let embed = render::settings(
        &view.settings,
        &view.state,
        ctx.state.config.max_length_max_s,
    );
    ctx.responder
        .send(Reply::embed(None, embed).ephemeral())
        .await;
    Ok(())
}
