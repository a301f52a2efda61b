//! The DCW correction (ACESTEP.md step 11): after each non-final step, push the next latent away from the
//! current clean estimate, a little in the low band (scaled by σ) and a little in the high band (scaled by
//! 1 − σ), using a one-level Haar transform along time per channel.

use super::schedule::LATENT_CHANNELS;

const LOW_GAIN: f64 = 0.05;
const HIGH_GAIN: f64 = 0.02;

/// One-level Haar transform along time of a `[frames, 64]` time-major latent:
/// `L = (a+b)/√2`, `H = (a−b)/√2` on frame pairs, an odd last frame paired with zero.
/// Returns `(low, high)`, each `[ceil(frames/2), 64]`.
pub fn haar_forward(x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let c = LATENT_CHANNELS;
    let frames = x.len() / c;
    let pairs = frames.div_ceil(2);
    let s = std::f32::consts::FRAC_1_SQRT_2;
    let mut low = vec![0.0f32; pairs * c];
    let mut high = vec![0.0f32; pairs * c];
    for p in 0..pairs {
        let a = &x[2 * p * c..(2 * p + 1) * c];
        let b = x.get((2 * p + 1) * c..(2 * p + 2) * c);
        for ch in 0..c {
            let b = b.map_or(0.0, |b| b[ch]);
            low[p * c + ch] = (a[ch] + b) * s;
            high[p * c + ch] = (a[ch] - b) * s;
        }
    }
    (low, high)
}

/// The inverse of [`haar_forward`], cropped back to `frames`.
pub fn haar_inverse(low: &[f32], high: &[f32], frames: usize) -> Vec<f32> {
    let c = LATENT_CHANNELS;
    let s = std::f32::consts::FRAC_1_SQRT_2;
    let mut out = vec![0.0f32; low.len() * 2];
    for p in 0..low.len() / c {
        for ch in 0..c {
            let (l, h) = (low[p * c + ch], high[p * c + ch]);
            out[2 * p * c + ch] = (l + h) * s;
            out[(2 * p + 1) * c + ch] = (l - h) * s;
        }
    }
    out.truncate(frames * c);
    out
}

/// Applies the correction to `x_next` in place, given the clean estimate `x0_hat = x − σ·v` of the
/// pre-step latent and the step's σ.
pub fn correct(x_next: &mut [f32], x0_hat: &[f32], sigma: f64) {
    let frames = x_next.len() / LATENT_CHANNELS;
    let (mut low, mut high) = haar_forward(x_next);
    let (low0, high0) = haar_forward(x0_hat);
    let low_gain = (LOW_GAIN * sigma) as f32;
    let high_gain = (HIGH_GAIN * (1.0 - sigma)) as f32;
    for (l, l0) in low.iter_mut().zip(&low0) {
        *l += low_gain * (*l - l0);
    }
    for (h, h0) in high.iter_mut().zip(&high0) {
        *h += high_gain * (*h - h0);
    }
    x_next.copy_from_slice(&haar_inverse(&low, &high, frames));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(frames: usize) -> Vec<f32> {
        (0..frames * LATENT_CHANNELS)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect()
    }

    #[test]
    fn haar_round_trips_for_even_and_odd_lengths() {
        for frames in [1, 2, 7, 128, 129] {
            let x = ramp(frames);
            let (low, high) = haar_forward(&x);
            assert_eq!(low.len(), frames.div_ceil(2) * LATENT_CHANNELS);
            let back = haar_inverse(&low, &high, frames);
            assert_eq!(back.len(), x.len());
            let err = x
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 1e-5, "frames {frames}: max error {err}");
        }
    }

    #[test]
    fn haar_bands_are_sums_and_differences() {
        let mut x = vec![0.0f32; 2 * LATENT_CHANNELS];
        x[0] = 3.0; // frame 0, channel 0
        x[LATENT_CHANNELS] = 1.0; // frame 1, channel 0
        let (low, high) = haar_forward(&x);
        let s = std::f32::consts::FRAC_1_SQRT_2;
        assert!((low[0] - 4.0 * s).abs() < 1e-6);
        assert!((high[0] - 2.0 * s).abs() < 1e-6);
        assert!(low[1..].iter().chain(&high[1..]).all(|&v| v == 0.0));
    }

    #[test]
    fn correction_pushes_away_from_the_estimate_by_band() {
        let frames = 4;
        let x0_hat = vec![0.0f32; frames * LATENT_CHANNELS];
        // A constant latent has only a low band: it grows by 5 %·σ.
        let mut flat = vec![1.0f32; frames * LATENT_CHANNELS];
        correct(&mut flat, &x0_hat, 0.5);
        assert!(flat.iter().all(|&v| (v - 1.025).abs() < 1e-6), "{flat:?}");
        // An alternating latent has only a high band: it grows by 2 %·(1−σ).
        let mut alt: Vec<f32> = (0..frames * LATENT_CHANNELS)
            .map(|i| {
                if (i / LATENT_CHANNELS).is_multiple_of(2) {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        correct(&mut alt, &x0_hat, 0.5);
        assert!(
            alt.iter().all(|&v| (v.abs() - 1.01).abs() < 1e-6),
            "{alt:?}"
        );
        // No difference from the estimate: nothing changes (up to the transform's rounding).
        let mut same = ramp(frames);
        let estimate = same.clone();
        correct(&mut same, &estimate, 0.9);
        assert!(
            same.iter()
                .zip(&estimate)
                .all(|(a, b)| (a - b).abs() < 1e-5)
        );
    }
}
