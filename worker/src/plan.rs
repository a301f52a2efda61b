//! The memory plan: a pure function from a memory profile and the model inventory to where every graph
//! runs, what stays loaded between jobs, how many LLM layers go to the GPU, the VAE tile size, the
//! longest track accepted and how many jobs run at once.
//!
//! The reference point is an 8 GB card shared by ACE-Step and the LLM, with 1.25 GB left to the desktop
//! and driver. The public export's minimal ACE-Step set is about 4.6 GB at int4/fp16 and a 4-bit
//! 3–4 GB GGUF does not fit beside it, so on 8 GB the two take turns: the LLM is loaded for the writing
//! phase and released before rendering, and the 1.7 GB text encoder is loaded only for its stage.
//! Every figure here is an estimate; the worker measures the real peak with NVML and exports it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// What memory the worker may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryProfile {
    /// Read the GPU through NVML; CPU when there is none.
    Auto,
    /// No GPU: everything on CPU.
    Cpu,
    /// A card with this many GiB.
    Gpu {
        /// Card size in GiB (6, 8, 12, 16, 24, 48 or 80).
        gib: u32,
    },
}

/// The card sizes `VRAM_PROFILE` accepts.
pub const GPU_PROFILES: [u32; 7] = [6, 8, 12, 16, 24, 48, 80];

impl FromStr for MemoryProfile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            _ => s
                .strip_suffix("gb")
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| GPU_PROFILES.contains(n))
                .map(|gib| Self::Gpu { gib })
                .ok_or_else(|| {
                    "one of auto, cpu, 6gb, 8gb, 12gb, 16gb, 24gb, 48gb, 80gb".to_string()
                }),
        }
    }
}

impl fmt::Display for MemoryProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Gpu { gib } => write!(f, "{gib}gb"),
        }
    }
}

impl MemoryProfile {
    /// The profile a card of `total_bytes` falls under: the largest profile not above it.
    pub fn for_card(total_bytes: u64) -> Self {
        // Cards report a little less than their marketing size (an "8 GB" card shows ~7.6–8 GiB).
        let gib = (total_bytes as f64 / GIB as f64 + 0.6).floor() as u32;
        match GPU_PROFILES.iter().rev().find(|p| **p <= gib) {
            Some(&gib) => Self::Gpu { gib },
            None => Self::Cpu,
        }
    }
}

/// How a graph uses memory, which is all the planner needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GraphKind {
    /// The diffusion transformer: runs 8 times per job, must be on the GPU when there is one.
    Dit,
    /// The VAE decoder: activations grow with the tile.
    Vae,
    /// The large text encoder (Qwen3-Embedding body): one pass per job.
    TextEncoder,
    /// A table lookup (token embeddings): as fast on CPU, so it goes there when memory is tight.
    Lookup,
    /// A small encoder (lyric, timbre, projector, or a combined condition graph).
    SmallEncoder,
}

/// One graph of the model pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphFootprint<R> {
    /// The pipeline's role for this graph.
    pub role: R,
    /// How it uses memory.
    pub kind: GraphKind,
    /// Weights on disk (model plus external data), bytes.
    pub bytes: u64,
}

/// The LLM's GGUF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlmFootprint {
    /// File size, bytes.
    pub bytes: u64,
    /// Transformer layers.
    pub layers: u32,
    /// KV cache at the configured context, bytes.
    pub kv_cache_bytes: u64,
}

/// Everything the planner sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory<R> {
    /// The ACE-Step graphs.
    pub graphs: Vec<GraphFootprint<R>>,
    /// The song writer's model, if one is configured.
    pub llm: Option<LlmFootprint>,
}

/// Where a graph runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// Main memory and CPU cores.
    Cpu,
    /// The GPU.
    Cuda,
}

/// A graph's placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphPlacement {
    /// Where it runs.
    pub device: Device,
    /// Kept loaded between jobs (otherwise loaded for its stage and released).
    pub resident: bool,
}

/// The plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan<R: Ord> {
    /// The profile planned for.
    pub profile: MemoryProfile,
    /// Card memory, bytes (0 on CPU).
    pub card_bytes: u64,
    /// Left to the desktop and driver, bytes.
    pub reserve_bytes: u64,
    /// What the worker may use, bytes.
    pub budget_bytes: u64,
    /// Per graph.
    pub graphs: BTreeMap<R, GraphPlacement>,
    /// LLM layers offloaded to the GPU.
    pub llm_gpu_layers: u32,
    /// The LLM stays loaded between jobs.
    pub llm_resident: bool,
    /// VAE core chunk, latent frames.
    pub vae_tile_frames: usize,
    /// The longest track accepted, seconds.
    pub max_duration_s: f32,
    /// Jobs run at once (one pipeline per slot).
    pub concurrency: u32,
    /// Estimated peak of the writing phase (LLM), bytes of GPU memory.
    pub writing_peak_bytes: u64,
    /// Estimated peak of the rendering phase (ACE-Step), bytes of GPU memory.
    pub rendering_peak_bytes: u64,
    /// Why the plan is what it is, for the start-up log.
    pub notes: Vec<String>,
}

impl<R: Ord> Plan<R> {
    /// The larger of the two phase peaks: what the plan promises to stay under.
    pub fn estimated_peak_bytes(&self) -> u64 {
        self.writing_peak_bytes.max(self.rendering_peak_bytes)
    }

    /// `cuda/resident,cpu/per-job,…` style summary of one graph kind's placement, for labels.
    pub fn placement_of(&self, role: &R) -> &'static str {
        match self.graphs.get(role) {
            Some(GraphPlacement {
                device: Device::Cuda,
                resident: true,
            }) => "cuda",
            Some(GraphPlacement {
                device: Device::Cuda,
                resident: false,
            }) => "cuda-per-job",
            Some(GraphPlacement {
                device: Device::Cpu,
                ..
            }) => "cpu",
            None => "none",
        }
    }
}

impl<R: Ord + fmt::Display> Plan<R> {
    /// The plan as the readable table the worker logs at start and `radio-worker plan` prints.
    pub fn describe(&self, device: &str, llm_layers: Option<u32>) -> String {
        let mib = |b: u64| b / MIB;
        let mut out = format!("memory plan for profile {} on {device}\n", self.profile);
        if self.card_bytes > 0 {
            out += &format!(
                "  card {} MiB, {} MiB left to the desktop and driver, budget {} MiB\n",
                mib(self.card_bytes),
                mib(self.reserve_bytes),
                mib(self.budget_bytes)
            );
        }
        out += "  graph              runs on  kept loaded\n";
        for (role, p) in &self.graphs {
            let device = match p.device {
                Device::Cuda => "cuda",
                Device::Cpu => "cpu",
            };
            let kept = if p.resident { "yes" } else { "per job" };
            out += &format!("  {:<18} {device:<8} {kept}\n", role.to_string());
        }
        if let Some(layers) = llm_layers {
            let device = if self.llm_gpu_layers > 0 {
                "cuda"
            } else {
                "cpu"
            };
            let kept = if self.llm_resident { "yes" } else { "per job" };
            let split = if self.llm_gpu_layers > 0 && self.llm_gpu_layers < layers {
                format!(" ({} of {layers} layers on the GPU)", self.llm_gpu_layers)
            } else {
                String::new()
            };
            out += &format!("  {:<18} {device:<8} {kept}{split}\n", "llm");
        }
        out += &format!(
            "  vae tile           {} latent frames\n",
            self.vae_tile_frames
        );
        out += &format!("  longest track      {:.0} s\n", self.max_duration_s);
        out += &format!("  concurrent jobs    {}\n", self.concurrency);
        if self.card_bytes > 0 {
            out += &format!(
                "  estimated peak     writing {} MiB, rendering {} MiB\n",
                mib(self.writing_peak_bytes),
                mib(self.rendering_peak_bytes)
            );
        }
        for note in &self.notes {
            out += &format!("  - {note}\n");
        }
        out
    }
}

/// CUDA context, cuBLAS/cuDNN workspaces and allocator slack per process.
pub const CUDA_OVERHEAD_BYTES: u64 = 600 * MIB;
/// llama.cpp's compute buffers beside its weights and KV cache.
pub const LLM_COMPUTE_BYTES: u64 = 300 * MIB;
/// Activations of the text and small encoders (≤ 256 + 2048 tokens).
pub const ENCODER_ACTIVATION_BYTES: u64 = 200 * MIB;

/// VAE activations for a tile of `frames` latent frames (about 0.8 GB at 256 and 1.9 GB at 512 in the
/// reference implementation; ORT at fp16 is in the same range).
pub fn vae_activation_bytes(frames: usize) -> u64 {
    match frames {
        0..=128 => 450 * MIB,
        129..=256 => 800 * MIB,
        _ => 1900 * MIB * frames as u64 / 512,
    }
}

/// DiT activations for a track of `seconds` (F/2 tokens, batch 1, no guidance).
pub fn dit_activation_bytes(seconds: f32) -> u64 {
    300 * MIB + (seconds.max(0.0) as u64) * 3 * MIB
}

/// What is left to the desktop and driver on a card of `card_bytes`.
pub fn reserve_for(card_bytes: u64) -> u64 {
    if card_bytes <= 8 * GIB {
        1280 * MIB
    } else {
        1536 * MIB
    }
}

/// Durations the planner considers, longest first.
const DURATIONS: [f32; 7] = [600.0, 480.0, 360.0, 240.0, 180.0, 120.0, 60.0];
/// Tiles the planner considers, largest first.
const TILES: [usize; 3] = [512, 256, 128];
/// The longest track a CPU-only worker accepts by default (it renders slower than real time).
pub const CPU_MAX_DURATION_S: f32 = 240.0;

/// Plans for a card of `card_bytes` (`None`: CPU only).
pub fn plan<R: Ord + Copy>(
    profile: MemoryProfile,
    card_bytes: Option<u64>,
    inventory: &Inventory<R>,
) -> Plan<R> {
    let card_bytes = match (profile, card_bytes) {
        (MemoryProfile::Cpu, _) | (MemoryProfile::Auto, None) => None,
        (MemoryProfile::Gpu { gib }, _) => Some(u64::from(gib) * GIB),
        (MemoryProfile::Auto, Some(bytes)) => Some(bytes),
    };
    match card_bytes {
        None => cpu_plan(profile, inventory, Vec::new()),
        Some(card) => gpu_plan(profile, card, inventory),
    }
}

fn cpu_plan<R: Ord + Copy>(
    profile: MemoryProfile,
    inventory: &Inventory<R>,
    mut notes: Vec<String>,
) -> Plan<R> {
    notes.push("no GPU: every graph and the LLM run on CPU, kept loaded in main memory".into());
    Plan {
        profile,
        card_bytes: 0,
        reserve_bytes: 0,
        budget_bytes: 0,
        graphs: inventory
            .graphs
            .iter()
            .map(|g| {
                (
                    g.role,
                    GraphPlacement {
                        device: Device::Cpu,
                        resident: true,
                    },
                )
            })
            .collect(),
        llm_gpu_layers: 0,
        llm_resident: true,
        vae_tile_frames: 256,
        max_duration_s: CPU_MAX_DURATION_S,
        concurrency: 1,
        writing_peak_bytes: 0,
        rendering_peak_bytes: 0,
        notes,
    }
}

/// One candidate arrangement, from most to least GPU-resident.
#[derive(Debug, Clone, Copy)]
struct Arrangement {
    /// The LLM stays loaded (on the GPU) while ACE-Step renders.
    llm_resident: bool,
    /// The text encoder stays on the GPU between jobs.
    text_encoder_resident: bool,
    /// The text encoder runs on the GPU at all.
    text_encoder_on_gpu: bool,
    /// Lookups (token embeddings) on the GPU.
    lookup_on_gpu: bool,
    /// Small encoders on the GPU.
    small_on_gpu: bool,
}

const ARRANGEMENTS: [Arrangement; 5] = [
    // Everything resident on the GPU, the LLM beside ACE-Step.
    Arrangement {
        llm_resident: true,
        text_encoder_resident: true,
        text_encoder_on_gpu: true,
        lookup_on_gpu: true,
        small_on_gpu: true,
    },
    // ACE-Step resident; the LLM loaded for the writing phase only.
    Arrangement {
        llm_resident: false,
        text_encoder_resident: true,
        text_encoder_on_gpu: true,
        lookup_on_gpu: false,
        small_on_gpu: true,
    },
    // The text encoder loaded for its stage only (the 8 GB reference plan).
    Arrangement {
        llm_resident: false,
        text_encoder_resident: false,
        text_encoder_on_gpu: true,
        lookup_on_gpu: false,
        small_on_gpu: true,
    },
    // The text encoder on CPU.
    Arrangement {
        llm_resident: false,
        text_encoder_resident: true,
        text_encoder_on_gpu: false,
        lookup_on_gpu: false,
        small_on_gpu: true,
    },
    // Only the DiT and the VAE on the GPU.
    Arrangement {
        llm_resident: false,
        text_encoder_resident: true,
        text_encoder_on_gpu: false,
        lookup_on_gpu: false,
        small_on_gpu: false,
    },
];

fn gpu_plan<R: Ord + Copy>(profile: MemoryProfile, card: u64, inventory: &Inventory<R>) -> Plan<R> {
    let reserve = reserve_for(card);
    let budget = card.saturating_sub(reserve);
    let bytes_of = |kind: GraphKind| -> u64 {
        inventory
            .graphs
            .iter()
            .filter(|g| g.kind == kind)
            .map(|g| g.bytes)
            .sum()
    };
    let (dit, vae, text, lookup, small) = (
        bytes_of(GraphKind::Dit),
        bytes_of(GraphKind::Vae),
        bytes_of(GraphKind::TextEncoder),
        bytes_of(GraphKind::Lookup),
        bytes_of(GraphKind::SmallEncoder),
    );
    let llm = inventory.llm;

    /// How good a candidate is; tuples compare field by field, most important first.
    type Score = (bool, bool, i64, u32, u64, usize);
    let mut best: Option<(Score, Plan<R>)> = None;
    for (index, a) in ARRANGEMENTS.into_iter().enumerate() {
        // Graphs on the GPU between jobs.
        let resident = dit
            + vae
            + if a.text_encoder_on_gpu && a.text_encoder_resident {
                text
            } else {
                0
            }
            + if a.lookup_on_gpu { lookup } else { 0 }
            + if a.small_on_gpu { small } else { 0 };
        // The text encoder, when loaded per job, is on the GPU only during the encode stage, before the
        // DiT runs: count it against the encode stage, which also holds the encoder activations.
        let transient_text = if a.text_encoder_on_gpu && !a.text_encoder_resident {
            text
        } else {
            0
        };

        // Largest duration and tile that fit the rendering phase.
        let llm_resident_bytes = |layers: u32| -> u64 {
            llm.map_or(0, |l| {
                if a.llm_resident {
                    llm_gpu_bytes(l, layers)
                } else {
                    0
                }
            })
        };
        let full_layers = llm.map_or(0, |l| l.layers);
        let render_peak = |seconds: f32, tile: usize, layers: u32| {
            let encode = transient_text + ENCODER_ACTIVATION_BYTES;
            let diffuse = dit_activation_bytes(seconds);
            let decode = vae_activation_bytes(tile);
            CUDA_OVERHEAD_BYTES
                + resident
                + llm_resident_bytes(layers)
                + encode.max(diffuse).max(decode)
        };
        let Some((max_duration_s, tile)) = DURATIONS
            .iter()
            .flat_map(|d| TILES.iter().map(move |t| (*d, *t)))
            .find(|(d, t)| render_peak(*d, *t, full_layers) <= budget)
        else {
            continue;
        };

        // LLM layers: all if they fit in the writing phase, else as many as fit.
        let writing_base = CUDA_OVERHEAD_BYTES + resident;
        let llm_gpu_layers = match llm {
            None => 0,
            Some(l) if a.llm_resident => l.layers,
            Some(l) => (0..=l.layers)
                .rev()
                .find(|n| writing_base + llm_gpu_bytes(l, *n) <= budget)
                .unwrap_or(0),
        };
        if a.llm_resident
            && llm.is_some()
            && render_peak(max_duration_s, tile, llm_gpu_layers) > budget
        {
            continue;
        }
        let writing_peak = llm.map_or(0, |l| writing_base + llm_gpu_bytes(l, llm_gpu_layers));
        let rendering_peak = render_peak(max_duration_s, tile, llm_gpu_layers);

        // Extra slots on large cards: each needs its own sessions and LLM context.
        let per_slot = resident.max(1)
            + llm.map_or(0, |l| llm_gpu_bytes(l, llm_gpu_layers))
            + vae_activation_bytes(tile)
            + dit_activation_bytes(max_duration_s);
        let peak = writing_peak.max(rendering_peak);
        let spare_slots = budget.saturating_sub(peak) / per_slot;
        let concurrency = if a.llm_resident && a.text_encoder_resident {
            (1 + spare_slots).min(4) as u32
        } else {
            1
        };

        let mut notes = vec![format!(
            "{} GiB card, {} MiB left to the desktop and driver, {} MiB budget",
            card / GIB,
            reserve / MIB,
            budget / MIB
        )];
        if !a.llm_resident && llm.is_some() {
            notes.push(
                "the LLM is loaded for the writing phase and released before rendering".into(),
            );
        }
        if let Some(l) = llm
            && llm_gpu_layers < l.layers
        {
            notes.push(format!(
                "{llm_gpu_layers} of {} LLM layers fit on the GPU; the rest run on CPU",
                l.layers
            ));
        }
        if a.text_encoder_on_gpu && !a.text_encoder_resident {
            notes.push("the text encoder is loaded for its stage only".into());
        }
        if !a.text_encoder_on_gpu {
            notes.push("the text encoder runs on CPU (one pass per job)".into());
        }
        if !a.lookup_on_gpu {
            notes.push("token embeddings (a table lookup) stay on CPU".into());
        }
        if !a.small_on_gpu {
            notes.push("the small encoders run on CPU".into());
        }
        let mut graphs = BTreeMap::new();
        for g in &inventory.graphs {
            let (on_gpu, keep) = match g.kind {
                GraphKind::Dit | GraphKind::Vae => (true, true),
                GraphKind::TextEncoder => (
                    a.text_encoder_on_gpu,
                    a.text_encoder_resident || !a.text_encoder_on_gpu,
                ),
                GraphKind::Lookup => (a.lookup_on_gpu, true),
                GraphKind::SmallEncoder => (a.small_on_gpu, true),
            };
            graphs.insert(
                g.role,
                GraphPlacement {
                    device: if on_gpu { Device::Cuda } else { Device::Cpu },
                    resident: keep,
                },
            );
        }
        let candidate = Plan {
            profile,
            card_bytes: card,
            reserve_bytes: reserve,
            budget_bytes: budget,
            graphs,
            llm_gpu_layers,
            llm_resident: a.llm_resident || llm.is_none(),
            vae_tile_frames: tile,
            max_duration_s,
            concurrency,
            writing_peak_bytes: writing_peak,
            rendering_peak_bytes: rendering_peak,
            notes,
        };
        // What matters most: the LLM (nearly) all on the GPU, since every CPU layer slows every token;
        // then every track length the model can make (so a larger card never accepts shorter tracks
        // than a smaller one); then fewer reloads per job; then more layers, longer tracks, larger tiles.
        let llm_mostly_on_gpu = llm.is_none_or(|l| llm_gpu_layers * 5 >= l.layers * 4);
        let score = (
            llm_mostly_on_gpu,
            max_duration_s >= DURATIONS[0],
            -(index as i64),
            llm_gpu_layers,
            max_duration_s as u64,
            tile,
        );
        if best
            .as_ref()
            .is_none_or(|(best_score, _)| score > *best_score)
        {
            best = Some((score, candidate));
        }
    }
    if let Some((_, plan)) = best {
        return plan;
    }
    let notes = vec![format!(
        "a {} GiB card cannot hold the DiT and the VAE ({} MiB) with a {} MiB reserve; running on CPU",
        card / GIB,
        (dit + vae) / MIB,
        reserve / MIB
    )];
    cpu_plan(profile, inventory, notes)
}

/// GPU bytes of an LLM with `layers` of its layers offloaded (weights share, KV cache share, buffers).
fn llm_gpu_bytes(llm: LlmFootprint, layers: u32) -> u64 {
    if layers == 0 || llm.layers == 0 {
        return 0;
    }
    let share = f64::from(layers.min(llm.layers)) / f64::from(llm.layers);
    ((llm.bytes + llm.kv_cache_bytes) as f64 * share) as u64 + LLM_COMPUTE_BYTES
}

/// A conservative version of `plan`, used once after CUDA ran out of memory: half the VAE tile and
/// every optional graph (text encoder, lookups, small encoders) on CPU.
pub fn conservative<R: Ord + Copy>(plan: &Plan<R>, inventory: &Inventory<R>) -> Plan<R> {
    let mut p = plan.clone();
    p.vae_tile_frames = (p.vae_tile_frames / 2).max(64);
    for g in &inventory.graphs {
        if !matches!(g.kind, GraphKind::Dit | GraphKind::Vae) {
            p.graphs.insert(
                g.role,
                GraphPlacement {
                    device: Device::Cpu,
                    resident: true,
                },
            );
        }
    }
    p.llm_resident = false;
    p.llm_gpu_layers /= 2;
    p.concurrency = 1;
    p.notes
        .push("conservative plan after CUDA ran out of memory".into());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    enum R {
        Text,
        Embed,
        Proj,
        Lyric,
        Timbre,
        Dit,
        Vae,
    }

    /// The public export's minimal set (ACESTEP.md §1) and a 4-bit Gemma 3n E4B (~3.6 GB, 35 layers).
    fn public_q4(with_llm: bool) -> Inventory<R> {
        let g = |role, kind, mib: u64| GraphFootprint {
            role,
            kind,
            bytes: mib * MIB,
        };
        Inventory {
            graphs: vec![
                g(R::Text, GraphKind::TextEncoder, 1740),
                g(R::Embed, GraphKind::Lookup, 311),
                g(R::Proj, GraphKind::SmallEncoder, 4),
                g(R::Lyric, GraphKind::SmallEncoder, 216),
                g(R::Timbre, GraphKind::SmallEncoder, 108),
                g(R::Dit, GraphKind::Dit, 2150),
                g(R::Vae, GraphKind::Vae, 169),
            ],
            llm: with_llm.then_some(LlmFootprint {
                bytes: 3600 * MIB,
                layers: 35,
                kv_cache_bytes: 290 * MIB,
            }),
        }
    }

    fn gpu(gib: u32) -> MemoryProfile {
        MemoryProfile::Gpu { gib }
    }

    /// The GPU matrix of the original guide, plus the other profiles.
    #[test]
    fn plans_for_the_gpu_matrix_fit_their_budget_and_make_sense() {
        let inv = public_q4(true);
        // (card, NVML total bytes as such cards report them)
        let cards = [
            ("RTX 4060 Laptop 8 GB", 8_188 * MIB),
            ("RTX 3070 8 GB", 8_192 * MIB),
            ("RTX 2070 Super 8 GB", 8_192 * MIB),
            ("GTX 1070 Ti 8 GB", 8_192 * MIB),
            ("RTX 3060 12 GB", 12_288 * MIB),
        ];
        for (name, total) in cards {
            let profile = MemoryProfile::for_card(total);
            let p = plan(MemoryProfile::Auto, Some(total), &inv);
            assert!(
                p.estimated_peak_bytes() <= p.budget_bytes,
                "{name} exceeds its budget: {p:#?}"
            );
            assert!(
                p.card_bytes - p.budget_bytes >= GIB,
                "{name} keeps at least 1 GB free"
            );
            assert_eq!(
                p.graphs[&R::Dit].device,
                Device::Cuda,
                "{name}: the DiT is on the GPU"
            );
            if profile == gpu(8) {
                assert!(!p.llm_resident, "{name}: the LLM takes turns with ACE-Step");
                assert!(!p.graphs[&R::Text].resident, "{name}: text encoder per job");
                assert!(
                    p.llm_gpu_layers >= 28,
                    "{name}: at least 80 % of the LLM on the GPU: {p:#?}"
                );
                assert!(p.max_duration_s >= 240.0, "{name}: 4-minute songs");
                assert_eq!(p.concurrency, 1);
            } else {
                assert_eq!(profile, gpu(12));
                assert_eq!(
                    p.llm_gpu_layers, 35,
                    "{name}: the whole LLM on the GPU: {p:#?}"
                );
                assert_eq!(p.graphs[&R::Text].device, Device::Cuda);
            }
        }
    }

    #[test]
    fn every_profile_stays_within_its_budget_by_its_own_estimate() {
        for gib in GPU_PROFILES {
            for with_llm in [true, false] {
                let inv = public_q4(with_llm);
                let p = plan(gpu(gib), None, &inv);
                assert!(
                    p.estimated_peak_bytes() <= p.budget_bytes,
                    "{gib} GB, llm {with_llm}: {p:#?}"
                );
                assert!(p.concurrency >= 1);
                assert!(p.max_duration_s >= 60.0);
            }
        }
    }

    #[test]
    fn six_gigabytes_moves_the_text_encoder_and_part_of_the_llm_off_the_gpu() {
        let p = plan(gpu(6), None, &public_q4(true));
        assert_eq!(p.graphs[&R::Dit].device, Device::Cuda);
        assert_eq!(p.graphs[&R::Embed].device, Device::Cpu);
        assert!(p.llm_gpu_layers < 35, "{p:#?}");
        assert!(!p.llm_resident);
    }

    #[test]
    fn large_cards_keep_everything_resident_and_run_more_slots() {
        let p16 = plan(gpu(16), None, &public_q4(true));
        assert!(
            p16.llm_resident
                && p16
                    .graphs
                    .values()
                    .all(|g| g.resident && g.device == Device::Cuda)
        );
        assert!(p16.vae_tile_frames >= 256);
        let p24 = plan(gpu(24), None, &public_q4(true));
        assert_eq!(p24.vae_tile_frames, 512);
        assert_eq!(p24.max_duration_s, 600.0);
        let p80 = plan(gpu(80), None, &public_q4(true));
        assert!(
            p80.concurrency > p24.concurrency,
            "{} vs {}",
            p80.concurrency,
            p24.concurrency
        );
        assert!(p80.concurrency <= 4);
    }

    #[test]
    fn cpu_only_runs_everything_on_cpu() {
        for (profile, card) in [
            (MemoryProfile::Cpu, Some(8 * GIB)),
            (MemoryProfile::Auto, None),
        ] {
            let p = plan(profile, card, &public_q4(true));
            assert!(p.graphs.values().all(|g| g.device == Device::Cpu));
            assert_eq!((p.llm_gpu_layers, p.concurrency, p.budget_bytes), (0, 1, 0));
        }
    }

    #[test]
    fn a_card_too_small_for_the_dit_falls_back_to_cpu_and_says_why() {
        let mut inv = public_q4(false);
        inv.graphs
            .iter_mut()
            .filter(|g| g.kind == GraphKind::Dit)
            .for_each(|g| g.bytes = 6300 * MIB);
        let p = plan(gpu(6), None, &inv);
        assert!(p.graphs.values().all(|g| g.device == Device::Cpu));
        assert!(p.notes[0].contains("cannot hold the DiT"), "{:?}", p.notes);
    }

    #[test]
    fn the_conservative_plan_halves_the_tile_and_moves_optional_graphs_to_cpu() {
        let inv = public_q4(true);
        let p = plan(gpu(8), None, &inv);
        let c = conservative(&p, &inv);
        assert_eq!(c.vae_tile_frames, p.vae_tile_frames / 2);
        assert_eq!(c.graphs[&R::Text].device, Device::Cpu);
        assert_eq!(c.graphs[&R::Dit].device, Device::Cuda);
    }

    #[test]
    fn profiles_parse_and_cards_map_to_profiles() {
        assert_eq!("8GB".parse::<MemoryProfile>(), Ok(gpu(8)));
        assert_eq!("auto".parse::<MemoryProfile>(), Ok(MemoryProfile::Auto));
        assert!("7gb".parse::<MemoryProfile>().is_err());
        assert_eq!(MemoryProfile::for_card(8_188 * MIB), gpu(8));
        assert_eq!(MemoryProfile::for_card(12_288 * MIB), gpu(12));
        assert_eq!(MemoryProfile::for_card(143_771 * MIB), gpu(80));
        assert_eq!(MemoryProfile::for_card(4 * GIB), MemoryProfile::Cpu);
    }
}
