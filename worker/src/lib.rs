//! The GPU worker: claims generation jobs from Redis, writes each song's description with an LLM,
//! renders it with ACE-Step 1.5 turbo on ONNX Runtime and stores the encoded audio.
//!
//! - [`pipeline`]: model packs, execution placement, and the text-to-music pipeline.
//! - [`audio`]: Ogg Opus, WAV and FLAC encoding.
//! - [`songwriter`]: the LLM song writer and its template fallback.
//! - [`plan`]: the memory plan; [`vram`]: GPU memory measured with NVML.
//! - [`run`]: the claim loop; [`metrics`] and [`http`]: `/metrics` and `/healthz`.
//! - [`generate`] and [`pack_verify`]: the `generate` and `pack` subcommands of `radio-worker`.

pub mod audio;
pub mod config;
pub mod generate;
pub mod gguf;
pub mod http;
pub mod metrics;
pub mod pack_verify;
pub mod pipeline;
pub mod plan;
pub mod plan_command;
pub mod run;
pub mod service;
pub mod songwriter;
pub mod studio;
pub mod vram;
pub mod write_command;

pub(crate) use radio_shared::queue::now_ms;
