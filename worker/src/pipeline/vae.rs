//! Tiled VAE decoding with overlap-discard (ACESTEP.md step 12) and the output conditioning of step 13.

use std::ops::Range;

use super::schedule::SAMPLES_PER_FRAME;

/// Latent frames of context decoded on each side of a tile's core and then discarded.
pub const VAE_OVERLAP_FRAMES: usize = 64;
/// Peak level of the normalised output.
pub const PEAK_DBFS: f64 = -1.0;

/// One tile of the decode: the frames it keeps and the frames it decodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileWindow {
    /// The latent frames whose audio this tile contributes.
    pub core: Range<usize>,
    /// The latent frames fed to the decoder: the core plus up to [`VAE_OVERLAP_FRAMES`] each side.
    pub window: Range<usize>,
}

impl TileWindow {
    /// The samples (per channel) of the window's decoded audio that belong to the core.
    pub fn keep(&self) -> Range<usize> {
        let start = (self.core.start - self.window.start) * SAMPLES_PER_FRAME;
        start..start + self.core.len() * SAMPLES_PER_FRAME
    }
}

/// Splits `frames` latent frames into tiles with cores of `tile_frames` (the last one shorter) and
/// [`VAE_OVERLAP_FRAMES`] of context each side, clamped to the track. A track no longer than one core is
/// decoded in one window.
pub fn tile_windows(frames: usize, tile_frames: usize) -> Vec<TileWindow> {
    let tile = tile_frames.max(1);
    (0..frames)
        .step_by(tile)
        .map(|start| {
            let end = (start + tile).min(frames);
            TileWindow {
                core: start..end,
                window: start.saturating_sub(VAE_OVERLAP_FRAMES)
                    ..(end + VAE_OVERLAP_FRAMES).min(frames),
            }
        })
        .collect()
}

/// Copies the time-major `[frames, 64]` latent window `frames` into channel-major `[64, len]` order, as
/// the decoder takes it.
pub fn channel_major_window(latents: &[f32], channels: usize, frames: Range<usize>) -> Vec<f32> {
    let len = frames.len();
    let mut out = vec![0.0f32; channels * len];
    for (t, frame) in frames.enumerate() {
        for c in 0..channels {
            out[c * len + t] = latents[frame * channels + c];
        }
    }
    out
}

/// Interleaves planar stereo (`left` then `right`) and scales it so the peak sits at −1 dBFS. Silence
/// stays silence.
pub fn interleave_normalised(left: &[f32], right: &[f32]) -> Vec<f32> {
    let mut samples = Vec::with_capacity(left.len() * 2);
    for (l, r) in left.iter().zip(right) {
        samples.push(*l);
        samples.push(*r);
    }
    let peak = samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    if peak > 0.0 {
        let gain = (10f64.powf(PEAK_DBFS / 20.0) / f64::from(peak)) as f32;
        for s in &mut samples {
            *s *= gain;
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_every_frame_once_with_clamped_overlap() {
        for (frames, tile) in [(128, 256), (137, 48), (750, 256), (1000, 64), (300, 1)] {
            let tiles = tile_windows(frames, tile);
            let mut next = 0;
            for t in &tiles {
                assert_eq!(t.core.start, next);
                assert!(t.core.len() <= tile && !t.core.is_empty());
                assert!(t.window.start <= t.core.start && t.core.end <= t.window.end);
                assert!(t.window.end <= frames);
                assert_eq!(
                    t.window.start,
                    t.core.start.saturating_sub(VAE_OVERLAP_FRAMES)
                );
                assert_eq!(t.keep().len(), t.core.len() * SAMPLES_PER_FRAME);
                next = t.core.end;
            }
            assert_eq!(next, frames);
        }
        assert_eq!(tile_windows(128, 256).len(), 1);
        assert_eq!(
            tile_windows(137, 48)[1],
            TileWindow {
                core: 48..96,
                window: 0..137
            }
        );
    }

    #[test]
    fn normalisation_puts_the_peak_at_minus_one_dbfs() {
        let out = interleave_normalised(&[0.1, -0.5, 0.2], &[0.0, 0.25, -0.05]);
        assert_eq!(out.len(), 6);
        let peak = out.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!((f64::from(peak) - 10f64.powf(-1.0 / 20.0)).abs() < 1e-6);
        // Interleaved left, right, left, right…
        assert!(out[2] < 0.0 && out[3] > 0.0);
        assert_eq!(interleave_normalised(&[0.0; 4], &[0.0; 4]), vec![0.0; 8]);
    }

    #[test]
    fn windows_are_transposed_to_channel_major() {
        let channels = 3;
        let latents: Vec<f32> = (0..5 * channels).map(|i| i as f32).collect(); // [5 frames, 3]
        let window = channel_major_window(&latents, channels, 1..4);
        assert_eq!(window, vec![3.0, 6.0, 9.0, 4.0, 7.0, 10.0, 5.0, 8.0, 11.0]);
    }
}
