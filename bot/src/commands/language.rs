//! `/radio language`: the lyrics' language, or no vocals at all.

use radio_shared::job::is_language_code;
use radio_shared::station::StationSettings;
use twilight_util::builder::command::{StringBuilder, SubCommandBuilder};

use super::{Ctx, choices};
use crate::interaction::Reply;
use crate::user_error::{CommandError, UserError};

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("language", "Set the language of the lyrics").option(
        StringBuilder::new("language", "Language, or instrumental for no vocals")
            .required(true)
            .choices(choices::LANGUAGES.iter().copied()),
    )
}

/// Applies a language choice to settings (`instrumental` turns vocals off).
pub fn apply(settings: &mut StationSettings, value: &str) {
    if value == choices::INSTRUMENTAL {
        settings.music.instrumental = true;
    } else {
        settings.music.language = value.to_string();
        settings.music.instrumental = false;
    }
    settings.preset = None;
}

/// Sets it.
pub async fn run(ctx: &Ctx, value: String) -> Result<(), CommandError> {
    if value != choices::INSTRUMENTAL && !is_language_code(&value) {
        return Err(UserError::InvalidOption(format!(
            "`{value}` is not a language I know; pick one from the list."
        ))
        .into());
    }
    let shown = choices::language_name(&value);
    ctx.station()
        .update(Box::new(move |s| apply(s, &value)))
        .await?;
    ctx.responder
        .send(Reply::text(format!("🗣️ Language: **{shown}**.")))
        .await;
    Ok(())
}
