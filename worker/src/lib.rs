//! The GPU worker: renders songs with ACE-Step 1.5 on ONNX Runtime and encodes them for Discord.
//!
//! - [`pipeline`]: model packs, execution placement, and the text-to-music pipeline.
//! - [`audio`]: Ogg Opus, WAV and FLAC encoding.

pub mod audio;
pub mod pipeline;
