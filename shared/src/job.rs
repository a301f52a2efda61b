//! The job model and its wire format.
//!
//! A job travels as JSON in the `spec` field of a stream entry and of the job's hash. The JSON carries a
//! version number `v`; [`JobSpec::decode`] turns any entry (garbage, bad JSON, an unknown version, values
//! out of range) into a [`DecodeError`], never a panic, so a worker can dead-letter it and move on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The wire version this build writes and reads.
pub const WIRE_VERSION: u32 = 1;

/// The shortest track ACE-Step renders (128 latent frames at 25 frames per second).
pub const MIN_DURATION_S: f32 = 5.12;
/// The longest track any worker can be asked for; each worker's own limit may be lower.
pub const MAX_DURATION_S: f32 = 600.0;

/// A job identifier: a ULID, so ids sort by creation time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// A fresh id.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(ulid::Ulid::new().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for JobId {
    type Err = DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ulid::Ulid::from_string(s)
            .map(|u| Self(u.to_string()))
            .map_err(|_| DecodeError::Invalid {
                field: "id",
                reason: format!("{s:?} is not a job id (26 characters of Crockford base32)"),
            })
    }
}

impl TryFrom<String> for JobId {
    type Error = DecodeError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> Self {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which stream a job waits in. Workers drain `Interactive` before `Radio`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// A person asked for this song and is waiting for it.
    Interactive,
    /// Auto-fill that keeps a station's buffer full.
    Radio,
}

impl Priority {
    /// Streams are claimed in this order.
    pub const CLAIM_ORDER: [Priority; 2] = [Priority::Interactive, Priority::Radio];

    /// The name used in keys, JSON and CLI flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Radio => "radio",
        }
    }
}

impl FromStr for Priority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "interactive" => Ok(Priority::Interactive),
            "radio" => Ok(Priority::Radio),
            other => Err(format!("unknown priority {other:?} (interactive or radio)")),
        }
    }
}

/// Everything a worker needs to run one job. This is the versioned wire format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Wire version, always [`WIRE_VERSION`] when written by this build.
    pub v: u32,
    /// The job's id, also the suffix of its hash key.
    pub id: JobId,
    /// The stream it waits in.
    pub priority: Priority,
    /// The Discord guild the job belongs to; the per-guild cap counts by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<String>,
    /// Who asked (a Discord user id, or `radioctl`), for the record only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Attempts before the job is dead-lettered; `None` takes the deployment's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// What to do.
    #[serde(flatten)]
    pub task: Task,
}

/// The closed set of job kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    /// Write (or take) a song description and render it to audio.
    Generate(GenerateTask),
}

/// A song to generate for a station.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GenerateTask {
    /// The station's musical settings the song writer follows.
    #[serde(default)]
    pub station: Station,
    /// What the requester fixed; everything left `None` is chosen by the song writer.
    pub song: SongRequest,
    /// Titles the station played recently, so the song writer avoids repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_titles: Vec<String>,
    /// The container and codec of the stored result.
    #[serde(default)]
    pub format: AudioFormat,
}

/// The encodings a worker can store a result in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioFormat {
    /// Ogg Opus, 48 kHz stereo, 20 ms frames: what Discord voice plays without re-encoding.
    #[default]
    OggOpus,
    /// 16-bit PCM WAV.
    Wav,
    /// FLAC, 16-bit.
    Flac,
}

impl AudioFormat {
    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            AudioFormat::OggOpus => "ogg",
            AudioFormat::Wav => "wav",
            AudioFormat::Flac => "flac",
        }
    }

    /// The format a file name asks for (`.ogg`/`.opus`, `.wav`, `.flac`).
    pub fn from_path(path: &std::path::Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "ogg" | "opus" => Some(AudioFormat::OggOpus),
            "wav" => Some(AudioFormat::Wav),
            "flac" => Some(AudioFormat::Flac),
            _ => None,
        }
    }

    /// The media type to serve it with.
    pub fn mime(self) -> &'static str {
        match self {
            AudioFormat::OggOpus => "audio/ogg",
            AudioFormat::Wav => "audio/wav",
            AudioFormat::Flac => "audio/flac",
        }
    }

    /// The name used in JSON and CLI flags.
    pub fn as_str(self) -> &'static str {
        match self {
            AudioFormat::OggOpus => "ogg_opus",
            AudioFormat::Wav => "wav",
            AudioFormat::Flac => "flac",
        }
    }
}

impl FromStr for AudioFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ogg_opus" | "ogg" | "opus" => Ok(AudioFormat::OggOpus),
            "wav" => Ok(AudioFormat::Wav),
            "flac" => Ok(AudioFormat::Flac),
            other => Err(format!("unknown audio format {other:?} (ogg, wav or flac)")),
        }
    }
}

/// A station's musical settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Station {
    /// e.g. `lofi hip hop`.
    pub genre: String,
    /// What the songs are about, e.g. `rainy city nights`.
    pub theme: String,
    /// Production style, e.g. `warm tape, mellow keys`.
    #[serde(default)]
    pub style: String,
    /// Language of the lyrics as an ISO 639-1 code, e.g. `en`.
    pub language: String,
    /// No vocals at all.
    #[serde(default)]
    pub instrumental: bool,
}

impl Default for Station {
    fn default() -> Self {
        Self {
            genre: "lofi hip hop".into(),
            theme: "late night city".into(),
            style: String::new(),
            language: "en".into(),
            instrumental: false,
        }
    }
}

/// The parts of a song a requester may fix in advance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SongRequest {
    /// Length of the track in seconds.
    pub duration_s: f32,
    /// A caption for ACE-Step (skips the song writer together with `lyrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// Lyrics with section tags, or `[Instrumental]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lyrics: Option<String>,
    /// Seed for the song writer and the diffusion noise; `None` picks one and records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Tempo, 30–300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpm: Option<u16>,
    /// e.g. `C major`, `F# minor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyscale: Option<String>,
    /// Beats per bar: 2, 3, 4 or 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timesignature: Option<u8>,
    /// Lyrics language (ISO 639-1), overriding the station's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Timestep shift of the turbo schedule: 1, 2 or 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<u8>,
}

impl Default for SongRequest {
    fn default() -> Self {
        Self {
            duration_s: 60.0,
            caption: None,
            lyrics: None,
            seed: None,
            bpm: None,
            keyscale: None,
            timesignature: None,
            language: None,
            shift: None,
        }
    }
}

/// Why a stream entry or a job hash could not be turned into a [`JobSpec`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The entry lacks a field every entry must have.
    #[error("entry has no {0:?} field")]
    MissingField(&'static str),
    /// The spec is not JSON, or not a job of any known shape.
    #[error("spec is not a valid job: {0}")]
    BadJson(String),
    /// The spec was written by a newer (or older) build.
    #[error("spec has wire version {found}, this build reads version {WIRE_VERSION}")]
    UnknownVersion {
        /// The version found.
        found: u64,
    },
    /// A value is out of its range.
    #[error("{field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

const MAX_TEXT: usize = 4_000;
const MAX_LYRICS: usize = 12_000;
const MAX_TITLES: usize = 50;

impl JobSpec {
    /// A version-1 generation job with a fresh id.
    pub fn generate(priority: Priority, task: GenerateTask) -> Self {
        Self {
            v: WIRE_VERSION,
            id: JobId::new(),
            priority,
            guild_id: None,
            requested_by: None,
            max_attempts: None,
            task: Task::Generate(task),
        }
    }

    /// Serialises to the wire format.
    pub fn encode(&self) -> String {
        // Serialising plain structs with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"encode_error\":\"{e}\"}}"))
    }

    /// Parses and validates a spec from the wire.
    pub fn decode(raw: &str) -> Result<Self, DecodeError> {
        let value: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| DecodeError::BadJson(e.to_string()))?;
        let version = value
            .get("v")
            .ok_or(DecodeError::MissingField("v"))?
            .as_u64()
            .ok_or_else(|| DecodeError::BadJson("\"v\" is not a number".into()))?;
        if version != u64::from(WIRE_VERSION) {
            return Err(DecodeError::UnknownVersion { found: version });
        }
        let spec: JobSpec =
            serde_json::from_value(value).map_err(|e| DecodeError::BadJson(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks every range and length, so a worker never starts on a job it must refuse later.
    pub fn validate(&self) -> Result<(), DecodeError> {
        let invalid = |field, reason: String| Err(DecodeError::Invalid { field, reason });
        if let Some(0) = self.max_attempts {
            return invalid("max_attempts", "must be at least 1".into());
        }
        let Task::Generate(task) = &self.task;
        let song = &task.song;
        if !song.duration_s.is_finite()
            || !(MIN_DURATION_S..=MAX_DURATION_S).contains(&song.duration_s)
        {
            return invalid(
                "song.duration_s",
                format!(
                    "{} is outside {MIN_DURATION_S}..={MAX_DURATION_S} seconds",
                    song.duration_s
                ),
            );
        }
        if let Some(bpm) = song.bpm
            && !(30..=300).contains(&bpm)
        {
            return invalid("song.bpm", format!("{bpm} is outside 30..=300"));
        }
        if let Some(ts) = song.timesignature
            && !TIME_SIGNATURES.contains(&ts)
        {
            return invalid(
                "song.timesignature",
                format!("{ts} is not one of 2, 3, 4, 6"),
            );
        }
        if let Some(shift) = song.shift
            && !(1..=3).contains(&shift)
        {
            return invalid("song.shift", format!("{shift} is not 1, 2 or 3"));
        }
        if let Some(k) = &song.keyscale
            && normalize_keyscale(k).is_none()
        {
            return invalid(
                "song.keyscale",
                format!("{k:?} is not a key like \"C major\" or \"F# minor\""),
            );
        }
        for (field, text, max) in [
            ("song.caption", song.caption.as_deref(), MAX_TEXT),
            ("song.lyrics", song.lyrics.as_deref(), MAX_LYRICS),
            ("station.genre", Some(task.station.genre.as_str()), 200),
            ("station.theme", Some(task.station.theme.as_str()), 500),
            ("station.style", Some(task.station.style.as_str()), 500),
        ] {
            if let Some(text) = text
                && text.chars().count() > max
            {
                return invalid(field, format!("longer than {max} characters"));
            }
        }
        for (field, lang) in [
            ("station.language", Some(task.station.language.as_str())),
            ("song.language", song.language.as_deref()),
        ] {
            if let Some(lang) = lang
                && !is_language_code(lang)
            {
                return invalid(
                    field,
                    format!("{lang:?} is not a language code like \"en\" or \"unknown\""),
                );
            }
        }
        if task.recent_titles.len() > MAX_TITLES {
            return invalid("recent_titles", format!("more than {MAX_TITLES} titles"));
        }
        Ok(())
    }

    /// The generation task (the only kind today).
    pub fn generate_task(&self) -> &GenerateTask {
        let Task::Generate(task) = &self.task;
        task
    }
}

/// Beats per bar ACE-Step understands.
pub const TIME_SIGNATURES: [u8; 4] = [2, 3, 4, 6];

const NOTES: [&str; 17] = [
    "C", "C#", "Db", "D", "D#", "Eb", "E", "F", "F#", "Gb", "G", "G#", "Ab", "A", "A#", "Bb", "B",
];

/// Normalises a key like `f# MINOR` to `F# minor`; `None` when it is not a key ACE-Step knows.
pub fn normalize_keyscale(raw: &str) -> Option<String> {
    let mut parts = raw.split_whitespace();
    let (note, mode) = (parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let mut chars = note.chars();
    let first = chars.next()?.to_ascii_uppercase();
    let note: String = std::iter::once(first).chain(chars).collect();
    let note = NOTES.iter().find(|n| **n == note)?;
    let mode = match mode.to_ascii_lowercase().as_str() {
        "major" | "maj" => "major",
        "minor" | "min" => "minor",
        _ => return None,
    };
    Some(format!("{note} {mode}"))
}

/// `en`, `pt`, `zh`, … or `unknown`: two or three lowercase letters.
pub fn is_language_code(code: &str) -> bool {
    code == "unknown"
        || ((2..=3).contains(&code.len()) && code.chars().all(|c| c.is_ascii_lowercase()))
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting in its stream.
    Queued,
    /// A worker holds it.
    Running,
    /// Failed an attempt; waiting in the delayed set for its backoff.
    Retrying,
    /// Finished; the result is stored.
    Succeeded,
    /// Failed for good; it is in the dead stream.
    Failed,
    /// Cancelled by a user or an operator.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Retrying,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// The name stored in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// No further transition happens (except an operator's `retry` of a failed job).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown state {s:?} (one of queued, running, retrying, succeeded, failed, cancelled)"
                )
            })
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The phases of a generation job; progress and stage timings are reported per stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The LLM writes title, caption and lyrics.
    Llm,
    /// Text, lyric and timbre encoders.
    TextEncode,
    /// The eight DiT steps.
    Diffusion,
    /// The tiled VAE decode.
    VaeDecode,
    /// Normalising and encoding to Ogg Opus.
    Encode,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 5] = [
        Stage::Llm,
        Stage::TextEncode,
        Stage::Diffusion,
        Stage::VaeDecode,
        Stage::Encode,
    ];

    /// The label used in metrics and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Llm => "llm",
            Stage::TextEncode => "text_encode",
            Stage::Diffusion => "diffusion",
            Stage::VaeDecode => "vae_decode",
            Stage::Encode => "encode",
        }
    }

    /// How a person would say it ("writing the song", "generating").
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Llm => "writing the song",
            Stage::TextEncode => "reading the prompt",
            Stage::Diffusion => "generating",
            Stage::VaeDecode => "decoding audio",
            Stage::Encode => "encoding",
        }
    }
}

/// Progress of a running job.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The stage running now.
    pub stage: Stage,
    /// Fraction of the whole job done, 0.0–1.0.
    pub fraction: f32,
}

/// Which component wrote the song description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Writer {
    /// The requester supplied caption and lyrics.
    User,
    /// The LLM song writer.
    Llm,
    /// The template writer (no model configured, or the LLM failed).
    Template,
}

impl Writer {
    /// The name used in JSON, metrics labels and `radioctl show`.
    pub fn as_str(self) -> &'static str {
        match self {
            Writer::User => "user",
            Writer::Llm => "llm",
            Writer::Template => "template",
        }
    }
}

/// What a worker records about a finished track. Shown by the bot's now-playing embed and by `radioctl show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultMeta {
    /// Song title.
    pub title: String,
    /// The caption ACE-Step was given.
    pub caption: String,
    /// The lyrics ACE-Step was given.
    pub lyrics: String,
    /// Tempo.
    pub bpm: Option<u16>,
    /// Key, e.g. `A minor`.
    pub keyscale: Option<String>,
    /// Beats per bar.
    pub timesignature: Option<u8>,
    /// Lyrics language.
    pub language: String,
    /// Length of the audio in seconds.
    pub duration_s: f32,
    /// The seed that reproduces this track.
    pub seed: u64,
    /// Which writer produced the description.
    pub writer: Writer,
    /// The worker that rendered it.
    pub worker: String,
    /// Container and codec of the stored result.
    pub format: AudioFormat,
    /// Seconds spent per stage, keyed by [`Stage::as_str`].
    #[serde(default)]
    pub stage_seconds: std::collections::BTreeMap<String, f64>,
    /// Wall time from claim to result, seconds.
    pub total_seconds: f64,
    /// Peak GPU memory during the job, bytes (0 on CPU).
    #[serde(default)]
    pub peak_vram_bytes: u64,
}

impl ResultMeta {
    /// Seconds of audio per second of work; above 1 is faster than real time.
    pub fn realtime_factor(&self) -> f64 {
        if self.total_seconds > 0.0 {
            f64::from(self.duration_s) / self.total_seconds
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JobSpec {
        JobSpec::generate(
            Priority::Radio,
            GenerateTask {
                station: Station::default(),
                song: SongRequest {
                    duration_s: 30.0,
                    keyscale: Some("A minor".into()),
                    ..SongRequest::default()
                },
                recent_titles: vec!["Neon Rain".into()],
                format: AudioFormat::OggOpus,
            },
        )
    }

    #[test]
    fn specs_round_trip() {
        let spec = sample();
        assert_eq!(JobSpec::decode(&spec.encode()), Ok(spec));
    }

    #[test]
    fn malformed_specs_become_typed_errors() {
        type Check = fn(&DecodeError) -> bool;
        let cases: [(&str, Check); 5] = [
            ("not json", |e| matches!(e, DecodeError::BadJson(_))),
            ("{}", |e| matches!(e, DecodeError::MissingField("v"))),
            ("{\"v\": 99}", |e| {
                matches!(e, DecodeError::UnknownVersion { found: 99 })
            }),
            ("{\"v\": \"one\"}", |e| matches!(e, DecodeError::BadJson(_))),
            (
                "{\"v\": 1, \"id\": \"nope\", \"kind\": \"generate\"}",
                |e| matches!(e, DecodeError::BadJson(_)),
            ),
        ];
        for (raw, expected) in cases {
            let err = JobSpec::decode(raw).expect_err(raw);
            assert!(expected(&err), "{raw}: {err:?}");
        }
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let mut spec = sample();
        let Task::Generate(task) = &mut spec.task;
        task.song.duration_s = 4000.0;
        let err = JobSpec::decode(&spec.encode()).expect_err("too long");
        assert!(err.to_string().contains("song.duration_s"), "{err}");

        let mut spec = sample();
        let Task::Generate(task) = &mut spec.task;
        task.song.keyscale = Some("H major".into());
        assert!(matches!(
            spec.validate(),
            Err(DecodeError::Invalid {
                field: "song.keyscale",
                ..
            })
        ));
    }

    #[test]
    fn keys_are_normalised() {
        assert_eq!(normalize_keyscale("f# MINOR").as_deref(), Some("F# minor"));
        assert_eq!(normalize_keyscale("Bb maj").as_deref(), Some("Bb major"));
        assert_eq!(normalize_keyscale("C"), None);
        assert_eq!(normalize_keyscale("X major"), None);
    }
}
