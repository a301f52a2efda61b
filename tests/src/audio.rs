//! Decoding what the workers store, to check it the way a listener's player would.

use symphonia::core::codecs::CODEC_TYPE_OPUS;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// What an Ogg Opus file decodes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Sample rate of the Opus stream (always 48 kHz for Opus).
    pub sample_rate: u32,
    /// Channels.
    pub channels: usize,
    /// Decoded frames per channel, pre-skip removed.
    pub frames: usize,
}

impl Decoded {
    /// Length in seconds.
    pub fn seconds(&self) -> f64 {
        self.frames as f64 / f64::from(self.sample_rate)
    }
}

/// Demuxes with symphonia and decodes every packet with libopus. Errors say what was wrong.
pub fn decode_ogg_opus(bytes: Vec<u8>) -> Result<Decoded, String> {
    let stream = MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("ogg");
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| format!("not an Ogg file: {e}"))?;
    let mut reader = probed.format;
    let track = reader.default_track().ok_or("no track")?.clone();
    if track.codec_params.codec != CODEC_TYPE_OPUS {
        return Err(format!(
            "the track is not Opus: {:?}",
            track.codec_params.codec
        ));
    }
    let channels = track.codec_params.channels.map_or(0, |c| c.count());
    let layout = match channels {
        1 => opus2::Channels::Mono,
        2 => opus2::Channels::Stereo,
        n => return Err(format!("{n} channels")),
    };
    let mut decoder = opus2::Decoder::new(48_000, layout).map_err(|e| e.to_string())?;
    let mut pcm = vec![0.0f32; 5760 * channels];
    let mut frames = 0usize;
    while let Ok(packet) = reader.next_packet() {
        frames += decoder
            .decode_float(&packet.data, &mut pcm, false)
            .map_err(|e| format!("packet at {}: {e}", packet.ts))?;
    }
    let pre_skip = track.codec_params.delay.unwrap_or(0) as usize;
    Ok(Decoded {
        sample_rate: track.codec_params.sample_rate.unwrap_or(48_000),
        channels,
        frames: frames.saturating_sub(pre_skip),
    })
}
