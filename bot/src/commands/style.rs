//! `/radio style`: the production style.

use twilight_util::builder::command::{StringBuilder, SubCommandBuilder};

use super::{Ctx, limited};
use crate::interaction::Reply;
use crate::user_error::CommandError;

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("style", "Set the production style").option(
        StringBuilder::new("text", "e.g. warm tape, mellow keys")
            .required(true)
            .autocomplete(true)
            .max_length(500),
    )
}

/// Sets it.
pub async fn run(ctx: &Ctx, text: String) -> Result<(), CommandError> {
    let text = limited(text, 500, "style")?;
    let shown = text.clone();
    ctx.station()
        .update(Box::new(move |s| {
            s.music.style = text;
            s.preset = None;
        }))
        .await?;
    ctx.responder
        .send(Reply::text(format!("🎛️ Style: **{shown}**.")))
        .await;
    Ok(())
}
