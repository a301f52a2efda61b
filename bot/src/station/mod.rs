//! Stations: one per guild, each an actor task that owns its [`core::StationCore`], carries out its
//! actions (queue, player, stats) and saves its state to Redis after every change. Guilds never
//! share a station, so nothing races across guilds.

mod actor;
pub mod core;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use radio_shared::job::{JobId, SongRequest};
use radio_shared::queue::Event;
use radio_shared::station::{StationSettings, StationState};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::interaction::ProgressMessage;
use crate::state::State;
use crate::user_error::CommandError;
pub use core::PlayOutcome;

/// A settings change, applied inside the station.
pub type SettingsChange = Box<dyn FnOnce(&mut StationSettings) + Send>;

/// A snapshot of a station for the informational commands.
#[derive(Debug, Clone)]
pub struct StationView {
    /// Its settings.
    pub settings: StationSettings,
    /// Its state.
    pub state: StationState,
    /// Whether the bot is in its voice channel with the player attached.
    pub attached: bool,
    /// The latest progress line of each job being generated.
    pub progress: HashMap<JobId, String>,
}

/// What a station is asked to do.
pub(crate) enum Command {
    Join {
        channel: u64,
    },
    Play {
        announce: Option<u64>,
        requested_by: Option<String>,
        dedup: Option<String>,
        progress: Option<ProgressMessage>,
    },
    Request {
        song: SongRequest,
        requested_by: Option<String>,
        announce: Option<u64>,
        dedup: Option<String>,
        progress: Option<ProgressMessage>,
    },
    Skip,
    Pause,
    Resume,
    Stop,
    Leave,
    Update(SettingsChange),
    View,
}

/// A station's answer.
#[derive(Debug)]
pub(crate) enum Answer {
    Done,
    Played(PlayOutcome),
    Requested(JobId),
    View(Box<StationView>),
}

/// The messages a station's task handles.
pub(crate) enum Msg {
    Command {
        command: Command,
        reply: oneshot::Sender<Result<Answer, CommandError>>,
    },
    /// A job event of this guild, from the follower.
    Event(Event),
    /// A playback event from the player.
    Player(crate::player::PlayerEvent),
    /// A voice join finished.
    Joined {
        channel: u64,
        result: Result<(), String>,
    },
    /// Rejoin the saved voice channel (after a restart, once the gateway is ready).
    Rejoin { channel: u64 },
    /// The bot was disconnected from voice by someone else.
    VoiceLost,
    /// A timer set by the station elapsed.
    Wake,
    /// Save and stop.
    Shutdown,
}

/// A handle on one station's task.
#[derive(Debug, Clone)]
pub struct StationHandle {
    guild: u64,
    tx: mpsc::UnboundedSender<Msg>,
}

impl StationHandle {
    /// The guild.
    pub fn guild(&self) -> u64 {
        self.guild
    }

    pub(crate) fn send(&self, msg: Msg) {
        let _ = self.tx.send(msg);
    }

    async fn call(&self, command: Command) -> Result<Answer, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Command { command, reply })
            .map_err(|_| CommandError::Internal("the station has stopped".into()))?;
        answer
            .await
            .map_err(|_| CommandError::Internal("the station stopped while answering".into()))?
    }

    /// Joins (or moves to) a voice channel; resolves when the join finished.
    pub async fn join(&self, channel: u64) -> Result<(), CommandError> {
        self.call(Command::Join { channel }).await.map(|_| ())
    }

    /// Turns the station on.
    pub(crate) async fn play(
        &self,
        announce: Option<u64>,
        requested_by: Option<String>,
        dedup: Option<String>,
        progress: Option<ProgressMessage>,
    ) -> Result<PlayOutcome, CommandError> {
        match self
            .call(Command::Play {
                announce,
                requested_by,
                dedup,
                progress,
            })
            .await?
        {
            Answer::Played(outcome) => Ok(outcome),
            other => Err(unexpected(&other)),
        }
    }

    /// Asks for one song, played before radio tracks.
    pub(crate) async fn request(
        &self,
        song: SongRequest,
        requested_by: Option<String>,
        announce: Option<u64>,
        dedup: Option<String>,
        progress: Option<ProgressMessage>,
    ) -> Result<JobId, CommandError> {
        match self
            .call(Command::Request {
                song,
                requested_by,
                announce,
                dedup,
                progress,
            })
            .await?
        {
            Answer::Requested(job) => Ok(job),
            other => Err(unexpected(&other)),
        }
    }

    /// Skips the current track.
    pub async fn skip(&self) -> Result<(), CommandError> {
        self.call(Command::Skip).await.map(|_| ())
    }

    /// Pauses.
    pub async fn pause(&self) -> Result<(), CommandError> {
        self.call(Command::Pause).await.map(|_| ())
    }

    /// Resumes.
    pub async fn resume(&self) -> Result<(), CommandError> {
        self.call(Command::Resume).await.map(|_| ())
    }

    /// Stops playback and drops the queue.
    pub async fn stop(&self) -> Result<(), CommandError> {
        self.call(Command::Stop).await.map(|_| ())
    }

    /// Stops and leaves the voice channel.
    pub async fn leave(&self) -> Result<(), CommandError> {
        self.call(Command::Leave).await.map(|_| ())
    }

    /// Changes settings; returns the station afterwards.
    pub async fn update(&self, change: SettingsChange) -> Result<StationView, CommandError> {
        match self.call(Command::Update(change)).await? {
            Answer::View(view) => Ok(*view),
            other => Err(unexpected(&other)),
        }
    }

    /// A snapshot.
    pub async fn view(&self) -> Result<StationView, CommandError> {
        match self.call(Command::View).await? {
            Answer::View(view) => Ok(*view),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(answer: &Answer) -> CommandError {
    CommandError::Internal(format!("the station answered {answer:?}"))
}

/// The stations of this process, started on first use or at start for those saved as on.
#[derive(Debug, Default)]
pub struct Stations {
    handles: Mutex<HashMap<u64, StationHandle>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Stations {
    /// The running station of `guild`, if any.
    pub fn get(&self, guild: u64) -> Option<StationHandle> {
        self.handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&guild)
            .cloned()
    }

    /// The station of `guild`, started (and loaded from Redis) if it is not running.
    pub fn get_or_start(&self, state: &Arc<State>, guild: u64) -> StationHandle {
        let mut handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = handles.get(&guild) {
            return handle.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = StationHandle {
            guild,
            tx: tx.clone(),
        };
        let task = tokio::spawn(actor::run(state.clone(), guild, tx, rx));
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
        handles.insert(guild, handle.clone());
        handle
    }

    /// Every running station.
    pub fn all(&self) -> Vec<StationHandle> {
        self.handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Asks every station to save and stop, and waits for them (at most `deadline`).
    pub async fn shutdown(&self, deadline: Duration) {
        for handle in self.all() {
            handle.send(Msg::Shutdown);
        }
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!("some stations did not stop in time");
        }
    }
}
