//! `radio-worker generate`: one render straight to a file, without Redis: for trying a model pack, for
//! demos and for measuring (`--json` prints the timings `scripts/bench-pipeline` reads).

use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use radio_shared::cli::SongArgs;
use radio_shared::job::{AudioFormat, MAX_DURATION_S, MIN_DURATION_S, Stage};
use serde::Serialize;

use crate::audio;
use crate::pipeline::{
    DEFAULT_VAE_TILE_FRAMES, ExecutionTarget, INSTRUMENTAL, ModelPack, PipelineOptions,
    RenderRequest, RenderedAudio, StageTiming, load_pipeline, schedule,
};

/// Flags that choose how the pipeline runs (shared by `generate` and `pack verify`).
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// Where every graph runs: `cpu`, `cuda` or `cuda:N`. CUDA falls back to the CPU (with a warning) when
    /// it cannot be used.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: ExecutionTarget,
    /// Core chunk of the tiled VAE decode in latent frames (25 per second); smaller needs less memory.
    #[arg(long, default_value_t = DEFAULT_VAE_TILE_FRAMES as u32, value_parser = clap::value_parser!(u32).range(1..))]
    pub vae_tile_frames: u32,
    /// Skip the DCW correction between diffusion steps.
    #[arg(long)]
    pub no_dcw: bool,
    /// Threads ONNX Runtime uses inside one operator (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl RuntimeArgs {
    /// The pipeline options these flags describe.
    pub fn options(&self) -> PipelineOptions {
        PipelineOptions {
            vae_tile_frames: self.vae_tile_frames as usize,
            dcw: !self.no_dcw,
            intra_threads: self.threads,
            ..PipelineOptions::all_on(self.device)
        }
    }
}

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(value: &str) -> Result<ExecutionTarget, String> {
    match value {
        "cpu" => Ok(ExecutionTarget::Cpu),
        "cuda" => Ok(ExecutionTarget::Cuda {
            device_id: 0,
            memory_limit_bytes: None,
        }),
        other => other
            .strip_prefix("cuda:")
            .and_then(|id| id.parse().ok())
            .map(|device_id| ExecutionTarget::Cuda {
                device_id,
                memory_limit_bytes: None,
            })
            .ok_or_else(|| format!("{other:?} is not cpu, cuda or cuda:N")),
    }
}

/// `radio-worker generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// The model pack: a folder with a pack.toml, or a manifest file.
    #[arg(long, value_name = "DIR", env = "MODELS_DIR")]
    pub models: PathBuf,
    /// The song.
    #[command(flatten)]
    pub song: SongArgs,
    /// Output file; its extension picks the format: .ogg/.opus (Ogg Opus), .wav or .flac.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// How the pipeline runs.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Print the summary as one JSON object on stdout instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

/// Timings of one stage in seconds, for the summary.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StageSeconds {
    /// Wall time.
    pub wall_s: f64,
    /// Inside ONNX Runtime's `run`.
    pub ort_s: f64,
    /// Creating sessions of non-resident graphs.
    pub load_s: f64,
    /// Everything else (host-side math, tokenizer, copies).
    pub host_s: f64,
}

impl From<StageTiming> for StageSeconds {
    fn from(t: StageTiming) -> Self {
        Self {
            wall_s: t.wall.as_secs_f64(),
            ort_s: t.inside_ort.as_secs_f64(),
            load_s: t.session_load.as_secs_f64(),
            host_s: t.host().as_secs_f64(),
        }
    }
}

/// What `generate --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateSummary {
    /// The file written.
    pub out: PathBuf,
    /// Its format.
    pub format: AudioFormat,
    /// Its size in bytes.
    pub bytes: usize,
    /// The seed used (random when not given).
    pub seed: u64,
    /// Seconds of audio.
    pub audio_s: f64,
    /// Latent frames rendered.
    pub latent_frames: usize,
    /// Opening the pack and loading the pipeline.
    pub pipeline_load_s: f64,
    /// Prompts and condition encoders.
    pub text_encode: StageSeconds,
    /// The eight DiT steps.
    pub diffusion: StageSeconds,
    /// Tiled VAE decode and normalisation.
    pub vae_decode: StageSeconds,
    /// Encoding to the output format (one core).
    pub encode_s: f64,
    /// All of the render's time inside ONNX Runtime, per second of audio.
    pub ort_s_per_audio_s: f64,
    /// All of the render's host-side time, per second of audio.
    pub host_s_per_audio_s: f64,
    /// Seconds of audio encoded per second of encoding.
    pub encode_realtime_factor: f64,
}

impl GenerateSummary {
    fn new(
        out: &Path,
        format: AudioFormat,
        bytes: usize,
        seed: u64,
        load: Duration,
        rendered: &RenderedAudio,
        encode: Duration,
    ) -> Self {
        let audio_s = rendered.duration_s();
        let total = rendered.timings.total();
        let per_audio = |d: Duration| d.as_secs_f64() / audio_s;
        Self {
            out: out.to_path_buf(),
            format,
            bytes,
            seed,
            audio_s,
            latent_frames: rendered.latent_frames,
            pipeline_load_s: load.as_secs_f64(),
            text_encode: rendered.timings.text_encode.into(),
            diffusion: rendered.timings.diffusion.into(),
            vae_decode: rendered.timings.vae_decode.into(),
            encode_s: encode.as_secs_f64(),
            ort_s_per_audio_s: per_audio(total.inside_ort),
            host_s_per_audio_s: per_audio(total.host()),
            encode_realtime_factor: audio_s / encode.as_secs_f64().max(1e-9),
        }
    }

    fn sentence(&self) -> String {
        let render = self.text_encode.wall_s + self.diffusion.wall_s + self.vae_decode.wall_s;
        format!(
            "wrote {} ({:.2} s of {} audio, {} KiB, seed {}): render {:.2} s (text {:.2} s, diffusion {:.2} s, \
             vae {:.2} s; per audio second {:.3} s in ONNX Runtime + {:.3} s host), encode {:.3} s ({:.0}× real \
             time), pipeline load {:.2} s",
            self.out.display(),
            self.audio_s,
            self.format.as_str(),
            self.bytes / 1024,
            self.seed,
            render,
            self.text_encode.wall_s,
            self.diffusion.wall_s,
            self.vae_decode.wall_s,
            self.ort_s_per_audio_s,
            self.host_s_per_audio_s,
            self.encode_s,
            self.encode_realtime_factor,
            self.pipeline_load_s,
        )
    }
}

/// A progress bar on stderr when it is a terminal; nothing otherwise.
pub(crate) struct Progress {
    /// `None` when stderr is not a terminal.
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(crate) fn new() -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let bar = indicatif::ProgressBar::new(1000);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {msg:<18} [{bar:32}] {percent:>3}% {elapsed_precise}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar: Some(bar) }
    }

    pub(crate) fn observe(&self, stage: Stage, fraction: f32) -> ControlFlow<()> {
        if let Some(bar) = &self.bar {
            bar.set_message(stage.describe());
            bar.set_position((fraction * 1000.0) as u64);
        }
        ControlFlow::Continue(())
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Builds the render request from the song flags, filling the model's defaults.
pub fn render_request(song: &SongArgs) -> anyhow::Result<RenderRequest> {
    let song = song.to_request().map_err(anyhow::Error::msg)?;
    let caption = song.caption.filter(|c| !c.trim().is_empty()).context(
        "--caption is required: describe the music, e.g. --caption \"dreamy lofi, soft piano\"",
    )?;
    if !song.duration_s.is_finite() || !(MIN_DURATION_S..=MAX_DURATION_S).contains(&song.duration_s)
    {
        bail!(
            "--duration {} is outside {MIN_DURATION_S}..={MAX_DURATION_S} seconds",
            song.duration_s
        );
    }
    Ok(RenderRequest {
        caption,
        lyrics: song
            .lyrics
            .filter(|l| !l.trim().is_empty())
            .unwrap_or_else(|| INSTRUMENTAL.to_string()),
        bpm: song.bpm,
        keyscale: song.keyscale,
        timesignature: song.timesignature,
        language: song.language.unwrap_or_else(|| "unknown".to_string()),
        duration_s: song.duration_s,
        seed: song.seed.unwrap_or_else(rand::random),
        shift: song.shift.unwrap_or(schedule::DEFAULT_SHIFT),
    })
}

/// Runs `radio-worker generate`.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let format = AudioFormat::from_path(&args.out).with_context(|| {
        format!(
            "--out {} must end in .ogg, .opus, .wav or .flac",
            args.out.display()
        )
    })?;
    let request = render_request(&args.song)?;

    let load_started = Instant::now();
    let pack = ModelPack::open(&args.models)?;
    let mut pipeline = load_pipeline(pack, args.runtime.options())?;
    let load = load_started.elapsed();
    if request.duration_s > pipeline.max_duration_s() {
        bail!(
            "--duration {} is longer than this model pack renders ({} s)",
            request.duration_s,
            pipeline.max_duration_s()
        );
    }

    let progress = Progress::new();
    let rendered = pipeline.render(&request, &mut |stage, fraction| {
        progress.observe(stage, fraction)
    });
    progress.finish();
    let rendered = rendered.context("rendering failed")?;

    let encode_started = Instant::now();
    let bytes = audio::encode(&rendered.samples, format).context("encoding failed")?;
    let encode = encode_started.elapsed();
    std::fs::write(&args.out, &bytes)
        .with_context(|| format!("cannot write {}", args.out.display()))?;

    let summary = GenerateSummary::new(
        &args.out,
        format,
        bytes.len(),
        request.seed,
        load,
        &rendered,
        encode,
    );
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{}", summary.sentence());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!(parse_device("cpu"), Ok(ExecutionTarget::Cpu));
        assert_eq!(
            parse_device("cuda:1"),
            Ok(ExecutionTarget::Cuda {
                device_id: 1,
                memory_limit_bytes: None
            })
        );
        assert!(parse_device("gpu").is_err());
    }

    #[test]
    fn requests_need_a_caption_and_a_sane_duration() {
        let mut song = SongArgs {
            duration: 30.0,
            ..SongArgs::default()
        };
        let err = render_request(&song).expect_err("no caption");
        assert!(err.to_string().contains("--caption is required"), "{err}");
        song.caption = Some("lofi".into());
        song.seed = Some(5);
        let request = render_request(&song).expect("valid");
        assert_eq!(request.lyrics, INSTRUMENTAL);
        assert_eq!(request.language, "unknown");
        assert_eq!((request.seed, request.shift), (5, 3));
        song.duration = 1.0;
        assert!(render_request(&song).is_err());
    }
}
