//! Encoded output decodes back: Ogg demuxed by symphonia, Opus decoded by libopus (symphonia has no Opus
//! decoder), WAV and FLAC by symphonia.

use std::io::Cursor;

use radio_shared::job::AudioFormat;
use radio_worker::audio::{self, OPUS_FRAME_SAMPLES};
use radio_worker::pipeline::{Pipeline, PipelineOptions, RenderRequest};
use symphonia::core::codecs::{CODEC_TYPE_OPUS, DecoderOptions};
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::common::{carry_on, load, tiny_pack};

fn open(bytes: Vec<u8>, extension: &str) -> Box<dyn FormatReader> {
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(extension);
    symphonia::default::get_probe()
        .format(
            &hint,
            source,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .expect("symphonia recognises the container")
        .format
}

/// The granule position of the last Ogg page.
fn final_granule(bytes: &[u8]) -> u64 {
    let at = bytes
        .windows(4)
        .rposition(|w| w == b"OggS")
        .expect("an Ogg page");
    assert_eq!(
        bytes[at + 5] & 0x04,
        0x04,
        "the last page carries end-of-stream"
    );
    u64::from_le_bytes(bytes[at + 6..at + 14].try_into().expect("8 bytes"))
}

pub(crate) struct DecodedOpus {
    pub(crate) pre_skip: usize,
    /// Interleaved stereo after dropping the pre-skip and trimming to the final granule position.
    pub(crate) samples: Vec<f32>,
    pub(crate) packets: usize,
}

pub(crate) fn decode_ogg_opus(bytes: Vec<u8>) -> DecodedOpus {
    let end_granule = final_granule(&bytes) as usize;
    let mut reader = open(bytes, "ogg");
    let track = reader.default_track().expect("a track").clone();
    assert_eq!(track.codec_params.codec, CODEC_TYPE_OPUS);
    assert_eq!(track.codec_params.sample_rate, Some(48_000));
    assert_eq!(track.codec_params.channels.map(|c| c.count()), Some(2));
    let head = track.codec_params.extra_data.as_deref().expect("OpusHead");
    assert_eq!(&head[..8], b"OpusHead");
    assert_eq!(head[9], 2, "OpusHead channel count");
    let pre_skip = usize::from(u16::from_le_bytes([head[10], head[11]]));
    assert_eq!(track.codec_params.delay, Some(pre_skip as u32));

    let mut decoder =
        opus2::Decoder::new(48_000, opus2::Channels::Stereo).expect("libopus decoder");
    let mut decoded = Vec::new();
    let mut buffer = vec![0.0f32; 5760 * 2];
    let mut packets = 0;
    loop {
        let packet = match reader.next_packet() {
            Ok(packet) => packet,
            Err(symphonia::core::errors::Error::IoError(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                break;
            }
            Err(e) => panic!("demuxing failed: {e}"),
        };
        packets += 1;
        assert_eq!(
            opus2::packet::get_nb_samples(&packet.data, 48_000).expect("packet"),
            OPUS_FRAME_SAMPLES,
            "every packet is 20 ms"
        );
        let n = decoder
            .decode_float(&packet.data, &mut buffer, false)
            .expect("libopus decodes the packet");
        decoded.extend_from_slice(&buffer[..n * 2]);
    }
    assert!(
        decoded.len() / 2 >= end_granule,
        "fewer samples than the final granule position"
    );
    DecodedOpus {
        pre_skip,
        samples: decoded[pre_skip * 2..end_granule * 2].to_vec(),
        packets,
    }
}

#[test]
fn ogg_opus_of_a_render_decodes_to_the_requested_duration() {
    let mut pipeline = load(&tiny_pack(), PipelineOptions::default());
    for duration in [6.0f32, 7.2] {
        let rendered = pipeline
            .render(
                &RenderRequest::instrumental("lofi", duration, 2),
                &mut carry_on,
            )
            .expect("render");
        let bytes = audio::encode(&rendered.samples, AudioFormat::OggOpus).expect("encode");
        let decoded = decode_ogg_opus(bytes);
        let seconds = decoded.samples.len() as f64 / 2.0 / 48_000.0;
        assert!(
            (seconds - f64::from(duration)).abs() <= 0.020,
            "decoded {seconds} s for {duration} s"
        );
        assert_eq!(
            decoded.samples.len(),
            rendered.samples.len(),
            "exact length"
        );
        assert!(decoded.pre_skip > 0);
        assert_eq!(
            decoded.packets,
            (decoded.pre_skip + rendered.samples.len() / 2).div_ceil(OPUS_FRAME_SAMPLES)
        );
    }
}

#[test]
fn ogg_opus_keeps_the_signal_aligned_after_the_pre_skip() {
    // Two tones, one per channel: after dropping the pre-skip the decoded audio lines up with the input.
    let n = 48_000;
    let input: Vec<f32> = (0..n)
        .flat_map(|i| {
            let t = i as f32 / 48_000.0;
            [
                0.5 * (2.0 * std::f32::consts::PI * 440.0 * t).sin(),
                0.5 * (2.0 * std::f32::consts::PI * 1000.0 * t).sin(),
            ]
        })
        .collect();
    let decoded = decode_ogg_opus(audio::encode(&input, AudioFormat::OggOpus).expect("encode"));
    assert_eq!(decoded.samples.len(), input.len());
    for channel in 0..2 {
        let a: Vec<f32> = input.iter().skip(channel).step_by(2).copied().collect();
        let b: Vec<f32> = decoded
            .samples
            .iter()
            .skip(channel)
            .step_by(2)
            .copied()
            .collect();
        // Skip the first 20 ms, where the codec ramps up.
        let (a, b) = (&a[960..], &b[960..]);
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm =
            (a.iter().map(|x| x * x).sum::<f32>() * b.iter().map(|y| y * y).sum::<f32>()).sqrt();
        let correlation = dot / norm;
        assert!(
            correlation > 0.99,
            "channel {channel}: correlation {correlation}"
        );
    }
}

/// (sample rate, channels, frames) of a WAV or FLAC file.
pub(crate) fn decoded_frames(bytes: Vec<u8>, extension: &str) -> (u32, usize, usize) {
    let mut reader = open(bytes, extension);
    let track = reader.default_track().expect("track").clone();
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .expect("decoder");
    let mut frames = 0;
    while let Ok(packet) = reader.next_packet() {
        frames += decoder.decode(&packet).expect("decode").frames();
    }
    (
        track.codec_params.sample_rate.expect("rate"),
        track.codec_params.channels.expect("channels").count(),
        frames,
    )
}

#[test]
fn wav_and_flac_decode_to_the_same_length() {
    let mut pipeline = load(&tiny_pack(), PipelineOptions::default());
    let rendered = pipeline
        .render(&RenderRequest::instrumental("lofi", 6.0, 4), &mut carry_on)
        .expect("render");
    let frames = rendered.samples.len() / 2;
    for (format, extension) in [(AudioFormat::Flac, "flac"), (AudioFormat::Wav, "wav")] {
        let bytes = audio::encode(&rendered.samples, format).expect("encode");
        assert_eq!(
            decoded_frames(bytes, extension),
            (48_000, 2, frames),
            "{extension}"
        );
    }
}
