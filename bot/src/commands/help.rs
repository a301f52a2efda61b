//! `/radio help`: every subcommand in one message.

use twilight_util::builder::command::SubCommandBuilder;

use super::Ctx;
use crate::interaction::Reply;
use crate::render;
use crate::user_error::CommandError;

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("help", "How to use the radio")
}

/// Shows it.
pub async fn run(ctx: &Ctx) -> Result<(), CommandError> {
    ctx.responder
        .send(Reply::private(render::help(
            ctx.state.config.dj_role.as_deref(),
        )))
        .await;
    Ok(())
}
