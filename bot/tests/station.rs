//! The station's logic against the recording player, on tokio's paused clock: the buffer stays
//! full, generation faster than real time leaves no gap between tracks, and skip, pause, resume, stop
//! and requests do what they say. No Discord and no Redis here: a simulated worker completes each
//! enqueued job after a fixed generation time, one job at a time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use radio_bot::player::recording::{Logged, RecordingPlayer};
use radio_bot::player::{Player, PlayerEvent, Track};
use radio_bot::station::core::{Action, StationCore};
use radio_shared::job::{JobId, ResultMeta, SongRequest, Writer};
use radio_shared::station::{PlaybackStatus, StationSettings, StationState, TrackSource};
use tokio::sync::mpsc;
use tokio::time::Instant;

const GUILD: u64 = 42;
const TRACK: Duration = Duration::from_secs(60);

/// The station core, the recording player and a one-job-at-a-time worker, driven by hand.
struct Sim {
    core: StationCore,
    player: RecordingPlayer,
    events: mpsc::UnboundedReceiver<PlayerEvent>,
    /// Jobs the worker still has to do, in order, with their priority (requests first).
    backlog: VecDeque<(JobId, bool)>,
    /// The job being generated and when it finishes.
    running: Option<(JobId, Instant)>,
    generation: Duration,
    enqueued: Vec<JobId>,
    cancelled: Vec<JobId>,
    underruns: usize,
    /// `ahead()` right after each track started.
    ahead_at_start: Vec<usize>,
}

impl Sim {
    async fn new(buffer: usize, generation: Duration) -> Self {
        let player = RecordingPlayer::new();
        let (tx, events) = mpsc::unbounded_channel();
        player.attach(GUILD, tx).await.expect("attach");
        let mut sim = Self {
            core: StationCore::new(
                GUILD.to_string(),
                StationSettings::with_duration(TRACK.as_secs_f32()),
                StationState::default(),
                buffer,
            ),
            player,
            events,
            backlog: VecDeque::new(),
            running: None,
            generation,
            enqueued: Vec::new(),
            cancelled: Vec::new(),
            underruns: 0,
            ahead_at_start: Vec::new(),
        };
        let actions = sim.core.attached(7, Instant::now());
        sim.apply(actions).await;
        sim
    }

    async fn apply(&mut self, actions: Vec<Action>) {
        let mut todo: VecDeque<Action> = actions.into();
        while let Some(action) = todo.pop_front() {
            match action {
                Action::Enqueue { spec, .. } => {
                    self.enqueued.push(spec.id.clone());
                    let interactive = spec.priority == radio_shared::job::Priority::Interactive;
                    if interactive {
                        self.backlog.push_front((spec.id.clone(), true));
                    } else {
                        self.backlog.push_back((spec.id.clone(), false));
                    }
                }
                Action::Cancel(job) => {
                    self.backlog.retain(|(j, _)| *j != job);
                    if self.running.as_ref().is_some_and(|(j, _)| *j == job) {
                        self.running = None;
                    }
                    self.cancelled.push(job);
                }
                Action::Play { track, index } => {
                    let item = Track {
                        job: track.job.clone(),
                        audio: Arc::from(Vec::new()),
                        duration: TRACK,
                        title: "t".into(),
                    };
                    self.player
                        .enqueue(GUILD, item, index)
                        .await
                        .expect("enqueue");
                }
                Action::Skip => self.player.skip(GUILD).await.expect("skip"),
                Action::Pause => self.player.pause(GUILD).await.expect("pause"),
                Action::Resume => self.player.resume(GUILD).await.expect("resume"),
                Action::StopPlayback => self.player.stop(GUILD).await.expect("stop"),
                Action::Underrun => self.underruns += 1,
                Action::WakeAfter(_)
                | Action::Check(_)
                | Action::Leave
                | Action::CountPlayed(_)
                | Action::CountGenerated(_)
                | Action::CountError(_)
                | Action::Announce(_) => {}
            }
            // Start the next job on the idle worker.
            if self.running.is_none()
                && let Some((job, _)) = self.backlog.pop_front()
            {
                self.running = Some((job, Instant::now() + self.generation));
            }
        }
    }

    /// Runs the world until `until` (paused clock: instant in real time).
    async fn run_until(&mut self, until: Instant) {
        loop {
            let next_done = self.running.as_ref().map(|(_, at)| *at);
            let wake = next_done.map_or(until, |at| at.min(until));
            tokio::select! {
                biased;
                event = self.events.recv() => {
                    let now = Instant::now();
                    let actions = match event.expect("player events") {
                        PlayerEvent::Started { job, .. } => {
                            let actions = self.core.track_started(&job, now);
                            self.apply(actions).await;
                            self.ahead_at_start.push(self.core.ahead());
                            continue;
                        }
                        PlayerEvent::Ended { job, error, .. } => {
                            self.core.track_ended(&job, error.is_some(), now)
                        }
                    };
                    self.apply(actions).await;
                }
                () = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= until && next_done.is_none_or(|at| at > until) {
                        return;
                    }
                    if let Some((job, _)) = self.running.take() {
                        let actions = self.core.job_succeeded(
                            &job,
                            Some(meta("t", "sim")),
                            Instant::now(),
                        );
                        self.apply(actions).await;
                        if self.running.is_none()
                            && let Some((job, _)) = self.backlog.pop_front()
                        {
                            self.running = Some((job, Instant::now() + self.generation));
                        }
                    }
                }
            }
        }
    }

    async fn run_for(&mut self, d: Duration) {
        self.run_until(Instant::now() + d).await;
    }

    fn started(&self) -> Vec<JobId> {
        self.player.started(GUILD)
    }
}

#[tokio::test(start_paused = true)]
async fn with_generation_faster_than_real_time_tracks_play_back_to_back() {
    // One worker, 20 s per 60 s track: three times faster than real time.
    let mut sim = Sim::new(2, Duration::from_secs(20)).await;
    let (outcome, actions) = sim.core.play(None, None, None, Instant::now());
    assert!(outcome.first_job.is_some());
    sim.apply(actions).await;
    // Playback starts with the first track, not when the buffer is full.
    sim.run_for(Duration::from_secs(21)).await;
    assert_eq!(
        sim.started().len(),
        1,
        "the first track starts as soon as it is ready"
    );

    sim.run_for(Duration::from_secs(20 * 60)).await;
    let started = sim.started();
    assert!(
        started.len() >= 20,
        "{} tracks in 20 minutes",
        started.len()
    );
    assert!(
        sim.player.gaps(GUILD).iter().all(Duration::is_zero),
        "gaps: {:?}",
        sim.player.gaps(GUILD)
    );
    assert_eq!(sim.player.ran_dry(GUILD), 0);
    assert_eq!(sim.underruns, 0);
    // The buffer is refilled the moment a track starts: two tracks ahead after every start.
    assert!(
        sim.ahead_at_start.iter().all(|&n| n == 2),
        "{:?}",
        sim.ahead_at_start
    );
    // Nothing is generated beyond the buffer.
    assert_eq!(sim.enqueued.len(), started.len() + 2);
    assert_eq!(sim.core.state().status, PlaybackStatus::Playing);
}

#[tokio::test(start_paused = true)]
async fn a_buffer_that_cannot_keep_up_is_reported_as_underruns() {
    // 90 s to generate a 60 s track: slower than real time, so the station must run dry.
    let mut sim = Sim::new(2, Duration::from_secs(90)).await;
    let (_, actions) = sim.core.play(None, None, None, Instant::now());
    sim.apply(actions).await;
    sim.run_for(Duration::from_secs(30 * 60)).await;
    assert!(sim.underruns > 0);
    assert!(sim.player.ran_dry(GUILD) > 0);
    assert!(sim.player.gaps(GUILD).iter().any(|g| !g.is_zero()));
}

#[tokio::test(start_paused = true)]
async fn skip_pause_resume_and_stop_do_what_they_say() {
    let mut sim = Sim::new(2, Duration::from_secs(10)).await;
    let (_, actions) = sim.core.play(None, None, None, Instant::now());
    sim.apply(actions).await;
    sim.run_for(Duration::from_secs(40)).await;
    let first = sim.started()[0].clone();
    assert_eq!(sim.player.current(GUILD), Some(first.clone()));

    // Skip: the current track ends now and the next starts at the same instant.
    let actions = sim.core.skip().expect("skip");
    sim.apply(actions).await;
    sim.run_for(Duration::from_millis(1)).await;
    let started = sim.started();
    assert_eq!(started.len(), 2);
    let log = sim.player.guild_log(GUILD);
    let ended = log
        .iter()
        .find(|e| {
            e.what
                == Logged::Ended {
                    job: first.clone(),
                    skipped: true,
                }
        })
        .expect("the first track was cut short");
    let second = log
        .iter()
        .find(|e| e.what == Logged::Started(started[1].clone()))
        .expect("the second track started");
    assert_eq!(second.at, ended.at);
    assert_eq!(
        sim.core.ahead(),
        2,
        "the skipped track's place was refilled"
    );

    // Pause: nothing ends while paused, however long.
    let actions = sim.core.pause().expect("pause");
    sim.apply(actions).await;
    assert_eq!(sim.core.state().status, PlaybackStatus::Paused);
    assert_eq!(
        sim.core.pause(),
        Err(radio_bot::user_error::UserError::AlreadyPaused)
    );
    sim.run_for(Duration::from_secs(600)).await;
    assert_eq!(sim.started().len(), 2, "no track started while paused");
    // Resume: the track plays out its remaining time, then the next follows.
    let actions = sim.core.resume().expect("resume");
    sim.apply(actions).await;
    assert_eq!(
        sim.core.resume(),
        Err(radio_bot::user_error::UserError::NotPaused)
    );
    sim.run_for(TRACK + Duration::from_secs(1)).await;
    assert_eq!(sim.started().len(), 3);
    assert!(sim.player.gaps(GUILD).iter().all(Duration::is_zero));

    // Stop: playback stops, waiting tracks are dropped, unfinished jobs cancelled, nothing more is
    // generated.
    let generating: Vec<JobId> = sim
        .core
        .state()
        .generating
        .iter()
        .map(|t| t.job.clone())
        .collect();
    let actions = sim.core.stop().expect("stop");
    sim.apply(actions).await;
    for job in &generating {
        assert!(sim.cancelled.contains(job), "{job} was not cancelled");
    }
    let enqueued = sim.enqueued.len();
    sim.run_for(Duration::from_secs(600)).await;
    assert_eq!(sim.player.current(GUILD), None);
    assert!(sim.player.queued(GUILD).is_empty());
    assert_eq!(
        sim.enqueued.len(),
        enqueued,
        "a stopped station generates nothing"
    );
    assert_eq!(sim.core.state().status, PlaybackStatus::Stopped);
    assert_eq!(
        sim.core.skip(),
        Err(radio_bot::user_error::UserError::NothingPlaying)
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_plays_right_after_the_current_track() {
    let mut sim = Sim::new(2, Duration::from_secs(10)).await;
    let (_, actions) = sim.core.play(None, None, None, Instant::now());
    sim.apply(actions).await;
    sim.run_for(Duration::from_secs(35)).await;
    assert_eq!(sim.started().len(), 1);
    assert_eq!(sim.core.state().ready.len(), 2, "two radio tracks wait");

    let (request, actions) = sim.core.request(
        SongRequest {
            duration_s: 60.0,
            caption: Some("a polka".into()),
            ..SongRequest::default()
        },
        Some("7".into()),
        None,
        None,
    );
    sim.apply(actions).await;
    sim.run_for(TRACK).await;
    let started = sim.started();
    assert_eq!(started[1], request, "the request jumped the radio tracks");
    let track = sim.core.state().now_playing.clone().expect("playing");
    assert_eq!(track.source, TrackSource::Request);
}

#[tokio::test(start_paused = true)]
async fn changing_the_music_replaces_tracks_not_generated_yet() {
    let mut sim = Sim::new(2, Duration::from_secs(30)).await;
    let (_, actions) = sim.core.play(None, None, None, Instant::now());
    sim.apply(actions).await;
    sim.run_for(Duration::from_secs(31)).await;
    let before: Vec<JobId> = sim
        .core
        .state()
        .generating
        .iter()
        .map(|t| t.job.clone())
        .collect();
    assert_eq!(before.len(), 2);
    let actions = sim
        .core
        .update_settings(|s| s.music.genre = "polka".into(), Instant::now());
    sim.apply(actions).await;
    assert_eq!(sim.cancelled, before);
    assert_eq!(sim.core.state().generating.len(), 2, "replaced at once");
    // Radio mode off: nothing new is generated when a track starts.
    let actions = sim.core.update_settings(|s| s.auto = false, Instant::now());
    sim.apply(actions).await;
    let enqueued = sim.enqueued.len();
    sim.run_for(Duration::from_secs(600)).await;
    assert_eq!(sim.enqueued.len(), enqueued);
}

fn meta(title: &str, worker: &str) -> ResultMeta {
    ResultMeta {
        title: title.into(),
        caption: "c".into(),
        lyrics: "[Instrumental]".into(),
        bpm: None,
        keyscale: None,
        timesignature: None,
        language: "en".into(),
        duration_s: TRACK.as_secs_f32(),
        seed: 1,
        writer: Writer::Template,
        worker: worker.into(),
        format: Default::default(),
        stage_seconds: Default::default(),
        total_seconds: 1.0,
        peak_vram_bytes: 0,
    }
}
