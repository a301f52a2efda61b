//! Claiming jobs: one script call per attempt, and a per-process watcher that wakes idle consumers when
//! a job stream grows, so a hundred idle consumers cost one blocking connection, not a hundred.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::lease::{ClaimInfo, ClaimedJob, EntryRef};
use super::{Inner, Queue, QueueError, XReadReply, split_reply, value_at};
use crate::job::{DecodeError, JobSpec};
use crate::keys::CONSUMER_GROUP;

/// Retries promoted from the delayed set per claim call.
const PROMOTE_LIMIT: u32 = 20;

/// A named member of the `workers` consumer group.
#[derive(Debug, Clone)]
pub struct Consumer {
    queue: Queue,
    name: String,
    /// The longest track this consumer's worker accepts; longer jobs are handed back.
    max_duration: Duration,
}

/// What one claim attempt found.
enum Attempt {
    Job(Box<ClaimedJob>),
    Malformed {
        stream: String,
        entry: String,
        raw: String,
        job: String,
        reason: String,
    },
    Empty {
        next_due_ms: Option<u64>,
        /// Jobs handed back because they are longer than this consumer accepts: (id, duration ms).
        too_long: Vec<(String, u64)>,
    },
}

impl Queue {
    /// A consumer named `name` (unique per worker process and slot, e.g. `host-1234-0`).
    pub fn consumer(&self, name: impl Into<String>) -> Consumer {
        Consumer {
            queue: self.clone(),
            name: name.into(),
            max_duration: Duration::from_secs_f32(crate::job::MAX_DURATION_S),
        }
    }

    pub(super) async fn new_entries(&self) -> Result<&NewEntries, QueueError> {
        self.inner
            .waker
            .get_or_try_init(|| NewEntries::start(self))
            .await
    }
}

impl Consumer {
    /// Accept only jobs whose track is at most `max` long; longer ones are handed back at once for a
    /// worker that accepts them, and failed when no live worker does.
    pub fn with_max_duration(mut self, max: Duration) -> Self {
        self.max_duration = max;
        self
    }

    /// The longest track this consumer accepts.
    pub fn max_duration(&self) -> Duration {
        self.max_duration
    }

    /// The consumer's name in the group.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queue it reads.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Waits for the next job and claims it: stalled jobs of dead workers first, then new jobs, most
    /// urgent stream first; due retries are moved back into their streams on the way. Malformed entries
    /// are dead-lettered with the reason and skipped. Returns `None` once `shutdown` fires.
    pub async fn claim_next(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<ClaimedJob>, QueueError> {
        let wake = self.queue.new_entries().await?.notify.clone();
        loop {
            if shutdown.is_cancelled() {
                return Ok(None);
            }
            // Register for a wake-up before looking, so an entry added in between is not missed.
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_due_ms = match self.try_claim().await? {
                Some(Ok(job)) => return Ok(Some(job)),
                Some(Err(next_due_ms)) => next_due_ms,
                None => continue,
            };
            let mut wait = self.queue.settings().block;
            if let Some(due) = next_due_ms {
                let until_due = Duration::from_millis(due.saturating_sub(now_ms()));
                wait = wait.min(until_due.max(Duration::from_millis(5)));
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return Ok(None),
            }
        }
    }

    /// One claim attempt without waiting: `Some(Ok(job))`, `Some(Err(next retry due, ms))` when there is
    /// nothing to do, `None` when a malformed entry was dead-lettered (look again).
    pub async fn claim_now(&self) -> Result<Option<Result<ClaimedJob, Option<u64>>>, QueueError> {
        self.try_claim().await
    }

    async fn try_claim(&self) -> Result<Option<Result<ClaimedJob, Option<u64>>>, QueueError> {
        match self.attempt().await? {
            Attempt::Job(job) => Ok(Some(Ok(*job))),
            Attempt::Empty {
                next_due_ms,
                too_long,
            } => {
                if !too_long.is_empty() {
                    self.fail_jobs_nobody_can_run(&too_long).await?;
                }
                Ok(Some(Err(next_due_ms)))
            }
            Attempt::Malformed {
                stream,
                entry,
                raw,
                job,
                reason,
            } => {
                warn!(consumer = %self.name, %stream, %entry, job = %job, %reason, "dead-lettering a malformed entry");
                self.dead_letter_malformed(&stream, &entry, &raw, &job, &reason)
                    .await?;
                Ok(None)
            }
        }
    }

    async fn attempt(&self) -> Result<Attempt, QueueError> {
        const DOING: &str = "claiming a job";
        let keys = self.queue.keys();
        let settings = self.queue.settings();
        let mut invocation = self.queue.inner.scripts.claim.key(keys.delayed());
        invocation
            .key(keys.events())
            .key(keys.entries())
            .key(keys.dead());
        for stream in keys.streams() {
            invocation.key(stream);
        }
        let reply: redis::Value = invocation
            .arg(CONSUMER_GROUP)
            .arg(&self.name)
            .arg(settings.reclaim_after.as_millis() as u64)
            .arg(keys.job_prefix())
            .arg(settings.events_maxlen)
            .arg(PROMOTE_LIMIT)
            .arg(settings.max_attempts)
            .arg(self.queue.retention())
            .arg(self.max_duration.as_millis() as u64)
            .arg(handback_idle(settings).as_millis() as u64)
            .invoke_async(&mut self.queue.conn())
            .await
            .map_err(QueueError::redis(DOING))?;
        let (tag, rest) = split_reply(DOING, reply)?;
        match tag.as_str() {
            "empty" => {
                let due: i64 = value_at(DOING, &rest, 0)?;
                let mut too_long = Vec::new();
                for pair in rest[1..].chunks(2) {
                    too_long.push((value_at(DOING, pair, 0)?, value_at(DOING, pair, 1)?));
                }
                Ok(Attempt::Empty {
                    next_due_ms: u64::try_from(due).ok(),
                    too_long,
                })
            }
            "malformed" => Ok(Attempt::Malformed {
                stream: value_at(DOING, &rest, 0)?,
                entry: value_at(DOING, &rest, 1)?,
                raw: value_at(DOING, &rest, 2)?,
                job: value_at(DOING, &rest, 3)?,
                reason: "the entry has no usable \"job\" field, or no spec anywhere".into(),
            }),
            "job" => {
                let stream: String = value_at(DOING, &rest, 0)?;
                let entry: String = value_at(DOING, &rest, 1)?;
                let job: String = value_at(DOING, &rest, 2)?;
                let raw_spec: String = value_at(DOING, &rest, 3)?;
                let spec = match JobSpec::decode(&raw_spec).and_then(|spec| {
                    if spec.id.as_str() == job {
                        Ok(spec)
                    } else {
                        Err(DecodeError::Invalid {
                            field: "id",
                            reason: format!(
                                "spec id {} differs from the entry's job {job}",
                                spec.id
                            ),
                        })
                    }
                }) {
                    Ok(spec) => spec,
                    Err(e) => {
                        return Ok(Attempt::Malformed {
                            stream,
                            entry,
                            raw: raw_spec,
                            job,
                            reason: e.to_string(),
                        });
                    }
                };
                let claimed = ClaimedJob::start(
                    self.queue.clone(),
                    self.name.clone(),
                    EntryRef { stream, id: entry },
                    spec,
                    ClaimInfo {
                        attempt: value_at(DOING, &rest, 4)?,
                        max_attempts: value_at(DOING, &rest, 5)?,
                        queued_at_ms: value_at(DOING, &rest, 6)?,
                        reclaimed: value_at::<i64>(DOING, &rest, 7)? == 1,
                    },
                );
                debug!(consumer = %self.name, job_id = %claimed.spec().id, attempt = claimed.attempt(), "claimed");
                Ok(Attempt::Job(Box::new(claimed)))
            }
            other => Err(QueueError::protocol(DOING, other)),
        }
    }

    /// Fails the handed-back jobs that no live worker accepts, naming the largest duration on offer.
    async fn fail_jobs_nobody_can_run(&self, too_long: &[(String, u64)]) -> Result<(), QueueError> {
        let on_offer = self
            .queue
            .live_workers()
            .await?
            .iter()
            .map(|w| Duration::from_secs_f32(w.max_duration_s.max(0.0)))
            .fold(self.max_duration, Duration::max);
        for (job, duration_ms) in too_long {
            let duration = Duration::from_millis(*duration_ms);
            if duration <= on_offer {
                debug!(consumer = %self.name, job_id = %job, "handed back a job too long for this worker");
                continue;
            }
            let message = format!(
                "the track is {:.0} s long but the largest duration any live worker accepts is {:.0} s",
                duration.as_secs_f32(),
                on_offer.as_secs_f32()
            );
            warn!(job_id = %job, %message, "failing a job no worker can run");
            self.queue.fail_unrunnable(job, &message).await?;
        }
        Ok(())
    }

    async fn dead_letter_malformed(
        &self,
        stream: &str,
        entry: &str,
        raw: &str,
        job: &str,
        reason: &str,
    ) -> Result<(), QueueError> {
        let keys = self.queue.keys();
        let settings = self.queue.settings();
        let _: redis::Value = self
            .queue
            .inner
            .scripts
            .dead_letter_malformed
            .key(stream)
            .key(keys.dead())
            .key(keys.entries())
            .key(keys.events())
            .arg(CONSUMER_GROUP)
            .arg(entry)
            .arg(reason)
            .arg(raw)
            .arg(job)
            .arg(keys.job_prefix())
            .arg(self.queue.retention())
            .arg(settings.events_maxlen)
            .invoke_async(&mut self.queue.conn())
            .await
            .map_err(QueueError::redis("dead-lettering a malformed entry"))?;
        Ok(())
    }
}

/// Wakes this process's idle consumers when an entry is added to a job stream.
pub(crate) struct NewEntries {
    notify: Arc<Notify>,
}

impl NewEntries {
    async fn start(queue: &Queue) -> Result<Self, QueueError> {
        let notify = Arc::new(Notify::new());
        let mut last_ids = Vec::new();
        for stream in queue.keys().streams() {
            let id = queue.newest_entry_id(&stream).await?;
            last_ids.push((stream, id));
        }
        tokio::spawn(watch_streams(
            Arc::downgrade(&queue.inner),
            last_ids,
            notify.clone(),
        ));
        Ok(Self { notify })
    }
}

async fn watch_streams(
    queue: Weak<Inner>,
    mut last_ids: Vec<(String, String)>,
    notify: Arc<Notify>,
) {
    loop {
        let Some(inner) = queue.upgrade() else { return };
        let queue = Queue { inner };
        let block_ms = queue.settings().block.as_millis() as u64;
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS");
        for (stream, _) in &last_ids {
            cmd.arg(stream);
        }
        for (_, id) in &last_ids {
            cmd.arg(id);
        }
        let read: Result<XReadReply<redis::Value>, QueueError> = async {
            let mut conn = queue.blocking_conn().await?;
            cmd.query_async(&mut conn)
                .await
                .map_err(QueueError::redis("watching the job streams"))
        }
        .await;
        drop(queue);
        match read {
            Ok(Some(streams)) => {
                for (stream, entries) in streams {
                    if let (Some((id, _)), Some(slot)) = (
                        entries.last(),
                        last_ids.iter_mut().find(|(s, _)| *s == stream),
                    ) {
                        slot.1.clone_from(id);
                    }
                }
                notify.notify_waiters();
            }
            Ok(None) => {}
            Err(e) => {
                warn!(error = %e, "job stream watcher: read failed, retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The idle time given to a handed-back entry: far past the reclaim threshold, so any worker's next
/// claim takes it over.
pub(crate) fn handback_idle(settings: &super::QueueSettings) -> Duration {
    (settings.reclaim_after * 10).max(Duration::from_secs(3600))
}

/// This host's wall-clock time in ms since the Unix epoch (the Lua scripts use the Redis server's clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
