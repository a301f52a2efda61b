//! The production renderer: song writer → ACE-Step pipeline → encoder, for one worker slot.

use std::ops::ControlFlow;

use radio_shared::job::{JobSpec, ResultMeta, Stage};
use tracing::{info, warn};

use crate::audio;
use crate::pipeline::{
    ModelPack, Pipeline, PipelineError, PipelineOptions, RenderRequest, load_pipeline,
};
use crate::run::{Render, RenderContext, RenderError, Rendered};
use crate::songwriter::{SongBrief, SongWriters};

/// Where each part of a job's progress bar goes: writing the song, rendering, encoding.
const WRITING_SHARE: f32 = 0.10;
const RENDER_SHARE: f32 = 0.85;

/// The shift ACE-Step 1.5 turbo uses when a job does not choose one.
pub const DEFAULT_SHIFT: u8 = 3;

/// One slot's models and the plans it can run on.
#[derive(Debug)]
pub struct Studio {
    pack: ModelPack,
    pipeline: Box<dyn Pipeline>,
    writers: SongWriters,
    /// Release the LLM after writing, so the render phase gets its memory (the 8 GB plan).
    release_llm_after_writing: bool,
    /// The plan to switch to after CUDA ran out of memory; `None` once used.
    fallback: Option<PipelineOptions>,
}

impl Studio {
    /// Loads the pipeline (resident graphs now, the rest per job). Blocking.
    pub fn load(
        pack: ModelPack,
        options: PipelineOptions,
        fallback: Option<PipelineOptions>,
        writers: SongWriters,
        release_llm_after_writing: bool,
    ) -> Result<Self, PipelineError> {
        let pipeline = load_pipeline(pack.clone(), options)?;
        Ok(Self {
            pack,
            pipeline,
            writers,
            release_llm_after_writing,
            fallback,
        })
    }

    /// The longest track the pipeline itself can render.
    pub fn max_duration_s(&self) -> f32 {
        self.pipeline.max_duration_s()
    }
}

impl Render for Studio {
    fn render(&mut self, spec: &JobSpec, ctx: &RenderContext) -> Result<Rendered, RenderError> {
        let task = spec.generate_task();
        let seed = task.song.seed.unwrap_or_else(rand::random);

        let _ = ctx.progress(Stage::Llm, 0.0);
        let brief = SongBrief::from_task(task, seed);
        let written = self
            .writers
            .write(&brief, &|| ctx.should_stop())
            .map_err(|_| RenderError::Stopped)?;
        if self.release_llm_after_writing {
            self.writers.unload();
        }
        if let Some(note) = &written.note {
            warn!(%note, "song description");
        }
        let song = written.description;
        info!(
            title = %song.title,
            writer = ?written.writer,
            tokens = written.stats.generated_tokens,
            tokens_per_s = written.stats.tokens_per_second(),
            "song written"
        );
        if ctx.progress(Stage::Llm, WRITING_SHARE).is_break() {
            return Err(RenderError::Stopped);
        }

        let request = RenderRequest {
            caption: song.caption.clone(),
            lyrics: song.lyrics.clone(),
            bpm: Some(song.bpm),
            keyscale: Some(song.keyscale.clone()),
            timesignature: Some(song.timesignature),
            language: song.language.clone(),
            duration_s: task.song.duration_s,
            seed,
            shift: task.song.shift.unwrap_or(DEFAULT_SHIFT),
        };
        let mut observer = |stage: Stage, fraction: f32| -> ControlFlow<()> {
            ctx.progress(stage, WRITING_SHARE + fraction * RENDER_SHARE)
        };
        let rendered = self
            .pipeline
            .render(&request, &mut observer)
            .map_err(classify)?;

        if ctx
            .progress(Stage::Encode, WRITING_SHARE + RENDER_SHARE)
            .is_break()
        {
            return Err(RenderError::Stopped);
        }
        let audio = audio::encode(&rendered.samples, task.format)
            .map_err(|e| RenderError::Transient(format!("encoding the audio failed: {e}")))?;
        Ok(Rendered {
            audio,
            meta: ResultMeta {
                title: song.title,
                caption: song.caption,
                lyrics: song.lyrics,
                bpm: Some(song.bpm),
                keyscale: Some(song.keyscale),
                timesignature: Some(song.timesignature),
                language: song.language,
                duration_s: rendered.duration_s() as f32,
                seed,
                writer: written.writer,
                worker: String::new(),
                format: task.format,
                stage_seconds: Default::default(),
                total_seconds: 0.0,
                peak_vram_bytes: 0,
            },
        })
    }

    fn fall_back(&mut self) -> bool {
        let Some(options) = self.fallback.take() else {
            return false;
        };
        self.writers.unload();
        match load_pipeline(self.pack.clone(), options) {
            Ok(pipeline) => {
                self.pipeline = pipeline;
                true
            }
            Err(e) => {
                warn!(error = %e, "could not load the conservative plan");
                false
            }
        }
    }
}

/// Sorts pipeline errors into what the queue should do with the job.
fn classify(error: PipelineError) -> RenderError {
    match error {
        PipelineError::Cancelled => RenderError::Stopped,
        e @ PipelineError::OutOfMemory { .. } => RenderError::OutOfMemory(e.to_string()),
        e @ (PipelineError::InvalidRequest { .. } | PipelineError::Tokenizer { .. }) => {
            RenderError::Permanent(e.to_string())
        }
        e => RenderError::Transient(e.to_string()),
    }
}
