//! The GPU worker: claims generation jobs, writes a song description and renders it with ACE-Step.

pub mod songwriter;
