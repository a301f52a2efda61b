//! The Rust pipeline against the NumPy reference (`tools/tinypack/reference.py`) on the tiny pack.

use radio_worker::pipeline::{
    AceStep15, Pipeline, PipelineOptions, RenderRequest, StageTiming, npy, schedule,
};
use serde::Deserialize;

use crate::common::{carry_on, fixture, load, max_abs_diff, tiny_pack};

/// The parity tolerance of the brief: max absolute difference.
const TOLERANCE: f32 = 1e-4;

#[derive(Debug, Deserialize)]
struct Inputs {
    caption: String,
    lyrics: String,
    bpm: Option<u16>,
    keyscale: Option<String>,
    timesignature: Option<u8>,
    language: String,
    duration_s: f32,
    seed: u64,
    shift: u8,
    dcw: bool,
    vae_tile_frames: usize,
}

#[derive(Debug, Deserialize)]
struct Expected {
    caption_ids: Vec<i64>,
    lyric_ids: Vec<i64>,
    frames: usize,
    sigmas: Vec<f64>,
}

fn read_json<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = fixture(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_npy(name: &str) -> npy::NpyArray {
    npy::read_f32(&fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn setup() -> (Inputs, Expected, RenderRequest, AceStep15) {
    let inputs: Inputs = read_json("parity/inputs.json");
    let expected: Expected = read_json("parity/expected.json");
    let request = RenderRequest {
        caption: inputs.caption.clone(),
        lyrics: inputs.lyrics.clone(),
        bpm: inputs.bpm,
        keyscale: inputs.keyscale.clone(),
        timesignature: inputs.timesignature,
        language: inputs.language.clone(),
        duration_s: inputs.duration_s,
        seed: inputs.seed,
        shift: inputs.shift,
    };
    let options = PipelineOptions {
        dcw: inputs.dcw,
        vae_tile_frames: inputs.vae_tile_frames,
        ..PipelineOptions::default()
    };
    let pipeline = load(&tiny_pack(), options);
    (inputs, expected, request, pipeline)
}

#[test]
fn every_stage_matches_the_numpy_reference() {
    let (inputs, expected, request, mut pipeline) = setup();
    let mut timing = StageTiming::default();

    // Steps 1–2: the exact token ids (same tokenizer.json, same prompts, same truncation).
    let condition = pipeline
        .encode_condition(&request, &mut timing)
        .expect("condition");
    assert_eq!(
        condition.caption_ids, expected.caption_ids,
        "caption tokens"
    );
    assert_eq!(condition.lyric_ids, expected.lyric_ids, "lyric tokens");

    // Step 7: F = 137 here, odd on purpose (the DiT pads to 138 and the velocity is cropped back).
    assert_eq!(condition.frames, expected.frames);
    assert_eq!(condition.frames % 2, 1, "the fixture exercises an odd F");
    let sigmas = schedule::sigmas(inputs.shift);
    for (got, want) in sigmas.iter().zip(&expected.sigmas) {
        assert!(
            (got - want).abs() < 1e-12,
            "{sigmas:?} vs {:?}",
            expected.sigmas
        );
    }

    // Steps 3–6: the packed condition [lyric, timbre, text] (first 64 columns stored).
    let head = read_npy("parity/condition_head64.npy");
    let s = condition.sequence_length;
    assert_eq!(head.shape, vec![1, s, 64], "S = L + 1 + T");
    let ours: Vec<f32> = condition
        .encoder_hidden_states
        .chunks(radio_worker::pipeline::CONDITION_WIDTH)
        .flat_map(|row| row[..64].to_vec())
        .collect();
    let diff = max_abs_diff(&ours, &head.data);
    eprintln!("packed condition: max abs difference {diff:e}");
    assert!(diff < TOLERANCE, "packed condition differs by {diff}");

    // Step 8: the noise is ours; the reference read it from noise.npy. Bit for bit, so seeds stay
    // reproducible across builds of this project.
    let noise = schedule::noise(inputs.seed, condition.frames);
    let reference_noise = read_npy("parity/noise.npy");
    assert_eq!(reference_noise.shape, vec![1, condition.frames, 64]);
    assert!(
        noise == reference_noise.data,
        "the seeded noise changed: the RNG (rand_chacha/rand_distr) no longer yields the committed noise.npy"
    );

    // Steps 9–11: eight steps with DCW.
    let latents = pipeline
        .diffuse(&condition, noise, inputs.shift, &mut timing, &mut carry_on)
        .expect("diffusion");
    let reference_latents = read_npy("parity/latents.npy");
    assert_eq!(reference_latents.shape, vec![1, condition.frames, 64]);
    let diff = max_abs_diff(&latents, &reference_latents.data);
    eprintln!("latents: max abs difference {diff:e}");
    assert!(diff < TOLERANCE, "latents differ by {diff}");

    // Steps 12–13: tiled decode (tile 48: three tiles), interleave, −1 dBFS.
    let [left, right] = pipeline
        .decode(&latents, inputs.vae_tile_frames, &mut timing, &mut carry_on)
        .expect("decode");
    let waveform = radio_worker::pipeline::interleave_normalised(&left, &right);
    let reference_waveform = read_npy("parity/waveform.npy");
    assert_eq!(waveform.len(), condition.frames * 1920 * 2);
    let diff = max_abs_diff(&waveform, &reference_waveform.data);
    eprintln!("waveform: max abs difference {diff:e}");
    assert!(diff < TOLERANCE, "waveform differs by {diff}");
}

#[test]
fn render_produces_the_reference_waveform() {
    let (_, expected, request, mut pipeline) = setup();
    let rendered = pipeline.render(&request, &mut carry_on).expect("render");
    assert_eq!(rendered.latent_frames, expected.frames);
    assert_eq!((rendered.sample_rate, rendered.channels), (48_000, 2));
    let reference = read_npy("parity/waveform.npy");
    let diff = max_abs_diff(&rendered.samples, &reference.data);
    assert!(diff < TOLERANCE, "rendered waveform differs by {diff}");
    let t = rendered.timings;
    assert!(t.diffusion.inside_ort > std::time::Duration::ZERO);
    assert!(t.total().wall >= t.total().inside_ort);
}

#[test]
fn the_combined_condition_graph_gives_the_same_condition() {
    let (_, _, request, mut split) = setup();
    let mut combined = load(
        &tiny_pack().join("pack-combined.toml"),
        split.options().clone(),
    );
    let mut timing = StageTiming::default();
    let a = split
        .encode_condition(&request, &mut timing)
        .expect("split");
    let b = combined
        .encode_condition(&request, &mut timing)
        .expect("combined");
    assert_eq!(a.sequence_length, b.sequence_length);
    let diff = max_abs_diff(&a.encoder_hidden_states, &b.encoder_hidden_states);
    assert!(diff < 1e-5, "condition differs by {diff}");
    // The combined graph returns the context latents itself; they equal the host's.
    assert_eq!(a.context_latents, b.context_latents);
}
