//! What the bot persists about its stations, so that a restart resumes every one of them: per guild the
//! settings and the playback state (which tracks are playing, ready and being generated), the bot's
//! position in the events stream, and the counters `/radio stats` shows.
//!
//! The bot owns the meaning of these records; this module owns where and how they are stored (the key
//! schema stays in [`crate::keys`]). Everything goes through the [`Queue`]'s connection.
//!
//! | key | field / content |
//! | --- | --- |
//! | `{p}:guild:<id>` | `settings` (JSON [`StationSettings`]), `state` (JSON [`StationState`]), `updated_ms` |
//! | `{p}:stations` | guild ids whose state says the station is on (resumed at start) |
//! | `{p}:bot:events_cursor` | the last event id the bot handled |
//! | `{p}:guild:<id>:stats`, `{p}:stats` | counters: `played`, `played_radio`, `played_request`, `generated`, `generated_radio`, `generated_request`, `errors`, `audio_seconds`, `generation_seconds` |
//! | `{p}:guild:<id>:generation_times`, `{p}:stats:generation_times` | the last [`GENERATION_SAMPLES`] generation times (s) |

use std::collections::HashMap;
use std::time::Duration;

use redis::Script;
use serde::{Deserialize, Serialize};

use crate::job::{JobId, ResultMeta, Station};
use crate::queue::{Queue, QueueError, now_ms};

/// How many recent generation times are kept per guild and globally for the mean and p95.
pub const GENERATION_SAMPLES: usize = 500;

/// How long a "this job was counted" marker lives; events older than this are not replayed.
const COUNTED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// A station's settings, changed by `/radio genre`, `/radio auto`, `/radio preset`, ….
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StationSettings {
    /// Genre, theme, style, language and whether songs are instrumental.
    pub music: Station,
    /// Length of the station's tracks, seconds.
    pub duration_s: f32,
    /// The guild's upper bound for any track it requests (`/radio maxlength`), seconds; `None` leaves
    /// only the workers' limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length_s: Option<f32>,
    /// Radio mode: keep generating tracks so the station never goes silent.
    pub auto: bool,
    /// The preset the music settings came from, until one of them is changed by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
}

impl StationSettings {
    /// Default settings with tracks of `duration_s` seconds and radio mode on.
    pub fn with_duration(duration_s: f32) -> Self {
        Self {
            music: Station::default(),
            duration_s,
            max_length_s: None,
            auto: true,
            preset: None,
        }
    }
}

/// Whether a station is playing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaybackStatus {
    /// Off: nothing is generated or played.
    #[default]
    Stopped,
    /// On: tracks play back to back and, in radio mode, the buffer is kept full.
    Playing,
    /// On but paused by a user: the current track holds its position.
    Paused,
}

impl PlaybackStatus {
    /// The station is on (playing or paused).
    pub fn is_on(self) -> bool {
        !matches!(self, PlaybackStatus::Stopped)
    }
}

/// Why a track exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    /// Generated from the station's settings to keep it going.
    Radio,
    /// Asked for by a person (`/radio generate`); plays next.
    Request,
}

impl TrackSource {
    /// The name used in metrics labels and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackSource::Radio => "radio",
            TrackSource::Request => "request",
        }
    }
}

/// A track of a station: a job, and what is known about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StationTrack {
    /// The generation job.
    pub job: JobId,
    /// Why it was made.
    pub source: TrackSource,
    /// The Discord user who asked for it, if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// What the worker recorded, once the job succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Box<ResultMeta>>,
}

/// Where a station's playback is, saved after every change.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StationState {
    /// Playing, paused or stopped.
    pub status: PlaybackStatus,
    /// The voice channel the bot joined for this station.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_channel: Option<String>,
    /// The text channel where the station was started (now-playing announcements go there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce_channel: Option<String>,
    /// The track playing now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now_playing: Option<StationTrack>,
    /// Generated tracks waiting to play, in playing order.
    #[serde(default)]
    pub ready: Vec<StationTrack>,
    /// Jobs still being generated, oldest first.
    #[serde(default)]
    pub generating: Vec<StationTrack>,
    /// Titles played recently, newest last (handed to the song writer to avoid repeats).
    #[serde(default)]
    pub recent_titles: Vec<String>,
    /// On for listeners' requests only: a `/radio generate` found the station stopped. No radio
    /// tracks are generated, and the station stops again once the requests have played; a
    /// `/radio play` turns it into a full station.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requests_only: bool,
}

/// A station as stored: its settings (if ever saved) and its state (default if never saved).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredStation {
    /// The saved settings; `None` for a guild that never changed or started its station.
    pub settings: Option<StationSettings>,
    /// The saved state.
    pub state: StationState,
}

/// Counters of one guild, or of the whole deployment.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct StationStats {
    /// Tracks that started playing.
    pub played: u64,
    /// Of which radio tracks.
    pub played_radio: u64,
    /// Of which requested tracks.
    pub played_request: u64,
    /// Jobs that succeeded.
    pub generated: u64,
    /// Of which radio (auto-queued) tracks.
    pub generated_radio: u64,
    /// Of which requested tracks.
    pub generated_request: u64,
    /// Failed jobs, unplayable results and playback errors.
    pub errors: u64,
    /// Seconds of audio generated.
    pub audio_seconds: f64,
    /// Seconds workers spent generating it.
    pub generation_seconds: f64,
    /// The most recent generation times, seconds, newest first.
    pub recent_generation_s: Vec<f64>,
}

impl StationStats {
    /// Mean of the recent generation times.
    pub fn mean_generation_s(&self) -> Option<f64> {
        let n = self.recent_generation_s.len();
        (n > 0).then(|| self.recent_generation_s.iter().sum::<f64>() / n as f64)
    }

    /// 95th percentile of the recent generation times (nearest rank).
    pub fn p95_generation_s(&self) -> Option<f64> {
        let mut sorted = self.recent_generation_s.clone();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let rank = ((sorted.len() as f64) * 0.95).ceil() as usize;
        sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
    }

    /// Seconds of audio per second of generation over everything counted; above 1 is faster than real
    /// time.
    pub fn realtime_factor(&self) -> Option<f64> {
        (self.generation_seconds > 0.0).then(|| self.audio_seconds / self.generation_seconds)
    }
}

/// Increments a guild's and the global counters, at most once per marker, and records a sample.
const RECORD: &str = r#"
-- KEYS: marker, guild stats, global stats, guild samples, global samples
-- ARGV: marker ttl (0: always count), sample ('' for none), sample cap, then field/increment pairs
if tonumber(ARGV[1]) > 0 then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
    return 0
  end
end
for i = 4, #ARGV, 2 do
  redis.call('HINCRBYFLOAT', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('HINCRBYFLOAT', KEYS[3], ARGV[i], ARGV[i + 1])
end
if ARGV[2] ~= '' then
  local cap = tonumber(ARGV[3]) - 1
  redis.call('LPUSH', KEYS[4], ARGV[2])
  redis.call('LTRIM', KEYS[4], 0, cap)
  redis.call('LPUSH', KEYS[5], ARGV[2])
  redis.call('LTRIM', KEYS[5], 0, cap)
end
return 1
"#;

/// Loads and saves stations. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StationStore {
    queue: Queue,
    record: std::sync::Arc<Script>,
}

impl StationStore {
    /// A store on the deployment `queue` belongs to.
    pub fn new(queue: Queue) -> Self {
        Self {
            queue,
            record: std::sync::Arc::new(Script::new(RECORD)),
        }
    }

    /// The queue it stores through.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// A guild's saved settings and state. Fields that cannot be decoded (written by another version)
    /// are treated as missing, so a station never fails to load.
    pub async fn load(&self, guild: &str) -> Result<StoredStation, QueueError> {
        let mut conn = self.queue.conn();
        let hash: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.queue.keys().guild(guild))
            .query_async(&mut conn)
            .await
            .map_err(redis_err("loading a station"))?;
        let settings = hash.get("settings").and_then(|s| {
            serde_json::from_str(s)
                .map_err(
                    |e| tracing::warn!(guild, error = %e, "ignoring unreadable station settings"),
                )
                .ok()
        });
        let state = hash
            .get("state")
            .and_then(|s| {
                serde_json::from_str(s)
                    .map_err(
                        |e| tracing::warn!(guild, error = %e, "ignoring unreadable station state"),
                    )
                    .ok()
            })
            .unwrap_or_default();
        Ok(StoredStation { settings, state })
    }

    /// Saves a guild's settings.
    pub async fn save_settings(
        &self,
        guild: &str,
        settings: &StationSettings,
    ) -> Result<(), QueueError> {
        let json = to_json("saving station settings", settings)?;
        let mut conn = self.queue.conn();
        redis::cmd("HSET")
            .arg(self.queue.keys().guild(guild))
            .arg("settings")
            .arg(json)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err("saving station settings"))
    }

    /// Saves a guild's state, and lists the guild among the stations to resume while it is on (or
    /// connected to a voice channel).
    pub async fn save_state(&self, guild: &str, state: &StationState) -> Result<(), QueueError> {
        let json = to_json("saving a station's state", state)?;
        let keys = self.queue.keys();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(keys.guild(guild))
            .arg("state")
            .arg(json)
            .arg("updated_ms")
            .arg(now_ms())
            .ignore();
        if state.status.is_on() || state.voice_channel.is_some() {
            pipe.cmd("SADD").arg(keys.stations()).arg(guild).ignore();
        } else {
            pipe.cmd("SREM").arg(keys.stations()).arg(guild).ignore();
        }
        pipe.query_async::<()>(&mut self.queue.conn())
            .await
            .map_err(redis_err("saving a station's state"))
    }

    /// Guild ids whose station was on (or in a voice channel) when last saved.
    pub async fn resumable(&self) -> Result<Vec<String>, QueueError> {
        let mut conn = self.queue.conn();
        let mut guilds: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.queue.keys().stations())
            .query_async(&mut conn)
            .await
            .map_err(redis_err("listing stations to resume"))?;
        guilds.sort();
        Ok(guilds)
    }

    /// The id of the last event the bot handled, if it saved one.
    pub async fn events_cursor(&self) -> Result<Option<String>, QueueError> {
        let mut conn = self.queue.conn();
        redis::cmd("GET")
            .arg(self.queue.keys().bot_events_cursor())
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading the events cursor"))
    }

    /// Saves the id of the last event the bot handled.
    pub async fn save_events_cursor(&self, event_id: &str) -> Result<(), QueueError> {
        let mut conn = self.queue.conn();
        redis::cmd("SET")
            .arg(self.queue.keys().bot_events_cursor())
            .arg(event_id)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err("saving the events cursor"))
    }

    /// Counts a generated track (once per job, however often its event is seen). Returns whether it
    /// was counted now.
    pub async fn record_generated(
        &self,
        guild: &str,
        job: &JobId,
        source: TrackSource,
        meta: &ResultMeta,
    ) -> Result<bool, QueueError> {
        let by_source = format!("generated_{}", source.as_str());
        let audio = f64::from(meta.duration_s).to_string();
        let work = meta.total_seconds.to_string();
        self.record(
            guild,
            Some(("generated", job)),
            Some(meta.total_seconds),
            &[
                ("generated", "1"),
                (&by_source, "1"),
                ("audio_seconds", &audio),
                ("generation_seconds", &work),
            ],
        )
        .await
    }

    /// Counts a track that started playing (once per job).
    pub async fn record_played(
        &self,
        guild: &str,
        job: &JobId,
        source: TrackSource,
    ) -> Result<bool, QueueError> {
        let by_source = format!("played_{}", source.as_str());
        self.record(
            guild,
            Some(("played", job)),
            None,
            &[("played", "1"), (&by_source, "1")],
        )
        .await
    }

    /// Counts an error: a job that failed (once per job when `job` is given), a result that could not be
    /// played, a playback failure.
    pub async fn record_error(&self, guild: &str, job: Option<&JobId>) -> Result<bool, QueueError> {
        self.record(guild, job.map(|j| ("error", j)), None, &[("errors", "1")])
            .await
    }

    async fn record(
        &self,
        guild: &str,
        once: Option<(&str, &JobId)>,
        sample: Option<f64>,
        increments: &[(&str, &str)],
    ) -> Result<bool, QueueError> {
        let keys = self.queue.keys();
        let (marker, ttl) = match once {
            Some((what, job)) => (keys.stats_counted(what, job), COUNTED_TTL.as_secs()),
            // Without a marker the first key is never touched; any key of the slot will do.
            None => (keys.stats(), 0),
        };
        let mut invocation = self.record.key(marker);
        invocation
            .key(keys.guild_stats(guild))
            .key(keys.stats())
            .key(keys.guild_generation_times(guild))
            .key(keys.generation_times())
            .arg(ttl)
            .arg(sample.map(|s| s.to_string()).unwrap_or_default())
            .arg(GENERATION_SAMPLES);
        for (field, by) in increments {
            invocation.arg(*field).arg(*by);
        }
        let counted: i64 = invocation
            .invoke_async(&mut self.queue.conn())
            .await
            .map_err(redis_err("counting station stats"))?;
        Ok(counted == 1)
    }

    /// One guild's counters, or the deployment's with `None`.
    pub async fn stats(&self, guild: Option<&str>) -> Result<StationStats, QueueError> {
        let keys = self.queue.keys();
        let (hash_key, samples_key) = match guild {
            Some(g) => (keys.guild_stats(g), keys.guild_generation_times(g)),
            None => (keys.stats(), keys.generation_times()),
        };
        let mut conn = self.queue.conn();
        let (hash, samples): (HashMap<String, String>, Vec<String>) = redis::pipe()
            .cmd("HGETALL")
            .arg(hash_key)
            .cmd("LRANGE")
            .arg(samples_key)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading station stats"))?;
        let number = |field: &str| {
            hash.get(field)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let count = |field: &str| number(field).max(0.0).round() as u64;
        Ok(StationStats {
            played: count("played"),
            played_radio: count("played_radio"),
            played_request: count("played_request"),
            generated: count("generated"),
            generated_radio: count("generated_radio"),
            generated_request: count("generated_request"),
            errors: count("errors"),
            audio_seconds: number("audio_seconds"),
            generation_seconds: number("generation_seconds"),
            recent_generation_s: samples.iter().filter_map(|s| s.parse().ok()).collect(),
        })
    }
}

fn redis_err(doing: &'static str) -> impl FnOnce(redis::RedisError) -> QueueError {
    move |source| QueueError::Redis { doing, source }
}

fn to_json(doing: &'static str, value: &impl Serialize) -> Result<String, QueueError> {
    serde_json::to_string(value).map_err(|e| QueueError::Protocol {
        doing,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let stats = StationStats {
            recent_generation_s: (1..=100).map(f64::from).rev().collect(),
            ..StationStats::default()
        };
        assert_eq!(stats.p95_generation_s(), Some(95.0));
        assert_eq!(stats.mean_generation_s(), Some(50.5));
        let one = StationStats {
            recent_generation_s: vec![3.0],
            ..StationStats::default()
        };
        assert_eq!(one.p95_generation_s(), Some(3.0));
        assert_eq!(StationStats::default().p95_generation_s(), None);
    }

    #[test]
    fn the_realtime_factor_is_audio_over_work() {
        let stats = StationStats {
            audio_seconds: 120.0,
            generation_seconds: 30.0,
            ..StationStats::default()
        };
        assert_eq!(stats.realtime_factor(), Some(4.0));
        assert_eq!(StationStats::default().realtime_factor(), None);
    }

    #[test]
    fn state_survives_a_round_trip_and_tolerates_missing_fields() {
        let state: StationState = serde_json::from_str(r#"{"status":"playing"}"#).expect("decode");
        assert_eq!(state.status, PlaybackStatus::Playing);
        assert!(state.ready.is_empty());
        let json = serde_json::to_string(&state).expect("encode");
        assert_eq!(
            serde_json::from_str::<StationState>(&json).expect("decode"),
            state
        );
    }
}
