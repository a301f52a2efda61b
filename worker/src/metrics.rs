//! The worker's Prometheus metrics. Names come from `radio_shared::metrics`, so the dashboards and their
//! test use the same constants.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use radio_shared::metrics::{self, queue as q, worker as w};
use radio_shared::queue::QueueStatus;

/// Every metric the worker exports, registered in one registry.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Seconds per stage (`stage`).
    pub stage_seconds: HistogramVec,
    /// Seconds between enqueue and claim (`priority`).
    pub queue_wait_seconds: HistogramVec,
    /// Seconds from enqueue to stored result.
    pub end_to_end_seconds: Histogram,
    /// Audio seconds per second of work.
    pub realtime_factor: Histogram,
    /// Jobs by outcome (`outcome`).
    pub jobs: IntCounterVec,
    /// Failed attempts scheduled for a retry.
    pub retries: IntCounter,
    /// Jobs moved to the dead stream by this worker.
    pub dead_lettered: IntCounter,
    /// Jobs retried on a conservative plan after CUDA ran out of memory.
    pub oom_retries: IntCounter,
    /// Song descriptions by writer (`writer`).
    pub songs_written: IntCounterVec,
    /// Peak GPU memory per job (`device`).
    pub gpu_peak: HistogramVec,
    /// Peak GPU memory of the last job (`device`).
    pub gpu_last_peak: IntGaugeVec,
    /// Peak GPU memory of the last job per stage (`device`, `stage`).
    pub gpu_stage_peak: IntGaugeVec,
    /// GPU memory in use (`device`).
    pub gpu_used: IntGaugeVec,
    /// GPU memory on the card (`device`).
    pub gpu_total: IntGaugeVec,
    /// GPU utilisation 0–1 (`device`).
    pub gpu_utilization: GaugeVec,
    /// The memory plan (labels describe it; value 1).
    pub plan_info: IntGaugeVec,
    /// The longest track accepted, seconds.
    pub max_duration: Gauge,
    /// 1 while a job runs.
    pub busy: IntGauge,
    /// Resident memory of the process.
    pub resident_bytes: IntGauge,
    /// Queue depth per stream (`priority`).
    pub queue_depth: IntGaugeVec,
    /// Pending entries per stream (`priority`).
    pub queue_pending: IntGaugeVec,
    /// Oldest pending entry's age per stream (`priority`).
    pub queue_oldest_pending: GaugeVec,
    /// Delayed retries.
    pub queue_delayed: IntGauge,
    /// Dead letters.
    pub queue_dead: IntGauge,
    /// Redis `used_memory`.
    pub redis_memory: IntGauge,
    /// Redis `maxmemory`.
    pub redis_maxmemory: IntGauge,
    /// The alert threshold as a share of `maxmemory`.
    pub redis_memory_alert_share: Gauge,
    /// Results stored and not yet delivered.
    pub results_stored: IntGauge,
    /// Live workers.
    pub live_workers: IntGauge,
}

impl WorkerMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let histogram = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
        };
        let m = Self {
            stage_seconds: histogram(
                w::STAGE_SECONDS,
                "Seconds spent per pipeline stage.",
                metrics::DURATION_BUCKETS,
                &["stage"],
            )?,
            queue_wait_seconds: histogram(
                w::QUEUE_WAIT_SECONDS,
                "Seconds a job waited in its stream before a worker claimed it.",
                metrics::DURATION_BUCKETS,
                &["priority"],
            )?,
            end_to_end_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    w::END_TO_END_SECONDS,
                    "Seconds from enqueue to stored result.",
                )
                .buckets(metrics::DURATION_BUCKETS.to_vec()),
            )?,
            realtime_factor: Histogram::with_opts(
                HistogramOpts::new(
                    w::REALTIME_FACTOR,
                    "Seconds of audio produced per second of processing.",
                )
                .buckets(metrics::REALTIME_FACTOR_BUCKETS.to_vec()),
            )?,
            jobs: IntCounterVec::new(
                Opts::new(w::JOBS_TOTAL, "Jobs finished by this worker, by outcome."),
                &["outcome"],
            )?,
            retries: IntCounter::new(w::RETRIES_TOTAL, "Failed attempts scheduled for a retry.")?,
            dead_lettered: IntCounter::new(
                w::DEAD_LETTERED_TOTAL,
                "Jobs this worker moved to the dead stream.",
            )?,
            oom_retries: IntCounter::new(
                w::OOM_RETRIES_TOTAL,
                "Jobs retried on a more conservative plan after CUDA ran out of memory.",
            )?,
            songs_written: IntCounterVec::new(
                Opts::new(
                    w::SONGS_WRITTEN_TOTAL,
                    "Song descriptions by the writer that produced them.",
                ),
                &["writer"],
            )?,
            gpu_peak: histogram(
                w::GPU_MEMORY_PEAK_BYTES,
                "Peak GPU memory of this process per job (0 on CPU-only workers, device=\"cpu\").",
                metrics::VRAM_BUCKETS,
                &["device"],
            )?,
            gpu_last_peak: IntGaugeVec::new(
                Opts::new(
                    w::GPU_MEMORY_LAST_PEAK_BYTES,
                    "Peak GPU memory of the last job.",
                ),
                &["device"],
            )?,
            gpu_stage_peak: IntGaugeVec::new(
                Opts::new(
                    w::GPU_MEMORY_STAGE_PEAK_BYTES,
                    "Peak GPU memory of the last job, per stage.",
                ),
                &["device", "stage"],
            )?,
            gpu_used: IntGaugeVec::new(
                Opts::new(w::GPU_MEMORY_USED_BYTES, "GPU memory in use on the device."),
                &["device"],
            )?,
            gpu_total: IntGaugeVec::new(
                Opts::new(w::GPU_MEMORY_TOTAL_BYTES, "GPU memory on the device."),
                &["device"],
            )?,
            gpu_utilization: GaugeVec::new(
                Opts::new(w::GPU_UTILIZATION_RATIO, "GPU utilisation, 0 to 1."),
                &["device"],
            )?,
            plan_info: IntGaugeVec::new(
                Opts::new(
                    w::PLAN_INFO,
                    "The worker's memory plan; the labels describe it.",
                ),
                &[
                    "profile",
                    "device",
                    "dit",
                    "text_encoder",
                    "vae",
                    "vae_tile_frames",
                    "llm_gpu_layers",
                    "concurrency",
                ],
            )?,
            max_duration: Gauge::new(
                w::MAX_DURATION_SECONDS,
                "The longest track this worker accepts.",
            )?,
            busy: IntGauge::new(w::BUSY, "1 while a job runs on this worker.")?,
            resident_bytes: IntGauge::new(
                w::PROCESS_RESIDENT_BYTES,
                "Resident memory of the worker process.",
            )?,
            queue_depth: IntGaugeVec::new(
                Opts::new(q::DEPTH, "Jobs waiting in a stream, not yet delivered."),
                &["priority"],
            )?,
            queue_pending: IntGaugeVec::new(
                Opts::new(q::PENDING, "Delivered but unacknowledged entries."),
                &["priority"],
            )?,
            queue_oldest_pending: GaugeVec::new(
                Opts::new(
                    q::OLDEST_PENDING_AGE_SECONDS,
                    "Age of the oldest pending entry.",
                ),
                &["priority"],
            )?,
            queue_delayed: IntGauge::new(q::DELAYED, "Retries waiting for their backoff.")?,
            queue_dead: IntGauge::new(q::DEAD, "Entries in the dead stream.")?,
            live_workers: IntGauge::new(q::LIVE_WORKERS, "Workers with a fresh heartbeat.")?,
            redis_memory: IntGauge::new(
                q::REDIS_MEMORY_BYTES,
                "Bytes Redis has allocated (used_memory).",
            )?,
            redis_maxmemory: IntGauge::new(
                q::REDIS_MAXMEMORY_BYTES,
                "Redis maxmemory (0: no limit).",
            )?,
            redis_memory_alert_share: Gauge::new(
                q::REDIS_MEMORY_ALERT_SHARE,
                "Share of maxmemory above which RadioRedisMemoryHigh fires.",
            )?,
            results_stored: IntGauge::new(
                q::RESULTS_STORED,
                "Results (encoded audio) in Redis not yet delivered.",
            )?,
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.stage_seconds.clone()),
            Box::new(m.queue_wait_seconds.clone()),
            Box::new(m.end_to_end_seconds.clone()),
            Box::new(m.realtime_factor.clone()),
            Box::new(m.jobs.clone()),
            Box::new(m.retries.clone()),
            Box::new(m.dead_lettered.clone()),
            Box::new(m.oom_retries.clone()),
            Box::new(m.songs_written.clone()),
            Box::new(m.gpu_peak.clone()),
            Box::new(m.gpu_last_peak.clone()),
            Box::new(m.gpu_stage_peak.clone()),
            Box::new(m.gpu_used.clone()),
            Box::new(m.gpu_total.clone()),
            Box::new(m.gpu_utilization.clone()),
            Box::new(m.plan_info.clone()),
            Box::new(m.max_duration.clone()),
            Box::new(m.busy.clone()),
            Box::new(m.resident_bytes.clone()),
            Box::new(m.queue_depth.clone()),
            Box::new(m.queue_pending.clone()),
            Box::new(m.queue_oldest_pending.clone()),
            Box::new(m.queue_delayed.clone()),
            Box::new(m.queue_dead.clone()),
            Box::new(m.live_workers.clone()),
            Box::new(m.redis_memory.clone()),
            Box::new(m.redis_maxmemory.clone()),
            Box::new(m.redis_memory_alert_share.clone()),
            Box::new(m.results_stored.clone()),
        ];
        for c in collectors {
            m.registry.register(c)?;
        }
        Ok(m)
    }

    /// Copies a queue snapshot into the queue gauges.
    pub fn observe_queue(&self, status: &QueueStatus) {
        for s in &status.streams {
            let p = s.priority.as_str();
            self.queue_depth
                .with_label_values(&[p])
                .set(s.waiting as i64);
            self.queue_pending
                .with_label_values(&[p])
                .set(s.pending as i64);
            self.queue_oldest_pending
                .with_label_values(&[p])
                .set(s.oldest_pending_age_ms.unwrap_or(0) as f64 / 1000.0);
        }
        self.queue_delayed.set(status.delayed as i64);
        self.queue_dead.set(status.dead as i64);
        self.live_workers.set(status.workers.len() as i64);
        self.redis_memory.set(status.memory.used_bytes as i64);
        self.redis_maxmemory.set(status.memory.max_bytes as i64);
        self.results_stored.set(status.results_stored as i64);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out)
        {
            out = format!("# encoding metrics failed: {e}\n");
        }
        out
    }
}

/// The most resident memory this process has had, bytes (`VmHWM` of Linux `/proc/self/status`), 0 when
/// unknown.
pub fn peak_resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Resident memory of this process, bytes (Linux `/proc/self/statm`), 0 when unknown.
pub fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .unwrap_or(0);
    pages * 4096
}
