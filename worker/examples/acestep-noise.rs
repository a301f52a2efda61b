//! Writes the pipeline's seeded initial noise as `.npy`, so the NumPy reference (`tools/tinypack/reference.py`)
//! uses exactly the noise the Rust pipeline draws:
//!
//! `cargo run --example acestep-noise -- --seed 1234 --frames 137 --out worker/tests/fixtures/parity/noise.npy`

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use radio_worker::pipeline::{npy, schedule};

/// Write the initial diffusion noise for a seed.
#[derive(Debug, Parser)]
struct Args {
    /// The render's seed.
    #[arg(long)]
    seed: u64,
    /// Latent frames (25 per second, at least 128).
    #[arg(long)]
    frames: usize,
    /// The `.npy` file to write, shape [1, frames, 64].
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let noise = schedule::noise(args.seed, args.frames);
    npy::write_f32(
        &args.out,
        &[1, args.frames, schedule::LATENT_CHANNELS],
        &noise,
    )
    .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({} frames, seed {})",
        args.out.display(),
        args.frames,
        args.seed
    );
    Ok(())
}
