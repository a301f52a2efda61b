//! Integration tests of the ACE-Step pipeline and audio output on the tiny model pack, with the real ONNX
//! Runtime library (run `scripts/fetch-onnxruntime` once) and the real libopus.

mod audio;
mod cli;
mod common;
mod packs;
mod parity;
mod render;
