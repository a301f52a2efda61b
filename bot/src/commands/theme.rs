//! `/radio theme`: what the songs are about.

use twilight_util::builder::command::{StringBuilder, SubCommandBuilder};

use super::{Ctx, limited};
use crate::interaction::Reply;
use crate::user_error::CommandError;

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("theme", "Set what the songs are about").option(
        StringBuilder::new("text", "e.g. rainy city nights")
            .required(true)
            .autocomplete(true)
            .max_length(500),
    )
}

/// Sets it.
pub async fn run(ctx: &Ctx, text: String) -> Result<(), CommandError> {
    let text = limited(text, 500, "theme")?;
    let shown = text.clone();
    ctx.station()
        .update(Box::new(move |s| {
            s.music.theme = text;
            s.preset = None;
        }))
        .await?;
    ctx.responder
        .send(Reply::text(format!("💭 Theme: **{shown}**.")))
        .await;
    Ok(())
}
