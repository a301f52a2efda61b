//! The production player: songbird's built-in queue on the guild's call. Ogg Opus with 20 ms frames
//! is passed through to Discord without re-encoding.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use radio_shared::job::JobId;
use songbird::events::{Event, EventContext, EventHandler, TrackEvent};
use songbird::input::Input;
use songbird::tracks::Track as SongbirdTrack;

use super::{Player, PlayerError, PlayerEvent, PlayerEvents, Track};
use crate::voice::Voice;

/// Songbird starts decoding the next track this long before the current one ends.
const PRELOAD: Duration = Duration::from_secs(5);

/// Plays through songbird.
#[derive(Debug)]
pub struct SongbirdPlayer {
    voice: Arc<Voice>,
    attached: Mutex<HashSet<u64>>,
}

impl SongbirdPlayer {
    /// A player on the bot's voice manager.
    pub fn new(voice: Arc<Voice>) -> Self {
        Self {
            voice,
            attached: Mutex::default(),
        }
    }

    fn call(&self, guild: u64) -> Result<Arc<tokio::sync::Mutex<songbird::Call>>, PlayerError> {
        let songbird = self.voice.songbird().ok_or(PlayerError::NotConnected)?;
        let guild = std::num::NonZeroU64::new(guild).ok_or(PlayerError::NotConnected)?;
        songbird.get(guild).ok_or(PlayerError::NotConnected)
    }
}

/// Forwards songbird's track events of one guild to its station.
struct Forward {
    guild: u64,
    events: PlayerEvents,
    kind: TrackEvent,
}

#[async_trait]
impl EventHandler for Forward {
    async fn act(&self, ctx: &EventContext<'_>) -> Option<Event> {
        if let EventContext::Track(tracks) = ctx {
            for (state, handle) in *tracks {
                let job = (*handle.data::<JobId>()).clone();
                let event = match self.kind {
                    TrackEvent::Play => PlayerEvent::Started {
                        guild: self.guild,
                        job,
                    },
                    TrackEvent::Error => PlayerEvent::Ended {
                        guild: self.guild,
                        job,
                        error: Some(format!("{:?}", state.playing)),
                    },
                    _ => PlayerEvent::Ended {
                        guild: self.guild,
                        job,
                        error: None,
                    },
                };
                let _ = self.events.send(event);
            }
        }
        None
    }
}

#[async_trait]
impl Player for SongbirdPlayer {
    async fn attach(&self, guild: u64, events: PlayerEvents) -> Result<(), PlayerError> {
        let call = self.call(guild)?;
        let mut call = call.lock().await;
        call.remove_all_global_events();
        for kind in [TrackEvent::Play, TrackEvent::End, TrackEvent::Error] {
            call.add_global_event(
                Event::Track(kind),
                Forward {
                    guild,
                    events: events.clone(),
                    kind,
                },
            );
        }
        self.attached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(guild);
        Ok(())
    }

    async fn detach(&self, guild: u64) {
        if let Ok(call) = self.call(guild) {
            let mut call = call.lock().await;
            call.queue().stop();
            call.remove_all_global_events();
        }
        self.attached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&guild);
    }

    async fn enqueue(
        &self,
        guild: u64,
        track: Track,
        index: Option<usize>,
    ) -> Result<(), PlayerError> {
        let call = self.call(guild)?;
        let mut call = call.lock().await;
        let input = Input::from(track.audio.clone());
        let queued = SongbirdTrack::new_with_data(input, Arc::new(track.job.clone()));
        call.enqueue_with_preload(queued, Some(track.duration.saturating_sub(PRELOAD)));
        if let Some(index) = index {
            // Songbird's queue holds the playing track at 0: move the new one from the end to `index`
            // among the waiting tracks.
            call.queue().modify_queue(|queue| {
                let target = (1 + index).min(queue.len().saturating_sub(1));
                if target + 1 < queue.len()
                    && let Some(new) = queue.pop_back()
                {
                    queue.insert(target, new);
                }
            });
        }
        Ok(())
    }

    async fn skip(&self, guild: u64) -> Result<(), PlayerError> {
        let call = self.call(guild)?;
        let call = call.lock().await;
        call.queue()
            .skip()
            .map_err(|e| PlayerError::Engine(e.to_string()))
    }

    async fn pause(&self, guild: u64) -> Result<(), PlayerError> {
        let call = self.call(guild)?;
        let call = call.lock().await;
        call.queue()
            .pause()
            .map_err(|e| PlayerError::Engine(e.to_string()))
    }

    async fn resume(&self, guild: u64) -> Result<(), PlayerError> {
        let call = self.call(guild)?;
        let call = call.lock().await;
        call.queue()
            .resume()
            .map_err(|e| PlayerError::Engine(e.to_string()))
    }

    async fn stop(&self, guild: u64) -> Result<(), PlayerError> {
        let call = self.call(guild)?;
        let call = call.lock().await;
        call.queue().stop();
        Ok(())
    }
}
