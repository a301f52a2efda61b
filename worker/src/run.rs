//! `radio-worker run`: the process operators scale horizontally.
//!
//! It registers itself in Redis, claims jobs (one slot per concurrent job, each with its own renderer),
//! runs them on blocking threads, stores results, publishes progress, honours cancellation, and on
//! SIGTERM stops claiming, gives the running job a grace period and otherwise hands it back for
//! immediate reclaim. Several workers against one Redis share the work with no coordination beyond it.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use radio_shared::job::{JobSpec, ResultMeta, Stage};
use radio_shared::queue::{
    ClaimedJob, Consumer, FinishOutcome, JobControl, JobFailure, Queue, WorkerInfo,
};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::metrics::WorkerMetrics;
use crate::vram::{GpuMonitor, PeakSampler, StageTracker};

/// Turns a job into encoded audio. One instance per slot; it runs on a blocking thread.
pub trait Render: Send + 'static {
    /// Renders `spec`, reporting progress and checking for a stop through `ctx`.
    fn render(&mut self, spec: &JobSpec, ctx: &RenderContext) -> Result<Rendered, RenderError>;

    /// Switches to the conservative plan after CUDA ran out of memory. Returns false when there is
    /// nothing more conservative to switch to.
    fn fall_back(&mut self) -> bool;
}

/// A rendered job.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The encoded audio, in the job's format.
    pub audio: Vec<u8>,
    /// What to record about the track; the loop fills in the worker, timings and peak memory.
    pub meta: ResultMeta,
}

/// Why a render stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    /// The job was cancelled, its lease was lost, or the worker is shutting down.
    #[error("stopped before finishing")]
    Stopped,
    /// CUDA ran out of memory (worth one retry on a conservative plan).
    #[error("CUDA ran out of memory: {0}")]
    OutOfMemory(String),
    /// The job asks for something no retry can fix.
    #[error("{0}")]
    Permanent(String),
    /// Something that may work on another attempt.
    #[error("{0}")]
    Transient(String),
}

/// What a render sees of the outside world: progress out, stop requests in, stage timings.
#[derive(Debug)]
pub struct RenderContext {
    control: JobControl,
    runtime: Handle,
    shutdown_stop: Arc<AtomicBool>,
    stages: StageTracker,
    current: Mutex<Option<(Stage, Instant)>>,
    timings: Mutex<BTreeMap<String, f64>>,
}

impl RenderContext {
    /// Whether the render should stop now (cancelled, lease lost, or the shutdown grace is over).
    pub fn should_stop(&self) -> bool {
        self.control.should_stop() || self.shutdown_stop.load(Ordering::Relaxed)
    }

    /// Marks the start of `stage` (for per-stage timings and peak memory).
    pub fn enter(&self, stage: Stage) {
        let now = Instant::now();
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((previous, since)) = current.replace((stage, now)) {
            self.add_timing(previous, now - since);
        }
        self.stages.enter(stage);
    }

    /// Reports progress (fraction of the whole job) and returns whether to stop. Publishing waits for
    /// Redis, so a cancel is seen at the next report; a failed publish is logged, not fatal.
    pub fn progress(&self, stage: Stage, fraction: f32) -> ControlFlow<()> {
        if self.stages.current() != Some(stage) {
            self.enter(stage);
        }
        let report = radio_shared::job::Progress {
            stage,
            fraction: fraction.clamp(0.0, 1.0),
        };
        if let Err(e) = self.runtime.block_on(self.control.report(report)) {
            warn!(error = %e, "could not publish progress");
        }
        if self.should_stop() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn add_timing(&self, stage: Stage, took: Duration) {
        let mut timings = self.timings.lock().unwrap_or_else(|p| p.into_inner());
        *timings.entry(stage.as_str().to_string()).or_default() += took.as_secs_f64();
    }

    /// Closes the running stage and returns seconds per stage.
    fn finish(&self) -> BTreeMap<String, f64> {
        if let Some((stage, since)) = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            self.add_timing(stage, since.elapsed());
        }
        self.timings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What the worker needs to run.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Registry id and consumer-name prefix.
    pub worker_id: String,
    /// How long a running job may still take after SIGTERM before it is handed back.
    pub shutdown_grace: Duration,
    /// The registration (plan, GPU, limits) refreshed every heartbeat.
    pub info: WorkerInfo,
}

/// Shared by every slot and the background tasks.
struct Shared {
    queue: Queue,
    settings: RunSettings,
    metrics: WorkerMetrics,
    gpu: Option<Arc<GpuMonitor>>,
    device_label: String,
    busy_with: Mutex<Vec<String>>,
    jobs_done: AtomicU64,
    healthy: Arc<AtomicBool>,
}

/// Runs the worker until `shutdown` fires and every slot has finished or handed back its job.
pub async fn run(
    queue: Queue,
    settings: RunSettings,
    renderers: Vec<Box<dyn Render>>,
    metrics: WorkerMetrics,
    gpu: Option<Arc<GpuMonitor>>,
    healthy: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let device_label = gpu
        .as_ref()
        .map_or_else(|| "cpu".to_string(), |g| g.info().name.clone());
    let shared = Arc::new(Shared {
        queue,
        settings,
        metrics,
        gpu,
        device_label,
        busy_with: Mutex::new(Vec::new()),
        jobs_done: AtomicU64::new(0),
        healthy,
    });
    shared
        .register()
        .await
        .context("registering the worker in Redis")?;
    shared.healthy.store(true, Ordering::Relaxed);
    info!(worker = %shared.settings.worker_id, slots = renderers.len(), "worker ready, claiming jobs");

    let background = CancellationToken::new();
    let tasks = [
        tokio::spawn(heartbeat(shared.clone(), background.clone())),
        tokio::spawn(maintenance(shared.clone(), background.clone())),
        tokio::spawn(gpu_gauges(shared.clone(), background.clone())),
    ];
    let max_duration = Duration::from_secs_f32(shared.settings.info.max_duration_s.max(1.0));
    let slots: Vec<_> = renderers
        .into_iter()
        .enumerate()
        .map(|(n, renderer)| {
            let consumer = shared
                .queue
                .consumer(format!("{}-{n}", shared.settings.worker_id))
                .with_max_duration(max_duration);
            let span = info_span!("slot", worker = %shared.settings.worker_id, slot = n);
            tokio::spawn(
                slot_loop(shared.clone(), consumer, renderer, shutdown.clone()).instrument(span),
            )
        })
        .collect();
    let mut first_error = None;
    for slot in slots {
        match slot.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!(error = %format!("{e:#}"), "a slot stopped with an error");
                first_error.get_or_insert(e);
            }
            Err(e) => {
                error!(error = %e, "a slot panicked");
                first_error.get_or_insert(anyhow::anyhow!("a slot panicked: {e}"));
            }
        }
    }
    shared.healthy.store(false, Ordering::Relaxed);
    background.cancel();
    for task in tasks {
        let _ = task.await;
    }
    if let Err(e) = shared
        .queue
        .deregister_worker(&shared.settings.worker_id)
        .await
    {
        warn!(error = %e, "could not deregister the worker; its registration expires by itself");
    }
    info!(worker = %shared.settings.worker_id, jobs = shared.jobs_done.load(Ordering::Relaxed), "worker stopped");
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl Shared {
    async fn register(&self) -> Result<(), radio_shared::queue::QueueError> {
        let mut info = self.settings.info.clone();
        info.busy_with = self
            .busy_with
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .cloned();
        info.jobs_done = self.jobs_done.load(Ordering::Relaxed);
        let ttl = self.queue.settings().heartbeat * 3;
        self.queue.register_worker(&info, ttl).await
    }

    fn set_busy(&self, job: Option<&str>, add: bool) {
        let mut busy = self.busy_with.lock().unwrap_or_else(|p| p.into_inner());
        match (job, add) {
            (Some(id), true) => busy.push(id.to_string()),
            (Some(id), false) => busy.retain(|b| b != id),
            (None, _) => {}
        }
        self.metrics.busy.set(i64::from(!busy.is_empty()));
    }
}

/// Claims and runs jobs until shutdown.
async fn slot_loop(
    shared: Arc<Shared>,
    consumer: Consumer,
    renderer: Box<dyn Render>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut renderer = Some(renderer);
    loop {
        let job = match consumer.claim_next(&shutdown).await {
            Ok(Some(job)) => job,
            Ok(None) => return Ok(()),
            Err(e) => {
                warn!(error = %e, "claiming failed; retrying in 1 s");
                shared.healthy.store(false, Ordering::Relaxed);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => return Ok(()),
                }
            }
        };
        shared.healthy.store(true, Ordering::Relaxed);
        let Some(r) = renderer.take() else {
            anyhow::bail!("the renderer was lost after a panic; restart the worker");
        };
        let span = info_span!("job", job_id = %job.spec().id, attempt = job.attempt());
        renderer = run_job(&shared, job, r, &shutdown).instrument(span).await;
    }
}

/// Runs one job to its end. Returns the renderer for the next job (`None` if it panicked).
async fn run_job(
    shared: &Arc<Shared>,
    job: ClaimedJob,
    mut renderer: Box<dyn Render>,
    shutdown: &CancellationToken,
) -> Option<Box<dyn Render>> {
    let m = &shared.metrics;
    let job_id = job.spec().id.to_string();
    let priority = job.spec().priority.as_str();
    let wait_s = (crate::now_ms().saturating_sub(job.queued_at_ms())) as f64 / 1000.0;
    m.queue_wait_seconds
        .with_label_values(&[priority])
        .observe(wait_s);
    shared.set_busy(Some(&job_id), true);
    info!(reclaimed = job.reclaimed(), "running");

    let shutdown_stop = Arc::new(AtomicBool::new(false));
    let ctx = Arc::new(RenderContext {
        control: job.control(),
        runtime: Handle::current(),
        shutdown_stop: shutdown_stop.clone(),
        stages: StageTracker::default(),
        current: Mutex::new(None),
        timings: Mutex::new(BTreeMap::new()),
    });
    let sampler = PeakSampler::start(shared.gpu.clone(), ctx.stages.clone());
    let started = Instant::now();
    let spec = job.spec().clone();

    // The render runs on a blocking thread; this task keeps the runtime free for the lease heartbeat.
    let task_ctx = ctx.clone();
    let mut render = tokio::task::spawn_blocking(move || {
        let mut result = renderer.render(&spec, &task_ctx);
        let mut oom_retried = false;
        if let Err(RenderError::OutOfMemory(reason)) = &result {
            warn!(%reason, "CUDA ran out of memory; retrying once on the conservative plan");
            if renderer.fall_back() {
                oom_retried = true;
                result = renderer.render(&spec, &task_ctx);
            }
        }
        (renderer, result, oom_retried)
    });
    let grace = shared.settings.shutdown_grace;
    let joined = tokio::select! {
        joined = &mut render => joined,
        () = async {
            shutdown.cancelled().await;
            info!(grace_s = grace.as_secs_f32(), "shutting down: the running job may finish within the grace period");
            tokio::time::sleep(grace).await;
        } => {
            warn!("grace period over: stopping the job and handing it back");
            shutdown_stop.store(true, Ordering::Relaxed);
            render.await
        }
    };
    let peaks = sampler.finish();
    let stage_seconds = ctx.finish();
    shared.set_busy(Some(&job_id), false);
    let (renderer, result) = match joined {
        Ok((renderer, result, oom_retried)) => {
            if oom_retried {
                m.oom_retries.inc();
            }
            (Some(renderer), result)
        }
        Err(panic) => {
            error!(error = %panic, "the renderer panicked");
            (
                None,
                Err(RenderError::Transient(format!(
                    "the worker's renderer panicked: {panic}"
                ))),
            )
        }
    };

    let device = shared.device_label.as_str();
    let outcome = match result {
        Ok(Rendered { audio, mut meta }) => {
            let total = started.elapsed().as_secs_f64();
            meta.worker = job.consumer().to_string();
            meta.stage_seconds = stage_seconds.clone();
            meta.total_seconds = total;
            meta.peak_vram_bytes = peaks.job_bytes;
            for (stage, secs) in &stage_seconds {
                m.stage_seconds.with_label_values(&[stage]).observe(*secs);
            }
            m.realtime_factor.observe(meta.realtime_factor());
            m.songs_written
                .with_label_values(&[meta.writer.as_str()])
                .inc();
            m.gpu_peak
                .with_label_values(&[device])
                .observe(peaks.job_bytes as f64);
            m.gpu_last_peak
                .with_label_values(&[device])
                .set(peaks.job_bytes as i64);
            for (stage, bytes) in Stage::ALL.iter().zip(peaks.stage_bytes) {
                m.gpu_stage_peak
                    .with_label_values(&[device, stage.as_str()])
                    .set(bytes as i64);
            }
            let end_to_end = (crate::now_ms().saturating_sub(job.queued_at_ms())) as f64 / 1000.0;
            info!(
                title = %meta.title,
                seconds = total,
                audio_s = meta.duration_s,
                rtf = meta.realtime_factor(),
                peak_vram_bytes = peaks.job_bytes,
                "rendered"
            );
            let outcome = job.complete(&audio, &meta).await;
            if matches!(outcome, Ok(FinishOutcome::Succeeded)) {
                m.end_to_end_seconds.observe(end_to_end);
            }
            outcome
        }
        Err(RenderError::Stopped) => {
            let control = job.control();
            if shutdown_stop.load(Ordering::Relaxed) {
                job.release("worker shut down before the job finished")
                    .await
            } else if control.lease_lost() {
                info!("another worker took this job over; dropping it here");
                drop(job);
                Ok(FinishOutcome::Lost)
            } else {
                job.cancelled("stopped at the next step after a cancel")
                    .await
            }
        }
        Err(e @ RenderError::Permanent(_)) => job.fail(JobFailure::permanent(e.to_string())).await,
        Err(e) => {
            warn!(error = %e, "attempt failed");
            job.fail(JobFailure::transient(e.to_string())).await
        }
    };
    let label = match &outcome {
        Ok(FinishOutcome::Succeeded) => "succeeded",
        Ok(FinishOutcome::Retrying { .. }) => {
            m.retries.inc();
            "retried"
        }
        Ok(FinishOutcome::Failed) => {
            m.dead_lettered.inc();
            "failed"
        }
        Ok(FinishOutcome::Cancelled) => "cancelled",
        Ok(FinishOutcome::Released) => "released",
        Ok(FinishOutcome::Lost | FinishOutcome::Gone | FinishOutcome::Duplicate(_)) => "lost",
        Err(e) => {
            error!(error = %e, "could not record the job's outcome; it will be reclaimed");
            "error"
        }
    };
    m.jobs.with_label_values(&[label]).inc();
    shared.jobs_done.fetch_add(1, Ordering::Relaxed);
    renderer
}

/// Refreshes the registration every heartbeat.
async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(shared.queue.settings().heartbeat);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(e) = shared.register().await {
            warn!(error = %e, "could not refresh the worker registration");
        }
    }
}

/// Trims the job streams, removes idle consumers, and refreshes the queue gauges.
async fn maintenance(shared: Arc<Shared>, stop: CancellationToken) {
    const EVERY: Duration = Duration::from_secs(5);
    const TRIM_EVERY: u32 = 12;
    let mut ticks = tokio::time::interval(EVERY);
    let mut n = 0u32;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match shared.queue.status().await {
            Ok(status) => shared.metrics.observe_queue(&status),
            Err(e) => warn!(error = %e, "could not read the queue status"),
        }
        n += 1;
        if n.is_multiple_of(TRIM_EVERY) {
            match shared.queue.maintain(Duration::from_secs(3600)).await {
                Ok((trimmed, removed)) if trimmed + removed > 0 => {
                    info!(trimmed, removed_consumers = removed, "queue maintenance");
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "queue maintenance failed"),
            }
        }
    }
}

/// Exports device memory and utilisation every two seconds.
async fn gpu_gauges(shared: Arc<Shared>, stop: CancellationToken) {
    let device = shared.device_label.clone();
    let m = &shared.metrics;
    match &shared.gpu {
        None => {
            m.gpu_used.with_label_values(&[&device]).set(0);
            m.gpu_total.with_label_values(&[&device]).set(0);
            m.gpu_utilization.with_label_values(&[&device]).set(0.0);
        }
        Some(gpu) => {
            m.gpu_total
                .with_label_values(&[&device])
                .set(gpu.info().total_bytes as i64);
            let mut ticks = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                if let Some(sample) = gpu.sample() {
                    m.gpu_used
                        .with_label_values(&[&device])
                        .set(sample.device_used_bytes as i64);
                    m.gpu_utilization
                        .with_label_values(&[&device])
                        .set(f64::from(sample.utilization_percent.unwrap_or(0)) / 100.0);
                }
            }
        }
    }
}
