//! Putting jobs in and taking them out: enqueue (idempotent, capped per guild) and cancel.

use super::{Queue, QueueError, split_reply, value_at};
use crate::job::{JobId, JobSpec, Priority};

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct EnqueueRequest {
    /// The job.
    pub spec: JobSpec,
    /// An idempotency key (a Discord interaction id is a natural one): enqueuing the same key again
    /// within `dedup_ttl` returns the first job instead of adding another.
    pub dedup_key: Option<String>,
}

impl EnqueueRequest {
    /// A request without an idempotency key.
    pub fn new(spec: JobSpec) -> Self {
        Self {
            spec,
            dedup_key: None,
        }
    }

    /// Sets the idempotency key.
    pub fn dedup(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }
}

/// The outcome of an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's id (the earlier job's id when the request was a duplicate).
    pub id: JobId,
    /// Jobs ahead of it when it was added, counting more urgent streams (0 for a duplicate).
    pub position: u64,
    /// The idempotency key (or the id) had been seen: nothing new was added.
    pub duplicate: bool,
}

/// The outcome of a cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was waiting and will never run.
    Cancelled,
    /// A worker is running it and will stop at its next check.
    Cancelling,
    /// It had already finished in this state.
    AlreadyFinished(crate::job::JobState),
}

impl Queue {
    /// Adds a job to the stream of its priority. Validates the spec first; refuses when the job's
    /// guild has `guild_cap` unfinished jobs already.
    pub async fn enqueue(&self, request: EnqueueRequest) -> Result<Enqueued, QueueError> {
        const DOING: &str = "enqueuing a job";
        let spec = &request.spec;
        spec.validate()?;
        let keys = self.keys();
        let settings = self.settings();
        let guild = spec.guild_id.clone().unwrap_or_default();
        let max_attempts = spec.max_attempts.unwrap_or(settings.max_attempts);
        let (dedup_key, dedup_ttl) = match &request.dedup_key {
            Some(k) => (keys.dedup(k), settings.dedup_ttl.as_secs().max(1)),
            None => (keys.dedup(""), 0),
        };
        let ahead = match spec.priority {
            Priority::Interactive => String::new(),
            Priority::Radio => keys.stream(Priority::Interactive),
        };
        let reply: redis::Value = self
            .inner
            .scripts
            .enqueue
            .key(keys.stream(spec.priority))
            .key(keys.job(&spec.id))
            .key(keys.events())
            .key(keys.entries())
            .key(dedup_key)
            .key(keys.guild_active(&guild))
            .arg(spec.id.as_str())
            .arg(spec.encode())
            .arg(spec.priority.as_str())
            .arg(&guild)
            .arg(max_attempts)
            .arg(dedup_ttl)
            .arg(settings.guild_cap)
            .arg(settings.events_maxlen)
            .arg(crate::keys::CONSUMER_GROUP)
            .arg(keys.job_prefix())
            .arg(ahead)
            .arg((spec.generate_task().song.duration_s * 1000.0).round() as u64)
            .invoke_async(&mut self.conn())
            .await
            .map_err(QueueError::redis(DOING))?;
        let (tag, rest) = split_reply(DOING, reply)?;
        match tag.as_str() {
            "ok" => Ok(Enqueued {
                id: spec.id.clone(),
                position: value_at(DOING, &rest, 1)?,
                duplicate: false,
            }),
            "dup" => {
                let id: String = value_at(DOING, &rest, 0)?;
                Ok(Enqueued {
                    id: id.parse()?,
                    position: 0,
                    duplicate: true,
                })
            }
            "full" => Err(QueueError::GuildFull {
                guild,
                active: value_at(DOING, &rest, 0)?,
                cap: settings.guild_cap,
            }),
            other => Err(QueueError::protocol(DOING, other)),
        }
    }

    /// Cancels a job from any process. A waiting job is cancelled at once; a running one is flagged
    /// and its worker stops at its next check (between diffusion steps) and reports `cancelled`.
    pub async fn cancel(&self, id: &JobId, who: &str) -> Result<CancelOutcome, QueueError> {
        const DOING: &str = "cancelling a job";
        let keys = self.keys();
        let reply: redis::Value = self
            .inner
            .scripts
            .cancel
            .key(keys.job(id))
            .key(keys.events())
            .key(keys.delayed())
            .arg(id.as_str())
            .arg(self.retention())
            .arg(self.settings().events_maxlen)
            .arg(who)
            .invoke_async(&mut self.conn())
            .await
            .map_err(QueueError::redis(DOING))?;
        let (tag, rest) = split_reply(DOING, reply)?;
        match tag.as_str() {
            "cancelled" => Ok(CancelOutcome::Cancelled),
            "cancelling" => Ok(CancelOutcome::Cancelling),
            "terminal" => {
                let state: String = value_at(DOING, &rest, 0)?;
                let state = state
                    .parse()
                    .map_err(|e: String| QueueError::protocol(DOING, e))?;
                Ok(CancelOutcome::AlreadyFinished(state))
            }
            "unknown" => Err(QueueError::UnknownJob {
                id: id.clone(),
                key: keys.job(id),
            }),
            other => Err(QueueError::protocol(DOING, other)),
        }
    }

    /// The stored audio of a finished job, if it has not expired.
    pub async fn result(&self, id: &JobId) -> Result<Option<Vec<u8>>, QueueError> {
        let mut conn = self.conn();
        redis::cmd("GET")
            .arg(self.keys().result(id))
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis("reading a result"))
    }

    /// Whether a finished job's audio is still stored (not delivered, not expired).
    pub async fn has_result(&self, id: &JobId) -> Result<bool, QueueError> {
        let mut conn = self.conn();
        redis::cmd("EXISTS")
            .arg(self.keys().result(id))
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis("looking for a result"))
    }

    /// Removes a delivered result: its audio and its entry in the results index. Call it once the
    /// audio is safe elsewhere (the bot's track cache, the file `radioctl wait --out` wrote): Redis
    /// holds audio only between a job's completion and its delivery.
    pub async fn forget_result(&self, id: &JobId) -> Result<(), QueueError> {
        let mut conn = self.conn();
        redis::pipe()
            .atomic()
            .cmd("UNLINK")
            .arg(self.keys().result(id))
            .ignore()
            .cmd("ZREM")
            .arg(self.keys().results())
            .arg(id.as_str())
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(QueueError::redis("removing a delivered result"))
    }
}
