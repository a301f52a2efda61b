//! A claimed job: its lease, its progress reports and the ways it can end.
//!
//! The lease is kept by a tokio task that renews the claim every heartbeat. Inference runs on blocking
//! threads (`spawn_blocking`), so however long a GPU call blocks, the runtime's worker threads stay free
//! and the heartbeat keeps going. When the task learns that the job was cancelled, or that another worker
//! took the entry over (the lease was lost), it fires the job's cancellation token.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Queue, QueueError, split_reply, value_at};
use crate::job::{JobSpec, JobState, Progress, ResultMeta};
use crate::keys::CONSUMER_GROUP;

/// The stream entry a claim holds.
#[derive(Debug, Clone)]
pub(crate) struct EntryRef {
    pub stream: String,
    pub id: String,
}

/// Facts the claim script returned alongside the spec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimInfo {
    pub attempt: u32,
    pub max_attempts: u32,
    pub queued_at_ms: u64,
    pub reclaimed: bool,
}

/// Why an attempt failed, and whether trying again could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    /// What went wrong, in words an operator can act on.
    pub message: String,
    /// Bad input that no retry can fix: dead-letter at once.
    pub permanent: bool,
}

impl JobFailure {
    /// A failure worth retrying (a crash, a timeout, out of memory).
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure no retry can fix (the job asks for something impossible).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }
}

/// How finishing a claimed job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishOutcome {
    /// The result is stored and the job succeeded.
    Succeeded,
    /// The attempt failed; the job waits in the delayed set until `due_ms`.
    Retrying {
        /// When it goes back into its stream (server time, ms since the epoch).
        due_ms: u64,
        /// The attempt that failed.
        attempt: u32,
        /// Attempts allowed.
        max_attempts: u32,
    },
    /// The job failed for good and is in the dead stream.
    Failed,
    /// The job was cancelled; any result was discarded.
    Cancelled,
    /// Another attempt had already finished the job in this state; nothing was changed.
    Duplicate(JobState),
    /// Handed back for immediate reclaim.
    Released,
    /// Another worker holds the entry now; nothing was changed.
    Lost,
    /// The job's record no longer exists (expired or purged).
    Gone,
}

/// Shared between a claimed job, its lease task and the code running it.
#[derive(Debug)]
struct ControlState {
    queue: Queue,
    job_key: String,
    job_id: String,
    consumer: String,
    cancel: CancellationToken,
    lost: AtomicBool,
}

/// A cheap handle for the code running a job: report progress, learn about cancellation.
#[derive(Debug, Clone)]
pub struct JobControl {
    state: Arc<ControlState>,
}

impl JobControl {
    /// Fires when the job is cancelled or its lease is lost; stop working when it does.
    pub fn token(&self) -> CancellationToken {
        self.state.cancel.clone()
    }

    /// Whether the job should stop (cancelled, or its lease lost).
    pub fn should_stop(&self) -> bool {
        self.state.cancel.is_cancelled()
    }

    /// Whether another worker took the job over.
    pub fn lease_lost(&self) -> bool {
        self.state.lost.load(Ordering::Relaxed)
    }

    /// Records progress and publishes a `progress` event. The same round trip reads the job's cancel
    /// flag, so a job that reports between diffusion steps sees a cancel at the next step. Returns
    /// whether the job should stop.
    pub async fn report(&self, progress: Progress) -> Result<bool, QueueError> {
        const DOING: &str = "reporting progress";
        let s = &self.state;
        let keys = s.queue.keys();
        let json = serde_json::to_string(&progress)
            .map_err(|e| QueueError::protocol(DOING, e.to_string()))?;
        let reply: redis::Value = s
            .queue
            .inner
            .scripts
            .progress
            .key(&s.job_key)
            .key(keys.events())
            .arg(&s.job_id)
            .arg(&s.consumer)
            .arg(json)
            .arg(s.queue.settings().events_maxlen)
            .invoke_async(&mut s.queue.conn())
            .await
            .map_err(QueueError::redis(DOING))?;
        let (tag, rest) = split_reply(DOING, reply)?;
        self.apply(DOING, &tag, &rest)?;
        Ok(self.should_stop())
    }

    /// Applies a `{'ok', cancel flag}` or `{'lost'}` reply.
    fn apply(
        &self,
        doing: &'static str,
        tag: &str,
        rest: &[redis::Value],
    ) -> Result<(), QueueError> {
        match tag {
            "ok" => {
                let flag: String = value_at(doing, rest, 0)?;
                if flag == "1" && !self.state.cancel.is_cancelled() {
                    info!(job_id = %self.state.job_id, "cancel requested; stopping at the next check");
                    self.state.cancel.cancel();
                }
                Ok(())
            }
            "lost" => {
                self.mark_lost();
                Ok(())
            }
            other => Err(QueueError::protocol(doing, other)),
        }
    }

    fn mark_lost(&self) {
        if !self.state.lost.swap(true, Ordering::Relaxed) {
            warn!(job_id = %self.state.job_id, consumer = %self.state.consumer, "lease lost: another worker holds this job now");
        }
        self.state.cancel.cancel();
    }
}

/// A job this consumer holds. Finish it with [`complete`](Self::complete), [`fail`](Self::fail),
/// [`cancelled`](Self::cancelled) or [`release`](Self::release); dropping it without finishing stops the
/// lease, and another worker takes the job over once `reclaim_after` has passed (as after a crash).
#[derive(Debug)]
pub struct ClaimedJob {
    spec: JobSpec,
    info: ClaimInfo,
    entry: EntryRef,
    claimed_at: Instant,
    control: JobControl,
    /// Stops the lease task.
    stop_lease: CancellationToken,
    finished: bool,
}

impl ClaimedJob {
    pub(crate) fn start(
        queue: Queue,
        consumer: String,
        entry: EntryRef,
        spec: JobSpec,
        info: ClaimInfo,
    ) -> Self {
        let control = JobControl {
            state: Arc::new(ControlState {
                job_key: queue.keys().job(&spec.id),
                job_id: spec.id.to_string(),
                consumer,
                queue,
                cancel: CancellationToken::new(),
                lost: AtomicBool::new(false),
            }),
        };
        let stop_lease = CancellationToken::new();
        tokio::spawn(keep_lease(
            control.clone(),
            entry.clone(),
            stop_lease.clone(),
        ));
        Self {
            spec,
            info,
            entry,
            claimed_at: Instant::now(),
            control,
            stop_lease,
            finished: false,
        }
    }

    /// The job.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.info.attempt
    }

    /// Attempts allowed before the job is dead-lettered.
    pub fn max_attempts(&self) -> u32 {
        self.info.max_attempts
    }

    /// Whether this claim took the job over from a worker that stopped heartbeating.
    pub fn reclaimed(&self) -> bool {
        self.info.reclaimed
    }

    /// When the job (or this attempt's retry) entered its stream, ms since the epoch (server clock).
    pub fn queued_at_ms(&self) -> u64 {
        self.info.queued_at_ms
    }

    /// When this consumer claimed it.
    pub fn claimed_at(&self) -> Instant {
        self.claimed_at
    }

    /// The consumer holding it.
    pub fn consumer(&self) -> &str {
        &self.control.state.consumer
    }

    /// The handle for progress and cancellation.
    pub fn control(&self) -> JobControl {
        self.control.clone()
    }

    /// Stores the result and marks the job succeeded, atomically with the acknowledgement. If the job
    /// was cancelled meanwhile, the result is discarded and the job ends cancelled.
    pub async fn complete(
        mut self,
        audio: &[u8],
        meta: &ResultMeta,
    ) -> Result<FinishOutcome, QueueError> {
        const DOING: &str = "completing a job";
        self.finish_lease();
        let queue = &self.control.state.queue;
        let keys = queue.keys();
        let settings = queue.settings();
        let meta =
            serde_json::to_string(meta).map_err(|e| QueueError::protocol(DOING, e.to_string()))?;
        // A finished render is worth keeping: while Redis is briefly out of reach (a restart, a
        // Sentinel failover) the completion is tried again for up to the reclaim time, instead of
        // leaving the job to be generated a second time. The script is safe to repeat: a repeat after
        // a first run whose reply was lost answers `duplicate`.
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        let reply = loop {
            let attempt: Result<redis::Value, QueueError> = queue
                .inner
                .scripts
                .complete
                .key(&self.entry.stream)
                .key(&self.control.state.job_key)
                .key(keys.result(&self.spec.id))
                .key(keys.events())
                .key(keys.entries())
                .key(keys.results())
                .arg(CONSUMER_GROUP)
                .arg(self.consumer())
                .arg(&self.entry.id)
                .arg(self.spec.id.as_str())
                .arg(audio)
                .arg(settings.result_ttl.as_secs().max(1))
                .arg(queue.retention())
                .arg(&meta)
                .arg(settings.events_maxlen)
                .invoke_async(&mut queue.conn())
                .await
                .map_err(QueueError::redis(DOING));
            match attempt {
                Ok(reply) => break reply,
                Err(e)
                    if e.is_transient() && started.elapsed() + delay < settings.reclaim_after =>
                {
                    warn!(job_id = %self.spec.id, error = %e, retry_in_ms = delay.as_millis() as u64, "could not record the completion yet; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        };
        let (tag, rest) = split_reply(DOING, reply)?;
        match tag.as_str() {
            "ok" => Ok(FinishOutcome::Succeeded),
            "cancelled" => Ok(FinishOutcome::Cancelled),
            "duplicate" => duplicate(DOING, &rest),
            "gone" => Ok(FinishOutcome::Gone),
            other => Err(QueueError::protocol(DOING, other)),
        }
    }

    /// Records a failed attempt: a transient failure is retried after a backoff until `max_attempts`,
    /// a permanent one (or the last attempt) goes to the dead stream with its error.
    pub async fn fail(mut self, failure: JobFailure) -> Result<FinishOutcome, QueueError> {
        const DOING: &str = "failing a job";
        self.finish_lease();
        let queue = &self.control.state.queue;
        let keys = queue.keys();
        let settings = queue.settings();
        let backoff = settings.backoff(self.info.attempt);
        let reply: redis::Value = queue
            .inner
            .scripts
            .fail
            .key(&self.entry.stream)
            .key(&self.control.state.job_key)
            .key(keys.events())
            .key(keys.entries())
            .key(keys.delayed())
            .key(keys.dead())
            .arg(CONSUMER_GROUP)
            .arg(self.consumer())
            .arg(&self.entry.id)
            .arg(self.spec.id.as_str())
            .arg(&failure.message)
            .arg(if failure.permanent { "1" } else { "0" })
            .arg(backoff.as_millis() as u64)
            .arg(queue.retention())
            .arg(settings.events_maxlen)
            .invoke_async(&mut queue.conn())
            .await
            .map_err(QueueError::redis(DOING))?;
        let (tag, rest) = split_reply(DOING, reply)?;
        match tag.as_str() {
            "retrying" => Ok(FinishOutcome::Retrying {
                due_ms: value_at(DOING, &rest, 0)?,
                attempt: value_at(DOING, &rest, 1)?,
                max_attempts: value_at(DOING, &rest, 2)?,
            }),
            "failed" => Ok(FinishOutcome::Failed),
            "cancelled" => Ok(FinishOutcome::Cancelled),
            "duplicate" => duplicate(DOING, &rest),
            "gone" => Ok(FinishOutcome::Gone),
            other => Err(QueueError::protocol(DOING, other)),
        }
    }

    /// Acknowledges a cancel: the worker stopped, the job ends cancelled.
    pub async fn cancelled(mut self, note: &str) -> Result<FinishOutcome, QueueError> {
        const DOING: &str = "acknowledging a cancel";
        self.finish_lease();
        let queue = &self.control.state.queue;
        let keys = queue.keys();
        let reply: redis::Value = queue
            .inner
            .scripts
            .cancelled
            .key(&self.entry.stream)
            .key(&self.control.state.job_key)
            .key(keys.events())
            .key(keys.entries())
            .arg(CONSUMER_GROUP)
            .arg(&self.entry.id)
            .arg(self.spec.id.as_str())
            .arg(queue.retention())
            .arg(queue.settings().events_maxlen)
            .arg(note)
            .invoke_async(&mut queue.conn())
            .await
            .map_err(QueueError::redis(DOING))?;
        let (tag, rest) = split_reply(DOING, reply)?;
        match tag.as_str() {
            "cancelled" => Ok(FinishOutcome::Cancelled),
            "duplicate" => duplicate(DOING, &rest),
            "gone" => Ok(FinishOutcome::Gone),
            other => Err(QueueError::protocol(DOING, other)),
        }
    }

    /// Hands the job back unfinished (graceful shutdown, or a job this worker cannot take): the attempt
    /// is not counted and the next claim by any worker takes it at once.
    pub async fn release(mut self, note: &str) -> Result<FinishOutcome, QueueError> {
        const DOING: &str = "releasing a job";
        self.finish_lease();
        let queue = &self.control.state.queue;
        let keys = queue.keys();
        let idle = super::consumer::handback_idle(queue.settings());
        let reply: redis::Value = queue
            .inner
            .scripts
            .release
            .key(&self.entry.stream)
            .key(&self.control.state.job_key)
            .key(keys.events())
            .arg(CONSUMER_GROUP)
            .arg(self.consumer())
            .arg(&self.entry.id)
            .arg(self.spec.id.as_str())
            .arg(idle.as_millis() as u64)
            .arg(queue.settings().events_maxlen)
            .arg(note)
            .invoke_async(&mut queue.conn())
            .await
            .map_err(QueueError::redis(DOING))?;
        let (tag, _) = split_reply(DOING, reply)?;
        match tag.as_str() {
            "ok" => Ok(FinishOutcome::Released),
            "lost" => Ok(FinishOutcome::Lost),
            other => Err(QueueError::protocol(DOING, other)),
        }
    }

    fn finish_lease(&mut self) {
        self.finished = true;
        self.stop_lease.cancel();
    }
}

impl Drop for ClaimedJob {
    fn drop(&mut self) {
        self.stop_lease.cancel();
        if !self.finished {
            warn!(
                job_id = %self.spec.id,
                consumer = %self.consumer(),
                "claimed job dropped unfinished: another worker will take it over after the reclaim time"
            );
        }
    }
}

fn duplicate(doing: &'static str, rest: &[redis::Value]) -> Result<FinishOutcome, QueueError> {
    let state: String = value_at(doing, rest, 0)?;
    let state = state
        .parse()
        .map_err(|e: String| QueueError::protocol(doing, e))?;
    Ok(FinishOutcome::Duplicate(state))
}

/// Renews the lease every heartbeat until stopped. Gives up (and marks the lease lost) when Redis has
/// been unreachable for longer than the reclaim time, since another worker may own the job by then.
async fn keep_lease(control: JobControl, entry: EntryRef, stop: CancellationToken) {
    const DOING: &str = "renewing a lease";
    let queue = control.state.queue.clone();
    let heartbeat = queue.settings().heartbeat;
    let reclaim_after = queue.settings().reclaim_after;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_renewed = Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let reply: Result<redis::Value, QueueError> = queue
            .inner
            .scripts
            .refresh
            .key(&entry.stream)
            .key(&control.state.job_key)
            .arg(CONSUMER_GROUP)
            .arg(&control.state.consumer)
            .arg(&entry.id)
            .invoke_async(&mut queue.conn())
            .await
            .map_err(QueueError::redis(DOING));
        let applied = reply
            .and_then(|reply| split_reply(DOING, reply))
            .and_then(|(tag, rest)| control.apply(DOING, &tag, &rest));
        match applied {
            Ok(()) if control.lease_lost() => return,
            Ok(()) => last_renewed = Instant::now(),
            Err(e) => {
                warn!(job_id = %control.state.job_id, error = %e, "could not renew the lease");
                if last_renewed.elapsed() > reclaim_after {
                    control.mark_lost();
                    return;
                }
            }
        }
    }
}
