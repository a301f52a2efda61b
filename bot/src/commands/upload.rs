//! `/radio upload`: the current track as an Ogg Opus attachment, within Discord's upload limit.

use twilight_util::builder::command::SubCommandBuilder;

use super::Ctx;
use crate::interaction::Reply;
use crate::render;
use crate::track_cache;
use crate::user_error::{CommandError, UserError};

/// The largest file a bot may attach without a boosted server (10 MiB).
pub const UPLOAD_LIMIT_BYTES: u64 = 10 * 1024 * 1024;

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("upload", "Post the current track as an audio file")
}

/// A file name from a title: letters, digits, `-` and `_`, at most 60 characters.
pub fn file_name(title: &str) -> String {
    let mut name: String = title
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '_' })
        .collect::<String>()
        .split('_')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("_")
        .chars()
        .take(60)
        .collect();
    if name.is_empty() {
        name = "track".into();
    }
    format!("{name}.ogg")
}

/// Posts it.
pub async fn run(ctx: &Ctx) -> Result<(), CommandError> {
    let view = ctx.station().view().await?;
    let track = view.state.now_playing.ok_or(UserError::NothingPlaying)?;
    ctx.responder.defer(false).await;
    let audio = track_cache::collect(&ctx.state.queue, &ctx.state.tracks, ctx.guild, &track.job)
        .await?
        .ok_or(UserError::AudioExpired)?
        .to_vec();
    let size = audio.len() as u64;
    if size > UPLOAD_LIMIT_BYTES {
        return Err(UserError::TooLargeToUpload {
            bytes: size,
            limit: UPLOAD_LIMIT_BYTES,
        }
        .into());
    }
    let title = render::title(&track);
    ctx.responder
        .send(Reply {
            content: Some(format!("🎵 **{title}**")),
            attachment: Some((file_name(&title), audio)),
            ..Reply::default()
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_name("Neon Rain (Live!)"), "Neon_Rain_Live.ogg");
        assert_eq!(file_name("../../etc"), "etc.ogg");
        assert_eq!(file_name("???"), "track.ogg");
    }
}
