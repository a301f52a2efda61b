//! The audio the bot hands songbird in production: an in-memory Ogg Opus result that songbird's
//! probe reads as Opus at 48 kHz with 20 ms packets (the condition for passing packets through to
//! Discord without decoding and re-encoding them).

use std::time::Duration;

use songbird::input::Input;
use songbird::input::codecs::{get_codec_registry, get_probe};
use symphonia::core::codecs::CODEC_TYPE_OPUS;

fn fixture() -> Vec<u8> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tone-5s.ogg");
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[tokio::test]
async fn songbird_reads_a_job_result_as_opus_it_can_pass_through() {
    let bytes = fixture();
    assert_eq!(
        radio_bot::player::ogg_opus_duration(&bytes),
        Some(Duration::from_secs(5))
    );
    let input = Input::from(bytes)
        .make_playable_async(get_codec_registry(), get_probe())
        .await
        .expect("songbird can play the result");
    let mut input = input;
    let parsed = input.parsed_mut().expect("parsed");
    let track_id = parsed.track_id;
    let params = parsed
        .format
        .tracks()
        .iter()
        .find(|t| t.id == track_id)
        .map(|t| t.codec_params.clone())
        .expect("the audio track");
    assert_eq!(params.codec, CODEC_TYPE_OPUS);
    assert_eq!(params.sample_rate, Some(48_000));
    assert_eq!(params.channels.map(|c| c.count()), Some(2));
    let packet = parsed.format.next_packet().expect("a packet");
    assert_eq!(packet.dur, 960, "20 ms at 48 kHz");
}
