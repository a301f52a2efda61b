//! Assembling `radio-worker run`: probe the GPU, size the models, plan, load, connect, serve.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use radio_shared::queue::{Queue, WorkerInfo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::WorkerConfig;
use crate::gguf;
use crate::http::{self, HttpState};
use crate::metrics::WorkerMetrics;
use crate::pipeline::{self, ExecutionTarget, ModelPack, PipelineOptions, Placement, Role};
use crate::plan::{
    self, Device, GraphFootprint, GraphKind, Inventory, LlmFootprint, MemoryProfile, Plan,
};
use crate::run::{self, Render, RunSettings};
use crate::songwriter::{LlmPlacement, SongWriters};
use crate::studio::Studio;
use crate::vram::GpuMonitor;

/// How the memory planner sees each pipeline role.
pub fn graph_kind(role: Role) -> GraphKind {
    match role {
        Role::Dit => GraphKind::Dit,
        Role::VaeDecoder => GraphKind::Vae,
        Role::TextEncoder => GraphKind::TextEncoder,
        Role::TokenEmbeddings => GraphKind::Lookup,
        Role::TextProjector | Role::LyricEncoder | Role::TimbreEncoder | Role::ConditionEncoder => {
            GraphKind::SmallEncoder
        }
    }
}

/// The planner's view of a pack and an optional GGUF.
pub fn inventory(pack: &ModelPack, llm: Option<LlmFootprint>) -> Inventory<Role> {
    Inventory {
        graphs: pack
            .inventory()
            .roles
            .iter()
            .map(|(role, item)| GraphFootprint {
                role: *role,
                kind: graph_kind(*role),
                bytes: item.bytes(),
            })
            .collect(),
        llm,
    }
}

/// Sizes the song writer's GGUF from its header; `None` (with a warning) when it cannot be read.
pub fn llm_footprint(config: &WorkerConfig) -> Option<LlmFootprint> {
    let path = config.songwriter.model_path.as_ref()?;
    match gguf::read_facts(path) {
        Ok(facts) => Some(LlmFootprint {
            bytes: facts.file_bytes,
            layers: facts.layers,
            kv_cache_bytes: facts.kv_cache_bytes(config.songwriter.context_size),
        }),
        Err(e) => {
            warn!(error = %e, "cannot size the LLM for the memory plan");
            None
        }
    }
}

/// The pipeline options a plan asks for, with the operator's overrides.
pub fn pipeline_options(plan: &Plan<Role>, config: &WorkerConfig) -> PipelineOptions {
    let placements: BTreeMap<Role, Placement> = plan
        .graphs
        .iter()
        .map(|(role, p)| {
            let target = match p.device {
                Device::Cpu => ExecutionTarget::Cpu,
                Device::Cuda => ExecutionTarget::Cuda {
                    device_id: config.gpu_index,
                    memory_limit_bytes: Some(plan.budget_bytes),
                },
            };
            (
                *role,
                Placement {
                    target,
                    resident: p.resident,
                },
            )
        })
        .collect();
    let tile = match config.vae_tile_frames {
        Some(0) => usize::MAX,
        Some(frames) => frames,
        None => plan.vae_tile_frames,
    };
    PipelineOptions {
        placements,
        vae_tile_frames: tile,
        dcw: config.dcw,
        intra_threads: config.intra_threads,
    }
}

/// Runs the worker until `shutdown` fires. `listener` serves `/metrics` and `/healthz`.
pub async fn start(
    config: WorkerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let gpu = probe_gpu(&config);
    let pack = ModelPack::open(&config.models_dir).with_context(|| {
        format!(
            "opening the model pack in {} (MODELS_DIR)",
            config.models_dir.display()
        )
    })?;
    let llm = llm_footprint(&config);
    let inventory = inventory(&pack, llm);
    let card = gpu.as_ref().map(|g| g.info().total_bytes);
    let profile = match (config.profile, &gpu) {
        // A card size was forced, but there is no card: offering GPU durations would be a lie.
        (MemoryProfile::Gpu { gib }, None) => {
            warn!(
                "VRAM_PROFILE={gib}gb, but no NVIDIA GPU was found: planning for CPU. Check the \
                 driver (nvidia-smi) or set VRAM_PROFILE=cpu"
            );
            MemoryProfile::Cpu
        }
        (profile, _) => profile,
    };
    let mut plan = plan::plan(profile, card, &inventory);
    if config.cpu_offload {
        info!("CPU_OFFLOAD=true: starting from the conservative plan");
        plan = plan::conservative(&plan, &inventory);
    }
    if let Some(n) = config.concurrency {
        plan.concurrency = n;
    }
    let fallback = (plan.graphs.values().any(|g| g.device == Device::Cuda))
        .then(|| pipeline_options(&plan::conservative(&plan, &inventory), &config));
    let options = pipeline_options(&plan, &config);
    let device = gpu
        .as_ref()
        .map_or_else(|| "cpu".to_string(), |g| g.info().name.clone());
    info!("\n{}", plan.describe(&device, llm.map(|l| l.layers)));

    pipeline::init_onnxruntime().context("loading ONNX Runtime")?;
    let placement = LlmPlacement {
        gpu_layers: plan.llm_gpu_layers,
        keep_resident: plan.llm_resident,
    };
    let mut renderers: Vec<Box<dyn Render>> = Vec::new();
    let mut pipeline_max = f32::MAX;
    for slot in 0..plan.concurrency.max(1) {
        let (pack, options, fallback, songwriter) = (
            pack.clone(),
            options.clone(),
            fallback.clone(),
            config.songwriter.clone(),
        );
        let studio = tokio::task::spawn_blocking(move || -> anyhow::Result<Studio> {
            let writers = SongWriters::from_config(&songwriter, placement)
                .context("loading the song writer")?;
            Studio::load(pack, options, fallback, writers, !placement.keep_resident)
                .context("loading the pipeline")
        })
        .await
        .context("the loader thread panicked")?
        .with_context(|| format!("preparing slot {slot}"))?;
        pipeline_max = pipeline_max.min(studio.max_duration_s());
        renderers.push(Box::new(studio));
    }
    let max_duration_s = [
        Some(plan.max_duration_s),
        Some(pipeline_max),
        config.max_duration_s,
    ]
    .into_iter()
    .flatten()
    .fold(f32::MAX, f32::min);

    let metrics = WorkerMetrics::new().context("creating metrics")?;
    metrics.max_duration.set(f64::from(max_duration_s));
    metrics
        .redis_memory_alert_share
        .set(config.redis_memory_alert_share);
    let role_label = |kind: GraphKind| {
        plan.graphs
            .keys()
            .find(|r| graph_kind(**r) == kind)
            .map_or("none", |r| plan.placement_of(r))
    };
    metrics
        .plan_info
        .with_label_values(&[
            &plan.profile.to_string(),
            &device,
            role_label(GraphKind::Dit),
            role_label(GraphKind::TextEncoder),
            role_label(GraphKind::Vae),
            &options.vae_tile_frames.min(100_000).to_string(),
            &plan.llm_gpu_layers.to_string(),
            &plan.concurrency.to_string(),
        ])
        .set(1);

    let queue = Queue::connect_waiting(&config.redis, config.queue.clone())
        .await
        .context("connecting to Redis")?;
    let healthy = Arc::new(AtomicBool::new(false));
    let http_shutdown = CancellationToken::new();
    let server = tokio::spawn(http::serve(
        listener,
        HttpState {
            metrics: metrics.clone(),
            healthy: healthy.clone(),
        },
        http_shutdown.clone(),
    ));
    let info = WorkerInfo {
        id: config.worker_id.clone(),
        host: crate::config::host_name().unwrap_or_default(),
        gpu: device.clone(),
        vram_total_bytes: card.unwrap_or(0),
        profile: match (profile, card) {
            (MemoryProfile::Auto, Some(bytes)) => {
                format!("auto ({})", MemoryProfile::for_card(bytes))
            }
            (profile, _) => profile.to_string(),
        },
        plan: format!(
            "dit {}, text encoder {}, vae tile {}, llm {} layers on GPU",
            role_label(GraphKind::Dit),
            role_label(GraphKind::TextEncoder),
            plan.vae_tile_frames,
            plan.llm_gpu_layers
        ),
        max_duration_s,
        concurrency: plan.concurrency,
        busy_with: None,
        jobs_done: 0,
        started_ms: crate::now_ms(),
        heartbeat_ms: 0,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let settings = RunSettings {
        worker_id: config.worker_id.clone(),
        shutdown_grace: config.shutdown_grace,
        info,
    };
    let result = run::run(
        queue,
        settings,
        renderers,
        metrics,
        gpu.map(Arc::new),
        healthy,
        shutdown,
    )
    .await;
    // Let a last scrape see the final counters, then stop serving.
    tokio::time::sleep(Duration::from_millis(100)).await;
    http_shutdown.cancel();
    let _ = server.await;
    result
}

/// The GPU to use, or `None` (said once, with the reason) to run on CPU.
fn probe_gpu(config: &WorkerConfig) -> Option<GpuMonitor> {
    if config.profile == MemoryProfile::Cpu {
        info!("VRAM_PROFILE=cpu: running on CPU");
        return None;
    }
    match GpuMonitor::probe(config.gpu_index) {
        Ok(gpu) => {
            info!(gpu = %gpu.info().name, total_mib = gpu.info().total_bytes >> 20, "GPU found");
            Some(gpu)
        }
        Err(reason) => {
            warn!(%reason, "no usable NVIDIA GPU: running on CPU");
            None
        }
    }
}
