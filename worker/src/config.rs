//! `radio-worker run` settings, from the environment and `.env`.
//!
//! Settings of the original ACE-Step RADIO guide are accepted where they still mean something:
//! `CPU_OFFLOAD=true` asks for the conservative plan, `OVERLAPPED_DECODE=false` decodes the VAE in one
//! piece, `BATCH_SIZE` is the number of concurrent jobs, `MAX_LENGTH_MAX` caps the longest track, and
//! `LLM_GPU_LAYERS`/`LLM_MODEL_NAME` are read by the song writer. `TORCH_COMPILE` has no meaning here
//! (there is no PyTorch) and is ignored with a note in the log.

use std::path::PathBuf;
use std::time::Duration;

use radio_shared::config::{ConfigError, Env, RedisConfig};
use radio_shared::queue::QueueSettings;

use crate::plan::MemoryProfile;
use crate::songwriter::SongWriterConfig;

/// Everything `radio-worker run` reads.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Redis and the key prefix.
    pub redis: RedisConfig,
    /// Queue timings shared by the deployment.
    pub queue: QueueSettings,
    /// The ACE-Step model pack (`MODELS_DIR`).
    pub models_dir: PathBuf,
    /// `VRAM_PROFILE`: auto, cpu, or a card size.
    pub profile: MemoryProfile,
    /// `CPU_OFFLOAD=true` (from the original guide): start from the conservative plan.
    pub cpu_offload: bool,
    /// `GPU_INDEX`: the NVML/CUDA device to use.
    pub gpu_index: u32,
    /// `METRICS_ADDR`: where `/metrics` and `/healthz` listen.
    pub metrics_addr: String,
    /// `WORKER_ID`: the registry id (default `host-pid-xxxx`).
    pub worker_id: String,
    /// `RADIO_SHUTDOWN_GRACE_SECS`: how long a running job may still take after SIGTERM.
    pub shutdown_grace: Duration,
    /// `MAX_DURATION_SECS` (or `MAX_LENGTH_MAX`): a cap below the plan's longest track.
    pub max_duration_s: Option<f32>,
    /// `WORKER_CONCURRENCY` (or `BATCH_SIZE`): jobs at once, instead of the plan's choice.
    pub concurrency: Option<u32>,
    /// `VAE_TILE_FRAMES` (0: one piece; `OVERLAPPED_DECODE=false` means the same): instead of the plan's tile.
    pub vae_tile_frames: Option<usize>,
    /// `DCW_ENABLED`: the turbo correction between diffusion steps (default on).
    pub dcw: bool,
    /// `ORT_THREADS`: threads per ONNX Runtime operator (default: one per core).
    pub intra_threads: Option<usize>,
    /// The song writer's settings (`LLM_*`).
    pub songwriter: SongWriterConfig,
    /// `RADIO_REDIS_MEMORY_ALERT_SHARE`: the share of Redis's `maxmemory` above which the
    /// `RadioRedisMemoryHigh` alert fires (exported as a gauge the alert rule reads).
    pub redis_memory_alert_share: f64,
}

/// The default of `RADIO_REDIS_MEMORY_ALERT_SHARE`.
pub const DEFAULT_REDIS_MEMORY_ALERT_SHARE: f64 = 0.8;

/// The default address of `/metrics` and `/healthz`.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9400";

impl WorkerConfig {
    /// Reads every setting; errors name the setting and what it accepts.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        if env.raw("TORCH_COMPILE").is_some() {
            tracing::info!("TORCH_COMPILE is ignored: the worker runs ONNX graphs, not PyTorch");
        }
        let models_dir = env
            .raw("MODELS_DIR")
            .map(PathBuf::from)
            .ok_or_else(|| ConfigError {
                name: "MODELS_DIR".into(),
                value: String::new(),
                expected:
                    "the folder of an ACE-Step model pack (with pack.toml); scripts/fetch-models \
                           gets the real one, worker/assets/tiny-pack is a tiny test pack"
                        .into(),
            })?;
        let profile = match env.raw("VRAM_PROFILE") {
            None => MemoryProfile::Auto,
            Some(v) => v.parse().map_err(|expected: String| ConfigError {
                name: "VRAM_PROFILE".into(),
                value: v,
                expected,
            })?,
        };
        let overlapped = env.flag("OVERLAPPED_DECODE", true)?;
        let vae_tile_frames = match env.raw("VAE_TILE_FRAMES") {
            Some(_) => Some(env.parse(
                "VAE_TILE_FRAMES",
                0usize,
                "a number of latent frames (0: one piece)",
            )?),
            None if !overlapped => Some(0),
            None => None,
        };
        Ok(Self {
            redis: RedisConfig::from_env(env)?,
            queue: QueueSettings::from_env(env)?,
            models_dir,
            profile,
            cpu_offload: env.flag("CPU_OFFLOAD", false)?,
            gpu_index: env.parse("GPU_INDEX", 0, "a GPU index, e.g. 0")?,
            metrics_addr: env
                .raw("METRICS_ADDR")
                .unwrap_or_else(|| DEFAULT_METRICS_ADDR.into()),
            worker_id: env.raw("WORKER_ID").unwrap_or_else(default_worker_id),
            shutdown_grace: env.seconds("RADIO_SHUTDOWN_GRACE_SECS", Duration::from_secs(60))?,
            max_duration_s: match env.raw_any(&["MAX_DURATION_SECS", "MAX_LENGTH_MAX"]) {
                Some((name, _)) => Some(positive(
                    env.parse(&name, 0.0f32, "a number of seconds")?,
                    &name,
                )?),
                None => None,
            },
            concurrency: match env.raw_any(&["WORKER_CONCURRENCY", "BATCH_SIZE"]) {
                Some((name, _)) => Some(env.parse(&name, 1u32, "a whole number ≥ 1")?.max(1)),
                None => None,
            },
            vae_tile_frames,
            dcw: env.flag("DCW_ENABLED", true)?,
            intra_threads: match env.raw("ORT_THREADS") {
                Some(_) => Some(env.parse("ORT_THREADS", 1usize, "a number of threads")?),
                None => None,
            },
            songwriter: SongWriterConfig::from_env(env)?,
            redis_memory_alert_share: share(env, "RADIO_REDIS_MEMORY_ALERT_SHARE")?,
        })
    }
}

fn share(env: &Env, name: &str) -> Result<f64, ConfigError> {
    let expected = "a share of maxmemory above 0 and at most 1, e.g. 0.8";
    let value = env.parse(name, DEFAULT_REDIS_MEMORY_ALERT_SHARE, expected)?;
    if value > 0.0 && value <= 1.0 {
        Ok(value)
    } else {
        Err(ConfigError {
            name: name.into(),
            value: value.to_string(),
            expected: expected.into(),
        })
    }
}

fn positive(value: f32, name: &str) -> Result<f32, ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(ConfigError {
            name: name.into(),
            value: value.to_string(),
            expected: "a number of seconds above 0".into(),
        })
    }
}

/// This machine's name (`HOSTNAME`, else the kernel's), if it has one.
pub fn host_name() -> Option<String> {
    let from_file = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
    };
    Env.raw("HOSTNAME")
        .map(|h| h.trim().to_string())
        .or_else(|| from_file("/proc/sys/kernel/hostname"))
        .or_else(|| from_file("/etc/hostname"))
}

/// `host-pid-xxxx`: unique per process, readable in `radioctl status`.
pub fn default_worker_id() -> String {
    let host = host_name().unwrap_or_else(|| "worker".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}
