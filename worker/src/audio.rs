//! Encoding rendered audio (48 kHz interleaved stereo f32) to the formats a job can ask for: Ogg Opus with
//! 20 ms frames (what Discord voice carries; songbird passes such a file through without re-encoding),
//! 16-bit WAV and 16-bit FLAC.

use std::io::Cursor;

use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use radio_shared::job::AudioFormat;

use crate::pipeline::SAMPLE_RATE;

/// Interleaved channels: the pipeline's stereo.
const CHANNELS: usize = crate::pipeline::CHANNELS as usize;
/// Samples per channel in one 20 ms Opus frame at 48 kHz.
pub const OPUS_FRAME_SAMPLES: usize = 960;
/// Opus bitrate: transparent for music at 48 kHz stereo, and what Discord's boosted voice channels carry.
pub const OPUS_BITRATE: i32 = 128_000;
/// The Ogg stream's serial number; fixed, so the same samples always give the same bytes.
const OGG_SERIAL: u32 = 0x5241_4449;
/// Largest Opus packet libopus produces (RFC 6716 recommends this buffer size).
const MAX_PACKET: usize = 4000;
/// Audio packets per Ogg page (one second), so players can seek and stream page by page.
const PACKETS_PER_PAGE: usize = 50;

/// Why audio could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The input is not interleaved stereo of finite samples.
    #[error("cannot encode these samples: {0}")]
    InvalidInput(String),
    /// libopus refused.
    #[error("Opus encoder failed: {0}")]
    Opus(#[from] opus2::Error),
    /// Writing the Ogg container failed.
    #[error("Ogg container failed: {0}")]
    Ogg(#[from] std::io::Error),
    /// The WAV writer failed.
    #[error("WAV encoder failed: {0}")]
    Wav(#[from] hound::Error),
    /// The FLAC encoder failed.
    #[error("FLAC encoder failed: {0}")]
    Flac(String),
}

/// Encodes interleaved 48 kHz stereo samples (nominally within ±1) to `format`.
pub fn encode(samples: &[f32], format: AudioFormat) -> Result<Vec<u8>, AudioError> {
    if !samples.len().is_multiple_of(CHANNELS) {
        return Err(AudioError::InvalidInput(format!(
            "{} samples is not a whole number of stereo frames",
            samples.len()
        )));
    }
    if let Some(i) = samples.iter().position(|s| !s.is_finite()) {
        return Err(AudioError::InvalidInput(format!(
            "sample {i} is not finite"
        )));
    }
    match format {
        AudioFormat::OggOpus => encode_ogg_opus(samples),
        AudioFormat::Wav => encode_wav(samples),
        AudioFormat::Flac => encode_flac(samples),
    }
}

fn to_i16(sample: f32) -> i16 {
    (sample.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16
}

/// The `OpusHead` identification header (RFC 7845 §5.1), channel mapping family 0.
fn opus_head(pre_skip: u16) -> Vec<u8> {
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1); // version
    head.push(CHANNELS as u8);
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&SAMPLE_RATE.to_le_bytes()); // input sample rate, informational
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // mapping family 0: mono or stereo, no mapping table
    head
}

/// The `OpusTags` comment header (RFC 7845 §5.2) with a vendor string and no comments.
fn opus_tags() -> Vec<u8> {
    let vendor = format!("ace-radio worker ({})", opus2::version());
    let mut tags = Vec::with_capacity(16 + vendor.len());
    tags.extend_from_slice(b"OpusTags");
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor.as_bytes());
    tags.extend_from_slice(&0u32.to_le_bytes()); // user comments
    tags
}

/// Ogg Opus with 20 ms packets. The encoder's look-ahead is declared as pre-skip and covered by encoding
/// that many extra samples of silence, and the last page's granule position is `pre_skip + samples`, so a
/// decoder that honours both returns exactly the input length.
fn encode_ogg_opus(samples: &[f32]) -> Result<Vec<u8>, AudioError> {
    let mut encoder = opus2::Encoder::new(
        SAMPLE_RATE,
        opus2::Channels::Stereo,
        opus2::Application::Audio,
    )?;
    encoder.set_bitrate(opus2::Bitrate::Bits(OPUS_BITRATE))?;
    encoder.set_signal(opus2::Signal::Music)?;
    let pre_skip = u16::try_from(encoder.get_lookahead()?).map_err(|_| {
        AudioError::InvalidInput("the encoder's look-ahead does not fit a pre-skip".into())
    })?;

    let per_channel = samples.len() / CHANNELS;
    let end_granule = (usize::from(pre_skip) + per_channel) as u64;
    let packets = (usize::from(pre_skip) + per_channel).div_ceil(OPUS_FRAME_SAMPLES);

    let mut writer = PacketWriter::new(Vec::with_capacity(samples.len() / 2 + 4096));
    writer.write_packet(
        opus_head(pre_skip),
        OGG_SERIAL,
        PacketWriteEndInfo::EndPage,
        0,
    )?;
    writer.write_packet(opus_tags(), OGG_SERIAL, PacketWriteEndInfo::EndPage, 0)?;

    let frame_len = OPUS_FRAME_SAMPLES * CHANNELS;
    let mut frame = vec![0.0f32; frame_len];
    let mut packet = vec![0u8; MAX_PACKET];
    for k in 0..packets {
        let start = (k * frame_len).min(samples.len());
        let end = ((k + 1) * frame_len).min(samples.len());
        frame[..end - start].copy_from_slice(&samples[start..end]);
        frame[end - start..].fill(0.0);
        let len = encoder.encode_float(&frame, &mut packet)?;
        let last = k + 1 == packets;
        let granule = if last {
            end_granule
        } else {
            ((k + 1) * OPUS_FRAME_SAMPLES) as u64
        };
        let end_info = if last {
            PacketWriteEndInfo::EndStream
        } else if (k + 1) % PACKETS_PER_PAGE == 0 {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        writer.write_packet(packet[..len].to_vec(), OGG_SERIAL, end_info, granule)?;
    }
    Ok(writer.into_inner())
}

fn encode_wav(samples: &[f32]) -> Result<Vec<u8>, AudioError> {
    let spec = hound::WavSpec {
        channels: crate::pipeline::CHANNELS,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    {
        let mut writer = hound::WavWriter::new(&mut cursor, spec)?;
        let mut samples_writer = writer.get_i16_writer(samples.len() as u32);
        for &s in samples {
            samples_writer.write_sample(to_i16(s));
        }
        samples_writer.flush()?;
        writer.finalize()?;
    }
    Ok(cursor.into_inner())
}

fn encode_flac(samples: &[f32]) -> Result<Vec<u8>, AudioError> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;

    let ints: Vec<i32> = samples.iter().map(|&s| i32::from(to_i16(s))).collect();
    let config = flacenc::config::Encoder::default()
        .into_verified()
        .map_err(|(_, e)| AudioError::Flac(format!("{e:?}")))?;
    let source =
        flacenc::source::MemSource::from_samples(&ints, CHANNELS, 16, SAMPLE_RATE as usize);
    let mut stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| AudioError::Flac(format!("{e:?}")))?;
    // flacenc records the short last block as the minimum block size; the format excludes the last block
    // from it, and strict decoders (symphonia) cannot find the frames of such a stream. Every block but the
    // last has the fixed size.
    let info = stream.stream_info_mut();
    let block = info.max_block_size();
    info.set_block_sizes(block, block)
        .map_err(|e| AudioError::Flac(format!("{e:?}")))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream
        .write(&mut sink)
        .map_err(|e| AudioError::Flac(format!("{e:?}")))?;
    Ok(sink.as_slice().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(seconds: f64) -> Vec<f32> {
        let n = (seconds * f64::from(SAMPLE_RATE)) as usize;
        (0..n)
            .flat_map(|i| {
                let t = i as f64 / f64::from(SAMPLE_RATE);
                let l = (2.0 * std::f64::consts::PI * 440.0 * t).sin() * 0.5;
                let r = (2.0 * std::f64::consts::PI * 660.0 * t).sin() * 0.5;
                [l as f32, r as f32]
            })
            .collect()
    }

    #[test]
    fn wav_has_the_right_header_and_length() {
        let samples = tone(0.5);
        let bytes = encode(&samples, AudioFormat::Wav).expect("wav");
        let reader = hound::WavReader::new(Cursor::new(bytes)).expect("parse");
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, 48_000, 16)
        );
        assert_eq!(reader.len() as usize, samples.len());
    }

    #[test]
    fn flac_starts_with_its_magic() {
        let bytes = encode(&tone(0.25), AudioFormat::Flac).expect("flac");
        assert_eq!(&bytes[..4], b"fLaC");
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(matches!(
            encode(&[0.0, 0.1, 0.2], AudioFormat::OggOpus),
            Err(AudioError::InvalidInput(_))
        ));
        assert!(matches!(
            encode(&[0.0, f32::NAN], AudioFormat::Wav),
            Err(AudioError::InvalidInput(_))
        ));
    }

    #[test]
    fn opus_head_follows_rfc_7845() {
        let head = opus_head(312);
        assert_eq!(head.len(), 19);
        assert_eq!(&head[..8], b"OpusHead");
        assert_eq!(head[9], 2);
        assert_eq!(u16::from_le_bytes([head[10], head[11]]), 312);
        assert_eq!(
            u32::from_le_bytes([head[12], head[13], head[14], head[15]]),
            48_000
        );
    }
}
