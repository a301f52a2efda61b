//! Playback behind a small trait: songbird in production ([`songbird::SongbirdPlayer`]), a recording
//! fake in tests and measurements ([`recording::RecordingPlayer`]).
//!
//! A player keeps one queue per guild and plays it back to back. It reports when a track starts and
//! ends through the [`PlayerEvents`] channel the station handed it in [`Player::attach`]; the station
//! decides everything else (what to generate, what to queue, when the buffer needs a new track).

pub mod recording;
pub mod songbird;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use radio_shared::job::JobId;
use tokio::sync::mpsc;

/// A track ready to play.
#[derive(Clone)]
pub struct Track {
    /// The job that generated it (the player reports events by it).
    pub job: JobId,
    /// Ogg Opus, 48 kHz stereo, 20 ms frames.
    pub audio: Arc<[u8]>,
    /// Its length, read from the Ogg stream.
    pub duration: Duration,
    /// Its title, for logs.
    pub title: String,
}

impl fmt::Debug for Track {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Track")
            .field("job", &self.job)
            .field("bytes", &self.audio.len())
            .field("duration", &self.duration)
            .field("title", &self.title)
            .finish()
    }
}

/// What a player reports about a guild's queue.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayerEvent {
    /// A track started playing.
    Started {
        /// The guild.
        guild: u64,
        /// The track's job.
        job: JobId,
    },
    /// A track finished, was skipped or could not be played.
    Ended {
        /// The guild.
        guild: u64,
        /// The track's job.
        job: JobId,
        /// Why it ended early, if it did not play to its end.
        error: Option<String>,
    },
}

/// Where a player sends a guild's events.
pub type PlayerEvents = mpsc::UnboundedSender<PlayerEvent>;

/// Why a player refused a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlayerError {
    /// The guild has no voice connection (join first).
    #[error("not connected to a voice channel in this server")]
    NotConnected,
    /// The audio cannot be played.
    #[error("the track cannot be played: {0}")]
    BadAudio(String),
    /// The playback engine failed.
    #[error("playback failed: {0}")]
    Engine(String),
}

/// Plays tracks into a guild's voice channel. Implementations keep one back-to-back queue per guild.
#[async_trait]
pub trait Player: Send + Sync + fmt::Debug + 'static {
    /// Starts playing for `guild` (the voice channel is already joined) and sends its events to
    /// `events`.
    async fn attach(&self, guild: u64, events: PlayerEvents) -> Result<(), PlayerError>;
    /// Stops everything for `guild` and forgets it (before leaving the voice channel).
    async fn detach(&self, guild: u64);
    /// Adds a track to the queue: at `index` among the tracks waiting after the current one (0: it
    /// plays next), or at the end with `None`. An idle, unpaused queue starts it at once.
    async fn enqueue(
        &self,
        guild: u64,
        track: Track,
        index: Option<usize>,
    ) -> Result<(), PlayerError>;
    /// Ends the current track; the next one starts at once.
    async fn skip(&self, guild: u64) -> Result<(), PlayerError>;
    /// Holds the current track at its position.
    async fn pause(&self, guild: u64) -> Result<(), PlayerError>;
    /// Continues a paused track.
    async fn resume(&self, guild: u64) -> Result<(), PlayerError>;
    /// Ends the current track and drops the queue.
    async fn stop(&self, guild: u64) -> Result<(), PlayerError>;
}

/// The length of an Ogg Opus stream (last granule position minus the pre-skip, at 48 kHz), or `None`
/// when the bytes are not Ogg Opus.
pub fn ogg_opus_duration(bytes: &[u8]) -> Option<Duration> {
    let mut offset = 0;
    let mut pre_skip = None;
    let mut last_granule = None;
    while offset + 27 <= bytes.len() {
        if &bytes[offset..offset + 4] != b"OggS" {
            return None;
        }
        let granule = i64::from_le_bytes(bytes[offset + 6..offset + 14].try_into().ok()?);
        let segments = usize::from(bytes[offset + 26]);
        let table = bytes.get(offset + 27..offset + 27 + segments)?;
        let body_len: usize = table.iter().map(|s| usize::from(*s)).sum();
        let body_start = offset + 27 + segments;
        let body = bytes.get(body_start..body_start + body_len)?;
        if pre_skip.is_none() {
            if body.len() < 19 || &body[..8] != b"OpusHead" {
                return None;
            }
            pre_skip = Some(u16::from_le_bytes([body[10], body[11]]));
        }
        if granule >= 0 {
            last_granule = Some(granule);
        }
        offset = body_start + body_len;
    }
    let samples = last_granule?.saturating_sub(i64::from(pre_skip?)).max(0);
    Some(Duration::from_secs_f64(samples as f64 / 48_000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(granule: i64, body: &[u8]) -> Vec<u8> {
        let mut page = b"OggS".to_vec();
        page.extend([0, 0]);
        page.extend(granule.to_le_bytes());
        page.extend([0; 12]);
        let mut table = vec![255u8; body.len() / 255];
        table.push((body.len() % 255) as u8);
        page.push(table.len() as u8);
        page.extend(table);
        page.extend(body);
        page
    }

    #[test]
    fn durations_come_from_the_last_granule_minus_pre_skip() {
        let mut head = b"OpusHead".to_vec();
        head.extend([1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]);
        let mut stream = page(0, &head);
        stream.extend(page(-1, b"OpusTags"));
        stream.extend(page(48_000 + 312, &[0u8; 300]));
        stream.extend(page(3 * 48_000 + 312, &[0u8; 10]));
        assert_eq!(ogg_opus_duration(&stream), Some(Duration::from_secs(3)));
    }

    #[test]
    fn other_formats_are_refused() {
        assert_eq!(ogg_opus_duration(b"RIFF....WAVEfmt "), None);
        assert_eq!(
            ogg_opus_duration(&page(0, b"\x7fFLAC and more bytes")),
            None
        );
        assert_eq!(ogg_opus_duration(b""), None);
    }
}
