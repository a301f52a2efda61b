//! Text-to-music rendering on ONNX Runtime: model packs, execution placement, and the host-side steps of
//! ACE-Step 1.5 turbo (`shared/ACESTEP.md`).
//!
//! The worker's claim loop loads a [`ModelPack`], builds a pipeline with [`load_pipeline`] from the
//! [`PipelineOptions`] its memory planner chose, and calls [`Pipeline::render`] on a blocking thread for
//! each job. Rendering reports progress and polls for cancellation through an observer callback.
//!
//! **Invariant:** the pipeline is synchronous and owns its ONNX Runtime sessions; nothing here touches
//! Redis, the network or a Tokio runtime.

mod acestep15;
mod dcw;
pub mod npy;
mod pack;
mod prompt;
mod runtime;
pub mod schedule;
mod vae;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;
use std::time::Duration;

pub use radio_shared::job::Stage;
use serde::{Deserialize, Serialize};

pub use self::acestep15::{AceStep15, CONDITION_WIDTH, Condition, TEXT_WIDTH};
pub use self::dcw::{haar_forward, haar_inverse};
pub use self::pack::{
    DType, GraphIo, Inventory, MANIFEST_FILE, ModelPack, PackError, PackProblem, Precision,
    RoleInventory, TensorInfo,
};
pub use self::prompt::{caption_prompt, lyric_prompt};
pub use self::runtime::{
    ORT_DYLIB_PATH, ORT_VERSION, OrtLibrary, RuntimeError, describe_graph, find_onnxruntime,
    init_onnxruntime,
};
pub use self::vae::{TileWindow, VAE_OVERLAP_FRAMES, interleave_normalised, tile_windows};

/// Audio sample rate of every pipeline output.
pub const SAMPLE_RATE: u32 = 48_000;
/// Every pipeline renders stereo.
pub const CHANNELS: u16 = 2;

/// A graph in a model pack, by what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Qwen3-Embedding body: caption tokens to text hidden states.
    TextEncoder,
    /// Embedding-table lookup for the lyric tokens.
    TokenEmbeddings,
    /// Linear projection of the text hidden states to the condition width (split packs).
    TextProjector,
    /// Lyric encoder (split packs).
    LyricEncoder,
    /// Timbre encoder of reference latents (split packs).
    TimbreEncoder,
    /// One graph for projector, lyric and timbre encoders and the packing (combined packs).
    ConditionEncoder,
    /// The diffusion transformer that predicts the flow velocity.
    Dit,
    /// The Oobleck VAE decoder: latents to a 48 kHz stereo waveform.
    VaeDecoder,
}

impl Role {
    /// Every role, in pipeline order.
    pub const ALL: [Role; 8] = [
        Role::TextEncoder,
        Role::TokenEmbeddings,
        Role::TextProjector,
        Role::LyricEncoder,
        Role::TimbreEncoder,
        Role::ConditionEncoder,
        Role::Dit,
        Role::VaeDecoder,
    ];

    /// The key of the role in `pack.toml` (`[roles.<key>]`), in logs and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::TextEncoder => "text_encoder",
            Role::TokenEmbeddings => "token_embeddings",
            Role::TextProjector => "text_projector",
            Role::LyricEncoder => "lyric_encoder",
            Role::TimbreEncoder => "timbre_encoder",
            Role::ConditionEncoder => "condition_encoder",
            Role::Dit => "dit",
            Role::VaeDecoder => "vae_decoder",
        }
    }

    /// The role a `pack.toml` key names.
    pub fn from_key(key: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == key)
    }

    /// The pipeline stage the role runs in.
    pub fn stage(self) -> Stage {
        match self {
            Role::Dit => Stage::Diffusion,
            Role::VaeDecoder => Stage::VaeDecode,
            _ => Stage::TextEncode,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a graph runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExecutionTarget {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// The CUDA execution provider; falls back to the CPU (logged once) when CUDA cannot be used.
    Cuda {
        /// CUDA device ordinal.
        device_id: u32,
        /// Cap on the provider's memory arena (`gpu_mem_limit`); `None` lets it grow.
        memory_limit_bytes: Option<u64>,
    },
}

impl fmt::Display for ExecutionTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecutionTarget::Cpu => f.write_str("cpu"),
            ExecutionTarget::Cuda { device_id, .. } => write!(f, "cuda:{device_id}"),
        }
    }
}

/// How one graph is placed: on which device, and whether its session outlives a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Placement {
    /// The execution provider.
    pub target: ExecutionTarget,
    /// Keep the session loaded between jobs; otherwise it is created for its stage and dropped after it,
    /// which frees its memory for the other stages at the cost of a load per job.
    pub resident: bool,
}

impl Default for Placement {
    fn default() -> Self {
        Self {
            target: ExecutionTarget::Cpu,
            resident: true,
        }
    }
}

/// Everything about how a pipeline runs that is not in the pack. The memory planner builds this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineOptions {
    /// Placement per role; roles not listed run on the CPU and stay resident.
    pub placements: BTreeMap<Role, Placement>,
    /// Core chunk of the tiled VAE decode, in latent frames (25 per second). Smaller tiles need less memory.
    pub vae_tile_frames: usize,
    /// Apply the DCW correction after each non-final diffusion step (ACESTEP.md step 11).
    pub dcw: bool,
    /// Threads ONNX Runtime uses inside one operator; `None` takes its default (one per core).
    pub intra_threads: Option<usize>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            placements: BTreeMap::new(),
            vae_tile_frames: DEFAULT_VAE_TILE_FRAMES,
            dcw: true,
            intra_threads: None,
        }
    }
}

/// The VAE tile core chunk the contract suggests (about 0.8 GB of activations on a GPU).
pub const DEFAULT_VAE_TILE_FRAMES: usize = 256;

impl PipelineOptions {
    /// The placement of `role` (CPU and resident unless set).
    pub fn placement(&self, role: Role) -> Placement {
        self.placements.get(&role).copied().unwrap_or_default()
    }

    /// Every role on `target`, resident.
    pub fn all_on(target: ExecutionTarget) -> Self {
        Self {
            placements: Role::ALL
                .into_iter()
                .map(|role| {
                    (
                        role,
                        Placement {
                            target,
                            resident: true,
                        },
                    )
                })
                .collect(),
            ..Self::default()
        }
    }
}

/// One song to render. Built by the worker from the song writer's output (or the user's fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderRequest {
    /// What the music sounds like.
    pub caption: String,
    /// Lyrics with section tags; `[Instrumental]` for none.
    pub lyrics: String,
    /// Tempo; `None` renders as `N/A` in the prompt.
    pub bpm: Option<u16>,
    /// Key such as `C major`; `None` renders as `N/A`.
    pub keyscale: Option<String>,
    /// Beats per bar (2, 3, 4 or 6); `None` renders as `N/A`.
    pub timesignature: Option<u8>,
    /// Lyrics language as an ISO 639-1 code, or `unknown`.
    pub language: String,
    /// Requested length in seconds (the render is `floor(round(d, 1) * 25)` latent frames, at least 128).
    pub duration_s: f32,
    /// Seed of the initial noise.
    pub seed: u64,
    /// Timestep shift of the turbo schedule: 1, 2 or 3.
    pub shift: u8,
}

impl RenderRequest {
    /// An instrumental track with the model's defaults (shift 3, language `unknown`, no metadata).
    pub fn instrumental(caption: impl Into<String>, duration_s: f32, seed: u64) -> Self {
        Self {
            caption: caption.into(),
            lyrics: INSTRUMENTAL.to_string(),
            bpm: None,
            keyscale: None,
            timesignature: None,
            language: "unknown".to_string(),
            duration_s,
            seed,
            shift: schedule::DEFAULT_SHIFT,
        }
    }
}

/// The lyrics of a track without vocals.
pub const INSTRUMENTAL: &str = "[Instrumental]";

/// Time spent in one stage of a render.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct StageTiming {
    /// Wall time of the whole stage.
    pub wall: Duration,
    /// Time inside `Session::run` calls.
    pub inside_ort: Duration,
    /// Time creating sessions for non-resident graphs.
    pub session_load: Duration,
}

impl StageTiming {
    /// Host-side time: the stage minus ONNX Runtime's runs and session loads.
    pub fn host(&self) -> Duration {
        self.wall
            .saturating_sub(self.inside_ort + self.session_load)
    }
}

/// Per-stage timings of a render.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RenderTimings {
    /// Prompts, tokenizer and the condition encoders.
    pub text_encode: StageTiming,
    /// The eight DiT steps with the host-side updates.
    pub diffusion: StageTiming,
    /// The tiled VAE decode, interleaving and normalisation.
    pub vae_decode: StageTiming,
}

impl RenderTimings {
    /// The stages with their timings, in order.
    pub fn stages(&self) -> [(Stage, StageTiming); 3] {
        [
            (Stage::TextEncode, self.text_encode),
            (Stage::Diffusion, self.diffusion),
            (Stage::VaeDecode, self.vae_decode),
        ]
    }

    /// The sum over the stages.
    pub fn total(&self) -> StageTiming {
        self.stages()
            .iter()
            .fold(StageTiming::default(), |acc, (_, t)| StageTiming {
                wall: acc.wall + t.wall,
                inside_ort: acc.inside_ort + t.inside_ort,
                session_load: acc.session_load + t.session_load,
            })
    }
}

/// The result of a render, ready for [`crate::audio::encode`].
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedAudio {
    /// Interleaved stereo samples (left, right, left, …), peak-normalised to −1 dBFS.
    pub samples: Vec<f32>,
    /// Always [`SAMPLE_RATE`].
    pub sample_rate: u32,
    /// Always [`CHANNELS`].
    pub channels: u16,
    /// Latent frames rendered (25 per second).
    pub latent_frames: usize,
    /// Where the time went.
    pub timings: RenderTimings,
}

impl RenderedAudio {
    /// Length in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.channels) / f64::from(self.sample_rate)
    }
}

/// Progress and cancellation callback: called with the running stage and the fraction of the whole render
/// done (0.0–1.0) at least once per diffusion step and per VAE tile. Returning `Break` stops the render
/// with [`PipelineError::Cancelled`] before the next graph runs.
pub type Observer<'a> = dyn FnMut(Stage, f32) -> ControlFlow<()> + 'a;

/// A model family's text-to-music pipeline.
pub trait Pipeline: Send + fmt::Debug {
    /// The model family, as named in `pack.toml` (`family = "acestep15"`).
    fn family(&self) -> &'static str;

    /// The longest track this pipeline can render, in seconds.
    fn max_duration_s(&self) -> f32;

    /// Where each graph's session runs right now: the placement's target, or the CPU where CUDA could not
    /// be used; `None` for a non-resident graph between its stages.
    fn execution_targets(&self) -> BTreeMap<Role, Option<ExecutionTarget>>;

    /// Renders one track. Synchronous and CPU/GPU bound: call it from a blocking thread.
    fn render(
        &mut self,
        request: &RenderRequest,
        observer: &mut Observer<'_>,
    ) -> Result<RenderedAudio, PipelineError>;
}

/// Builds the pipeline of the pack's model family. Creates the resident sessions and checks every graph
/// against the manifest (all mismatches are reported in one [`PackError`]).
pub fn load_pipeline(
    pack: ModelPack,
    options: PipelineOptions,
) -> Result<Box<dyn Pipeline>, PipelineError> {
    match pack.family() {
        AceStep15::FAMILY => Ok(Box::new(AceStep15::load(pack, options)?)),
        other => Err(PipelineError::Pack(PackError::UnknownFamily {
            manifest: pack.manifest_path().to_path_buf(),
            family: other.to_string(),
        })),
    }
}

/// Why a render (or loading a pipeline) failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The ONNX Runtime library could not be found or loaded.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The model pack is broken or does not match its manifest.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// The request asks for something this pipeline cannot render (a permanent failure).
    #[error("cannot render this request: {reason}")]
    InvalidRequest {
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The tokenizer failed on a prompt.
    #[error("tokenizer failed on the {prompt} prompt: {message}")]
    Tokenizer {
        /// `caption` or `lyric`.
        prompt: &'static str,
        /// The tokenizer's message.
        message: String,
    },
    /// A graph returned NaN or infinite values: a broken or overflowing export (e.g. an fp16 lyric encoder
    /// whose last projection exceeds 65504).
    #[error(
        "{role} graph returned {count} non-finite values (NaN/inf) out of {total} in output {tensor:?}; \
         the export is broken or overflows at its precision (an fp16 graph may need that layer in fp32): \
         use another precision of this graph"
    )]
    NonFinite {
        /// The graph.
        role: Role,
        /// The output tensor.
        tensor: String,
        /// How many values are NaN or infinite.
        count: usize,
        /// Values in the tensor.
        total: usize,
    },
    /// The device ran out of memory while loading or running a graph; retry on a smaller plan.
    #[error("out of memory on {target} while {action} the {role} graph: {message}")]
    OutOfMemory {
        /// The graph.
        role: Role,
        /// Where it was placed.
        target: ExecutionTarget,
        /// `loading` or `running`.
        action: &'static str,
        /// ONNX Runtime's message.
        message: String,
    },
    /// ONNX Runtime failed for another reason while running a graph.
    #[error("ONNX Runtime failed running the {role} graph: {message}")]
    Onnx {
        /// The graph.
        role: Role,
        /// ONNX Runtime's message.
        message: String,
    },
    /// The observer asked to stop.
    #[error("render cancelled")]
    Cancelled,
}

impl PipelineError {
    /// A retry on a more conservative plan (smaller VAE tiles, more graphs on the CPU) may succeed.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, PipelineError::OutOfMemory { .. })
    }
}
