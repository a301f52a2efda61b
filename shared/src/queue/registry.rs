//! The registry of live workers: each worker writes its registration with a TTL of three heartbeats,
//! so a worker that dies disappears by itself. The bot reads it to know whether anyone can play a track
//! of the requested length.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Queue, QueueError};

/// What a worker tells the deployment about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Unique per process (`host-pid-random`); also its consumer name prefix.
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// GPU name, or `cpu`.
    pub gpu: String,
    /// GPU memory, bytes (0 on CPU).
    pub vram_total_bytes: u64,
    /// The memory profile in use (`8gb`, `cpu`, …).
    pub profile: String,
    /// A one-line summary of the memory plan.
    pub plan: String,
    /// The longest track it accepts, seconds.
    pub max_duration_s: f32,
    /// Jobs it runs at once.
    pub concurrency: u32,
    /// The job it runs now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_with: Option<String>,
    /// Jobs it finished since it started.
    #[serde(default)]
    pub jobs_done: u64,
    /// When it started (ms since the epoch).
    pub started_ms: u64,
    /// Its last heartbeat (ms since the epoch), set by [`Queue::register_worker`].
    #[serde(default)]
    pub heartbeat_ms: u64,
    /// Its build version.
    pub version: String,
}

impl Queue {
    /// Writes (or refreshes) a worker's registration, stamped with the time as its heartbeat; it
    /// expires after `ttl` unless refreshed.
    pub async fn register_worker(
        &self,
        info: &WorkerInfo,
        ttl: Duration,
    ) -> Result<(), QueueError> {
        let now = super::consumer::now_ms();
        let stamped = WorkerInfo {
            heartbeat_ms: now,
            ..info.clone()
        };
        let json = serde_json::to_string(&stamped)
            .map_err(|e| QueueError::protocol("registering a worker", e.to_string()))?;
        let mut conn = self.conn();
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(self.keys().worker(&info.id))
            .arg(json)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .ignore()
            .cmd("ZADD")
            .arg(self.keys().workers())
            .arg(now)
            .arg(&info.id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(QueueError::redis("registering a worker"))
    }

    /// Removes a worker's registration (clean shutdown).
    pub async fn deregister_worker(&self, id: &str) -> Result<(), QueueError> {
        let mut conn = self.conn();
        redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(self.keys().worker(id))
            .ignore()
            .cmd("ZREM")
            .arg(self.keys().workers())
            .arg(id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(QueueError::redis("deregistering a worker"))
    }

    /// Workers whose registration has not expired. Expired ones are pruned from the index on the way.
    pub async fn live_workers(&self) -> Result<Vec<WorkerInfo>, QueueError> {
        const DOING: &str = "listing workers";
        let mut conn = self.conn();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys().workers())
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis(DOING))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.keys().worker(id)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis(DOING))?;
        let mut live = Vec::new();
        let mut expired = Vec::new();
        for (id, value) in ids.into_iter().zip(values) {
            match value.and_then(|v| serde_json::from_str::<WorkerInfo>(&v).ok()) {
                Some(info) => live.push(info),
                None => expired.push(id),
            }
        }
        if !expired.is_empty() {
            redis::cmd("ZREM")
                .arg(self.keys().workers())
                .arg(&expired)
                .query_async::<()>(&mut conn)
                .await
                .map_err(QueueError::redis(DOING))?;
        }
        Ok(live)
    }
}
