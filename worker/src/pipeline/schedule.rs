//! The turbo schedule, the latent length, the flow-matching update and the seeded noise
//! (ACESTEP.md steps 7–10).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::StandardNormal;

/// DiT passes of the turbo model.
pub const STEPS: usize = 8;
/// The model's default timestep shift.
pub const DEFAULT_SHIFT: u8 = 3;
/// Audio samples per latent frame at 48 kHz (25 latent frames per second).
pub const SAMPLES_PER_FRAME: usize = 1920;
/// Latent frames per second of audio.
pub const FRAMES_PER_SECOND: f64 = 25.0;
/// The shortest render, in latent frames (5.12 s).
pub const MIN_FRAMES: usize = 128;
/// Latent channels.
pub const LATENT_CHANNELS: usize = 64;

/// The eight noise levels σ of the turbo schedule for `shift` (1, 2 or 3):
/// σ = s·τ / (1 + (s−1)·τ) for τ = 1, 7/8, …, 1/8.
pub fn sigmas(shift: u8) -> [f64; STEPS] {
    let s = f64::from(shift);
    std::array::from_fn(|i| {
        let tau = 1.0 - i as f64 / STEPS as f64;
        s * tau / (1.0 + (s - 1.0) * tau)
    })
}

/// Latent frames for a requested duration: `floor(round(d, 1) · 48000 / 1920)`, at least [`MIN_FRAMES`].
pub fn latent_frames(duration_s: f32) -> usize {
    // Round to one decimal the way Python's round() does on the f64 value.
    let tenths = (f64::from(duration_s) * 10.0).round_ties_even() / 10.0;
    let frames = (tenths * 48_000.0 / SAMPLES_PER_FRAME as f64).floor();
    (frames.max(0.0) as usize).max(MIN_FRAMES)
}

/// The seeded initial noise, `[frames, 64]` time-major: standard normal draws from ChaCha20 seeded with
/// `seed`, frame by frame. Reproducible within this project (not with PyTorch's generator); a longer
/// track with the same seed starts with the same noise.
pub fn noise(seed: u64, frames: usize) -> Vec<f32> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..frames * LATENT_CHANNELS)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect()
}

/// One Euler step of the flow (x_t = t·ε + (1−t)·x0, v = ε − x0): `x ← x − (σ_i − σ_next)·v`.
pub fn euler_step(x: &mut [f32], velocity: &[f32], sigma: f64, sigma_next: f64) {
    let dt = (sigma - sigma_next) as f32;
    for (x, v) in x.iter_mut().zip(velocity) {
        *x -= dt * v;
    }
}

/// The clean-sample estimate at noise level σ: `x0 = x − σ·v`.
pub fn predict_x0(x: &[f32], velocity: &[f32], sigma: f64) -> Vec<f32> {
    let sigma = sigma as f32;
    x.iter().zip(velocity).map(|(x, v)| x - sigma * v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_table(shift: u8, expected: [f64; STEPS]) {
        let got = sigmas(shift);
        for (g, e) in got.iter().zip(expected) {
            assert!(
                (g - e).abs() < 5e-6,
                "shift {shift}: {got:?} vs {expected:?}"
            );
        }
    }

    #[test]
    fn schedules_match_the_contract_tables() {
        // ACESTEP.md step 9.
        assert_table(3, [1.0, 0.95455, 0.9, 0.83333, 0.75, 0.64286, 0.5, 0.3]);
        assert_table(1, [1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]);
        // Shift 2 from the same formula: 2τ/(1+τ).
        assert_table(
            2,
            [
                1.0,
                14.0 / 15.0,
                12.0 / 14.0,
                10.0 / 13.0,
                8.0 / 12.0,
                6.0 / 11.0,
                4.0 / 10.0,
                2.0 / 9.0,
            ],
        );
    }

    #[test]
    fn frames_follow_the_contract_and_never_go_below_128() {
        assert_eq!(latent_frames(30.0), 750);
        assert_eq!(latent_frames(6.0), 150);
        assert_eq!(latent_frames(5.16), 130); // round(5.16, 1) = 5.2
        assert_eq!(latent_frames(7.33), 182); // 7.3 s = 182.5 frames, floored
        assert_eq!(latent_frames(1.0), MIN_FRAMES);
        assert_eq!(latent_frames(0.0), MIN_FRAMES);
        assert_eq!(latent_frames(600.0), 15_000);
    }

    #[test]
    fn noise_is_seeded_and_standard_normal() {
        let a = noise(7, 200);
        assert_eq!(a, noise(7, 200));
        assert_ne!(a, noise(8, 200));
        // A longer render with the same seed starts with the same noise.
        assert_eq!(&noise(7, 300)[..a.len()], &a[..]);
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = a
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }

    #[test]
    fn the_last_step_lands_on_x0() {
        // With a velocity that is exactly ε − x0, eight steps (last one to x0) recover x0.
        let x0 = [0.25f32, -1.0, 2.0];
        let eps = [1.0f32, 0.5, -0.75];
        let v: Vec<f32> = eps.iter().zip(&x0).map(|(e, x)| e - x).collect();
        let s = sigmas(3);
        let mut x: Vec<f32> = eps.to_vec(); // σ = 1: pure noise
        for i in 0..STEPS - 1 {
            euler_step(&mut x, &v, s[i], s[i + 1]);
        }
        let out = predict_x0(&x, &v, s[STEPS - 1]);
        for (o, e) in out.iter().zip(x0) {
            assert!((o - e).abs() < 1e-5, "{out:?}");
        }
    }
}
