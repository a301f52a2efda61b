//! `/radio generate`: one song from a free prompt (and optional lyrics), played before the radio's
//! own tracks. Open to everyone; the guild's queue cap keeps it fair. On a stopped station it plays
//! the request alone: starting the radio stays with `/radio play` and its permission.

use radio_shared::job::{MAX_DURATION_S, SongRequest};
use twilight_util::builder::command::{IntegerBuilder, StringBuilder, SubCommandBuilder};

use super::{Ctx, Options, limited};
use crate::interaction::ProgressMessage;
use crate::user_error::{CommandError, UserError};

/// The longest prompt accepted (a job's caption may hold 4 000 characters).
const PROMPT_MAX: usize = 1000;
/// The longest lyrics accepted through Discord (a string option holds at most 6 000).
const LYRICS_MAX: usize = 4000;

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new(
        "generate",
        "Make one song from your description; it plays next",
    )
    .option(
        StringBuilder::new(
            "prompt",
            "Describe the song: mood, instruments, vocals, tempo…",
        )
        .required(true)
        .max_length(PROMPT_MAX as u16),
    )
    .option(
        StringBuilder::new(
            "lyrics",
            "Lyrics with [verse]/[chorus] tags, or [Instrumental]",
        )
        .max_length(LYRICS_MAX as u16),
    )
    .option(
        IntegerBuilder::new("duration", "Length in seconds")
            .autocomplete(true)
            .min_value(1)
            .max_value(MAX_DURATION_S as i64),
    )
}

/// `/radio generate` options.
#[derive(Debug, Clone, PartialEq)]
pub struct Generate {
    /// The description, used as the caption.
    pub prompt: String,
    /// Lyrics; `None` lets the song writer write them.
    pub lyrics: Option<String>,
    /// Length, seconds; `None` takes the station's.
    pub duration: Option<i64>,
}

impl Generate {
    /// Parses the options.
    pub fn parse(options: &Options) -> Result<Self, UserError> {
        Ok(Self {
            prompt: limited(options.required_text("prompt")?, PROMPT_MAX, "prompt")?,
            lyrics: options
                .text("lyrics")
                .map(|l| limited(l, LYRICS_MAX, "lyrics"))
                .transpose()?,
            duration: options.integer("duration"),
        })
    }

    /// Checks, joins the user's channel if the bot is in none, and enqueues the song.
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
        if !view.attached {
            station.join(channel).await?;
        }
        let song = SongRequest {
            duration_s: duration,
            caption: Some(self.prompt),
            lyrics: self.lyrics,
            ..SongRequest::default()
        };
        let progress = ProgressMessage::start(ctx.responder.clone());
        station
            .request(
                song,
                Some(ctx.user.to_string()),
                ctx.channel,
                Some(ctx.interaction_id.to_string()),
                Some(progress),
            )
            .await?;
        Ok(())
    }
}
