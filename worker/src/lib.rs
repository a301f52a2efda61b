//! The GPU worker: claims generation jobs from Redis, writes each song's description with an LLM,
//! renders it with ACE-Step 1.5 turbo on ONNX Runtime and stores the encoded audio.

pub mod http;
pub mod metrics;
pub mod plan;
pub mod vram;
