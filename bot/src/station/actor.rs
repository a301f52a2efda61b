//! A station's task: feeds commands, job events and player events to its [`StationCore`], carries out
//! the actions it returns, follows interactions' progress, and saves the station after each change.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use radio_shared::job::{JobId, JobState};
use radio_shared::queue::{EnqueueRequest, Event, EventKind, QueueError, now_ms};
use radio_shared::station::{StationSettings, StationTrack};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::core::{Action, StationCore};
use super::{Answer, Command, Msg, StationView};
use crate::interaction::{ProgressMessage, Reply};
use crate::player::{PlayerEvent, Track, ogg_opus_duration};
use crate::render;
use crate::state::State;
use crate::track_cache;
use crate::user_error::{CommandError, UserError};

type Waiter = oneshot::Sender<Result<Answer, CommandError>>;

struct Actor {
    guild: u64,
    core: StationCore,
    state: Arc<State>,
    tx: mpsc::UnboundedSender<Msg>,
    player_tx: mpsc::UnboundedSender<PlayerEvent>,
    /// Interaction responses following a job, by job.
    progress: HashMap<JobId, ProgressMessage>,
    /// The latest progress line per job being generated (`/radio queue`).
    job_lines: HashMap<JobId, String>,
    /// When each job's `succeeded` event was written (ms since the epoch), for the ready-latency metric.
    succeeded_at: HashMap<JobId, u64>,
    /// A voice join in flight: its channel and who waits for it.
    joining: Option<(u64, Vec<Waiter>)>,
    /// The station counts in the active-stations gauge.
    counted_active: bool,
    /// The station holds a voice session (gauge).
    counted_voice: bool,
    /// A save failed; try again after the next message.
    unsaved: bool,
}

/// The station's task: loads the station, resumes it, then handles messages until shutdown.
pub(super) async fn run(
    state: Arc<State>,
    guild: u64,
    tx: mpsc::UnboundedSender<Msg>,
    mut inbox: mpsc::UnboundedReceiver<Msg>,
) {
    let stored = load(&state, guild).await;
    let settings = stored
        .settings
        .unwrap_or_else(|| StationSettings::with_duration(state.config.default_duration_s));
    let core = StationCore::new(
        guild.to_string(),
        settings,
        stored.state,
        state.config.buffer_size,
    );
    let (player_tx, mut player_rx) = mpsc::unbounded_channel();
    let mut actor = Actor {
        guild,
        core,
        state,
        tx,
        player_tx,
        progress: HashMap::new(),
        job_lines: HashMap::new(),
        succeeded_at: HashMap::new(),
        joining: None,
        counted_active: false,
        counted_voice: false,
        unsaved: false,
    };
    actor.resume().await;
    loop {
        let msg = tokio::select! {
            msg = inbox.recv() => msg,
            event = player_rx.recv() => event.map(Msg::Player),
        };
        let Some(msg) = msg else { break };
        if matches!(msg, Msg::Shutdown) {
            break;
        }
        actor.handle(msg).await;
        actor.save().await;
        actor.update_gauges();
    }
    actor.save().await;
    if actor.counted_active {
        actor.state.metrics.active_stations.dec();
    }
    if actor.counted_voice {
        actor.state.metrics.voice_sessions.dec();
    }
    debug!(guild_id = guild, "station stopped");
}

async fn load(state: &State, guild: u64) -> radio_shared::station::StoredStation {
    let key = guild.to_string();
    for attempt in 1..=5u32 {
        match state.store.load(&key).await {
            Ok(stored) => return stored,
            Err(e) => {
                warn!(guild_id = guild, attempt, error = %e, "loading the station failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
    warn!(
        guild_id = guild,
        "starting the station from defaults: Redis did not answer"
    );
    radio_shared::station::StoredStation::default()
}

impl Actor {
    /// Looks up what happened to the station's jobs while the bot was away and rejoins its channel.
    async fn resume(&mut self) {
        let actions = self.core.restore(Instant::now());
        self.execute(actions).await;
        let state = self.core.state();
        if state.status.is_on()
            && let Some(channel) = state.voice_channel.as_ref().and_then(|c| c.parse().ok())
        {
            info!(
                guild_id = self.guild,
                channel_id = channel,
                status = render::status(state.status),
                "resuming station"
            );
            let bot = self.state.clone();
            let tx = self.tx.clone();
            tokio::spawn(async move {
                if bot.wait_gateway_ready().await {
                    let _ = tx.send(Msg::Rejoin { channel });
                }
            });
        }
        self.save().await;
        self.update_gauges();
    }

    async fn handle(&mut self, msg: Msg) {
        let now = Instant::now();
        match msg {
            Msg::Command { command, reply } => self.command(command, reply).await,
            Msg::Player(event) => {
                let actions = match event {
                    PlayerEvent::Started { job, .. } => self.core.track_started(&job, now),
                    PlayerEvent::Ended {
                        job, error: None, ..
                    } => self.core.track_ended(&job, false, now),
                    PlayerEvent::Ended {
                        job,
                        error: Some(error),
                        ..
                    } => {
                        warn!(guild_id = self.guild, job_id = %job, %error, "a track failed to play");
                        self.core.track_ended(&job, true, now)
                    }
                };
                self.execute(actions).await;
            }
            Msg::Event(event) => {
                if matches!(event.kind, EventKind::Succeeded(_)) && self.is_generating(&event.job) {
                    self.take_delivery(&event.job).await;
                }
                let actions = self.job_event(event, now);
                self.execute(actions).await;
            }
            Msg::Joined { channel, result } => {
                let actions = self.joined(channel, result, now).await;
                self.execute(actions).await;
            }
            Msg::Rejoin { channel } => self.start_join(channel, None),
            Msg::VoiceLost => {
                if self.core.is_attached() && self.joining.is_none() {
                    info!(
                        guild_id = self.guild,
                        "disconnected from voice by someone else; stopping the station"
                    );
                    let actions = self.core.voice_lost();
                    self.execute(actions).await;
                }
            }
            Msg::Wake => {
                let actions = self.core.tick(now);
                self.execute(actions).await;
            }
            Msg::Shutdown => {}
        }
    }

    async fn command(&mut self, command: Command, reply: Waiter) {
        let now = Instant::now();
        let answer = match command {
            Command::Join { channel } => {
                self.start_join(channel, Some(reply));
                return;
            }
            Command::Play {
                announce,
                requested_by,
                dedup,
                progress,
            } => {
                let (outcome, actions) = self.core.play(announce, requested_by, dedup, now);
                if let (Some(job), Some(progress)) = (&outcome.first_job, progress) {
                    self.progress.insert(job.clone(), progress);
                }
                let failures = self.execute(actions).await;
                match outcome.first_job.as_ref().and_then(|j| failures.get(j)) {
                    Some(error) => Err(error.clone()),
                    None => Ok(Answer::Played(outcome)),
                }
            }
            Command::Request {
                song,
                requested_by,
                announce,
                dedup,
                progress,
            } => {
                let (job, actions) = self.core.request(song, requested_by, announce, dedup);
                if let Some(progress) = progress {
                    self.progress.insert(job.clone(), progress);
                }
                let mut failures = self.execute(actions).await;
                match failures.remove(&job) {
                    // A stopped station the request switched on is off again: the core settles it
                    // when the refusal reaches it.
                    Some(error) => Err(error),
                    None => {
                        let filled = self.core.tick(now);
                        self.execute(filled).await;
                        Ok(Answer::Requested(job))
                    }
                }
            }
            Command::Skip => self.simple(StationCore::skip).await,
            Command::Pause => self.simple(StationCore::pause).await,
            Command::Resume => self.simple(StationCore::resume).await,
            Command::Stop => self.simple(StationCore::stop).await,
            Command::Leave => self.simple(StationCore::leave).await,
            Command::Update(change) => {
                let actions = self.core.update_settings(change, now);
                self.execute(actions).await;
                Ok(Answer::View(Box::new(self.view())))
            }
            Command::View => Ok(Answer::View(Box::new(self.view()))),
        };
        // What a command changed is saved before the user hears it worked.
        self.save().await;
        let _ = reply.send(answer);
    }

    async fn simple(
        &mut self,
        op: impl FnOnce(&mut StationCore) -> Result<Vec<Action>, UserError>,
    ) -> Result<Answer, CommandError> {
        let actions = op(&mut self.core)?;
        self.execute(actions).await;
        Ok(Answer::Done)
    }

    fn view(&self) -> StationView {
        StationView {
            settings: self.core.settings().clone(),
            state: self.core.state().clone(),
            attached: self.core.is_attached(),
            progress: self.job_lines.clone(),
        }
    }

    fn start_join(&mut self, channel: u64, waiter: Option<Waiter>) {
        let here = self.core.state().voice_channel.as_deref() == Some(&channel.to_string());
        if self.core.is_attached() && here {
            if let Some(waiter) = waiter {
                let _ = waiter.send(Ok(Answer::Done));
            }
            return;
        }
        if let Some((_, waiters)) = &mut self.joining {
            waiters.extend(waiter);
            return;
        }
        self.joining = Some((channel, waiter.into_iter().collect()));
        let voice = self.state.voice.clone();
        let tx = self.tx.clone();
        let guild = self.guild;
        tokio::spawn(async move {
            let result = voice.join(guild, channel).await.map_err(|e| e.to_string());
            let _ = tx.send(Msg::Joined { channel, result });
        });
    }

    async fn joined(
        &mut self,
        channel: u64,
        result: Result<(), String>,
        now: Instant,
    ) -> Vec<Action> {
        let waiters = self.joining.take().map(|(_, w)| w).unwrap_or_default();
        let outcome = match result {
            Ok(()) if self.core.is_attached() => Ok(()),
            Ok(()) => self
                .state
                .player
                .attach(self.guild, self.player_tx.clone())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                info!(guild_id = self.guild, channel_id = channel, "joined voice");
                let actions = self.core.attached(channel, now);
                for waiter in waiters {
                    let _ = waiter.send(Ok(Answer::Done));
                }
                actions
            }
            Err(e) => {
                warn!(guild_id = self.guild, channel_id = channel, error = %e, "joining voice failed");
                for waiter in waiters {
                    let _ = waiter.send(Err(CommandError::Internal(format!(
                        "I couldn't join <#{channel}>: {e}"
                    ))));
                }
                if self.core.is_attached() {
                    Vec::new()
                } else {
                    // Nothing to play into: a resumed station stops rather than pile up tracks.
                    self.core.voice_lost()
                }
            }
        }
    }

    fn job_event(&mut self, event: Event, now: Instant) -> Vec<Action> {
        if let Some(line) = render::progress_line(&event.kind) {
            if self.job_lines.contains_key(&event.job)
                || self
                    .core
                    .state()
                    .generating
                    .iter()
                    .any(|t| t.job == event.job)
            {
                self.job_lines.insert(event.job.clone(), line.clone());
            }
            if let Some(progress) = self.progress.get(&event.job) {
                progress.update(Reply::text(line));
            }
        }
        let written_at = event.at_ms();
        match event.kind {
            EventKind::Succeeded(meta) => {
                if let Some(at) = written_at {
                    self.succeeded_at.insert(event.job.clone(), at);
                }
                self.job_lines.remove(&event.job);
                self.core.job_succeeded(&event.job, meta.map(|m| *m), now)
            }
            EventKind::Failed { error } => {
                self.job_lines.remove(&event.job);
                if let Some(progress) = self.progress.remove(&event.job) {
                    progress.finish(Reply::text(format!(
                        "❌ This song could not be generated: {error}"
                    )));
                }
                self.core.job_failed(&event.job, now)
            }
            EventKind::Cancelled => {
                self.job_lines.remove(&event.job);
                if let Some(progress) = self.progress.remove(&event.job) {
                    progress.finish(Reply::text("⏹️ Cancelled."));
                }
                self.core.job_cancelled(&event.job, now)
            }
            _ => Vec::new(),
        }
    }

    /// Carries out actions (and those they lead to). Returns the enqueue refusals by job.
    async fn execute(&mut self, actions: Vec<Action>) -> HashMap<JobId, CommandError> {
        let mut todo: VecDeque<Action> = actions.into();
        let mut refused = HashMap::new();
        while let Some(action) = todo.pop_front() {
            let now = Instant::now();
            match action {
                Action::Enqueue { spec, dedup } => {
                    let id = spec.id.clone();
                    let mut request = EnqueueRequest::new(*spec);
                    if let Some(key) = dedup {
                        request = request.dedup(key);
                    }
                    match self.state.queue.enqueue(request).await {
                        Ok(enqueued) if enqueued.duplicate && enqueued.id != id => {
                            // The same interaction was handled before: its job is already here.
                            debug!(guild_id = self.guild, job_id = %enqueued.id, "duplicate request");
                            todo.extend(self.core.job_cancelled(&id, now));
                        }
                        Ok(enqueued) => {
                            let line = render::queued_line(enqueued.position);
                            self.job_lines.insert(id.clone(), line.clone());
                            if let Some(progress) = self.progress.get(&id) {
                                progress.update(Reply::text(line));
                            }
                        }
                        Err(e) => {
                            warn!(guild_id = self.guild, job_id = %id, error = %e, "enqueue refused");
                            self.progress.remove(&id);
                            refused.insert(id.clone(), CommandError::from(e));
                            todo.extend(self.core.enqueue_failed(&id, now));
                        }
                    }
                }
                Action::Cancel(job) => {
                    self.job_lines.remove(&job);
                    if let Some(progress) = self.progress.remove(&job) {
                        progress.finish(Reply::text("⏹️ Cancelled: the station changed."));
                    }
                    if let Err(e) = self.state.queue.cancel(&job, "radio-bot").await
                        && !matches!(e, QueueError::UnknownJob { .. })
                    {
                        warn!(guild_id = self.guild, job_id = %job, error = %e, "cancelling a job failed");
                    }
                }
                Action::Check(job) => match self.state.queue.job(&job).await {
                    Ok(None) => todo.extend(self.core.job_cancelled(&job, now)),
                    Ok(Some(record)) => match record.state {
                        JobState::Succeeded => {
                            self.take_delivery(&job).await;
                            todo.extend(self.core.job_succeeded(&job, record.result, now));
                        }
                        JobState::Failed => todo.extend(self.core.job_failed(&job, now)),
                        JobState::Cancelled => todo.extend(self.core.job_cancelled(&job, now)),
                        JobState::Queued | JobState::Running | JobState::Retrying => {}
                    },
                    Err(e) => {
                        warn!(guild_id = self.guild, job_id = %job, error = %e, "checking a job failed")
                    }
                },
                Action::Play { track, index } => {
                    if let Err(reason) = self.play(&track, index).await {
                        warn!(guild_id = self.guild, job_id = %track.job, %reason, "a track cannot be played");
                        todo.extend(self.core.track_unavailable(&track.job, now));
                    }
                }
                Action::Skip => {
                    let result = self.state.player.skip(self.guild).await;
                    self.report("skip", result);
                }
                Action::Pause => {
                    let result = self.state.player.pause(self.guild).await;
                    self.report("pause", result);
                }
                Action::Resume => {
                    let result = self.state.player.resume(self.guild).await;
                    self.report("resume", result);
                }
                Action::StopPlayback => {
                    let result = self.state.player.stop(self.guild).await;
                    self.report("stop", result);
                }
                Action::Leave => {
                    self.state.player.detach(self.guild).await;
                    self.state.voice.leave(self.guild).await;
                    for progress in std::mem::take(&mut self.progress).into_values() {
                        progress.finish(Reply::text("⏹️ The station left the voice channel."));
                    }
                }
                Action::CountPlayed(track) => {
                    self.state
                        .metrics
                        .tracks_played
                        .with_label_values(&[track.source.as_str()])
                        .inc();
                    if let Err(e) = self
                        .state
                        .store
                        .record_played(&self.guild.to_string(), &track.job, track.source)
                        .await
                    {
                        warn!(guild_id = self.guild, error = %e, "counting a played track failed");
                    }
                }
                Action::CountGenerated(track) => {
                    let Some(meta) = &track.meta else {
                        warn!(guild_id = self.guild, job_id = %track.job, "a generated track has no metadata; not counted");
                        continue;
                    };
                    if let Err(e) = self
                        .state
                        .store
                        .record_generated(&self.guild.to_string(), &track.job, track.source, meta)
                        .await
                    {
                        warn!(guild_id = self.guild, error = %e, "counting a generated track failed");
                    }
                }
                Action::CountError(job) => {
                    if let Err(e) = self
                        .state
                        .store
                        .record_error(&self.guild.to_string(), job.as_ref())
                        .await
                    {
                        warn!(guild_id = self.guild, error = %e, "counting an error failed");
                    }
                }
                Action::Underrun => {
                    self.state.metrics.buffer_underruns.inc();
                    info!(
                        guild_id = self.guild,
                        generating = self.core.state().generating.len(),
                        "buffer underrun: nothing ready to play"
                    );
                }
                Action::WakeAfter(after) => {
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = tx.send(Msg::Wake);
                    });
                }
                Action::Announce(track) => self.announce(track),
            }
        }
        refused
    }

    fn is_generating(&self, job: &JobId) -> bool {
        self.core.state().generating.iter().any(|t| t.job == *job)
    }

    /// Takes a finished job's audio out of Redis into the track cache as soon as the station hears
    /// of it, whether or not it plays now: Redis holds audio only until it is delivered. A failure
    /// leaves it in Redis; playing it tries again.
    async fn take_delivery(&self, job: &JobId) {
        let state = &self.state;
        match track_cache::collect(&state.queue, &state.tracks, self.guild, job).await {
            Ok(Some(_)) => self.count_cache(),
            Ok(None) => {
                warn!(guild_id = self.guild, job_id = %job, "a succeeded job has no stored result")
            }
            Err(e) => {
                warn!(guild_id = self.guild, job_id = %job, error = %e, "taking a result failed; playing it tries again")
            }
        }
    }

    async fn play(&mut self, track: &StationTrack, index: Option<usize>) -> Result<(), String> {
        let state = &self.state;
        let audio = track_cache::collect(&state.queue, &state.tracks, self.guild, &track.job)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("its audio is no longer stored (expired, or the track cache was lost)")?;
        let duration = ogg_opus_duration(&audio).ok_or("the result is not Ogg Opus audio")?;
        let item = Track {
            job: track.job.clone(),
            audio,
            duration,
            title: render::title(track),
        };
        self.state
            .player
            .enqueue(self.guild, item, index)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(at) = self.succeeded_at.remove(&track.job) {
            let seconds = now_ms().saturating_sub(at) as f64 / 1000.0;
            self.state.metrics.track_ready.observe(seconds);
        }
        Ok(())
    }

    fn report(&self, what: &str, result: Result<(), crate::player::PlayerError>) {
        if let Err(e) = result {
            warn!(guild_id = self.guild, error = %e, "player {what} failed");
        }
    }

    fn announce(&mut self, track: StationTrack) {
        let embed = render::now_playing(&track);
        if let Some(progress) = self.progress.remove(&track.job) {
            progress.finish(Reply::embed(Some("▶️ Now playing".into()), embed));
            return;
        }
        let Some(channel) = self
            .core
            .state()
            .announce_channel
            .as_ref()
            .and_then(|c| c.parse::<u64>().ok())
            .and_then(twilight_model::id::Id::new_checked)
        else {
            return;
        };
        let http = self.state.http.clone();
        let guild = self.guild;
        tokio::spawn(async move {
            if let Err(e) = http
                .create_message(channel)
                .content("▶️ Now playing")
                .embeds(&[embed])
                .await
            {
                debug!(guild_id = guild, error = %e, "announcing a track failed");
            }
        });
    }

    async fn save(&mut self) {
        let guild = self.guild.to_string();
        if self.core.take_settings_dirty()
            && let Err(e) = self
                .state
                .store
                .save_settings(&guild, self.core.settings())
                .await
        {
            warn!(guild_id = self.guild, error = %e, "saving station settings failed");
        }
        if self.core.take_state_dirty() || self.unsaved {
            match self.state.store.save_state(&guild, self.core.state()).await {
                Ok(()) => {
                    self.unsaved = false;
                    // Only once the saved state no longer names them: a crash before the save
                    // still finds the old state's tracks in the cache.
                    self.tidy_cache().await;
                }
                Err(e) => {
                    warn!(guild_id = self.guild, error = %e, "saving the station failed; will retry");
                    self.unsaved = true;
                }
            }
        }
    }

    /// Drops the cached audio of tracks the station no longer has (played, skipped, discarded).
    async fn tidy_cache(&self) {
        let state = self.core.state();
        let keep = state
            .now_playing
            .iter()
            .chain(&state.ready)
            .chain(&state.generating)
            .map(|t| t.job.clone())
            .collect();
        self.state.tracks.retain(self.guild, keep).await;
        self.count_cache();
    }

    fn count_cache(&self) {
        let bytes = i64::try_from(self.state.tracks.bytes()).unwrap_or(i64::MAX);
        self.state.metrics.track_cache_bytes.set(bytes);
    }

    fn update_gauges(&mut self) {
        let active = self.core.state().status.is_on();
        if active != self.counted_active {
            if active {
                self.state.metrics.active_stations.inc();
            } else {
                self.state.metrics.active_stations.dec();
            }
            self.counted_active = active;
        }
        let voice = self.core.is_attached();
        if voice != self.counted_voice {
            if voice {
                self.state.metrics.voice_sessions.inc();
            } else {
                self.state.metrics.voice_sessions.dec();
            }
            self.counted_voice = voice;
        }
    }
}
