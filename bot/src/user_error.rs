//! Everything a user can get wrong, with the message they see (always ephemeral).

use std::fmt;

/// A mistake or an unmet precondition on the user's side. The `Display` text is what the user reads:
/// it says what is wrong and what to do.
#[derive(Debug, Clone, PartialEq)]
pub enum UserError {
    /// /radio only works in a server.
    NotInGuild,
    /// The command needs the user in a voice channel.
    NotInVoice,
    /// The bot may not connect or speak in the user's voice channel.
    BotLacksVoicePermissions {
        /// The voice channel.
        channel: u64,
        /// The missing permissions, in words.
        missing: String,
    },
    /// The user may not change the station.
    NotPermitted {
        /// The configured DJ role, if any.
        dj_role: Option<String>,
    },
    /// No worker has a fresh heartbeat.
    NoWorkerOnline,
    /// The requested duration is outside what this guild and the live workers accept.
    DurationOutOfRange {
        /// What was asked for, seconds.
        requested: f32,
        /// The shortest accepted, seconds.
        min: f32,
        /// The longest accepted, seconds.
        max: f32,
        /// Which limit sets `max`.
        limited_by: String,
    },
    /// The guild has its cap of unfinished jobs.
    GuildQueueFull {
        /// The cap.
        cap: u32,
    },
    /// The member made as many song requests as the window allows.
    TooManyRequests {
        /// Requests per window.
        limit: u32,
        /// The window, seconds.
        window_s: u64,
        /// Until the next request is admitted, seconds.
        retry_after_s: u64,
    },
    /// Nothing is playing.
    NothingPlaying,
    /// The station is paused already.
    AlreadyPaused,
    /// The station is not paused.
    NotPaused,
    /// The bot is not in a voice channel in this server.
    NotConnected,
    /// The current track is larger than Discord lets the bot upload.
    TooLargeToUpload {
        /// Its size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The track's audio is no longer stored.
    AudioExpired,
    /// An option value is unusable.
    InvalidOption(String),
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserError::NotInGuild => {
                write!(f, "/radio works in servers only, not in direct messages.")
            }
            UserError::NotInVoice => {
                write!(f, "Join a voice channel first, then run the command again.")
            }
            UserError::BotLacksVoicePermissions { channel, missing } => write!(
                f,
                "I can't play in <#{channel}>: I need the {missing} permission there. Ask a server admin to allow it, or pick another channel."
            ),
            UserError::NotPermitted { dj_role } => match dj_role {
                Some(role) => write!(
                    f,
                    "Changing the station needs the Manage Server permission or the `{role}` role."
                ),
                None => write!(
                    f,
                    "Changing the station needs the Manage Server permission."
                ),
            },
            UserError::NoWorkerOnline => write!(
                f,
                "No music worker is online right now, so nothing can be generated. Try again once a worker is running."
            ),
            UserError::DurationOutOfRange {
                requested,
                min,
                max,
                limited_by,
            } => write!(
                f,
                "A track of {requested:.0} s is not possible here: durations must be between {:.0} and {:.0} seconds ({limited_by}).",
                min.ceil(),
                max.floor()
            ),
            UserError::GuildQueueFull { cap } => write!(
                f,
                "This server's queue is full ({cap} songs waiting to be generated). Wait for one to finish, then try again."
            ),
            UserError::TooManyRequests {
                limit,
                window_s,
                retry_after_s,
            } => write!(
                f,
                "You have asked for {limit} songs in the last {}, as many as this radio allows one member. You can ask again in {}.",
                span(*window_s),
                span(*retry_after_s)
            ),
            UserError::NothingPlaying => write!(
                f,
                "Nothing is playing. Start the station with `/radio play`."
            ),
            UserError::AlreadyPaused => write!(
                f,
                "The station is already paused. Use `/radio resume` to continue."
            ),
            UserError::NotPaused => write!(f, "The station isn't paused."),
            UserError::NotConnected => write!(
                f,
                "I'm not in a voice channel in this server. Use `/radio join` or `/radio play`."
            ),
            UserError::TooLargeToUpload { bytes, limit } => write!(
                f,
                "This track is {:.1} MiB, more than the {:.0} MiB Discord lets me upload.",
                *bytes as f64 / 1_048_576.0,
                *limit as f64 / 1_048_576.0
            ),
            UserError::AudioExpired => write!(
                f,
                "This track's audio is no longer stored, so I can't upload it."
            ),
            UserError::InvalidOption(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for UserError {}

/// A length of time as a person says it: "45 s", "12 min", "2 h", "1 h 30 min".
fn span(seconds: u64) -> String {
    match seconds {
        0..=89 => format!("{} s", seconds.max(1)),
        90..=5399 => format!("{} min", seconds.div_ceil(60)),
        _ => {
            let minutes = seconds.div_ceil(60);
            match (minutes / 60, minutes % 60) {
                (h, 0) => format!("{h} h"),
                (h, m) => format!("{h} h {m} min"),
            }
        }
    }
}

/// Why a command did not do what was asked.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandError {
    /// The user's side: shown to them as is.
    User(UserError),
    /// The bot's side (Redis, Discord, a bug): logged; the user gets a short apology.
    Internal(String),
}

impl From<UserError> for CommandError {
    fn from(e: UserError) -> Self {
        CommandError::User(e)
    }
}

impl From<radio_shared::queue::QueueError> for CommandError {
    fn from(e: radio_shared::queue::QueueError) -> Self {
        match e {
            radio_shared::queue::QueueError::GuildFull { cap, .. } => {
                CommandError::User(UserError::GuildQueueFull { cap })
            }
            other => CommandError::Internal(other.to_string()),
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::User(e) => e.fmt(f),
            CommandError::Internal(e) => write!(f, "internal error: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_a_person_says_them() {
        assert_eq!(span(0), "1 s");
        assert_eq!(span(45), "45 s");
        assert_eq!(span(600), "10 min");
        assert_eq!(span(3600), "60 min");
        assert_eq!(span(7200), "2 h");
        assert_eq!(span(5400), "1 h 30 min");
    }
}
