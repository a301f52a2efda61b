//! `/radio queue`: what plays now, what is ready, what is being generated.

use twilight_util::builder::command::SubCommandBuilder;

use super::Ctx;
use crate::interaction::Reply;
use crate::render;
use crate::user_error::CommandError;

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("queue", "Show the tracks coming up")
}

/// Lists them.
pub async fn run(ctx: &Ctx) -> Result<(), CommandError> {
    let view = ctx.station().view().await?;
    let text = render::queue(&view.state, &view.progress, ctx.state.config.buffer_size);
    ctx.responder.send(Reply::private(text)).await;
    Ok(())
}
