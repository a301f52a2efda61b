//! `/radio play`: start the station in the user's voice channel, optionally with a new genre, theme,
//! language and track length.

use radio_shared::job::MAX_DURATION_S;
use twilight_util::builder::command::{IntegerBuilder, StringBuilder, SubCommandBuilder};

use super::{Ctx, Options, choices, limited};
use crate::interaction::{ProgressMessage, Reply};
use crate::user_error::{CommandError, UserError};

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("play", "Start the radio in your voice channel")
        .option(
            StringBuilder::new("genre", "Genre of the station, e.g. lofi hip hop")
                .autocomplete(true)
                .max_length(200),
        )
        .option(
            StringBuilder::new("theme", "What the songs are about")
                .autocomplete(true)
                .max_length(300),
        )
        .option(
            StringBuilder::new("language", "Language of the lyrics")
                .choices(choices::LANGUAGES.iter().copied()),
        )
        .option(
            IntegerBuilder::new("duration", "Length of each track in seconds")
                .autocomplete(true)
                .min_value(1)
                .max_value(MAX_DURATION_S as i64),
        )
}

/// `/radio play` options.
#[derive(Debug, Clone, PartialEq)]
pub struct Play {
    /// New genre.
    pub genre: Option<String>,
    /// New theme.
    pub theme: Option<String>,
    /// New language (or `instrumental`).
    pub language: Option<String>,
    /// New track length, seconds.
    pub duration: Option<i64>,
}

impl Play {
    /// Parses the options.
    pub fn parse(options: &Options) -> Result<Self, UserError> {
        Ok(Self {
            genre: options
                .text("genre")
                .map(|g| limited(g, 200, "genre"))
                .transpose()?,
            theme: options
                .text("theme")
                .map(|t| limited(t, 500, "theme"))
                .transpose()?,
            language: options.text("language"),
            duration: options.integer("duration"),
        })
    }

    /// Validates everything (voice channel, permissions, workers, duration), joins, and turns the
    /// station on; the response then follows the first track until it plays.
    pub async fn run(self, ctx: &Ctx) -> Result<(), CommandError> {
        let station = ctx.station();
        let view = station.view().await?;
        let channel = ctx.target_voice_channel(&view, true)?;
        let limits = ctx.duration_limits(&view.settings).await?;
        let duration = match self.duration {
            Some(seconds) => limits.check(seconds as f32)?,
            None => limits.clamp(view.settings.duration_s),
        };
        ctx.responder.defer(false).await;
        station.join(channel).await?;
        let Play {
            genre,
            theme,
            language,
            ..
        } = self;
        station
            .update(Box::new(move |settings| {
                if let Some(genre) = genre {
                    settings.music.genre = genre;
                    settings.preset = None;
                }
                if let Some(theme) = theme {
                    settings.music.theme = theme;
                    settings.preset = None;
                }
                if let Some(language) = language {
                    super::language::apply(settings, &language);
                }
                settings.duration_s = duration;
            }))
            .await?;
        let progress = ProgressMessage::start(ctx.responder.clone());
        let outcome = station
            .play(
                ctx.channel,
                Some(ctx.user.to_string()),
                Some(ctx.interaction_id.to_string()),
                Some(progress.clone()),
            )
            .await?;
        if outcome.first_job.is_none() {
            progress.finish(Reply::text(format!(
                "📻 The station is on in <#{channel}>. New settings apply to the next tracks generated."
            )));
        }
        Ok(())
    }
}
