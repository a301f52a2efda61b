//! `/radio auto`: radio mode on (keep generating) or off (play requests only).

use twilight_util::builder::command::{StringBuilder, SubCommandBuilder};

use super::{Ctx, Options};
use crate::interaction::Reply;
use crate::user_error::{CommandError, UserError};

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new(
        "auto",
        "Radio mode: keep generating tracks so the music never stops",
    )
    .option(
        StringBuilder::new("mode", "on or off")
            .required(true)
            .choices([("on", "on"), ("off", "off")]),
    )
}

/// Parses `mode`.
pub fn parse(options: &Options) -> Result<bool, UserError> {
    match options.text("mode").as_deref() {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        _ => Err(UserError::InvalidOption("Choose `on` or `off`.".into())),
    }
}

/// Sets it.
pub async fn run(ctx: &Ctx, on: bool) -> Result<(), CommandError> {
    ctx.station().update(Box::new(move |s| s.auto = on)).await?;
    let text = if on {
        format!(
            "📻 Radio mode **on**: I keep {} track(s) generated ahead so the music never stops.",
            ctx.state.config.buffer_size
        )
    } else {
        "📻 Radio mode **off**: I only play what is requested with `/radio play` or `/radio generate`."
            .to_string()
    };
    ctx.responder.send(Reply::text(text)).await;
    Ok(())
}
