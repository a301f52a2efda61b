//! The events stream: every lifecycle change and progress report, for the bot and `radioctl wait`.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use tracing::warn;

use super::{Queue, QueueError, XReadReply, entry_time_ms};
use crate::job::{JobId, JobState, Progress, ResultMeta};

/// One event from `{prefix}:events`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The stream entry id (also a resume point for followers).
    pub id: String,
    /// The job it is about.
    pub job: JobId,
    /// The job's guild, when it has one.
    pub guild: Option<String>,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// Added to a stream (first time, retry due, released or recovered).
    Queued {
        /// Jobs ahead of it when it was added, if known.
        position: Option<u64>,
    },
    /// A worker claimed it.
    Started {
        /// The consumer name.
        worker: String,
        /// Attempt number, from 1.
        attempt: u32,
        /// Taken over from a worker that stopped heartbeating.
        reclaimed: bool,
    },
    /// Progress report.
    Progress(Progress),
    /// Finished; the result is stored. `None` if the worker's metadata could not be read.
    Succeeded(Option<Box<ResultMeta>>),
    /// An attempt failed; another follows after the backoff.
    Retrying {
        /// The attempt's error.
        error: String,
        /// The attempt that failed.
        attempt: u32,
        /// Attempts allowed.
        max_attempts: u32,
        /// Backoff before the next attempt.
        retry_in_ms: u64,
    },
    /// Failed for good (dead-lettered).
    Failed {
        /// Why.
        error: String,
    },
    /// Someone asked a running job to stop.
    CancelRequested,
    /// The job ended cancelled.
    Cancelled,
    /// A worker handed the job back unfinished (shutdown); another takes it at once.
    Released {
        /// The consumer that released it.
        worker: String,
    },
    /// A type this build does not know (written by a newer build).
    Other(String),
}

impl Event {
    /// When the event was written (ms since the epoch, server clock).
    pub fn at_ms(&self) -> Option<u64> {
        entry_time_ms(&self.id)
    }

    /// The terminal state this event reports, if any.
    pub fn terminal_state(&self) -> Option<JobState> {
        match self.kind {
            EventKind::Succeeded(_) => Some(JobState::Succeeded),
            EventKind::Failed { .. } => Some(JobState::Failed),
            EventKind::Cancelled => Some(JobState::Cancelled),
            _ => None,
        }
    }

    /// Decodes a stream entry; `Err` names what was wrong.
    pub fn decode(id: String, fields: &HashMap<String, String>) -> Result<Self, String> {
        let job = fields
            .get("job")
            .ok_or("no job field")?
            .parse::<JobId>()
            .map_err(|e| e.to_string())?;
        let kind = fields.get("type").ok_or("no type field")?;
        let data = fields.get("data").map_or("{}", String::as_str);
        let guild = fields.get("guild").filter(|g| !g.is_empty()).cloned();
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Data {
            position: Option<u64>,
            worker: String,
            attempt: u32,
            max_attempts: u32,
            reclaimed: bool,
            error: String,
            retry_in_ms: u64,
        }
        let parse =
            || serde_json::from_str::<Data>(data).map_err(|e| format!("bad {kind} data: {e}"));
        let kind = match kind.as_str() {
            "queued" => EventKind::Queued {
                position: parse()?.position,
            },
            "started" => {
                let d = parse()?;
                EventKind::Started {
                    worker: d.worker,
                    attempt: d.attempt,
                    reclaimed: d.reclaimed,
                }
            }
            "progress" => EventKind::Progress(
                serde_json::from_str(data).map_err(|e| format!("bad progress data: {e}"))?,
            ),
            "succeeded" => EventKind::Succeeded(serde_json::from_str(data).ok().map(Box::new)),
            "retrying" => {
                let d = parse()?;
                EventKind::Retrying {
                    error: d.error,
                    attempt: d.attempt,
                    max_attempts: d.max_attempts,
                    retry_in_ms: d.retry_in_ms,
                }
            }
            "failed" => EventKind::Failed {
                error: parse()?.error,
            },
            "cancel_requested" => EventKind::CancelRequested,
            "cancelled" => EventKind::Cancelled,
            "released" => EventKind::Released {
                worker: parse()?.worker,
            },
            other => EventKind::Other(other.to_string()),
        };
        Ok(Self {
            id,
            job,
            guild,
            kind,
        })
    }
}

/// Follows the events stream from a position, with blocking reads.
#[derive(Debug, Clone)]
pub struct EventFollower {
    queue: Queue,
    last_id: String,
}

impl EventFollower {
    /// The id of the last event returned: store it to resume after a restart.
    pub fn last_id(&self) -> &str {
        &self.last_id
    }

    /// The next events, waiting up to `block` for at least one. Entries that cannot be decoded are
    /// logged and skipped.
    pub async fn next(&mut self, block: Duration) -> Result<Vec<Event>, QueueError> {
        let mut conn = self.queue.blocking_conn().await?;
        let reply: XReadReply<HashMap<String, String>> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(500)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(self.queue.keys().events())
            .arg(&self.last_id)
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis("reading events"))?;
        let mut events = Vec::new();
        for (_, entries) in reply.unwrap_or_default() {
            for (id, fields) in entries {
                self.last_id.clone_from(&id);
                match Event::decode(id, &fields) {
                    Ok(event) => events.push(event),
                    Err(reason) => {
                        warn!(entry = %self.last_id, %reason, "skipping an undecodable event")
                    }
                }
            }
        }
        Ok(events)
    }
}

impl Queue {
    /// Follows events written after this call.
    pub async fn follow_events(&self) -> Result<EventFollower, QueueError> {
        let last_id = self.newest_entry_id(&self.keys().events()).await?;
        Ok(self.follow_events_from(last_id))
    }

    /// Follows events written after `last_id` (a position saved earlier).
    pub fn follow_events_from(&self, last_id: impl Into<String>) -> EventFollower {
        EventFollower {
            queue: self.clone(),
            last_id: last_id.into(),
        }
    }

    /// Waits until job `id` reaches a terminal state, calling `on_event` for each of its events, and
    /// returns its final record. Gives up with `Ok(None)` after `timeout`.
    pub async fn wait_for(
        &self,
        id: &JobId,
        timeout: Duration,
        mut on_event: impl FnMut(&Event),
    ) -> Result<Option<super::JobRecord>, QueueError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Start following before reading the state, so a transition in between is not missed.
        let mut events = self.follow_events().await?;
        loop {
            let record = self.job_required(id).await?;
            if record.state.is_terminal() {
                return Ok(Some(record));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let block = (deadline - now).min(self.settings().block);
            for event in events.next(block).await? {
                if event.job == *id {
                    on_event(&event);
                }
            }
        }
    }
}
