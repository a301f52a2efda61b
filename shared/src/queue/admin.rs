//! Inspection and repair, for `radioctl`, the metrics exporter and the workers' maintenance task.

use std::collections::HashMap;

use serde::Serialize;

use super::{
    Queue, QueueError, WorkerInfo, consumer::now_ms, entry_time_ms, split_reply, value_at,
};
use crate::job::{JobId, JobState, Priority};
use crate::keys::CONSUMER_GROUP;

/// A consumer of one stream and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsumerStatus {
    /// The consumer's name.
    pub name: String,
    /// Entries it holds unacknowledged.
    pub pending: u64,
    /// Milliseconds since it last read or renewed.
    pub idle_ms: u64,
}

/// One job stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamStatus {
    /// Its priority.
    pub priority: Priority,
    /// Its key.
    pub key: String,
    /// Entries in the stream (acknowledged ones included until trimmed).
    pub length: u64,
    /// Entries not yet delivered to any worker.
    pub waiting: u64,
    /// Delivered but unacknowledged entries.
    pub pending: u64,
    /// Age of the oldest pending entry since it was added, ms.
    pub oldest_pending_age_ms: Option<u64>,
    /// Consumers of the group.
    pub consumers: Vec<ConsumerStatus>,
}

/// The whole queue at a glance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStatus {
    /// The job streams, most urgent first.
    pub streams: Vec<StreamStatus>,
    /// Retries waiting for their backoff.
    pub delayed: u64,
    /// Entries in the dead stream.
    pub dead: u64,
    /// Live workers.
    pub workers: Vec<WorkerInfo>,
    /// Results stored and not yet delivered (audio in Redis).
    pub results_stored: u64,
    /// Redis's own memory figures.
    pub memory: RedisMemory,
}

/// What Redis reports of its memory (`INFO memory`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RedisMemory {
    /// Bytes Redis has allocated (`used_memory`).
    pub used_bytes: u64,
    /// Its `maxmemory` setting (0: no limit).
    pub max_bytes: u64,
}

impl RedisMemory {
    /// Reads the figures out of an `INFO memory` reply; missing ones are 0.
    pub fn from_info(info: &str) -> Self {
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Self {
            used_bytes: field("used_memory"),
            max_bytes: field("maxmemory"),
        }
    }

    /// `used / max`, when there is a limit.
    pub fn used_share(&self) -> Option<f64> {
        (self.max_bytes > 0).then(|| self.used_bytes as f64 / self.max_bytes as f64)
    }
}

/// A row of `radioctl jobs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSummary {
    /// The job's id.
    pub id: JobId,
    /// Its state.
    pub state: JobState,
    /// Its stream.
    pub priority: Option<Priority>,
    /// Its guild.
    pub guild: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// The worker running it.
    pub worker: Option<String>,
    /// Created, ms since the epoch.
    pub created_ms: Option<u64>,
    /// Last error.
    pub error: Option<String>,
    /// The song's title, once it succeeded.
    pub title: Option<String>,
}

/// The fields of a job hash a [`JobSummary`] is read from, in [`JobSummary::from_fields`]'s order.
const SUMMARY_FIELDS: [&str; 8] = [
    "state",
    "priority",
    "guild",
    "attempts",
    "worker",
    "created_ms",
    "error",
    "result_meta",
];

impl JobSummary {
    /// Decodes the values of [`SUMMARY_FIELDS`]; `None` when the record has no usable state.
    fn from_fields(id: JobId, v: &[Option<String>]) -> Option<Self> {
        let field = |i: usize| v.get(i).cloned().flatten().filter(|s| !s.is_empty());
        Some(Self {
            state: field(0)?.parse().ok()?,
            priority: field(1).and_then(|p| p.parse().ok()),
            guild: field(2),
            attempts: field(3).and_then(|a| a.parse().ok()).unwrap_or(0),
            worker: field(4),
            created_ms: field(5).and_then(|c| c.parse().ok()),
            error: field(6),
            title: field(7)
                .and_then(|m| serde_json::from_str::<crate::job::ResultMeta>(&m).ok())
                .map(|m| m.title),
            id,
        })
    }
}

/// Which jobs a listing shows; every part given must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this stream.
    pub priority: Option<Priority>,
    /// Only jobs of this guild.
    pub guild: Option<String>,
    /// Only jobs whose id, spec (caption, lyrics, station), song, error, worker or guild contains this,
    /// ignoring case.
    pub text: Option<String>,
}

impl JobFilter {
    fn accepts(
        &self,
        state: Option<JobState>,
        priority: Option<Priority>,
        guild: Option<&str>,
    ) -> bool {
        let Some(state) = state else {
            return false;
        };
        self.state.is_none_or(|s| s == state)
            && self.priority.is_none_or(|p| Some(p) == priority)
            && self.guild.as_deref().is_none_or(|g| Some(g) == guild)
    }

    fn text_lowercase(&self) -> Option<String> {
        let text = self.text.as_deref()?.trim();
        (!text.is_empty()).then(|| text.to_lowercase())
    }
}

/// Whether `value` holds `needle` (lowercase): in the strings of a JSON document (the spec, the
/// result; not its keys or escapes), or in the text itself.
fn text_contains(value: &str, needle: &str) -> bool {
    fn strings_contain(v: &serde_json::Value, needle: &str) -> bool {
        match v {
            serde_json::Value::String(s) => s.to_lowercase().contains(needle),
            serde_json::Value::Array(items) => items.iter().any(|i| strings_contain(i, needle)),
            serde_json::Value::Object(map) => map.values().any(|i| strings_contain(i, needle)),
            _ => false,
        }
    }
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(doc @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => {
            strings_contain(&doc, needle)
        }
        _ => value.to_lowercase().contains(needle),
    }
}

/// One page of a job listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobPage {
    /// The rows, newest first.
    pub jobs: Vec<JobSummary>,
    /// How many jobs passed the filter in all.
    pub total: usize,
    /// How many of them come before this page.
    pub offset: usize,
}

/// Jobs that ended in one minute, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MinuteOutcomes {
    /// The minute's start, ms since the epoch.
    pub minute_ms: u64,
    /// Jobs that succeeded.
    pub succeeded: u32,
    /// Jobs that failed for good.
    pub failed: u32,
    /// Jobs cancelled.
    pub cancelled: u32,
}

/// An entry of the dead stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// The dead stream entry id.
    pub entry: String,
    /// The job, when the entry named a valid one.
    pub job: Option<JobId>,
    /// The job stream it came from.
    pub stream: String,
    /// Why it died.
    pub error: String,
    /// Attempts made.
    pub attempts: Option<u32>,
    /// When it died, ms since the epoch.
    pub failed_ms: Option<u64>,
    /// The raw fields of a malformed entry.
    pub raw: Option<String>,
}

impl Queue {
    /// Depth, pending entries per consumer, oldest pending age, delayed, dead and live workers.
    pub async fn status(&self) -> Result<QueueStatus, QueueError> {
        const DOING: &str = "reading the queue status";
        let mut conn = self.conn();
        let mut streams = Vec::new();
        for priority in Priority::CLAIM_ORDER {
            let key = self.keys().stream(priority);
            let length: u64 = redis::cmd("XLEN")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(QueueError::redis(DOING))?;
            let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            let group = groups.into_iter().find(|g| {
                g.get("name")
                    .and_then(|n| redis::from_redis_value_ref::<String>(n).ok())
                    .as_deref()
                    == Some(CONSUMER_GROUP)
            });
            let field = |name: &str| {
                group
                    .as_ref()
                    .and_then(|g| g.get(name))
                    .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
            };
            let pending = field("pending").unwrap_or(0);
            let waiting = match field("lag") {
                Some(lag) => lag,
                None => self.count_undelivered(&key).await?,
            };
            let consumers: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&key)
                .arg(CONSUMER_GROUP)
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            let consumers = consumers
                .iter()
                .map(|c| {
                    let get = |name: &str| c.get(name);
                    ConsumerStatus {
                        name: get("name")
                            .and_then(|v| redis::from_redis_value_ref(v).ok())
                            .unwrap_or_default(),
                        pending: get("pending")
                            .and_then(|v| redis::from_redis_value_ref(v).ok())
                            .unwrap_or(0),
                        idle_ms: get("idle")
                            .and_then(|v| redis::from_redis_value_ref(v).ok())
                            .unwrap_or(0),
                    }
                })
                .collect();
            let summary: redis::Value = redis::cmd("XPENDING")
                .arg(&key)
                .arg(CONSUMER_GROUP)
                .query_async(&mut conn)
                .await
                .map_err(QueueError::redis(DOING))?;
            let oldest = match summary {
                redis::Value::Array(items) if items.len() >= 2 => {
                    redis::from_redis_value_ref::<String>(&items[1]).ok()
                }
                _ => None,
            };
            streams.push(StreamStatus {
                priority,
                key,
                length,
                waiting,
                pending,
                oldest_pending_age_ms: oldest
                    .as_deref()
                    .and_then(entry_time_ms)
                    .map(|t| now_ms().saturating_sub(t)),
                consumers,
            });
        }
        let (delayed, dead, results_stored, info): (u64, u64, u64, String) = redis::pipe()
            .cmd("ZCARD")
            .arg(self.keys().delayed())
            .cmd("XLEN")
            .arg(self.keys().dead())
            // Results whose expiry is still ahead: the index is scored by expiry time.
            .cmd("ZCOUNT")
            .arg(self.keys().results())
            .arg(now_ms())
            .arg("+inf")
            .cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis(DOING))?;
        Ok(QueueStatus {
            streams,
            delayed,
            dead,
            workers: self.live_workers().await?,
            results_stored,
            memory: RedisMemory::from_info(&info),
        })
    }

    async fn count_undelivered(&self, stream: &str) -> Result<u64, QueueError> {
        let mut conn = self.conn();
        let groups: Vec<HashMap<String, String>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        let Some(last) = groups
            .into_iter()
            .find(|g| g.get("name").map(String::as_str) == Some(CONSUMER_GROUP))
            .and_then(|mut g| g.remove("last-delivered-id"))
        else {
            return Ok(0);
        };
        let ids: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(stream)
            .arg(format!("({last}"))
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis("counting undelivered entries"))?;
        Ok(ids.len() as u64)
    }

    /// Jobs still in Redis, newest first, optionally only those in `state`.
    pub async fn jobs(
        &self,
        state: Option<JobState>,
        limit: usize,
    ) -> Result<Vec<JobSummary>, QueueError> {
        let filter = JobFilter {
            state,
            ..JobFilter::default()
        };
        Ok(self.job_page(&filter, 0, limit).await?.jobs)
    }

    /// One page of the jobs still in Redis that pass `filter`, newest first: `limit` rows after the
    /// first `offset`, with how many passed in all.
    pub async fn job_page(
        &self,
        filter: &JobFilter,
        offset: usize,
        limit: usize,
    ) -> Result<JobPage, QueueError> {
        const DOING: &str = "listing jobs";
        let prefix = self.keys().job_prefix();
        let mut ids: Vec<JobId> = self
            .keys_starting_with(&prefix)
            .await?
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter_map(|id| id.parse::<JobId>().ok())
            .collect();
        // Ids are ULIDs: their order is their creation order.
        ids.sort_unstable_by(|a, b| b.cmp(a));
        // The cheap fields first; the spec and result only for the text search and the rows shown.
        let mut matching = Vec::new();
        for (id, v) in self
            .hmget_each(DOING, &ids, &["state", "priority", "guild"])
            .await?
        {
            let state = v[0].as_deref().and_then(|s| s.parse::<JobState>().ok());
            let priority = v[1].as_deref().and_then(|p| p.parse::<Priority>().ok());
            if filter.accepts(state, priority, v[2].as_deref()) {
                matching.push(id);
            }
        }
        if let Some(needle) = filter.text_lowercase() {
            let fields = ["spec", "result_meta", "error", "worker", "guild"];
            let mut found = Vec::new();
            for (id, values) in self.hmget_each(DOING, &matching, &fields).await? {
                let hit = id.as_str().to_lowercase().contains(&needle)
                    || values.iter().flatten().any(|v| text_contains(v, &needle));
                if hit {
                    found.push(id);
                }
            }
            matching = found;
        }
        let total = matching.len();
        let shown: Vec<JobId> = matching.into_iter().skip(offset).take(limit).collect();
        let mut jobs = Vec::with_capacity(shown.len());
        for (id, v) in self.hmget_each(DOING, &shown, &SUMMARY_FIELDS).await? {
            // A record that expired between the two reads is passed over.
            if let Some(summary) = JobSummary::from_fields(id, &v) {
                jobs.push(summary);
            }
        }
        Ok(JobPage {
            jobs,
            total,
            offset,
        })
    }

    /// `HMGET key fields…` for each job, pipelined in chunks; the values in `fields` order.
    async fn hmget_each(
        &self,
        doing: &'static str,
        ids: &[JobId],
        fields: &[&str],
    ) -> Result<Vec<(JobId, Vec<Option<String>>)>, QueueError> {
        let mut conn = self.conn();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(200) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("HMGET").arg(self.keys().job(id)).arg(fields);
            }
            let values: Vec<Vec<Option<String>>> = pipe
                .query_async(&mut conn)
                .await
                .map_err(QueueError::redis(doing))?;
            out.extend(chunk.iter().cloned().zip(values));
        }
        Ok(out)
    }

    /// Jobs finished in each of the last `minutes` minutes, by outcome, oldest minute first. Read from
    /// the index of finished records, so it needs no Prometheus; records already expired or dropped by
    /// `RADIO_JOB_HISTORY_MAX` are not counted.
    pub async fn finished_per_minute(
        &self,
        minutes: u32,
    ) -> Result<Vec<MinuteOutcomes>, QueueError> {
        const DOING: &str = "counting finished jobs";
        let now = now_ms();
        let first_minute =
            (now / 60_000).saturating_sub(u64::from(minutes.saturating_sub(1))) * 60_000;
        let mut conn = self.conn();
        // The index is scored in microseconds.
        let finished: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys().finished())
            .arg(first_minute * 1000)
            .arg("+inf")
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis(DOING))?;
        let mut buckets: Vec<MinuteOutcomes> = (0..u64::from(minutes))
            .map(|i| MinuteOutcomes {
                minute_ms: first_minute + i * 60_000,
                ..MinuteOutcomes::default()
            })
            .collect();
        let ids: Vec<JobId> = finished
            .iter()
            .filter_map(|(id, _)| id.parse().ok())
            .collect();
        let states = self.hmget_each(DOING, &ids, &["state"]).await?;
        let at_ms: HashMap<&str, u64> = finished
            .iter()
            .map(|(id, score)| (id.as_str(), (*score / 1000.0) as u64))
            .collect();
        for (id, v) in states {
            let Some(at) = at_ms.get(id.as_str()) else {
                continue;
            };
            let index = (at.saturating_sub(first_minute) / 60_000) as usize;
            let Some(bucket) = buckets.get_mut(index) else {
                continue;
            };
            match v[0].as_deref().and_then(|s| s.parse::<JobState>().ok()) {
                Some(JobState::Succeeded) => bucket.succeeded += 1,
                Some(JobState::Failed) => bucket.failed += 1,
                Some(JobState::Cancelled) => bucket.cancelled += 1,
                // Retried since it finished: it is counted when it finishes again.
                _ => {}
            }
        }
        Ok(buckets)
    }

    /// The dead stream, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        let mut conn = self.conn();
        let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(self.keys().dead())
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis("reading the dead stream"))?;
        Ok(entries
            .into_iter()
            .map(|(entry, mut f)| DeadLetter {
                job: f.get("job").and_then(|j| j.parse().ok()),
                stream: f.remove("stream").unwrap_or_default(),
                error: f.remove("error").unwrap_or_default(),
                attempts: f.get("attempts").and_then(|a| a.parse().ok()),
                failed_ms: f.get("failed_ms").and_then(|t| t.parse().ok()),
                raw: f.remove("raw"),
                entry,
            })
            .collect())
    }

    /// Puts a failed job back in its stream with its attempts reset, and removes its dead letters.
    pub async fn retry(&self, id: &JobId) -> Result<(), QueueError> {
        const DOING: &str = "retrying a job";
        let dead_entries: Vec<String> = self
            .dead_letters()
            .await?
            .into_iter()
            .filter(|d| d.job.as_ref() == Some(id))
            .map(|d| d.entry)
            .collect();
        let keys = self.keys();
        let reply: redis::Value = self
            .inner
            .scripts
            .retry
            .key(keys.job(id))
            .key(keys.events())
            .key(keys.entries())
            .key(keys.dead())
            .arg(id.as_str())
            .arg(dead_entries.first().map_or("", String::as_str))
            .arg(self.settings().events_maxlen)
            .invoke_async(&mut self.conn())
            .await
            .map_err(QueueError::redis(DOING))?;
        let (tag, rest) = split_reply(DOING, reply)?;
        match tag.as_str() {
            "ok" => {
                if dead_entries.len() > 1 {
                    let mut conn = self.conn();
                    redis::cmd("XDEL")
                        .arg(keys.dead())
                        .arg(&dead_entries[1..])
                        .query_async::<()>(&mut conn)
                        .await
                        .map_err(QueueError::redis(DOING))?;
                }
                Ok(())
            }
            "not_failed" => {
                let state: String = value_at(DOING, &rest, 0)?;
                Err(QueueError::Conflict(format!(
                    "job {id} is {state}, not failed: only failed jobs can be retried"
                )))
            }
            "unknown" => Err(QueueError::UnknownJob {
                id: id.clone(),
                key: keys.job(id),
            }),
            other => Err(QueueError::protocol(DOING, other)),
        }
    }

    /// Retries every failed job in the dead stream. Returns the ids retried and the dead letters that
    /// could not be (malformed entries, expired records), with the reason.
    pub async fn retry_all_dead(
        &self,
    ) -> Result<(Vec<JobId>, Vec<(DeadLetter, String)>), QueueError> {
        let mut retried = Vec::new();
        let mut skipped = Vec::new();
        for dead in self.dead_letters().await? {
            let Some(id) = dead.job.clone() else {
                skipped.push((dead, "malformed entry: no job to retry".to_string()));
                continue;
            };
            if retried.contains(&id) {
                continue;
            }
            match self.retry(&id).await {
                Ok(()) => retried.push(id),
                Err(e @ (QueueError::UnknownJob { .. } | QueueError::Conflict(_))) => {
                    skipped.push((dead, e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok((retried, skipped))
    }

    /// Deletes every dead letter. Returns how many there were.
    pub async fn purge_dead(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn();
        let (len,): (u64,) = redis::pipe()
            .atomic()
            .cmd("XLEN")
            .arg(self.keys().dead())
            .cmd("DEL")
            .arg(self.keys().dead())
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis("purging the dead stream"))?;
        Ok(len)
    }

    /// Fails a waiting job that no live worker can run, with `message` as its error.
    pub(crate) async fn fail_unrunnable(&self, id: &str, message: &str) -> Result<(), QueueError> {
        let keys = self.keys();
        let _: redis::Value = self
            .inner
            .scripts
            .fail_unrunnable
            .key(format!("{}{id}", keys.job_prefix()))
            .key(keys.events())
            .key(keys.entries())
            .key(keys.dead())
            .arg(id)
            .arg(message)
            .arg(self.retention())
            .arg(self.settings().events_maxlen)
            .arg(CONSUMER_GROUP)
            .invoke_async(&mut self.conn())
            .await
            .map_err(QueueError::redis("failing a job no worker can run"))?;
        Ok(())
    }

    /// Trims acknowledged entries from the job streams (never a pending or undelivered one) and removes
    /// consumers that hold nothing and have been idle for `consumer_idle`. Returns (trimmed, removed).
    pub async fn maintain(
        &self,
        consumer_idle: std::time::Duration,
    ) -> Result<(u64, u64), QueueError> {
        let mut total = (0, 0);
        for stream in self.keys().streams() {
            let (trimmed, removed): (u64, u64) = self
                .inner
                .scripts
                .maintain
                .key(stream)
                .arg(CONSUMER_GROUP)
                .arg(consumer_idle.as_millis() as u64)
                .invoke_async(&mut self.conn())
                .await
                .map_err(QueueError::redis("trimming the job streams"))?;
            total.0 += trimmed;
            total.1 += removed;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_memory_reads_the_exact_fields_of_info_memory() {
        let info = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n\
                    used_memory_rss:9999999\r\nmaxmemory:4194304\r\nmaxmemory_human:4.00M\r\n\
                    maxmemory_policy:noeviction\r\n";
        let memory = RedisMemory::from_info(info);
        assert_eq!(memory.used_bytes, 1_048_576);
        assert_eq!(memory.max_bytes, 4_194_304);
        assert_eq!(memory.used_share(), Some(0.25));
        assert_eq!(RedisMemory::from_info("maxmemory:0\r\n").used_share(), None);
    }

    #[test]
    fn the_text_search_reads_json_values_not_keys_or_escapes() {
        let spec = r#"{"song":{"caption":"Rain \"quoted\"","lyrics":"[verse]\nline two"}}"#;
        assert!(text_contains(spec, "\"quoted\""));
        assert!(
            text_contains(spec, "]\nline"),
            "a newline in the lyrics matches a typed one"
        );
        assert!(!text_contains(spec, "caption"), "keys are not text");
        assert!(text_contains("CUDA out of memory", "out of"));
    }
}
