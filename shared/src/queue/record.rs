//! A job's record as stored in its hash, decoded for the bot and for `radioctl show`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Queue, QueueError};
use crate::job::{JobId, JobSpec, JobState, Priority, Progress, ResultMeta};

/// One state transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When (ms since the epoch, server clock).
    pub t: u64,
    /// The state entered.
    pub state: String,
    /// Who or why (the worker, the error, `cancelled by …`).
    #[serde(default)]
    pub note: String,
}

/// Everything Redis knows about one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    /// The job's id.
    pub id: JobId,
    /// Where it is now.
    pub state: JobState,
    /// The spec, or why it could not be decoded.
    pub spec: Result<JobSpec, String>,
    /// The stream it waits in.
    pub priority: Option<Priority>,
    /// Its guild.
    pub guild: Option<String>,
    /// Attempts made (the running one included).
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: Option<u32>,
    /// The consumer running it.
    pub worker: Option<String>,
    /// The stream entry of the current attempt.
    pub entry: Option<String>,
    /// First enqueued.
    pub created_ms: Option<u64>,
    /// Last (re-)entered its stream.
    pub queued_ms: Option<u64>,
    /// Last claimed.
    pub started_ms: Option<u64>,
    /// Reached its terminal state.
    pub finished_ms: Option<u64>,
    /// Last lease renewal.
    pub heartbeat_ms: Option<u64>,
    /// When a waiting retry goes back into its stream.
    pub retry_at_ms: Option<u64>,
    /// Latest progress of the running attempt.
    pub progress: Option<Progress>,
    /// The last error.
    pub error: Option<String>,
    /// Size of the stored audio.
    pub result_bytes: Option<u64>,
    /// What the worker recorded about the track.
    pub result: Option<ResultMeta>,
    /// A cancel was requested.
    pub cancel_requested: bool,
    /// Every state transition, oldest first.
    pub history: Vec<HistoryEntry>,
}

impl JobRecord {
    /// Decodes a job hash (`HGETALL`). Returns `None` when the hash has no usable state.
    pub fn from_hash(id: JobId, mut hash: HashMap<String, String>) -> Option<Self> {
        let state: JobState = hash.get("state")?.parse().ok()?;
        let mut take = |field: &str| hash.remove(field).filter(|v| !v.is_empty());
        let number = |v: Option<String>| v.and_then(|v| v.parse::<u64>().ok());
        let spec = match take("spec") {
            Some(raw) => JobSpec::decode(&raw).map_err(|e| e.to_string()),
            None => Err("the record has no spec".to_string()),
        };
        let history = take("history")
            .map(|h| {
                h.lines()
                    .filter_map(|line| serde_json::from_str(line).ok())
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            state,
            spec,
            priority: take("priority").and_then(|p| p.parse().ok()),
            guild: take("guild"),
            attempts: number(take("attempts")).unwrap_or(0) as u32,
            max_attempts: number(take("max_attempts")).map(|n| n as u32),
            worker: take("worker"),
            entry: take("entry"),
            created_ms: number(take("created_ms")),
            queued_ms: number(take("queued_ms")),
            started_ms: number(take("started_ms")),
            finished_ms: number(take("finished_ms")),
            heartbeat_ms: number(take("heartbeat_ms")),
            retry_at_ms: number(take("retry_at_ms")),
            progress: take("progress").and_then(|p| serde_json::from_str(&p).ok()),
            error: take("error"),
            result_bytes: number(take("result_bytes")),
            result: take("result_meta").and_then(|m| serde_json::from_str(&m).ok()),
            cancel_requested: take("cancel").as_deref() == Some("1"),
            history,
            id,
        })
    }
}

impl Queue {
    /// The record of job `id`, `None` if there is none (never enqueued, or expired).
    pub async fn job(&self, id: &JobId) -> Result<Option<JobRecord>, QueueError> {
        let mut conn = self.conn();
        let hash: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys().job(id))
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis("reading a job"))?;
        if hash.is_empty() {
            return Ok(None);
        }
        Ok(JobRecord::from_hash(id.clone(), hash))
    }

    /// Like [`Queue::job`], with an error naming the key when there is no such job.
    pub async fn job_required(&self, id: &JobId) -> Result<JobRecord, QueueError> {
        self.job(id).await?.ok_or_else(|| QueueError::UnknownJob {
            id: id.clone(),
            key: self.keys().job(id),
        })
    }
}
