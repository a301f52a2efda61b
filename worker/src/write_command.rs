//! `radio-worker write`: one song description for a station, from the song writer the worker would use
//! (the LLM in `LLM_MODEL_PATH`, else the template writer), without rendering audio. For trying a model
//! and measuring it alone.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use radio_shared::config::Env;
use radio_shared::job::{SongRequest, Station};
use serde::Serialize;

use crate::songwriter::{
    LlmPlacement, SongBrief, SongDescription, SongWriterConfig, SongWriters, WrittenSong,
};

/// `radio-worker write`.
#[derive(Debug, Clone, clap::Args)]
pub struct WriteArgs {
    /// The station's genre.
    #[arg(long, default_value = "lofi hip hop")]
    pub genre: String,
    /// What the songs are about.
    #[arg(long, default_value = "")]
    pub theme: String,
    /// Production style.
    #[arg(long, default_value = "")]
    pub style: String,
    /// Lyrics language (ISO 639-1), or `instrumental` for no vocals.
    #[arg(long, default_value = "en")]
    pub language: String,
    /// Track length in seconds (sizes the lyrics).
    #[arg(long, default_value_t = 60.0)]
    pub duration: f32,
    /// Seeds the sampler: the same seed writes the same song.
    #[arg(long)]
    pub seed: Option<u64>,
    /// A title the station played recently (repeatable): the new one must differ.
    #[arg(long = "recent", value_name = "TITLE")]
    pub recent_titles: Vec<String>,
    /// The GGUF to write with (default: LLM_MODEL_PATH; neither: the template writer).
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Print one JSON object (the description, the writer, tokens, timings, peak memory).
    #[arg(long)]
    pub json: bool,
}

/// What `write --json` prints.
#[derive(Debug, Serialize)]
pub struct WriteSummary {
    /// The description.
    #[serde(flatten)]
    pub description: SongDescription,
    /// `llm`, `template` or `user`.
    pub writer: String,
    /// What the repair step or the fallback did, if anything.
    pub note: Option<String>,
    /// The seed used.
    pub seed: u64,
    /// Prompt tokens read.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub generated_tokens: u32,
    /// Prompt tokens per second.
    pub prompt_tokens_per_s: f64,
    /// Generated tokens per second.
    pub generated_tokens_per_s: f64,
    /// Loading the model, seconds.
    pub load_s: f64,
    /// The whole write (prompt, generation, repair), seconds.
    pub write_s: f64,
    /// The process's peak resident memory, bytes.
    pub peak_rss_bytes: u64,
}

impl WriteSummary {
    fn new(written: &WrittenSong, seed: u64, load_s: f64) -> Self {
        let stats = written.stats;
        let per_s = |tokens: u32, secs: f64| {
            if secs > 0.0 {
                f64::from(tokens) / secs
            } else {
                0.0
            }
        };
        Self {
            description: written.description.clone(),
            writer: written.writer.as_str().to_string(),
            note: written.note.as_ref().map(ToString::to_string),
            seed,
            prompt_tokens: stats.prompt_tokens,
            generated_tokens: stats.generated_tokens,
            prompt_tokens_per_s: per_s(stats.prompt_tokens, stats.prompt_time.as_secs_f64()),
            generated_tokens_per_s: stats.tokens_per_second(),
            load_s,
            write_s: stats.total_time.as_secs_f64(),
            peak_rss_bytes: crate::metrics::peak_resident_bytes(),
        }
    }
}

/// The brief `write` asks for.
pub fn brief(args: &WriteArgs, seed: u64) -> SongBrief {
    let instrumental = args.language.eq_ignore_ascii_case("instrumental");
    SongBrief {
        station: Station {
            genre: args.genre.clone(),
            theme: args.theme.clone(),
            style: args.style.clone(),
            language: if instrumental {
                "unknown".into()
            } else {
                args.language.clone()
            },
            instrumental,
        },
        request: SongRequest {
            duration_s: args.duration,
            ..SongRequest::default()
        },
        recent_titles: args.recent_titles.clone(),
        seed,
    }
}

/// Runs `radio-worker write`.
pub fn run(args: WriteArgs) -> anyhow::Result<()> {
    if !args.duration.is_finite() || args.duration <= 0.0 {
        anyhow::bail!(
            "--duration {} must be a number of seconds above 0",
            args.duration
        );
    }
    let mut config = SongWriterConfig::from_env(&Env).context("reading the LLM_* settings")?;
    if let Some(model) = &args.model {
        config.model_path = Some(model.clone());
    }
    if args.model.is_some() {
        // Asked for by name: a model that does not load is an error, not a silent template song.
        config.required = true;
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let load_started = Instant::now();
    let mut writers = SongWriters::from_config(&config, LlmPlacement::default())
        .context("loading the song writer's model")?;
    let load_s = load_started.elapsed().as_secs_f64();
    let written = writers
        .write(&brief(&args, seed), &|| false)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let summary = WriteSummary::new(&written, seed, load_s);
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(());
    }
    let d = &summary.description;
    println!("{}", d.title);
    println!("{}", d.caption);
    println!(
        "{} bpm, {}, {}/4, language {}",
        d.bpm, d.keyscale, d.timesignature, d.language
    );
    println!();
    println!("{}", d.lyrics);
    println!();
    let mut how = format!("written by {} (seed {seed})", summary.writer);
    if let Some(note) = &summary.note {
        how.push_str(&format!("; {note}"));
    }
    if summary.generated_tokens > 0 {
        how.push_str(&format!(
            "; {} prompt tokens at {:.0}/s, {} generated at {:.1}/s, {:.2} s in all, model load {:.2} s, peak RSS {} MiB",
            summary.prompt_tokens,
            summary.prompt_tokens_per_s,
            summary.generated_tokens,
            summary.generated_tokens_per_s,
            summary.write_s,
            summary.load_s,
            summary.peak_rss_bytes / (1024 * 1024)
        ));
    }
    eprintln!("{how}");
    Ok(())
}
