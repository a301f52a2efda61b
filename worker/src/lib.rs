//! The GPU worker: renders songs with ACE-Step 1.5 on ONNX Runtime and encodes them for Discord.
//!
//! - [`pipeline`]: model packs, execution placement, and the text-to-music pipeline.
//! - [`audio`]: Ogg Opus, WAV and FLAC encoding.
//! - [`generate`] and [`pack_verify`]: the `generate` and `pack` subcommands of `radio-worker`.

pub mod audio;
pub mod generate;
pub mod pack_verify;
pub mod pipeline;
