//! A player that plays nothing and records everything: what was queued, when each track started and
//! ended, pauses, skips. Tracks "play" for their duration on tokio's clock (divided by a speed-up
//! factor), so tests can use paused time, and measurements can run many stations without a voice
//! connection.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use radio_shared::job::JobId;
use tokio::time::Instant;

use super::{Player, PlayerError, PlayerEvent, PlayerEvents, Track};

/// One thing that happened to a guild's playback.
#[derive(Debug, Clone, PartialEq)]
pub enum Logged {
    /// The station attached (after joining voice).
    Attached,
    /// The station detached (leaving voice).
    Detached,
    /// A track was queued.
    Enqueued {
        /// The track's job.
        job: JobId,
        /// Its place among the waiting tracks (`None`: at the end).
        index: Option<usize>,
    },
    /// A track started.
    Started(JobId),
    /// A track ended (`skipped`: before its end).
    Ended {
        /// The track's job.
        job: JobId,
        /// Cut short by skip or stop.
        skipped: bool,
    },
    /// A track ended and nothing was queued after it: listeners hear silence until the next enqueue.
    RanDry,
    /// Paused.
    Paused,
    /// Resumed.
    Resumed,
    /// Stopped (queue dropped).
    Stopped,
}

/// A log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// When, on tokio's clock (paused in tests).
    pub at: Instant,
    /// When, on the wall clock (for measurements against Redis timestamps).
    pub wall: SystemTime,
    /// The guild.
    pub guild: u64,
    /// What happened.
    pub what: Logged,
}

/// The recording player. Cheap to clone; clones share the log.
#[derive(Debug, Clone)]
pub struct RecordingPlayer {
    inner: Arc<Mutex<Inner>>,
    speed: f64,
}

#[derive(Debug, Default)]
struct Inner {
    guilds: HashMap<u64, GuildPlayback>,
    log: Vec<LogEntry>,
}

#[derive(Debug)]
struct GuildPlayback {
    events: PlayerEvents,
    queue: VecDeque<Track>,
    current: Option<Playing>,
    paused: bool,
    /// Bumped whenever the current track's timer must no longer fire.
    epoch: u64,
}

#[derive(Debug)]
struct Playing {
    job: JobId,
    /// Track time left when it (re)started.
    remaining: Duration,
    /// When it last (re)started, if not paused.
    since: Option<Instant>,
}

impl Default for RecordingPlayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordingPlayer {
    /// Tracks play in real time (on tokio's clock).
    pub fn new() -> Self {
        Self::with_speed(1.0)
    }

    /// Tracks play `speed` times faster than real time.
    pub fn with_speed(speed: f64) -> Self {
        Self {
            inner: Arc::default(),
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Everything recorded so far.
    pub fn log(&self) -> Vec<LogEntry> {
        self.lock().log.clone()
    }

    /// One guild's log.
    pub fn guild_log(&self, guild: u64) -> Vec<LogEntry> {
        self.lock()
            .log
            .iter()
            .filter(|e| e.guild == guild)
            .cloned()
            .collect()
    }

    /// The jobs that started in `guild`, in order.
    pub fn started(&self, guild: u64) -> Vec<JobId> {
        self.guild_log(guild)
            .into_iter()
            .filter_map(|e| match e.what {
                Logged::Started(job) => Some(job),
                _ => None,
            })
            .collect()
    }

    /// Times `guild`'s queue ran dry after a track ended.
    pub fn ran_dry(&self, guild: u64) -> usize {
        self.guild_log(guild)
            .iter()
            .filter(|e| e.what == Logged::RanDry)
            .count()
    }

    /// The silences between a track ending and the next one starting (on tokio's clock), excluding
    /// pauses and stops.
    pub fn gaps(&self, guild: u64) -> Vec<Duration> {
        let mut gaps = Vec::new();
        let mut ended_at = None;
        for entry in self.guild_log(guild) {
            match entry.what {
                Logged::Ended { .. } => ended_at = Some(entry.at),
                Logged::Started(_) => {
                    if let Some(at) = ended_at.take() {
                        gaps.push(entry.at - at);
                    }
                }
                Logged::Stopped | Logged::Paused | Logged::Detached => ended_at = None,
                _ => {}
            }
        }
        gaps
    }

    /// The job playing now in `guild`, if any.
    pub fn current(&self, guild: u64) -> Option<JobId> {
        self.lock()
            .guilds
            .get(&guild)
            .and_then(|g| g.current.as_ref().map(|p| p.job.clone()))
    }

    /// Tracks queued after the current one in `guild`.
    pub fn queued(&self, guild: u64) -> Vec<JobId> {
        self.lock()
            .guilds
            .get(&guild)
            .map(|g| g.queue.iter().map(|t| t.job.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether `guild` is attached.
    pub fn is_attached(&self, guild: u64) -> bool {
        self.lock().guilds.contains_key(&guild)
    }

    fn record(inner: &mut Inner, guild: u64, what: Logged) {
        Self::record_at(inner, guild, what, Instant::now(), SystemTime::now());
    }

    fn record_at(inner: &mut Inner, guild: u64, what: Logged, at: Instant, wall: SystemTime) {
        inner.log.push(LogEntry {
            at,
            wall,
            guild,
            what,
        });
    }

    /// Starts the next queued track if the guild is idle and not paused. A track that follows one
    /// ending in the same step starts at that track's end (`follows`): back to back, no gap.
    fn start_next(&self, inner: &mut Inner, guild: u64, follows: Option<(Instant, SystemTime)>) {
        let Some(playback) = inner.guilds.get_mut(&guild) else {
            return;
        };
        if playback.paused || playback.current.is_some() {
            return;
        }
        let Some(track) = playback.queue.pop_front() else {
            return;
        };
        playback.epoch += 1;
        playback.current = Some(Playing {
            job: track.job.clone(),
            remaining: track.duration,
            since: Some(Instant::now()),
        });
        let _ = playback.events.send(PlayerEvent::Started {
            guild,
            job: track.job.clone(),
        });
        let epoch = playback.epoch;
        let (at, wall) = follows.unwrap_or_else(|| (Instant::now(), SystemTime::now()));
        Self::record_at(inner, guild, Logged::Started(track.job), at, wall);
        self.arm(guild, epoch, track.duration);
    }

    /// Ends the current track after `remaining` track time unless the epoch moves on.
    fn arm(&self, guild: u64, epoch: u64, remaining: Duration) {
        let player = self.clone();
        let wait = remaining.div_f64(self.speed);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let mut inner = player.lock();
            let current = inner.guilds.get(&guild).and_then(|g| {
                (g.epoch == epoch && !g.paused)
                    .then(|| g.current.as_ref().map(|p| p.job.clone()))
                    .flatten()
            });
            if let Some(job) = current {
                player.end_current(&mut inner, guild, job, false);
            }
        });
    }

    fn end_current(&self, inner: &mut Inner, guild: u64, job: JobId, skipped: bool) {
        let Some(playback) = inner.guilds.get_mut(&guild) else {
            return;
        };
        playback.current = None;
        playback.epoch += 1;
        let _ = playback.events.send(PlayerEvent::Ended {
            guild,
            job: job.clone(),
            error: None,
        });
        let ran_dry = playback.queue.is_empty();
        let (at, wall) = (Instant::now(), SystemTime::now());
        Self::record_at(inner, guild, Logged::Ended { job, skipped }, at, wall);
        if ran_dry {
            Self::record_at(inner, guild, Logged::RanDry, at, wall);
        }
        self.start_next(inner, guild, Some((at, wall)));
    }
}

#[async_trait]
impl Player for RecordingPlayer {
    async fn attach(&self, guild: u64, events: PlayerEvents) -> Result<(), PlayerError> {
        let mut inner = self.lock();
        inner.guilds.insert(
            guild,
            GuildPlayback {
                events,
                queue: VecDeque::new(),
                current: None,
                paused: false,
                epoch: 0,
            },
        );
        Self::record(&mut inner, guild, Logged::Attached);
        Ok(())
    }

    async fn detach(&self, guild: u64) {
        let mut inner = self.lock();
        if inner.guilds.remove(&guild).is_some() {
            Self::record(&mut inner, guild, Logged::Detached);
        }
    }

    async fn enqueue(
        &self,
        guild: u64,
        track: Track,
        index: Option<usize>,
    ) -> Result<(), PlayerError> {
        let mut inner = self.lock();
        let playback = inner
            .guilds
            .get_mut(&guild)
            .ok_or(PlayerError::NotConnected)?;
        let job = track.job.clone();
        match index {
            Some(i) => {
                let i = i.min(playback.queue.len());
                playback.queue.insert(i, track);
            }
            None => playback.queue.push_back(track),
        }
        Self::record(&mut inner, guild, Logged::Enqueued { job, index });
        self.start_next(&mut inner, guild, None);
        Ok(())
    }

    async fn skip(&self, guild: u64) -> Result<(), PlayerError> {
        let mut inner = self.lock();
        let playback = inner
            .guilds
            .get_mut(&guild)
            .ok_or(PlayerError::NotConnected)?;
        let current = playback.current.as_ref().map(|p| p.job.clone());
        if let Some(job) = current {
            self.end_current(&mut inner, guild, job, true);
        }
        Ok(())
    }

    async fn pause(&self, guild: u64) -> Result<(), PlayerError> {
        let mut inner = self.lock();
        let playback = inner
            .guilds
            .get_mut(&guild)
            .ok_or(PlayerError::NotConnected)?;
        if playback.paused {
            return Ok(());
        }
        playback.paused = true;
        playback.epoch += 1;
        if let Some(playing) = playback.current.as_mut()
            && let Some(since) = playing.since.take()
        {
            let played = since.elapsed().mul_f64(self.speed);
            playing.remaining = playing.remaining.saturating_sub(played);
        }
        Self::record(&mut inner, guild, Logged::Paused);
        Ok(())
    }

    async fn resume(&self, guild: u64) -> Result<(), PlayerError> {
        let mut inner = self.lock();
        let playback = inner
            .guilds
            .get_mut(&guild)
            .ok_or(PlayerError::NotConnected)?;
        if !playback.paused {
            return Ok(());
        }
        playback.paused = false;
        playback.epoch += 1;
        let epoch = playback.epoch;
        let rearm = playback.current.as_mut().map(|playing| {
            playing.since = Some(Instant::now());
            playing.remaining
        });
        Self::record(&mut inner, guild, Logged::Resumed);
        match rearm {
            Some(remaining) => self.arm(guild, epoch, remaining),
            None => self.start_next(&mut inner, guild, None),
        }
        Ok(())
    }

    async fn stop(&self, guild: u64) -> Result<(), PlayerError> {
        let mut inner = self.lock();
        let playback = inner
            .guilds
            .get_mut(&guild)
            .ok_or(PlayerError::NotConnected)?;
        playback.queue.clear();
        playback.paused = false;
        playback.epoch += 1;
        let current = playback.current.take();
        if let Some(playing) = current {
            let _ = playback.events.send(PlayerEvent::Ended {
                guild,
                job: playing.job.clone(),
                error: None,
            });
            Self::record(
                &mut inner,
                guild,
                Logged::Ended {
                    job: playing.job,
                    skipped: true,
                },
            );
        }
        Self::record(&mut inner, guild, Logged::Stopped);
        Ok(())
    }
}
