//! `radio-worker plan`: the memory plan a profile gives, printed without loading a model, so an operator
//! can size a GPU before downloading anything.

use std::path::PathBuf;

use anyhow::Context;

use crate::pipeline::{ModelPack, Role};
use crate::plan::{self, GraphFootprint, Inventory, LlmFootprint, MemoryProfile};
use crate::service::{graph_kind, inventory};

const MIB: u64 = 1 << 20;

/// `radio-worker plan`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// The profile to plan for: cpu, 6gb, 8gb, 12gb, 16gb, 24gb, 48gb or 80gb.
    #[arg(long, default_value = "8gb")]
    pub profile: MemoryProfile,
    /// Size the graphs of this model pack (default: the public q4 export's sizes from ACESTEP.md).
    #[arg(long, value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// Size the LLM from this GGUF (default: a 4-bit Gemma 3n E4B, 3.6 GB, 35 layers).
    #[arg(long, value_name = "FILE", conflicts_with = "no_llm")]
    pub llm: Option<PathBuf>,
    /// Plan without an LLM (template song writer).
    #[arg(long)]
    pub no_llm: bool,
    /// LLM context size, for its KV cache.
    #[arg(long, default_value_t = 4096)]
    pub context: u32,
}

/// The public q4 export's graphs (ACESTEP.md §1): role and approximate size.
const PUBLIC_Q4: [(Role, u64); 7] = [
    (Role::TextEncoder, 1740 * MIB),
    (Role::TokenEmbeddings, 311 * MIB),
    (Role::TextProjector, 4 * MIB),
    (Role::LyricEncoder, 216 * MIB),
    (Role::TimbreEncoder, 108 * MIB),
    (Role::Dit, 2150 * MIB),
    (Role::VaeDecoder, 169 * MIB),
];

/// A 4-bit Gemma 3n E4B GGUF, the original guide's song writer.
const DEFAULT_LLM: LlmFootprint = LlmFootprint {
    bytes: 3600 * MIB,
    layers: 35,
    kv_cache_bytes: 290 * MIB,
};

/// Prints the plan.
pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let llm = if args.no_llm {
        None
    } else if let Some(path) = &args.llm {
        let facts = crate::gguf::read_facts(path)?;
        Some(LlmFootprint {
            bytes: facts.file_bytes,
            layers: facts.layers,
            kv_cache_bytes: facts.kv_cache_bytes(args.context),
        })
    } else {
        Some(DEFAULT_LLM)
    };
    let inventory = match &args.models {
        Some(dir) => {
            let pack = ModelPack::open(dir)
                .with_context(|| format!("opening the model pack in {}", dir.display()))?;
            inventory(&pack, llm)
        }
        None => Inventory {
            graphs: PUBLIC_Q4
                .iter()
                .map(|(role, bytes)| GraphFootprint {
                    role: *role,
                    kind: graph_kind(*role),
                    bytes: *bytes,
                })
                .collect(),
            llm,
        },
    };
    let plan = plan::plan(args.profile, None, &inventory);
    let device = match args.profile {
        MemoryProfile::Gpu { gib } => format!("a {gib} GB GPU"),
        _ => "CPU".to_string(),
    };
    print!("{}", plan.describe(&device, llm.map(|l| l.layers)));
    Ok(())
}
