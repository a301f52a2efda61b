//! `/radio generate`: one song from a free prompt (and optional lyrics), played before the radio's
//! own tracks. Open to everyone; the guild's queue cap and the per-member limit (`USER_REQUEST_LIMIT`
//! per `USER_REQUEST_WINDOW_SECS`, counted in Redis) keep it fair. On a stopped station it plays the
//! request alone: starting the radio stays with `/radio play` and its permission.

use radio_shared::job::{MAX_DURATION_S, SongRequest};
use radio_shared::queue::Admission;
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
        // Counted before anything is enqueued, and answered privately when over the limit.
        let guild = ctx.guild.to_string();
        let member = ctx.user.to_string();
        let request_id = ctx.interaction_id.to_string();
        let limit = ctx.state.config.request_limit;
        if let Admission::Limited { retry_after } = ctx
            .state
            .queue
            .admit_request(&guild, &member, &request_id, limit)
            .await?
        {
            return Err(UserError::TooManyRequests {
                limit: limit.limit,
                window_s: limit.window.as_secs(),
                retry_after_s: retry_after.as_secs_f64().ceil() as u64,
            }
            .into());
        }
        ctx.responder.defer(false).await;
        if !view.attached
            && let Err(e) = station.join(channel).await
        {
            self::refund(ctx, &guild, &member, &request_id).await;
            return Err(e);
        }
        let song = SongRequest {
            duration_s: duration,
            caption: Some(self.prompt),
            lyrics: self.lyrics,
            ..SongRequest::default()
        };
        let progress = ProgressMessage::start(ctx.responder.clone());
        let requested = station
            .request(
                song,
                Some(member.clone()),
                ctx.channel,
                Some(request_id.clone()),
                Some(progress),
            )
            .await;
        if requested.is_err() {
            // Not enqueued (the server's queue is full, Redis failed): it does not count.
            refund(ctx, &guild, &member, &request_id).await;
        }
        requested?;
        Ok(())
    }
}

async fn refund(ctx: &Ctx, guild: &str, member: &str, request_id: &str) {
    if let Err(e) = ctx
        .state
        .queue
        .refund_request(guild, member, request_id)
        .await
    {
        tracing::warn!(error = %e, "could not take back a song request that did not go ahead");
    }
}
