//! The station's logic as a state machine with no I/O: user commands, job events and player events go
//! in; [`Action`]s come out, and the station's runtime carries them out (enqueue a job, hand a track
//! to the player, count a play, …). Tests drive it directly, with tokio's paused clock.
//!
//! The buffer rule: while the station is on and in radio mode, the tracks ahead of the one playing
//! (generated and waiting, plus still generating) are kept at `buffer_size`. A new radio job is
//! enqueued the moment a track starts playing (it leaves the buffer), never by polling and never
//! only when the buffer is empty; playback starts as soon as the first track is ready, not when the
//! buffer is full. Requested songs (`/radio generate`) play before radio tracks.

use std::time::Duration;

use radio_shared::job::{
    AudioFormat, GenerateTask, JobId, JobSpec, MIN_DURATION_S, Priority, ResultMeta, SongRequest,
};
use radio_shared::station::{
    PlaybackStatus, StationSettings, StationState, StationTrack, TrackSource,
};
use tokio::time::Instant;

use crate::user_error::UserError;

/// Failed jobs in a row after which the station stops enqueuing radio tracks for a while.
pub const FAILURES_BEFORE_BACKOFF: u32 = 3;
/// How long radio fill rests after [`FAILURES_BEFORE_BACKOFF`] failures in a row.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(30);
/// How long radio fill rests after the guild's queue was full or Redis refused an enqueue.
pub const ENQUEUE_BACKOFF: Duration = Duration::from_secs(5);
/// Titles handed to the song writer so it avoids repeats.
pub const RECENT_TITLES: usize = 10;

/// Something the runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Enqueue this job; it is already listed as generating. Report a refusal with
    /// [`StationCore::enqueue_failed`].
    Enqueue {
        /// The job.
        spec: Box<JobSpec>,
        /// Idempotency key (the interaction id of the command that asked).
        dedup: Option<String>,
    },
    /// Cancel a job the station no longer wants (settings changed, stopped).
    Cancel(JobId),
    /// Read the job's record (after a restart) and report what it says with the `job_*` methods.
    Check(JobId),
    /// Fetch the job's audio and give it to the player at `index` among the upcoming tracks (`None`:
    /// at the end). Report a missing or unplayable result with [`StationCore::track_unavailable`].
    Play {
        /// The track.
        track: StationTrack,
        /// Where it goes in the player's queue.
        index: Option<usize>,
    },
    /// End the current track.
    Skip,
    /// Pause the player.
    Pause,
    /// Resume the player.
    Resume,
    /// Stop the player and drop its queue.
    StopPlayback,
    /// Detach the player and leave the voice channel.
    Leave,
    /// Count a track that started playing.
    CountPlayed(StationTrack),
    /// Count a generated track (its meta is set).
    CountGenerated(StationTrack),
    /// Count an error (once per job when one is given).
    CountError(Option<JobId>),
    /// A playing station has nothing left to play.
    Underrun,
    /// Call [`StationCore::tick`] after this long.
    WakeAfter(Duration),
    /// A track started: show it in the station's text channel.
    Announce(StationTrack),
}

/// What `/radio play` did.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayOutcome {
    /// The job enqueued for the user who started the station, if one was.
    pub first_job: Option<JobId>,
    /// The station was already on.
    pub was_on: bool,
}

/// One station's state machine.
#[derive(Debug, Clone)]
pub struct StationCore {
    guild: String,
    settings: StationSettings,
    state: StationState,
    buffer_size: usize,
    /// The player is attached (voice joined): every ready track has been handed to it.
    attached: bool,
    failures_in_a_row: u32,
    fill_resumes_at: Option<Instant>,
    state_dirty: bool,
    settings_dirty: bool,
}

impl StationCore {
    /// A station for `guild` from its saved settings and state. A track that was playing when the
    /// bot stopped goes back to the front of the queue, so it plays again from its start.
    pub fn new(
        guild: impl Into<String>,
        settings: StationSettings,
        mut state: StationState,
        buffer_size: usize,
    ) -> Self {
        if let Some(track) = state.now_playing.take() {
            state.ready.insert(0, track);
        }
        Self {
            guild: guild.into(),
            settings,
            state,
            buffer_size,
            attached: false,
            failures_in_a_row: 0,
            fill_resumes_at: None,
            state_dirty: false,
            settings_dirty: false,
        }
    }

    /// The guild.
    pub fn guild(&self) -> &str {
        &self.guild
    }

    /// The settings.
    pub fn settings(&self) -> &StationSettings {
        &self.settings
    }

    /// The playback state.
    pub fn state(&self) -> &StationState {
        &self.state
    }

    /// Whether the player is attached.
    pub fn is_attached(&self) -> bool {
        self.attached
    }

    /// Tracks ahead of the one playing: ready plus generating.
    pub fn ahead(&self) -> usize {
        self.state.ready.len() + self.state.generating.len()
    }

    /// Whether the state changed since the last call (then it should be saved).
    pub fn take_state_dirty(&mut self) -> bool {
        std::mem::take(&mut self.state_dirty)
    }

    /// Whether the settings changed since the last call.
    pub fn take_settings_dirty(&mut self) -> bool {
        std::mem::take(&mut self.settings_dirty)
    }

    /// The jobs a restarted station must look up: those that were generating when it stopped.
    pub fn restore(&mut self, now: Instant) -> Vec<Action> {
        let mut actions: Vec<Action> = self
            .state
            .generating
            .iter()
            .map(|t| Action::Check(t.job.clone()))
            .collect();
        actions.extend(self.fill(now));
        actions
    }

    /// The voice channel is joined and the player attached: every ready track goes to the player.
    /// Calling it again (a move to another channel) changes only the channel: the player keeps its
    /// queue.
    pub fn attached(&mut self, voice_channel: u64, now: Instant) -> Vec<Action> {
        let newly = !self.attached;
        self.attached = true;
        let channel = Some(voice_channel.to_string());
        if self.state.voice_channel != channel {
            self.state.voice_channel = channel;
            self.state_dirty = true;
        }
        let mut actions = Vec::new();
        if newly && self.state.status.is_on() {
            actions.extend(self.state.ready.iter().map(|track| Action::Play {
                track: track.clone(),
                index: None,
            }));
            if self.state.status == PlaybackStatus::Paused {
                actions.push(Action::Pause);
            }
        }
        actions.extend(self.fill(now));
        actions
    }

    /// The voice connection was lost (kicked, channel deleted): the station stops.
    pub fn voice_lost(&mut self) -> Vec<Action> {
        self.attached = false;
        self.state.voice_channel = None;
        let mut actions = self.stop_inner();
        actions.push(Action::Leave);
        self.state_dirty = true;
        actions
    }

    /// `/radio play`: the station goes on (settings were applied before). Enqueues what the buffer
    /// needs; the first job is interactive (someone is waiting for it) and carries `dedup`.
    pub fn play(
        &mut self,
        announce_channel: Option<u64>,
        requested_by: Option<String>,
        dedup: Option<String>,
        now: Instant,
    ) -> (PlayOutcome, Vec<Action>) {
        let was_on = self.state.status.is_on();
        let mut actions = Vec::new();
        if self.state.status == PlaybackStatus::Paused {
            actions.push(Action::Resume);
        }
        self.state.status = PlaybackStatus::Playing;
        self.state.requests_only = false;
        if let Some(channel) = announce_channel {
            self.state.announce_channel = Some(channel.to_string());
        }
        self.failures_in_a_row = 0;
        self.fill_resumes_at = None;
        self.state_dirty = true;
        let mut first_job = None;
        if self.state.now_playing.is_none() && self.ahead() == 0 {
            let track = self.new_job(TrackSource::Radio, Priority::Interactive, requested_by);
            first_job = Some(track.0.job.clone());
            actions.push(Action::Enqueue {
                spec: Box::new(track.1),
                dedup,
            });
        }
        actions.extend(self.fill(now));
        (PlayOutcome { first_job, was_on }, actions)
    }

    /// `/radio generate`: one song from the user's description, played before radio tracks. A stopped
    /// station goes on for the requests only (see [`StationState::requests_only`]).
    pub fn request(
        &mut self,
        song: SongRequest,
        requested_by: Option<String>,
        announce_channel: Option<u64>,
        dedup: Option<String>,
    ) -> (JobId, Vec<Action>) {
        if !self.state.status.is_on() {
            // Anyone may request a song, but only `/radio play` (which needs the DJ permission)
            // starts the radio: a stopped station plays the requests and stops again.
            self.state.status = PlaybackStatus::Playing;
            self.state.requests_only = true;
        }
        if let Some(channel) = announce_channel {
            self.state.announce_channel = Some(channel.to_string());
        }
        let mut spec = JobSpec::generate(
            Priority::Interactive,
            GenerateTask {
                station: self.settings.music.clone(),
                song,
                recent_titles: self.recent_titles(),
                format: AudioFormat::OggOpus,
            },
        );
        spec.guild_id = Some(self.guild.clone());
        spec.requested_by.clone_from(&requested_by);
        let track = StationTrack {
            job: spec.id.clone(),
            source: TrackSource::Request,
            requested_by,
            meta: None,
        };
        self.state.generating.push(track);
        self.state_dirty = true;
        (
            spec.id.clone(),
            vec![Action::Enqueue {
                spec: Box::new(spec),
                dedup,
            }],
        )
    }

    /// The queue refused a job (guild full, Redis down): it is dropped, and radio fill rests a moment.
    pub fn enqueue_failed(&mut self, job: &JobId, now: Instant) -> Vec<Action> {
        self.remove_generating(job);
        self.fill_resumes_at = Some(now + ENQUEUE_BACKOFF);
        let mut actions = vec![Action::WakeAfter(ENQUEUE_BACKOFF)];
        actions.extend(self.fill(now));
        actions
    }

    /// A job of this station succeeded. `meta` is the worker's record of the track.
    pub fn job_succeeded(
        &mut self,
        job: &JobId,
        meta: Option<ResultMeta>,
        now: Instant,
    ) -> Vec<Action> {
        let Some(mut track) = self.remove_generating(job) else {
            return Vec::new();
        };
        track.meta = meta.map(Box::new);
        self.failures_in_a_row = 0;
        let mut actions = vec![Action::CountGenerated(track.clone())];
        let index = match track.source {
            // Requests play before radio tracks, in the order they became ready.
            TrackSource::Request => Some(
                self.state
                    .ready
                    .iter()
                    .take_while(|t| t.source == TrackSource::Request)
                    .count(),
            ),
            TrackSource::Radio => None,
        };
        match index {
            Some(i) => self.state.ready.insert(i, track.clone()),
            None => self.state.ready.push(track.clone()),
        }
        if self.attached && self.state.status.is_on() {
            actions.push(Action::Play { track, index });
        }
        actions.extend(self.fill(now));
        actions
    }

    /// A job of this station failed for good (or vanished).
    pub fn job_failed(&mut self, job: &JobId, now: Instant) -> Vec<Action> {
        if self.remove_generating(job).is_none() {
            return Vec::new();
        }
        self.failures_in_a_row += 1;
        let mut actions = vec![Action::CountError(Some(job.clone()))];
        if self.failures_in_a_row >= FAILURES_BEFORE_BACKOFF {
            self.fill_resumes_at = Some(now + FAILURE_BACKOFF);
            actions.push(Action::WakeAfter(FAILURE_BACKOFF));
        }
        actions.extend(self.fill(now));
        actions
    }

    /// A job of this station ended cancelled (by an operator, or a cancel the station asked for).
    pub fn job_cancelled(&mut self, job: &JobId, now: Instant) -> Vec<Action> {
        if self.remove_generating(job).is_none() {
            return Vec::new();
        }
        self.fill(now)
    }

    /// A ready track's audio could not be fetched or played.
    pub fn track_unavailable(&mut self, job: &JobId, now: Instant) -> Vec<Action> {
        let before = self.state.ready.len();
        self.state.ready.retain(|t| t.job != *job);
        if self.state.ready.len() == before {
            return Vec::new();
        }
        self.state_dirty = true;
        let mut actions = vec![Action::CountError(Some(job.clone()))];
        actions.extend(self.fill(now));
        actions
    }

    /// The player started a track.
    pub fn track_started(&mut self, job: &JobId, now: Instant) -> Vec<Action> {
        let Some(pos) = self.state.ready.iter().position(|t| t.job == *job) else {
            return Vec::new();
        };
        let track = self.state.ready.remove(pos);
        self.state.now_playing = Some(track.clone());
        if let Some(title) = track.meta.as_ref().map(|m| m.title.clone()) {
            self.state.recent_titles.push(title);
            let excess = self.state.recent_titles.len().saturating_sub(RECENT_TITLES);
            self.state.recent_titles.drain(..excess);
        }
        self.state_dirty = true;
        let mut actions = vec![Action::CountPlayed(track.clone()), Action::Announce(track)];
        actions.extend(self.fill(now));
        actions
    }

    /// The player ended a track (played out, skipped, stopped or failed).
    pub fn track_ended(&mut self, job: &JobId, failed: bool, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self
            .state
            .now_playing
            .as_ref()
            .is_some_and(|t| t.job == *job)
        {
            self.state.now_playing = None;
            self.state_dirty = true;
            if failed {
                actions.push(Action::CountError(Some(job.clone())));
            }
            let expecting_more = (self.settings.auto && !self.state.requests_only)
                || !self.state.generating.is_empty();
            if self.state.status == PlaybackStatus::Playing
                && self.attached
                && self.state.ready.is_empty()
                && expecting_more
            {
                actions.push(Action::Underrun);
            }
        } else {
            // A track that failed before it started.
            let before = self.state.ready.len();
            self.state.ready.retain(|t| t.job != *job);
            if self.state.ready.len() != before {
                self.state_dirty = true;
                actions.push(Action::CountError(Some(job.clone())));
            }
        }
        actions.extend(self.fill(now));
        actions
    }

    /// `/radio skip`.
    pub fn skip(&mut self) -> Result<Vec<Action>, UserError> {
        if self.state.now_playing.is_none() || !self.state.status.is_on() {
            return Err(UserError::NothingPlaying);
        }
        let mut actions = Vec::new();
        if self.state.status == PlaybackStatus::Paused {
            self.state.status = PlaybackStatus::Playing;
            self.state_dirty = true;
            actions.push(Action::Resume);
        }
        actions.push(Action::Skip);
        Ok(actions)
    }

    /// `/radio pause`.
    pub fn pause(&mut self) -> Result<Vec<Action>, UserError> {
        match self.state.status {
            PlaybackStatus::Paused => Err(UserError::AlreadyPaused),
            PlaybackStatus::Playing if self.state.now_playing.is_some() => {
                self.state.status = PlaybackStatus::Paused;
                self.state_dirty = true;
                Ok(vec![Action::Pause])
            }
            _ => Err(UserError::NothingPlaying),
        }
    }

    /// `/radio resume`.
    pub fn resume(&mut self) -> Result<Vec<Action>, UserError> {
        match self.state.status {
            PlaybackStatus::Paused => {
                self.state.status = PlaybackStatus::Playing;
                self.state_dirty = true;
                Ok(vec![Action::Resume])
            }
            PlaybackStatus::Playing => Err(UserError::NotPaused),
            PlaybackStatus::Stopped => Err(UserError::NothingPlaying),
        }
    }

    /// `/radio stop`: playback stops, waiting tracks are dropped and unfinished jobs cancelled. The
    /// bot stays in the voice channel.
    pub fn stop(&mut self) -> Result<Vec<Action>, UserError> {
        if !self.state.status.is_on() && self.state.now_playing.is_none() && self.ahead() == 0 {
            return Err(UserError::NothingPlaying);
        }
        Ok(self.stop_inner())
    }

    /// `/radio leave`: stop, then leave the voice channel.
    pub fn leave(&mut self) -> Result<Vec<Action>, UserError> {
        if self.state.voice_channel.is_none() && !self.attached {
            return Err(UserError::NotConnected);
        }
        let mut actions = self.stop_inner();
        self.attached = false;
        self.state.voice_channel = None;
        self.state_dirty = true;
        actions.push(Action::Leave);
        Ok(actions)
    }

    /// Changes settings. When the music changes on a running station, radio tracks not generated yet
    /// are cancelled and replaced, so the new settings are heard soon; generated ones still play.
    pub fn update_settings(
        &mut self,
        change: impl FnOnce(&mut StationSettings),
        now: Instant,
    ) -> Vec<Action> {
        let before = self.settings.clone();
        change(&mut self.settings);
        if self.settings == before {
            return Vec::new();
        }
        self.settings_dirty = true;
        let mut actions = Vec::new();
        let music_changed = self.settings.music != before.music
            || self.settings.duration_s != before.duration_s
            || self.settings.max_length_s != before.max_length_s;
        if music_changed && self.state.status.is_on() {
            let (radio, requests): (Vec<_>, Vec<_>) = self
                .state
                .generating
                .drain(..)
                .partition(|t| t.source == TrackSource::Radio);
            self.state.generating = requests;
            actions.extend(radio.into_iter().map(|t| Action::Cancel(t.job)));
            self.state_dirty = true;
        }
        actions.extend(self.fill(now));
        actions
    }

    /// Time passed (a [`Action::WakeAfter`] elapsed): fill the buffer if it may be filled again.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        self.fill(now)
    }

    fn stop_inner(&mut self) -> Vec<Action> {
        let mut actions: Vec<Action> = self
            .state
            .generating
            .drain(..)
            .map(|t| Action::Cancel(t.job))
            .collect();
        self.state.ready.clear();
        self.state.now_playing = None;
        self.state.status = PlaybackStatus::Stopped;
        self.state.requests_only = false;
        self.state_dirty = true;
        if self.attached {
            actions.push(Action::StopPlayback);
        }
        actions
    }

    /// Enqueues radio tracks until the buffer holds what it should. Every event ends here, so this
    /// is also where a station that was on for requests only stops once they have played.
    fn fill(&mut self, now: Instant) -> Vec<Action> {
        if self.state.requests_only {
            if self.state.now_playing.is_none() && self.ahead() == 0 {
                self.state.status = PlaybackStatus::Stopped;
                self.state.requests_only = false;
                self.state_dirty = true;
            }
            return Vec::new();
        }
        if !self.state.status.is_on() || !self.settings.auto {
            return Vec::new();
        }
        if let Some(at) = self.fill_resumes_at {
            if now < at {
                return Vec::new();
            }
            self.fill_resumes_at = None;
            self.failures_in_a_row = 0;
        }
        // Nothing playing: at least one track must be on its way, even with a buffer of 0.
        let want = if self.state.now_playing.is_none() {
            self.buffer_size.max(1)
        } else {
            self.buffer_size
        };
        let mut actions = Vec::new();
        while self.ahead() < want {
            let (_, spec) = self.new_job(TrackSource::Radio, Priority::Radio, None);
            actions.push(Action::Enqueue {
                spec: Box::new(spec),
                dedup: None,
            });
        }
        actions
    }

    /// A job from the station's settings, listed as generating.
    fn new_job(
        &mut self,
        source: TrackSource,
        priority: Priority,
        requested_by: Option<String>,
    ) -> (StationTrack, JobSpec) {
        let mut duration = self.settings.duration_s;
        if let Some(max) = self.settings.max_length_s {
            duration = duration.min(max);
        }
        let mut spec = JobSpec::generate(
            priority,
            GenerateTask {
                station: self.settings.music.clone(),
                song: SongRequest {
                    duration_s: duration.max(MIN_DURATION_S),
                    ..SongRequest::default()
                },
                recent_titles: self.recent_titles(),
                format: AudioFormat::OggOpus,
            },
        );
        spec.guild_id = Some(self.guild.clone());
        spec.requested_by.clone_from(&requested_by);
        let track = StationTrack {
            job: spec.id.clone(),
            source,
            requested_by,
            meta: None,
        };
        self.state.generating.push(track.clone());
        self.state_dirty = true;
        (track, spec)
    }

    fn recent_titles(&self) -> Vec<String> {
        let skip = self.state.recent_titles.len().saturating_sub(RECENT_TITLES);
        self.state.recent_titles[skip..].to_vec()
    }

    fn remove_generating(&mut self, job: &JobId) -> Option<StationTrack> {
        let pos = self.state.generating.iter().position(|t| t.job == *job)?;
        self.state_dirty = true;
        Some(self.state.generating.remove(pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(source: TrackSource) -> StationTrack {
        StationTrack {
            job: JobId::new(),
            source,
            requested_by: None,
            meta: None,
        }
    }

    fn enqueued(actions: &[Action]) -> usize {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Enqueue { .. }))
            .count()
    }

    #[test]
    fn a_restarted_station_replays_the_cut_off_track_first_and_checks_its_jobs() {
        let playing = track(TrackSource::Radio);
        let waiting = track(TrackSource::Radio);
        let generating = track(TrackSource::Radio);
        let state = StationState {
            status: PlaybackStatus::Playing,
            voice_channel: Some("5".into()),
            now_playing: Some(playing.clone()),
            ready: vec![waiting.clone()],
            generating: vec![generating.clone()],
            ..StationState::default()
        };
        let mut core = StationCore::new("1", StationSettings::with_duration(30.0), state, 2);
        assert_eq!(core.state().ready, vec![playing.clone(), waiting.clone()]);
        let now = Instant::now();
        let actions = core.restore(now);
        assert!(actions.contains(&Action::Check(generating.job.clone())));
        assert_eq!(enqueued(&actions), 0, "the buffer is already full");
        // Until the voice channel is joined, nothing goes to the player; then everything, in order.
        let actions = core.attached(5, now);
        let plays: Vec<JobId> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Play { track, .. } => Some(track.job.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(plays, vec![playing.job, waiting.job]);
    }

    #[test]
    fn moving_to_another_channel_does_not_queue_tracks_twice() {
        let state = StationState {
            status: PlaybackStatus::Playing,
            ready: vec![track(TrackSource::Radio)],
            ..StationState::default()
        };
        let mut core = StationCore::new("1", StationSettings::with_duration(30.0), state, 1);
        let now = Instant::now();
        let plays = |actions: &[Action]| {
            actions
                .iter()
                .filter(|a| matches!(a, Action::Play { .. }))
                .count()
        };
        assert_eq!(plays(&core.attached(5, now)), 1);
        assert_eq!(plays(&core.attached(6, now)), 0);
        assert_eq!(core.state().voice_channel.as_deref(), Some("6"));
    }

    #[test]
    fn a_paused_station_comes_back_paused() {
        let state = StationState {
            status: PlaybackStatus::Paused,
            now_playing: Some(track(TrackSource::Radio)),
            ..StationState::default()
        };
        let mut core = StationCore::new("1", StationSettings::with_duration(30.0), state, 0);
        let actions = core.attached(5, Instant::now());
        assert_eq!(actions.last(), Some(&Action::Pause));
    }

    #[test]
    fn a_refused_enqueue_rests_the_fill_then_tries_again() {
        let mut core = StationCore::new(
            "1",
            StationSettings::with_duration(30.0),
            StationState::default(),
            2,
        );
        let now = Instant::now();
        let (outcome, actions) = core.play(None, None, None, now);
        assert_eq!(enqueued(&actions), 2);
        let first = outcome.first_job.expect("first job");
        let actions = core.enqueue_failed(&first, now);
        assert_eq!(actions, vec![Action::WakeAfter(ENQUEUE_BACKOFF)]);
        assert_eq!(enqueued(&core.tick(now + Duration::from_secs(1))), 0);
        assert_eq!(enqueued(&core.tick(now + ENQUEUE_BACKOFF)), 1);
    }

    #[test]
    fn failures_in_a_row_pause_the_fill() {
        let mut core = StationCore::new(
            "1",
            StationSettings::with_duration(30.0),
            StationState::default(),
            1,
        );
        let now = Instant::now();
        let (_, _) = core.play(None, None, None, now);
        for attempt in 1..=FAILURES_BEFORE_BACKOFF {
            let job = core.state().generating[0].job.clone();
            let actions = core.job_failed(&job, now);
            assert!(actions.contains(&Action::CountError(Some(job))));
            if attempt < FAILURES_BEFORE_BACKOFF {
                assert_eq!(enqueued(&actions), 1, "attempt {attempt} is replaced");
            } else {
                assert_eq!(enqueued(&actions), 0);
                assert!(actions.contains(&Action::WakeAfter(FAILURE_BACKOFF)));
            }
        }
        assert_eq!(enqueued(&core.tick(now + FAILURE_BACKOFF)), 1);
    }

    #[test]
    fn a_request_on_a_stopped_station_plays_alone_and_the_station_stops_after_it() {
        let mut core = StationCore::new(
            "1",
            StationSettings::with_duration(30.0),
            StationState::default(),
            2,
        );
        let now = Instant::now();
        assert!(
            core.attached(5, now).is_empty(),
            "a stopped station plays nothing"
        );
        let (job, actions) = core.request(SongRequest::default(), Some("u".into()), None, None);
        assert_eq!(enqueued(&actions), 1, "only the request, no radio tracks");
        assert!(core.state().status.is_on());
        let actions = core.job_succeeded(&job, None, now);
        assert!(matches!(
            actions.as_slice(),
            [Action::CountGenerated(_), Action::Play { .. }]
        ));
        assert_eq!(enqueued(&core.track_started(&job, now)), 0);
        let actions = core.track_ended(&job, false, now);
        assert!(!actions.contains(&Action::Underrun), "{actions:?}");
        assert_eq!(enqueued(&actions), 0);
        assert_eq!(core.state().status, PlaybackStatus::Stopped);

        // A request that fails stops the station too, and `/radio play` afterwards is the full radio.
        let (job, _) = core.request(SongRequest::default(), None, None, None);
        assert_eq!(enqueued(&core.job_failed(&job, now)), 0);
        assert_eq!(core.state().status, PlaybackStatus::Stopped);
        let (_, actions) = core.play(None, None, None, now);
        assert_eq!(enqueued(&actions), 2);
        assert!(!core.state().requests_only);
    }

    #[test]
    fn a_request_on_a_playing_station_goes_before_its_radio_tracks() {
        let mut core = StationCore::new(
            "1",
            StationSettings::with_duration(30.0),
            StationState::default(),
            1,
        );
        let now = Instant::now();
        core.attached(5, now);
        let (_, actions) = core.play(None, None, None, now);
        assert_eq!(enqueued(&actions), 1);
        let radio = core.state().generating[0].job.clone();
        let (request, _) = core.request(SongRequest::default(), None, None, None);
        assert!(!core.state().requests_only, "the radio stays on");
        core.job_succeeded(&radio, None, now);
        let actions = core.job_succeeded(&request, None, now);
        assert!(actions.contains(&Action::Play {
            track: core.state().ready[0].clone(),
            index: Some(0),
        }));
        assert_eq!(core.state().ready[0].job, request);
    }

    #[test]
    fn radio_tracks_use_the_guild_maxlength_and_the_recent_titles() {
        let mut settings = StationSettings::with_duration(120.0);
        settings.max_length_s = Some(45.0);
        let state = StationState {
            recent_titles: (0..15).map(|i| format!("t{i}")).collect(),
            ..StationState::default()
        };
        let mut core = StationCore::new("9", settings, state, 1);
        let (_, actions) = core.play(None, Some("u".into()), Some("i".into()), Instant::now());
        let Some(Action::Enqueue { spec, dedup }) = actions.first() else {
            panic!("{actions:?}");
        };
        assert_eq!(dedup.as_deref(), Some("i"));
        assert_eq!(spec.priority, Priority::Interactive);
        assert_eq!(spec.guild_id.as_deref(), Some("9"));
        let task = spec.generate_task();
        assert_eq!(task.song.duration_s, 45.0);
        assert_eq!(task.recent_titles.len(), RECENT_TITLES);
        assert_eq!(task.recent_titles.last().map(String::as_str), Some("t14"));
        assert!(spec.validate().is_ok());
    }
}
