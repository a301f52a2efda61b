//! The song writer: turns a station's settings and a request into a song description
//! (`title`, `caption`, `lyrics`, `bpm`, `keyscale`, `timesignature`, `language`) that ACE-Step can render.
//!
//! Three writers stand behind one entry point, [`SongWriters::write`]:
//!
//! - **User**: the request fixed both caption and lyrics, so nothing is written; the missing musical fields
//!   come from the template writer.
//! - **LLM** ([`LlamaSongWriter`]): a GGUF model run by llama.cpp writes JSON under a grammar built from a JSON
//!   schema, so the output always parses; Rust then validates every field again and repairs what it can
//!   ([`repair_llm_output`]).
//! - **Template** ([`TemplateSongWriter`]): deterministic word banks. Used when no model is configured, when the
//!   model fails, times out or writes something unusable.
//!
//! Fields the requester fixed always win over anything a writer produced. A job never fails for lack of
//! lyrics: the only error [`SongWriters::write`] returns is [`Cancelled`].
//!
//! **Threading:** writing with the LLM is seconds of blocking CPU/GPU work. [`SongWriters`] is `Send` (not
//! `Sync`); run it on a blocking thread (`tokio::task::spawn_blocking` or a dedicated thread) and pass a
//! cancellation check, which is called between tokens on that same thread.

mod config;
mod lenient_json;
mod llama;
mod lyrics;
mod prompt;
pub mod quality;
mod repair;
mod template;

use std::fmt;
use std::time::{Duration, Instant};

use radio_shared::job::{
    GenerateTask, MAX_DURATION_S, MIN_DURATION_S, SongRequest, Station, TIME_SIGNATURES, Writer,
    is_language_code, normalize_keyscale,
};
use serde::{Deserialize, Serialize};

pub use config::{
    DEFAULT_CONTEXT_SIZE, DEFAULT_MAX_TOKENS, DEFAULT_TIMEOUT, LlmPlacement, SongWriterConfig,
};
pub use llama::{
    GenerateError, Generation, LlamaSongWriter, LoadError, ModelInfo, PromptFormat, StopReason,
    llama_backend,
};
pub use lyrics::{INSTRUMENTAL, LyricsPlan, MAX_LINE_CHARS, SECTION_TAGS};
pub use repair::{Repaired, SongField, Unusable, repair_llm_output};
pub use template::TemplateSongWriter;

/// The longest title a writer returns, in characters.
pub const MAX_TITLE_CHARS: usize = 60;
/// The longest caption a writer returns, in characters (requester-fixed captions may be longer).
pub const MAX_CAPTION_CHARS: usize = 300;

/// Everything a writer needs to know about the song to write.
#[derive(Debug, Clone, PartialEq)]
pub struct SongBrief {
    /// The station's genre, theme, style, language and instrumental flag.
    pub station: Station,
    /// The requested duration and whatever fields the requester fixed; fixed fields always win.
    pub request: SongRequest,
    /// Titles the station played recently; the new title differs from all of them (ignoring case).
    pub recent_titles: Vec<String>,
    /// Seeds the LLM's sampler and the template writer, so a job's seed reproduces its description.
    pub seed: u64,
}

impl SongBrief {
    /// The brief for a generation job. `seed` is the job's seed (the claim loop picks one when the request
    /// has none, and records it).
    pub fn from_task(task: &GenerateTask, seed: u64) -> Self {
        Self {
            station: task.station.clone(),
            request: task.song.clone(),
            recent_titles: task.recent_titles.clone(),
            seed,
        }
    }

    /// The requested duration in seconds, clamped to what ACE-Step renders.
    pub fn duration_s(&self) -> f32 {
        let d = self.request.duration_s;
        if d.is_finite() {
            d.clamp(MIN_DURATION_S, MAX_DURATION_S)
        } else {
            60.0
        }
    }

    /// The lyrics language: the request's, else the station's; `unknown` when neither is a language code.
    pub fn language(&self) -> String {
        [
            self.request.language.as_deref(),
            Some(self.station.language.as_str()),
        ]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|code| is_language_code(code))
        .unwrap_or("unknown")
        .to_string()
    }

    /// No vocals: the station is instrumental and the requester did not supply lyrics, or the requester's
    /// lyrics are `[Instrumental]`.
    pub fn instrumental(&self) -> bool {
        match self.request.lyrics.as_deref().map(str::trim) {
            Some(lyrics) if !lyrics.is_empty() => lyrics.eq_ignore_ascii_case(INSTRUMENTAL),
            _ => self.station.instrumental,
        }
    }

    /// How many sections and lines the lyrics should have for the requested duration.
    pub fn lyrics_plan(&self) -> LyricsPlan {
        LyricsPlan::for_duration(self.duration_s())
    }

    /// True when `title` equals a recent title, ignoring case and surrounding whitespace.
    pub fn is_recent_title(&self, title: &str) -> bool {
        let title = title.trim().to_lowercase();
        self.recent_titles
            .iter()
            .any(|recent| recent.trim().to_lowercase() == title)
    }

    /// The requester's caption, when non-empty.
    fn fixed_caption(&self) -> Option<&str> {
        non_empty(self.request.caption.as_deref())
    }

    /// The requester's lyrics, when non-empty.
    fn fixed_lyrics(&self) -> Option<&str> {
        non_empty(self.request.lyrics.as_deref())
    }

    /// The requester's key, normalised; `None` when unset or not a key ACE-Step knows.
    fn fixed_keyscale(&self) -> Option<String> {
        self.request
            .keyscale
            .as_deref()
            .and_then(normalize_keyscale)
    }

    /// The requester's tempo when it is in range.
    fn fixed_bpm(&self) -> Option<u16> {
        self.request.bpm.filter(|b| (30..=300).contains(b))
    }

    /// The requester's time signature when ACE-Step accepts it.
    fn fixed_timesignature(&self) -> Option<u8> {
        self.request
            .timesignature
            .filter(|t| TIME_SIGNATURES.contains(t))
    }
}

fn non_empty(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

/// A validated song description, ready for ACE-Step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SongDescription {
    /// Song title, at most [`MAX_TITLE_CHARS`] characters, not one of the station's recent titles.
    pub title: String,
    /// What the music sounds like (genre, mood, instruments, vocals), ACE-Step's text prompt.
    pub caption: String,
    /// Lyrics with section tags (`[verse]`, `[chorus]`, …), or exactly `[Instrumental]`.
    pub lyrics: String,
    /// Tempo in beats per minute, 30–300.
    pub bpm: u16,
    /// Key and mode as ACE-Step spells it, e.g. `C major`, `F# minor`.
    pub keyscale: String,
    /// Beats per bar: 2, 3, 4 or 6.
    pub timesignature: u8,
    /// Lyrics language: an ISO 639-1 code, or `unknown`.
    pub language: String,
}

/// Why a description breaks the rules (see [`SongDescription::check`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("song description field {field}: {problem}")]
pub struct DescriptionProblem {
    /// The offending field.
    pub field: SongField,
    /// What is wrong, in words.
    pub problem: String,
}

impl SongDescription {
    /// Checks every rule a writer guarantees for `brief`: ranges, allowed keys and time signatures, the
    /// language code, text without control characters, section-tagged lyrics sized to the duration (or
    /// `[Instrumental]`), and a title that is not a recent one. Requester-fixed captions and lyrics are taken
    /// as given.
    pub fn check(&self, brief: &SongBrief) -> Result<(), DescriptionProblem> {
        let fail = |field, problem: String| Err(DescriptionProblem { field, problem });
        let title_chars = self.title.chars().count();
        if self.title.trim().is_empty() || title_chars > MAX_TITLE_CHARS {
            return fail(
                SongField::Title,
                format!("must have 1..={MAX_TITLE_CHARS} characters, has {title_chars}"),
            );
        }
        if brief.is_recent_title(&self.title) {
            return fail(
                SongField::Title,
                format!("{:?} was played recently", self.title),
            );
        }
        if self.title.chars().any(char::is_control) {
            return fail(SongField::Title, "contains control characters".into());
        }
        if brief.fixed_caption().is_none() {
            let chars = self.caption.chars().count();
            if self.caption.trim().is_empty() || chars > MAX_CAPTION_CHARS {
                return fail(
                    SongField::Caption,
                    format!("must have 1..={MAX_CAPTION_CHARS} characters, has {chars}"),
                );
            }
            if self.caption.chars().any(char::is_control) {
                return fail(SongField::Caption, "contains control characters".into());
            }
        }
        if !(30..=300).contains(&self.bpm) {
            return fail(SongField::Bpm, format!("{} is outside 30..=300", self.bpm));
        }
        if normalize_keyscale(&self.keyscale).as_deref() != Some(self.keyscale.as_str()) {
            return fail(
                SongField::Keyscale,
                format!("{:?} is not a key like \"C major\"", self.keyscale),
            );
        }
        if !TIME_SIGNATURES.contains(&self.timesignature) {
            return fail(
                SongField::Timesignature,
                format!("{} is not 2, 3, 4 or 6", self.timesignature),
            );
        }
        if !is_language_code(&self.language) {
            return fail(
                SongField::Language,
                format!("{:?} is not a language code", self.language),
            );
        }
        if brief.fixed_lyrics().is_none() {
            if brief.instrumental() {
                if self.lyrics != INSTRUMENTAL {
                    return fail(
                        SongField::Lyrics,
                        format!("an instrumental song must have exactly {INSTRUMENTAL}"),
                    );
                }
            } else {
                brief
                    .lyrics_plan()
                    .check(&self.lyrics)
                    .map_err(|problem| DescriptionProblem {
                        field: SongField::Lyrics,
                        problem,
                    })?;
            }
        }
        Ok(())
    }
}

/// The song was cancelled while it was being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the job was cancelled while its song was being written")]
pub struct Cancelled;

/// Why the LLM's description was not used (or not used as it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterNote {
    /// The LLM wrote the description, but some fields were repaired or filled in from the template writer.
    Repaired {
        /// The fields that were changed.
        fields: Vec<SongField>,
        /// What the quality checks found (copied instructions, loops, …).
        findings: Vec<quality::Finding>,
        /// Why generation ended.
        stop: StopReason,
    },
    /// The LLM could not be used for this song; the template writer wrote all of it.
    LlmFailed {
        /// What went wrong, in words, for the job record and the logs.
        reason: String,
    },
}

impl fmt::Display for WriterNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriterNote::Repaired { fields, stop, .. } if fields.is_empty() => {
                write!(f, "LLM output used as written; generation {stop}")
            }
            WriterNote::Repaired {
                fields,
                findings,
                stop,
            } => {
                let mut names: Vec<String> =
                    fields.iter().map(|f| f.as_str().to_string()).collect();
                if !findings.is_empty() {
                    let found: Vec<String> = findings.iter().map(ToString::to_string).collect();
                    names.push(format!("found {}", found.join(", ")));
                }
                write!(
                    f,
                    "LLM output repaired ({}); generation {stop}",
                    names.join(", ")
                )
            }
            WriterNote::LlmFailed { reason } => {
                write!(f, "template writer used because {reason}")
            }
        }
    }
}

/// What writing one song cost, for metrics and the job's timings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WriteStats {
    /// Tokens of the prompt the model read (0 without the LLM).
    pub prompt_tokens: u32,
    /// Tokens the model generated (0 without the LLM).
    pub generated_tokens: u32,
    /// Time spent loading the model for this song (non-zero only when it is not kept resident).
    pub load_time: Duration,
    /// Time spent reading the prompt.
    pub prompt_time: Duration,
    /// Time spent generating tokens.
    pub generation_time: Duration,
    /// Wall time of the whole [`SongWriters::write`] call.
    pub total_time: Duration,
}

impl WriteStats {
    /// Generated tokens per second of generation time; 0 when nothing was generated.
    pub fn tokens_per_second(&self) -> f64 {
        let secs = self.generation_time.as_secs_f64();
        if self.generated_tokens == 0 || secs <= 0.0 {
            0.0
        } else {
            f64::from(self.generated_tokens) / secs
        }
    }
}

/// A written song: the description, who wrote it, and how it went.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenSong {
    /// The validated description.
    pub description: SongDescription,
    /// Which writer produced it ([`Writer::Llm`] also when some fields were repaired).
    pub writer: Writer,
    /// Set when the LLM's output was repaired or the LLM could not be used.
    pub note: Option<WriterNote>,
    /// Tokens and timings.
    pub stats: WriteStats,
}

/// Anything that writes song descriptions.
pub trait SongWriter: Send {
    /// Writes a description for `brief`. `should_stop` is polled between steps; when it returns true the
    /// writer stops and returns [`Cancelled`]. No other error: a writer that fails falls back to templates.
    fn write(
        &mut self,
        brief: &SongBrief,
        should_stop: &dyn Fn() -> bool,
    ) -> Result<WrittenSong, Cancelled>;
}

/// The song writer the claim loop calls: the LLM when one is configured and loads, else templates.
#[derive(Debug)]
pub struct SongWriters {
    /// The LLM writer; `None` when no model is configured or it failed to load at start.
    llm: Option<LlamaSongWriter>,
    /// Fills in for the LLM, and supplies what it leaves out.
    template: TemplateSongWriter,
    /// Why there is no LLM writer, for status output.
    llm_unavailable: Option<String>,
}

impl SongWriters {
    /// Builds the writers from settings and the memory plan's placement for the LLM.
    ///
    /// With `LLM_MODEL_PATH` unset, only the template writer is used (logged once, at info level). A
    /// missing or corrupt model is an error when `LLM_REQUIRED` is true; otherwise it is logged once as a
    /// warning, and the template writer is used. Call this at start, on a blocking thread: it loads the
    /// model (to check it even when the plan does not keep it resident).
    pub fn from_config(
        config: &SongWriterConfig,
        placement: LlmPlacement,
    ) -> Result<Self, LoadError> {
        let Some(path) = config.model_path.as_ref() else {
            if config.required {
                return Err(LoadError::NotConfigured);
            }
            tracing::info!(
                "no LLM configured (LLM_MODEL_PATH is unset): songs are written by the template writer"
            );
            return Ok(Self::template_only(Some(
                "no LLM is configured (LLM_MODEL_PATH is unset)".into(),
            )));
        };
        match LlamaSongWriter::load(config, placement) {
            Ok(llm) => Ok(Self {
                llm: Some(llm),
                template: TemplateSongWriter,
                llm_unavailable: None,
            }),
            Err(e) if config.required => Err(e),
            Err(e) => {
                tracing::warn!(
                    model = %path.display(),
                    error = %e,
                    "LLM song writer unavailable, songs are written by the template writer (set LLM_REQUIRED=true to refuse to start instead)"
                );
                Ok(Self::template_only(Some(e.to_string())))
            }
        }
    }

    /// Only the template writer. `reason` says why there is no LLM (kept for [`SongWriters::llm_unavailable`]).
    pub fn template_only(reason: Option<String>) -> Self {
        Self {
            llm: None,
            template: TemplateSongWriter,
            llm_unavailable: reason,
        }
    }

    /// Uses an already loaded LLM writer.
    pub fn with_llm(llm: LlamaSongWriter) -> Self {
        Self {
            llm: Some(llm),
            template: TemplateSongWriter,
            llm_unavailable: None,
        }
    }

    /// The LLM writer, when one is configured and loaded at start.
    pub fn llm(&self) -> Option<&LlamaSongWriter> {
        self.llm.as_ref()
    }

    /// Mutable access to the LLM writer (e.g. to [`LlamaSongWriter::unload`] it before a memory-hungry phase).
    pub fn llm_mut(&mut self) -> Option<&mut LlamaSongWriter> {
        self.llm.as_mut()
    }

    /// Why there is no LLM writer (`None` when there is one).
    pub fn llm_unavailable(&self) -> Option<&str> {
        self.llm_unavailable.as_deref()
    }

    /// Releases the model's memory now; the next LLM song reloads it. A no-op without an LLM.
    pub fn unload(&mut self) {
        if let Some(llm) = self.llm.as_mut() {
            llm.unload();
        }
    }

    /// Writes a song description for `brief`.
    ///
    /// Returns the validated description, the writer that produced it ([`Writer::User`] when the request
    /// fixed caption and lyrics, [`Writer::Llm`], or [`Writer::Template`]), a [`WriterNote`] when the LLM's
    /// output was repaired or could not be used, and [`WriteStats`]. The only error is [`Cancelled`], when
    /// `should_stop` returned true (it is polled between tokens). Blocking: see the module docs.
    pub fn write(
        &mut self,
        brief: &SongBrief,
        should_stop: &dyn Fn() -> bool,
    ) -> Result<WrittenSong, Cancelled> {
        let started = Instant::now();
        if should_stop() {
            return Err(Cancelled);
        }
        let template = self.template.describe(brief);
        if brief.fixed_caption().is_some() && brief.fixed_lyrics().is_some() {
            let description = finalize(user_description(brief, template), brief);
            return Ok(WrittenSong {
                description,
                writer: Writer::User,
                note: None,
                stats: WriteStats {
                    total_time: started.elapsed(),
                    ..WriteStats::default()
                },
            });
        }
        let Some(llm) = self.llm.as_mut() else {
            return Ok(WrittenSong {
                description: finalize(template, brief),
                writer: Writer::Template,
                note: None,
                stats: WriteStats {
                    total_time: started.elapsed(),
                    ..WriteStats::default()
                },
            });
        };
        let (written, stats) = match llm.generate(brief, should_stop) {
            Ok(generation) => {
                let stats = WriteStats {
                    prompt_tokens: generation.prompt_tokens,
                    generated_tokens: generation.generated_tokens,
                    load_time: generation.load_time,
                    prompt_time: generation.prompt_time,
                    generation_time: generation.generation_time,
                    total_time: Duration::ZERO,
                };
                match repair_llm_output(&generation.raw, brief, &template) {
                    Ok(repaired) => {
                        let note = (!repaired.repaired.is_empty()
                            || generation.stop != StopReason::Finished)
                            .then(|| WriterNote::Repaired {
                                fields: repaired.repaired.clone(),
                                findings: repaired.findings.clone(),
                                stop: generation.stop,
                            });
                        ((repaired.description, Writer::Llm, note), stats)
                    }
                    Err(unusable) => {
                        let reason = match generation.stop {
                            StopReason::Finished => {
                                format!("the LLM's answer was unusable: {unusable}")
                            }
                            stop => format!(
                                "generation {stop} and the answer so far was unusable: {unusable}"
                            ),
                        };
                        tracing::warn!(
                            seed = brief.seed,
                            tokens = generation.generated_tokens,
                            %reason,
                            "LLM song description rejected, using the template writer"
                        );
                        (
                            (
                                template,
                                Writer::Template,
                                Some(WriterNote::LlmFailed { reason }),
                            ),
                            stats,
                        )
                    }
                }
            }
            Err(GenerateError::Cancelled) => return Err(Cancelled),
            Err(e) => {
                tracing::warn!(seed = brief.seed, error = %e, "LLM song writer failed, using the template writer");
                (
                    (
                        template,
                        Writer::Template,
                        Some(WriterNote::LlmFailed {
                            reason: e.to_string(),
                        }),
                    ),
                    WriteStats::default(),
                )
            }
        };
        let (description, writer, note) = written;
        Ok(WrittenSong {
            description: finalize(description, brief),
            writer,
            note,
            stats: WriteStats {
                total_time: started.elapsed(),
                ..stats
            },
        })
    }
}

impl SongWriter for SongWriters {
    fn write(
        &mut self,
        brief: &SongBrief,
        should_stop: &dyn Fn() -> bool,
    ) -> Result<WrittenSong, Cancelled> {
        SongWriters::write(self, brief, should_stop)
    }
}

/// The description for a request that fixed caption and lyrics: the title comes from the first lyric line
/// when it makes a reasonable one, the musical fields from the template writer (fixed ones win later).
fn user_description(brief: &SongBrief, template: SongDescription) -> SongDescription {
    let title = brief
        .fixed_lyrics()
        .and_then(lyrics::title_from_lyrics)
        .unwrap_or(template.title);
    SongDescription {
        title,
        caption: String::new(),
        lyrics: String::new(),
        ..template
    }
}

/// Applies the requester's fixed fields (they always win), the brief's language, `[Instrumental]` for
/// instrumental songs, and a title that is not a recent one.
fn finalize(mut d: SongDescription, brief: &SongBrief) -> SongDescription {
    if let Some(caption) = brief.fixed_caption() {
        d.caption = repair::strip_control(caption, false);
    }
    if let Some(lyrics) = brief.fixed_lyrics() {
        d.lyrics = if lyrics.eq_ignore_ascii_case(INSTRUMENTAL) {
            INSTRUMENTAL.to_string()
        } else {
            repair::strip_control(lyrics, true)
        };
    } else if brief.instrumental() {
        d.lyrics = INSTRUMENTAL.to_string();
    }
    if let Some(bpm) = brief.fixed_bpm() {
        d.bpm = bpm;
    }
    if let Some(key) = brief.fixed_keyscale() {
        d.keyscale = key;
    }
    if let Some(ts) = brief.fixed_timesignature() {
        d.timesignature = ts;
    }
    d.language = brief.language();
    d.title = repair::unique_title(&d.title, brief);
    d
}
