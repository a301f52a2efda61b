//! Rendering behaviour on the tiny pack: tiling, lengths, seeds, cancellation, placements.

use std::ops::ControlFlow;

use radio_shared::job::AudioFormat;
use radio_worker::audio;
use radio_worker::pipeline::{
    ExecutionTarget, Pipeline, PipelineError, PipelineOptions, Placement, RenderRequest, Role,
    Stage, StageTiming, schedule,
};

use crate::common::{carry_on, load, max_abs_diff, tiny_pack};

fn request(duration_s: f32, seed: u64) -> RenderRequest {
    let mut request = RenderRequest::instrumental("warm synthwave, driving bass", duration_s, seed);
    request.lyrics = "[verse]\nneon rain\n[chorus]\nkeep on dancing".into();
    request.language = "en".into();
    request
}

#[test]
fn tiled_decode_equals_untiled_decode() {
    let mut pipeline = load(&tiny_pack(), PipelineOptions::default());
    let mut timing = StageTiming::default();
    let condition = pipeline
        .encode_condition(&request(12.0, 3), &mut timing)
        .expect("condition");
    let frames = condition.frames;
    assert_eq!(frames, 300);
    let latents = pipeline
        .diffuse(
            &condition,
            schedule::noise(3, frames),
            3,
            &mut timing,
            &mut carry_on,
        )
        .expect("latents");
    let [left, right] = pipeline
        .decode(&latents, frames, &mut timing, &mut carry_on)
        .expect("untiled");
    assert_eq!(left.len(), frames * 1920);
    for tile in [256, 64, 37, 1] {
        let [l, r] = pipeline
            .decode(&latents, tile, &mut timing, &mut carry_on)
            .expect("tiled");
        let diff = max_abs_diff(&l, &left).max(max_abs_diff(&r, &right));
        assert!(diff < 1e-5, "tile {tile}: differs from untiled by {diff}");
    }
}

#[test]
fn length_follows_the_duration_and_never_drops_below_128_frames() {
    let mut pipeline = load(&tiny_pack(), PipelineOptions::default());
    for (duration, frames) in [(6.0f32, 150usize), (5.5, 137), (1.0, 128), (0.2, 128)] {
        let rendered = pipeline
            .render(&request(duration, 1), &mut carry_on)
            .expect("render");
        assert_eq!(rendered.latent_frames, frames, "{duration} s");
        assert_eq!(rendered.samples.len(), frames * 1920 * 2, "{duration} s");
        let peak = rendered.samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!((f64::from(peak) - 10f64.powf(-1.0 / 20.0)).abs() < 1e-6);
    }
}

#[test]
fn same_seed_same_bytes_and_another_seed_other_audio() {
    let mut first = load(&tiny_pack(), PipelineOptions::default());
    let mut second = load(&tiny_pack(), PipelineOptions::default());
    let a = first.render(&request(6.0, 42), &mut carry_on).expect("a");
    // Again on the same instance (cached timbre) and on a fresh one.
    let b = first.render(&request(6.0, 42), &mut carry_on).expect("b");
    let c = second.render(&request(6.0, 42), &mut carry_on).expect("c");
    let encode = |samples: &[f32]| audio::encode(samples, AudioFormat::OggOpus).expect("encode");
    let bytes = encode(&a.samples);
    assert_eq!(bytes, encode(&b.samples), "same instance, same seed");
    assert_eq!(bytes, encode(&c.samples), "fresh instance, same seed");

    let d = first.render(&request(6.0, 43), &mut carry_on).expect("d");
    assert_ne!(bytes, encode(&d.samples));
    assert!(
        max_abs_diff(&a.samples, &d.samples) > 0.05,
        "another seed barely changes the audio"
    );
}

#[test]
fn breaking_at_a_diffusion_step_stops_within_that_step() {
    let mut pipeline = load(&tiny_pack(), PipelineOptions::default());
    for stop_at in [1usize, 4, 8] {
        let mut diffusion_calls = 0;
        let mut calls_after_break = 0;
        let mut broke = false;
        let result = pipeline.render(&request(6.0, 1), &mut |stage, _| {
            if broke {
                calls_after_break += 1;
            }
            if stage == Stage::Diffusion {
                diffusion_calls += 1;
                if diffusion_calls == stop_at {
                    broke = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        assert!(
            matches!(result, Err(PipelineError::Cancelled)),
            "{result:?}"
        );
        assert_eq!(diffusion_calls, stop_at);
        assert_eq!(calls_after_break, 0, "the render went on after Break");
    }
    // The pipeline is still usable afterwards.
    pipeline
        .render(&request(6.0, 1), &mut carry_on)
        .expect("render after a cancel");
}

#[test]
fn progress_covers_every_step_and_tile_in_order() {
    let options = PipelineOptions {
        vae_tile_frames: 64,
        ..PipelineOptions::default()
    };
    let mut pipeline = load(&tiny_pack(), options);
    let mut seen = Vec::new();
    pipeline
        .render(&request(6.0, 1), &mut |stage, fraction| {
            seen.push((stage, fraction));
            ControlFlow::Continue(())
        })
        .expect("render");
    let count = |s| seen.iter().filter(|(stage, _)| *stage == s).count();
    assert_eq!(count(Stage::Diffusion), 8);
    assert_eq!(
        count(Stage::VaeDecode),
        3 + 1,
        "150 frames in tiles of 64, then done"
    );
    assert!(seen.windows(2).all(|w| w[0].1 <= w[1].1), "{seen:?}");
    assert_eq!(seen.last().map(|s| s.1), Some(1.0));
}

#[test]
fn cuda_placement_falls_back_to_the_cpu_with_the_same_audio() {
    // This machine's ONNX Runtime is the CPU build: registering CUDA fails, the pipeline says so once and
    // runs on the CPU.
    let cuda = ExecutionTarget::Cuda {
        device_id: 0,
        memory_limit_bytes: Some(1 << 30),
    };
    let mut on_cuda = load(&tiny_pack(), PipelineOptions::all_on(cuda));
    assert!(
        on_cuda
            .execution_targets()
            .values()
            .all(|t| *t == Some(ExecutionTarget::Cpu))
    );
    let mut on_cpu = load(&tiny_pack(), PipelineOptions::default());
    let a = on_cuda
        .render(&request(6.0, 9), &mut carry_on)
        .expect("cuda");
    let b = on_cpu.render(&request(6.0, 9), &mut carry_on).expect("cpu");
    assert_eq!(a.samples, b.samples);
}

#[test]
fn non_resident_graphs_load_per_stage_and_are_dropped_after_it() {
    let mut options = PipelineOptions::default();
    for role in Role::ALL {
        options.placements.insert(
            role,
            Placement {
                target: ExecutionTarget::Cpu,
                resident: role != Role::VaeDecoder,
            },
        );
    }
    let mut pipeline = load(&tiny_pack(), options);
    let targets = pipeline.execution_targets();
    assert_eq!(targets[&Role::VaeDecoder], None, "not kept after checking");
    assert_eq!(targets[&Role::Dit], Some(ExecutionTarget::Cpu));

    let rendered = pipeline
        .render(&request(6.0, 5), &mut carry_on)
        .expect("render");
    assert!(rendered.timings.vae_decode.session_load > std::time::Duration::ZERO);
    assert_eq!(
        rendered.timings.diffusion.session_load,
        std::time::Duration::ZERO
    );
    assert_eq!(pipeline.execution_targets()[&Role::VaeDecoder], None);

    let mut resident = load(&tiny_pack(), PipelineOptions::default());
    let same = resident
        .render(&request(6.0, 5), &mut carry_on)
        .expect("render");
    assert_eq!(rendered.samples, same.samples);
}

#[test]
fn requests_outside_the_pack_are_refused() {
    let mut pipeline = load(&tiny_pack(), PipelineOptions::default());
    assert_eq!(
        pipeline.max_duration_s(),
        60.0,
        "the tiny silence latent holds 1500 frames"
    );
    let too_long = pipeline.render(&request(90.0, 1), &mut carry_on);
    assert!(
        matches!(&too_long, Err(PipelineError::InvalidRequest { reason }) if reason.contains("longer than")),
        "{too_long:?}"
    );
    let mut bad_shift = request(6.0, 1);
    bad_shift.shift = 4;
    assert!(matches!(
        pipeline.render(&bad_shift, &mut carry_on),
        Err(PipelineError::InvalidRequest { .. })
    ));
}

#[test]
fn every_shift_renders() {
    let mut pipeline = load(&tiny_pack(), PipelineOptions::default());
    let mut outputs = Vec::new();
    for shift in 1..=3 {
        let mut r = request(6.0, 11);
        r.shift = shift;
        outputs.push(pipeline.render(&r, &mut carry_on).expect("render").samples);
    }
    assert!(
        max_abs_diff(&outputs[0], &outputs[2]) > 1e-3,
        "shift changes the schedule"
    );
}
