//! ACE-Step 1.5 turbo on ONNX Runtime: ACESTEP.md section 2, steps 1–13.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;
use std::time::Instant;

use super::pack::{
    DType, DimValues, ModelPack, PackError, PackProblem, RoleBinding, RoleContract, Slot, SlotKind,
    check_graph,
};
use super::prompt::PromptTokenizer;
use super::runtime::{self, Feed, LoadedSession, Output, SessionError};
use super::schedule::{self, LATENT_CHANNELS, SAMPLES_PER_FRAME, STEPS};
use super::vae::{channel_major_window, interleave_normalised, tile_windows};
use super::{
    CHANNELS, ExecutionTarget, Observer, Pipeline, PipelineError, PipelineOptions, Placement,
    RenderRequest, RenderTimings, RenderedAudio, Role, SAMPLE_RATE, Stage, StageTiming, npy,
};

/// Width of the text encoder's hidden states.
pub const TEXT_WIDTH: usize = 1024;
/// Width of the packed condition the DiT attends to.
pub const CONDITION_WIDTH: usize = 2048;
/// Channels of the context latents (silence latent + chunk mask).
pub const CONTEXT_CHANNELS: usize = 128;
/// Frames of the reference latent the timbre encoder reads.
pub const TIMBRE_FRAMES: usize = 750;

// Progress: the share of the whole render each stage ends at.
const TEXT_DONE: f32 = 0.05;
const DIFFUSION_DONE: f32 = 0.85;

const fn slot(name: &'static str, kind: SlotKind, rank: usize, required: bool) -> Slot {
    Slot {
        name,
        kind,
        rank,
        required,
    }
}

const TEXT_ENCODER: RoleContract = RoleContract {
    role: Role::TextEncoder,
    inputs: &[
        slot("input_ids", SlotKind::I64, 2, true),
        slot("attention_mask", SlotKind::Fill, 2, false),
    ],
    outputs: &[slot("hidden_states", SlotKind::F32, 3, true)],
};
const TOKEN_EMBEDDINGS: RoleContract = RoleContract {
    role: Role::TokenEmbeddings,
    inputs: &[slot("input_ids", SlotKind::I64, 2, true)],
    outputs: &[slot("hidden_states", SlotKind::F32, 3, true)],
};
const TEXT_PROJECTOR: RoleContract = RoleContract {
    role: Role::TextProjector,
    inputs: &[slot("hidden_states", SlotKind::F32, 3, true)],
    outputs: &[slot("projected", SlotKind::F32, 3, true)],
};
const LYRIC_ENCODER: RoleContract = RoleContract {
    role: Role::LyricEncoder,
    inputs: &[
        slot("embeddings", SlotKind::F32, 3, true),
        slot("attention_mask", SlotKind::Fill, 2, false),
    ],
    outputs: &[slot("hidden_states", SlotKind::F32, 3, true)],
};
const TIMBRE_ENCODER: RoleContract = RoleContract {
    role: Role::TimbreEncoder,
    inputs: &[
        slot("reference_latents", SlotKind::F32, 3, true),
        slot("order_mask", SlotKind::I64, 1, true),
    ],
    outputs: &[slot("hidden_states", SlotKind::F32, 3, true)],
};
const CONDITION_ENCODER: RoleContract = RoleContract {
    role: Role::ConditionEncoder,
    inputs: &[
        slot("text_hidden_states", SlotKind::F32, 3, true),
        slot("text_attention_mask", SlotKind::Fill, 2, false),
        slot("lyric_embeddings", SlotKind::F32, 3, true),
        slot("lyric_attention_mask", SlotKind::Fill, 2, false),
        slot("reference_latents", SlotKind::F32, 3, true),
        slot("order_mask", SlotKind::I64, 1, true),
        slot("source_latents", SlotKind::F32, 3, false),
        slot("chunk_masks", SlotKind::Fill, 3, false),
        slot("is_covers", SlotKind::Fill, 1, false),
    ],
    outputs: &[
        slot("encoder_hidden_states", SlotKind::F32, 3, true),
        slot("context_latents", SlotKind::F32, 3, false),
    ],
};
const DIT: RoleContract = RoleContract {
    role: Role::Dit,
    inputs: &[
        slot("hidden_states", SlotKind::F32, 3, true),
        slot("timestep", SlotKind::F32, 1, true),
        slot("timestep_r", SlotKind::F32, 1, false),
        slot("encoder_hidden_states", SlotKind::F32, 3, true),
        slot("context_latents", SlotKind::F32, 3, true),
        slot("attention_mask", SlotKind::Fill, 2, false),
        slot("encoder_attention_mask", SlotKind::Fill, 2, false),
    ],
    outputs: &[slot("velocity", SlotKind::F32, 3, true)],
};
const VAE_DECODER: RoleContract = RoleContract {
    role: Role::VaeDecoder,
    inputs: &[slot("latents", SlotKind::F32, 3, true)],
    outputs: &[slot("waveform", SlotKind::F32, 3, true)],
};

/// How a pack cuts the condition side (ACESTEP.md §1): both feed the same DiT and VAE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConditionCut {
    /// Text projector, lyric encoder and timbre encoder as separate graphs; packing on the host.
    Split,
    /// One condition graph that packs everything and may also return the context latents.
    Combined,
}

impl ConditionCut {
    fn contracts(self) -> &'static [RoleContract] {
        match self {
            ConditionCut::Split => &[
                TEXT_ENCODER,
                TOKEN_EMBEDDINGS,
                TEXT_PROJECTOR,
                LYRIC_ENCODER,
                TIMBRE_ENCODER,
                DIT,
                VAE_DECODER,
            ],
            ConditionCut::Combined => &[
                TEXT_ENCODER,
                TOKEN_EMBEDDINGS,
                CONDITION_ENCODER,
                DIT,
                VAE_DECODER,
            ],
        }
    }
}

/// A graph with its binding and, while loaded, its session.
struct Graph {
    /// What the graph does.
    role: Role,
    /// File and tensor names from the manifest.
    binding: RoleBinding,
    /// Where it runs and whether its session outlives a stage.
    placement: Placement,
    /// ONNX Runtime threads per operator, for sessions created later.
    intra_threads: Option<usize>,
    /// Declared dtype of every graph input, to fill masks and flags in the type the graph wants.
    input_types: BTreeMap<String, DType>,
    /// The session while loaded (always for resident graphs).
    loaded: Option<LoadedSession>,
}

/// The graph's session, created first if it is not loaded (timed as a session load).
fn ensure_loaded<'a>(
    loaded: &'a mut Option<LoadedSession>,
    role: Role,
    binding: &RoleBinding,
    placement: &Placement,
    intra_threads: Option<usize>,
    timing: &mut StageTiming,
) -> Result<&'a mut LoadedSession, PipelineError> {
    let session = match loaded.take() {
        Some(session) => session,
        None => {
            let started = Instant::now();
            let session = runtime::create_session(role, &binding.file, placement, intra_threads)
                .map_err(|e| e.into_pipeline_error(role))?;
            timing.session_load += started.elapsed();
            session
        }
    };
    Ok(loaded.insert(session))
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("role", &self.role)
            .field("file", &self.binding.file)
            .field("placement", &self.placement)
            .field("loaded_on", &self.loaded.as_ref().map(|l| l.target))
            .finish()
    }
}

impl Graph {
    /// Runs the graph with inputs and outputs named by slot. Unbound optional inputs are skipped; an
    /// unbound output comes back as `None`. Loads a non-resident session first (timed as a load).
    fn run(
        &mut self,
        inputs: Vec<(&'static str, Feed<'_>)>,
        outputs: &[&'static str],
        dims: DimValues,
        timing: &mut StageTiming,
    ) -> Result<Vec<Option<Output>>, PipelineError> {
        let loaded = ensure_loaded(
            &mut self.loaded,
            self.role,
            &self.binding,
            &self.placement,
            self.intra_threads,
            timing,
        )?;

        let mut feeds: Vec<(&str, Feed<'_>)> = Vec::with_capacity(inputs.len());
        for (slot, feed) in inputs {
            if let Some(name) = self.binding.inputs.get(slot) {
                feeds.push((name.as_str(), feed));
            }
        }
        for constant in &self.binding.constants {
            let shape = constant
                .resolve(&dims)
                .map_err(|symbol| PipelineError::Onnx {
                    role: self.role,
                    message: format!(
                        "constant {:?} uses dimension {symbol}, which this graph does not have",
                        constant.name
                    ),
                })?;
            feeds.push((
                constant.name.as_str(),
                Feed::Fill {
                    shape,
                    value: constant.value,
                },
            ));
        }
        let bound: Vec<Option<&str>> = outputs
            .iter()
            .map(|slot| self.binding.outputs.get(*slot).map(String::as_str))
            .collect();
        let names: Vec<&str> = bound.iter().flatten().copied().collect();
        let mut results = runtime::run_session(
            self.role,
            loaded.target,
            &mut loaded.session,
            &self.input_types,
            feeds,
            &names,
            timing,
        )?
        .into_iter();
        Ok(bound
            .iter()
            .map(|name| name.and_then(|_| results.next()))
            .collect())
    }

    /// Runs a graph for one output, checked against `expected` (slot name and shape).
    fn run_one(
        &mut self,
        inputs: Vec<(&'static str, Feed<'_>)>,
        (slot, shape): (&'static str, &[usize]),
        dims: DimValues,
        timing: &mut StageTiming,
    ) -> Result<Vec<f32>, PipelineError> {
        let out = self.run(inputs, &[slot], dims, timing)?;
        take(self.role, slot, out.into_iter().next().flatten(), shape)
    }

    /// Drops the session unless the placement keeps it between jobs.
    fn release_if_transient(&mut self) {
        if !self.placement.resident {
            self.loaded = None;
        }
    }
}

/// Takes a required output and checks its shape.
fn take(
    role: Role,
    slot: &str,
    output: Option<Output>,
    expected: &[usize],
) -> Result<Vec<f32>, PipelineError> {
    let output = output.ok_or_else(|| PipelineError::Onnx {
        role,
        message: format!("output slot {slot:?} is not bound"),
    })?;
    if output.shape != expected {
        return Err(PipelineError::Onnx {
            role,
            message: format!(
                "output {slot:?} has shape {:?}, expected {expected:?}; the graph does not follow the \
                 ACE-Step 1.5 contract",
                output.shape
            ),
        });
    }
    Ok(output.data)
}

fn proceed(observer: &mut Observer<'_>, stage: Stage, fraction: f32) -> Result<(), PipelineError> {
    match observer(stage, fraction.clamp(0.0, 1.0)) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(PipelineError::Cancelled),
    }
}

/// The outputs of the two token graphs, which both condition cuts start from.
struct Embedded {
    /// Text encoder output, `[T, 1024]`.
    text_hidden: Vec<f32>,
    /// T, caption prompt tokens.
    caption_tokens: usize,
    /// Token-embedding lookup of the lyric prompt, `[L, 1024]`.
    lyric_embeddings: Vec<f32>,
    /// L, lyric prompt tokens.
    lyric_tokens: usize,
}

/// Everything the DiT is conditioned on, for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Token ids of the caption prompt.
    pub caption_ids: Vec<i64>,
    /// Token ids of the lyric prompt.
    pub lyric_ids: Vec<i64>,
    /// Packed condition `[lyric (L), timbre (1), text (T)]`, `[S, 2048]` row-major.
    pub encoder_hidden_states: Vec<f32>,
    /// S = L + 1 + T.
    pub sequence_length: usize,
    /// Context latents `[F, 128]`: silence latent frames, then the chunk mask of ones.
    pub context_latents: Vec<f32>,
    /// F, latent frames of the track.
    pub frames: usize,
}

/// The ACE-Step 1.5 turbo pipeline.
#[derive(Debug)]
pub struct AceStep15 {
    /// The pack the graphs come from.
    pack: ModelPack,
    /// How the graphs are placed, tile size, DCW.
    options: PipelineOptions,
    /// Split or combined condition graphs.
    cut: ConditionCut,
    /// The pack's tokenizer, set up for both prompts.
    tokenizer: PromptTokenizer,
    /// The silence latent, time-major `[silence_frames, 64]`: context latents and timbre reference.
    silence: Vec<f32>,
    /// Frames of the silence latent: the longest track the pack renders.
    silence_frames: usize,
    /// One per role of the pack's cut.
    graphs: BTreeMap<Role, Graph>,
    /// The timbre of "no reference audio": constant for text-to-music, computed on first use.
    timbre: Option<Vec<f32>>,
}

impl AceStep15 {
    /// The `family` of ACE-Step 1.5 packs.
    pub const FAMILY: &'static str = "acestep15";

    /// Loads the pipeline: the tokenizer, the silence latent, and one session per graph (kept if resident,
    /// dropped after checking otherwise). Every graph is checked against the manifest and the contract,
    /// and every problem is reported in one [`PackError::Invalid`].
    pub fn load(pack: ModelPack, options: PipelineOptions) -> Result<Self, PipelineError> {
        runtime::init_onnxruntime()?;
        let mut problems = Vec::new();

        let has = |role| pack.binding(role).is_some();
        let cut = if has(Role::ConditionEncoder) {
            for role in [Role::TextProjector, Role::LyricEncoder, Role::TimbreEncoder] {
                if has(role) {
                    problems.push(PackProblem::new(
                        Some(role.as_str()),
                        None,
                        None,
                        "a pack binds either condition_encoder or the split text_projector/lyric_encoder/\
                         timbre_encoder graphs, not both; remove one set from the manifest",
                    ));
                }
            }
            ConditionCut::Combined
        } else {
            ConditionCut::Split
        };
        for contract in cut.contracts() {
            if !has(contract.role) {
                problems.push(PackProblem::new(
                    Some(contract.role.as_str()),
                    None,
                    None,
                    format!(
                        "role is missing from the manifest; add a [roles.{}] table",
                        contract.role
                    ),
                ));
            }
        }

        let tokenizer = match PromptTokenizer::load(pack.tokenizer_path()) {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(PackProblem::new(
                    None,
                    Some(pack.tokenizer_path()),
                    None,
                    format!("tokenizer cannot be loaded: {e}"),
                ));
                None
            }
        };
        let silence = match npy::read_f32(pack.silence_latent_path()) {
            Ok(array) if array.shape.len() == 3 && array.shape[2] >= TIMBRE_FRAMES => {
                // [1, 64, frames] channel-major to [frames, 64] time-major.
                let frames = array.shape[2];
                let mut time_major = vec![0.0f32; frames * LATENT_CHANNELS];
                for c in 0..LATENT_CHANNELS {
                    for t in 0..frames {
                        time_major[t * LATENT_CHANNELS + c] = array.data[c * frames + t];
                    }
                }
                Some((time_major, frames))
            }
            Ok(array) => {
                problems.push(PackProblem::new(
                    None,
                    Some(pack.silence_latent_path()),
                    None,
                    format!(
                        "silence latent has shape {:?}; it needs at least {TIMBRE_FRAMES} frames",
                        array.shape
                    ),
                ));
                None
            }
            Err(e) => {
                problems.push(PackProblem::new(
                    None,
                    Some(pack.silence_latent_path()),
                    None,
                    e.to_string(),
                ));
                None
            }
        };

        let mut graphs = BTreeMap::new();
        for contract in cut.contracts() {
            let Some(binding) = pack.binding(contract.role) else {
                continue;
            };
            let placement = options.placement(contract.role);
            let loaded = match runtime::create_session(
                contract.role,
                &binding.file,
                &placement,
                options.intra_threads,
            ) {
                Ok(loaded) => loaded,
                Err(SessionError::Load(message)) => {
                    problems.push(PackProblem::new(
                        Some(contract.role.as_str()),
                        Some(&binding.file),
                        None,
                        format!(
                            "ONNX Runtime cannot load this graph ({message}); the file (or its external data) \
                             is damaged, incomplete or not an ONNX model: download it again"
                        ),
                    ));
                    continue;
                }
                Err(other) => return Err(other.into_pipeline_error(contract.role)),
            };
            let io = runtime::graph_io(&loaded.session);
            check_graph(contract, binding, &io, &mut problems);
            tracing::info!(
                role = %contract.role,
                file = %binding.file.display(),
                precision = %binding.precision,
                target = %loaded.target,
                resident = placement.resident,
                "graph loaded"
            );
            graphs.insert(
                contract.role,
                Graph {
                    role: contract.role,
                    binding: binding.clone(),
                    placement,
                    intra_threads: options.intra_threads,
                    input_types: io
                        .inputs
                        .iter()
                        .map(|t| (t.name.clone(), t.dtype.clone()))
                        .collect(),
                    loaded: placement.resident.then_some(loaded),
                },
            );
        }

        let (Some(tokenizer), Some((silence, silence_frames)), true) =
            (tokenizer, silence, problems.is_empty())
        else {
            return Err(PackError::Invalid {
                pack: pack.manifest_path().to_path_buf(),
                problems,
            }
            .into());
        };
        Ok(Self {
            pack,
            options,
            cut,
            tokenizer,
            silence,
            silence_frames,
            graphs,
            timbre: None,
        })
    }

    /// The pack this pipeline runs.
    pub fn pack(&self) -> &ModelPack {
        &self.pack
    }

    /// The options it was built with.
    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    fn graph(&mut self, role: Role) -> Result<&mut Graph, PipelineError> {
        self.graphs.get_mut(&role).ok_or(PipelineError::Onnx {
            role,
            message: "this pack has no such graph".into(),
        })
    }

    fn release(&mut self, stage: Stage) {
        for graph in self.graphs.values_mut() {
            if graph.role.stage() == stage {
                graph.release_if_transient();
            }
        }
    }

    fn check_request(&self, request: &RenderRequest) -> Result<usize, PipelineError> {
        let invalid = |reason: String| Err(PipelineError::InvalidRequest { reason });
        if !(1..=3).contains(&request.shift) {
            return invalid(format!("shift {} is not 1, 2 or 3", request.shift));
        }
        if !request.duration_s.is_finite() || request.duration_s <= 0.0 {
            return invalid(format!(
                "duration {} s is not a positive number",
                request.duration_s
            ));
        }
        let frames = schedule::latent_frames(request.duration_s);
        if frames > self.silence_frames {
            return invalid(format!(
                "duration {} s is longer than this pack renders ({} s, the length of its silence latent)",
                request.duration_s,
                self.max_duration_s()
            ));
        }
        Ok(frames)
    }

    /// Steps 1–7: prompts, tokens, encoders, packing and the context latents.
    pub fn encode_condition(
        &mut self,
        request: &RenderRequest,
        timing: &mut StageTiming,
    ) -> Result<Condition, PipelineError> {
        let started = Instant::now();
        let result = self.encode_condition_inner(request, timing);
        self.release(Stage::TextEncode);
        timing.wall += started.elapsed();
        result
    }

    fn encode_condition_inner(
        &mut self,
        request: &RenderRequest,
        timing: &mut StageTiming,
    ) -> Result<Condition, PipelineError> {
        let frames = self.check_request(request)?;
        let caption_ids = self.tokenizer.caption_ids(request)?;
        let lyric_ids = self.tokenizer.lyric_ids(request)?;
        let (t, l) = (caption_ids.len(), lyric_ids.len());

        let text_hidden = self.graph(Role::TextEncoder)?.run_one(
            vec![
                ("input_ids", Feed::i64([1, t], &caption_ids)),
                ("attention_mask", Feed::fill([1, t], 1.0)),
            ],
            ("hidden_states", &[1, t, TEXT_WIDTH]),
            DimValues::default().t(t),
            timing,
        )?;
        let lyric_embeddings = self.graph(Role::TokenEmbeddings)?.run_one(
            vec![("input_ids", Feed::i64([1, l], &lyric_ids))],
            ("hidden_states", &[1, l, TEXT_WIDTH]),
            DimValues::default().l(l),
            timing,
        )?;

        let embedded = Embedded {
            text_hidden,
            caption_tokens: t,
            lyric_embeddings,
            lyric_tokens: l,
        };
        let host_context = self.context_latents(frames);
        let (encoder_hidden_states, context_latents) = match self.cut {
            ConditionCut::Split => (self.pack_split(&embedded, timing)?, host_context),
            ConditionCut::Combined => {
                self.pack_combined(&embedded, frames, host_context, timing)?
            }
        };
        let sequence_length = encoder_hidden_states.len() / CONDITION_WIDTH;
        Ok(Condition {
            caption_ids,
            lyric_ids,
            encoder_hidden_states,
            sequence_length,
            context_latents,
            frames,
        })
    }

    /// Step 7's context: silence latent frames `0..F` beside a chunk mask of ones, `[F, 128]`.
    fn context_latents(&self, frames: usize) -> Vec<f32> {
        let mut context = Vec::with_capacity(frames * CONTEXT_CHANNELS);
        for t in 0..frames {
            context
                .extend_from_slice(&self.silence[t * LATENT_CHANNELS..(t + 1) * LATENT_CHANNELS]);
            context.extend(std::iter::repeat_n(1.0f32, LATENT_CHANNELS));
        }
        context
    }

    /// Steps 3–6 with split graphs: projector, lyric encoder, cached timbre, packed on the host.
    fn pack_split(
        &mut self,
        embedded: &Embedded,
        timing: &mut StageTiming,
    ) -> Result<Vec<f32>, PipelineError> {
        let (t, l) = (embedded.caption_tokens, embedded.lyric_tokens);
        let text = self.graph(Role::TextProjector)?.run_one(
            vec![(
                "hidden_states",
                Feed::f32([1, t, TEXT_WIDTH], &embedded.text_hidden),
            )],
            ("projected", &[1, t, CONDITION_WIDTH]),
            DimValues::default().t(t),
            timing,
        )?;
        let lyric = self.graph(Role::LyricEncoder)?.run_one(
            vec![
                (
                    "embeddings",
                    Feed::f32([1, l, TEXT_WIDTH], &embedded.lyric_embeddings),
                ),
                ("attention_mask", Feed::fill([1, l], 1.0)),
            ],
            ("hidden_states", &[1, l, CONDITION_WIDTH]),
            DimValues::default().l(l),
            timing,
        )?;
        let timbre = self.timbre(timing)?;
        let mut packed = Vec::with_capacity(lyric.len() + timbre.len() + text.len());
        packed.extend_from_slice(&lyric);
        packed.extend_from_slice(&timbre);
        packed.extend_from_slice(&text);
        Ok(packed)
    }

    /// Step 5: the timbre of the silence latent, computed once per pipeline.
    fn timbre(&mut self, timing: &mut StageTiming) -> Result<Vec<f32>, PipelineError> {
        if let Some(timbre) = &self.timbre {
            return Ok(timbre.clone());
        }
        let reference = self.silence[..TIMBRE_FRAMES * LATENT_CHANNELS].to_vec();
        let timbre = self.graph(Role::TimbreEncoder)?.run_one(
            vec![
                (
                    "reference_latents",
                    Feed::f32([1, TIMBRE_FRAMES, LATENT_CHANNELS], &reference),
                ),
                ("order_mask", Feed::i64([1], &[0])),
            ],
            ("hidden_states", &[1, 1, CONDITION_WIDTH]),
            DimValues::default().n(1),
            timing,
        )?;
        self.timbre = Some(timbre.clone());
        Ok(timbre)
    }

    /// Steps 3–7 with one condition graph. Its context output is used when bound, else the host's.
    fn pack_combined(
        &mut self,
        embedded: &Embedded,
        frames: usize,
        host_context: Vec<f32>,
        timing: &mut StageTiming,
    ) -> Result<(Vec<f32>, Vec<f32>), PipelineError> {
        let (t, l) = (embedded.caption_tokens, embedded.lyric_tokens);
        let s = l + 1 + t;
        let reference = self.silence[..TIMBRE_FRAMES * LATENT_CHANNELS].to_vec();
        let source = self.silence[..frames * LATENT_CHANNELS].to_vec();
        let mut out = self
            .graph(Role::ConditionEncoder)?
            .run(
                vec![
                    (
                        "text_hidden_states",
                        Feed::f32([1, t, TEXT_WIDTH], &embedded.text_hidden),
                    ),
                    ("text_attention_mask", Feed::fill([1, t], 1.0)),
                    (
                        "lyric_embeddings",
                        Feed::f32([1, l, TEXT_WIDTH], &embedded.lyric_embeddings),
                    ),
                    ("lyric_attention_mask", Feed::fill([1, l], 1.0)),
                    (
                        "reference_latents",
                        Feed::f32([1, TIMBRE_FRAMES, LATENT_CHANNELS], &reference),
                    ),
                    ("order_mask", Feed::i64([1], &[0])),
                    (
                        "source_latents",
                        Feed::f32([1, frames, LATENT_CHANNELS], &source),
                    ),
                    ("chunk_masks", Feed::fill([1, frames, LATENT_CHANNELS], 1.0)),
                    ("is_covers", Feed::fill([1], 0.0)),
                ],
                &["encoder_hidden_states", "context_latents"],
                DimValues::default().t(t).l(l).f(frames).n(1).s(s),
                timing,
            )?
            .into_iter();
        let packed = take(
            Role::ConditionEncoder,
            "encoder_hidden_states",
            out.next().flatten(),
            &[1, s, CONDITION_WIDTH],
        )?;
        let context = match out.next().flatten() {
            Some(output) => take(
                Role::ConditionEncoder,
                "context_latents",
                Some(output),
                &[1, frames, CONTEXT_CHANNELS],
            )?,
            None => host_context,
        };
        Ok((packed, context))
    }

    /// Steps 8–11 given the initial noise (`[F, 64]`, see [`schedule::noise`]): the eight turbo steps with
    /// the Euler update, the optional DCW correction, F padded to even for the DiT. Returns x0, `[F, 64]`.
    pub fn diffuse(
        &mut self,
        condition: &Condition,
        noise: Vec<f32>,
        shift: u8,
        timing: &mut StageTiming,
        observer: &mut Observer<'_>,
    ) -> Result<Vec<f32>, PipelineError> {
        let started = Instant::now();
        let result = self.diffuse_inner(condition, noise, shift, timing, observer);
        self.release(Stage::Diffusion);
        timing.wall += started.elapsed();
        result
    }

    fn diffuse_inner(
        &mut self,
        condition: &Condition,
        noise: Vec<f32>,
        shift: u8,
        timing: &mut StageTiming,
        observer: &mut Observer<'_>,
    ) -> Result<Vec<f32>, PipelineError> {
        let frames = condition.frames;
        if noise.len() != frames * LATENT_CHANNELS {
            return Err(PipelineError::InvalidRequest {
                reason: format!(
                    "noise has {} values, expected {frames} frames × {LATENT_CHANNELS}",
                    noise.len()
                ),
            });
        }
        let dcw = self.options.dcw;
        let sigmas = schedule::sigmas(shift);
        let padded = frames + frames % 2;
        let s = condition.sequence_length;
        let mut context = condition.context_latents.clone();
        context.resize(padded * CONTEXT_CHANNELS, 0.0);
        let mut x = noise;
        let mut x_in = vec![0.0f32; padded * LATENT_CHANNELS];
        let dit = self.graph(Role::Dit)?;

        for i in 0..STEPS {
            proceed(
                observer,
                Stage::Diffusion,
                TEXT_DONE + (DIFFUSION_DONE - TEXT_DONE) * i as f32 / STEPS as f32,
            )?;
            x_in[..x.len()].copy_from_slice(&x);
            let timestep = [sigmas[i] as f32];
            let mut velocity = dit.run_one(
                vec![
                    (
                        "hidden_states",
                        Feed::f32([1, padded, LATENT_CHANNELS], &x_in),
                    ),
                    ("timestep", Feed::f32([1], &timestep)),
                    ("timestep_r", Feed::f32([1], &timestep)),
                    (
                        "encoder_hidden_states",
                        Feed::f32([1, s, CONDITION_WIDTH], &condition.encoder_hidden_states),
                    ),
                    (
                        "context_latents",
                        Feed::f32([1, padded, CONTEXT_CHANNELS], &context),
                    ),
                    ("attention_mask", Feed::fill([1, padded], 1.0)),
                    ("encoder_attention_mask", Feed::fill([1, s], 1.0)),
                ],
                ("velocity", &[1, padded, LATENT_CHANNELS]),
                DimValues::default().f(padded).s(s),
                timing,
            )?;
            velocity.truncate(frames * LATENT_CHANNELS);

            if i == STEPS - 1 {
                x = schedule::predict_x0(&x, &velocity, sigmas[i]);
            } else {
                let x0_hat = dcw.then(|| schedule::predict_x0(&x, &velocity, sigmas[i]));
                schedule::euler_step(&mut x, &velocity, sigmas[i], sigmas[i + 1]);
                if let Some(x0_hat) = x0_hat {
                    super::dcw::correct(&mut x, &x0_hat, sigmas[i]);
                }
            }
        }
        Ok(x)
    }

    /// Step 12: decodes `[F, 64]` latents in tiles of `tile_frames` (plus the overlap) and returns planar
    /// stereo `[left, right]`, 1920 samples per frame.
    pub fn decode(
        &mut self,
        latents: &[f32],
        tile_frames: usize,
        timing: &mut StageTiming,
        observer: &mut Observer<'_>,
    ) -> Result<[Vec<f32>; 2], PipelineError> {
        let started = Instant::now();
        let result = self.decode_inner(latents, tile_frames, timing, observer);
        self.release(Stage::VaeDecode);
        timing.wall += started.elapsed();
        result
    }

    fn decode_inner(
        &mut self,
        latents: &[f32],
        tile_frames: usize,
        timing: &mut StageTiming,
        observer: &mut Observer<'_>,
    ) -> Result<[Vec<f32>; 2], PipelineError> {
        let frames = latents.len() / LATENT_CHANNELS;
        let tiles = tile_windows(frames, tile_frames);
        let mut left = Vec::with_capacity(frames * SAMPLES_PER_FRAME);
        let mut right = Vec::with_capacity(frames * SAMPLES_PER_FRAME);
        let vae = self.graph(Role::VaeDecoder)?;
        for (k, tile) in tiles.iter().enumerate() {
            proceed(
                observer,
                Stage::VaeDecode,
                DIFFUSION_DONE + (1.0 - DIFFUSION_DONE) * k as f32 / tiles.len() as f32,
            )?;
            let width = tile.window.len();
            let window = channel_major_window(latents, LATENT_CHANNELS, tile.window.clone());
            let samples = width * SAMPLES_PER_FRAME;
            let wave = vae.run_one(
                vec![("latents", Feed::f32([1, LATENT_CHANNELS, width], &window))],
                ("waveform", &[1, 2, samples]),
                DimValues::default().f(width),
                timing,
            )?;
            let keep = tile.keep();
            left.extend_from_slice(&wave[keep.clone()]);
            right.extend_from_slice(&wave[samples + keep.start..samples + keep.end]);
        }
        Ok([left, right])
    }
}

impl Pipeline for AceStep15 {
    fn family(&self) -> &'static str {
        Self::FAMILY
    }

    fn max_duration_s(&self) -> f32 {
        (self.silence_frames as f64 / schedule::FRAMES_PER_SECOND) as f32
    }

    fn execution_targets(&self) -> BTreeMap<Role, Option<ExecutionTarget>> {
        self.graphs
            .iter()
            .map(|(role, g)| (*role, g.loaded.as_ref().map(|l| l.target)))
            .collect()
    }

    fn render(
        &mut self,
        request: &RenderRequest,
        observer: &mut Observer<'_>,
    ) -> Result<RenderedAudio, PipelineError> {
        let mut timings = RenderTimings::default();
        proceed(observer, Stage::TextEncode, 0.0)?;
        let condition = self.encode_condition(request, &mut timings.text_encode)?;
        let noise = schedule::noise(request.seed, condition.frames);
        let latents = self.diffuse(
            &condition,
            noise,
            request.shift,
            &mut timings.diffusion,
            observer,
        )?;
        let tile_frames = self.options.vae_tile_frames;
        let [left, right] =
            self.decode(&latents, tile_frames, &mut timings.vae_decode, observer)?;
        let started = Instant::now();
        let samples = interleave_normalised(&left, &right);
        timings.vae_decode.wall += started.elapsed();
        proceed(observer, Stage::VaeDecode, 1.0)?;
        Ok(RenderedAudio {
            samples,
            sample_rate: SAMPLE_RATE,
            channels: CHANNELS,
            latent_frames: condition.frames,
            timings,
        })
    }
}
