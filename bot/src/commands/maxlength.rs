//! `/radio maxlength`: the longest track this server asks for (bounded by `MAX_LENGTH_MAX`).

use radio_shared::job::{MAX_DURATION_S, MIN_DURATION_S};
use twilight_util::builder::command::{IntegerBuilder, SubCommandBuilder};

use super::Ctx;
use crate::interaction::Reply;
use crate::user_error::{CommandError, UserError};

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("maxlength", "Set the longest track this server may request").option(
        IntegerBuilder::new("seconds", "Longest track, in seconds")
            .required(true)
            .min_value(1)
            .max_value(MAX_DURATION_S as i64),
    )
}

/// Sets it; the station's track length shrinks with it if needed.
pub async fn run(ctx: &Ctx, seconds: i64) -> Result<(), CommandError> {
    let max = ctx.state.config.max_length_max_s;
    let value = seconds as f32;
    if !(MIN_DURATION_S..=max).contains(&value) {
        return Err(UserError::DurationOutOfRange {
            requested: value,
            min: MIN_DURATION_S,
            max,
            limited_by: format!("the bot allows a maxlength up to {max:.0} s"),
        }
        .into());
    }
    let view = ctx
        .station()
        .update(Box::new(move |s| {
            s.max_length_s = Some(value);
            s.duration_s = s.duration_s.min(value);
        }))
        .await?;
    ctx.responder
        .send(Reply::text(format!(
            "📏 Tracks are now at most **{seconds} s** (the station's tracks are {:.0} s).",
            view.settings.duration_s
        )))
        .await;
    Ok(())
}
