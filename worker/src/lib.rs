//! The GPU worker: claims generation jobs from Redis, writes each song's description with an LLM,
//! renders it with ACE-Step 1.5 turbo on ONNX Runtime and stores the encoded audio.

pub mod gguf;
pub mod http;
pub mod metrics;
pub mod plan;
pub mod run;
pub mod vram;

/// Milliseconds since the Unix epoch by this host's clock.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
