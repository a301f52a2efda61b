//! `/radio genre`: the station's genre.

use twilight_util::builder::command::{StringBuilder, SubCommandBuilder};

use super::{Ctx, limited};
use crate::interaction::Reply;
use crate::user_error::CommandError;

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("genre", "Set the station's genre").option(
        StringBuilder::new("name", "e.g. lofi hip hop, synthwave, jazz")
            .required(true)
            .autocomplete(true)
            .max_length(200),
    )
}

/// Sets it.
pub async fn run(ctx: &Ctx, name: String) -> Result<(), CommandError> {
    let name = limited(name, 200, "genre")?;
    let shown = name.clone();
    ctx.station()
        .update(Box::new(move |s| {
            s.music.genre = name;
            s.preset = None;
        }))
        .await?;
    ctx.responder
        .send(Reply::text(format!(
            "🎸 Genre: **{shown}**. The next tracks follow it."
        )))
        .await;
    Ok(())
}
