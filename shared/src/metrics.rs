//! Prometheus metric names, defined once and used by the worker, the bot, the dashboards and the test
//! that evaluates every dashboard query against a real Prometheus.
//!
//! Conventions: one `radio_` prefix, base units (`_seconds`, `_bytes`), `_total` on counters only, and no
//! ids (guild, user, job) in labels.

/// Histogram buckets for durations, from 50 ms up to 10 minutes.
pub const DURATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Histogram buckets for real-time factors (audio seconds per wall second).
pub const REALTIME_FACTOR_BUCKETS: &[f64] =
    &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Histogram buckets for GPU memory, 256 MiB to 96 GiB.
pub const VRAM_BUCKETS: &[f64] = &[
    268_435_456.0,
    536_870_912.0,
    1_073_741_824.0,
    2_147_483_648.0,
    3_221_225_472.0,
    4_294_967_296.0,
    5_368_709_120.0,
    6_442_450_944.0,
    7_516_192_768.0,
    8_589_934_592.0,
    12_884_901_888.0,
    17_179_869_184.0,
    25_769_803_776.0,
    51_539_607_552.0,
    103_079_215_104.0,
];

/// Worker metrics.
pub mod worker {
    /// Seconds per pipeline stage (label `stage`: llm, text_encode, diffusion, vae_decode, encode).
    pub const STAGE_SECONDS: &str = "radio_job_stage_duration_seconds";
    /// Seconds a job waited in its stream before a worker claimed it (label `priority`).
    pub const QUEUE_WAIT_SECONDS: &str = "radio_job_queue_wait_seconds";
    /// Seconds from enqueue to stored result.
    pub const END_TO_END_SECONDS: &str = "radio_job_end_to_end_seconds";
    /// Audio seconds produced per second of processing.
    pub const REALTIME_FACTOR: &str = "radio_job_realtime_factor";
    /// Attempts this worker ended (label `outcome`: succeeded, retried, failed, cancelled, released, lost,
    /// and error when the outcome could not be recorded).
    pub const JOBS_TOTAL: &str = "radio_jobs_total";
    /// Attempts that failed and were scheduled for a retry.
    pub const RETRIES_TOTAL: &str = "radio_job_retries_total";
    /// Jobs and malformed entries this worker moved to the dead stream.
    pub const DEAD_LETTERED_TOTAL: &str = "radio_jobs_dead_lettered_total";
    /// Jobs retried once on a more conservative plan after a CUDA out-of-memory error.
    pub const OOM_RETRIES_TOTAL: &str = "radio_job_oom_retries_total";
    /// Song descriptions by writer (label `writer`: user, llm, template).
    pub const SONGS_WRITTEN_TOTAL: &str = "radio_songs_written_total";
    /// Peak GPU memory per job, bytes (0 on CPU-only workers).
    pub const GPU_MEMORY_PEAK_BYTES: &str = "radio_gpu_memory_peak_bytes";
    /// Peak GPU memory of the last job, bytes (gauge).
    pub const GPU_MEMORY_LAST_PEAK_BYTES: &str = "radio_gpu_memory_last_peak_bytes";
    /// Peak GPU memory of the last job per stage, bytes (label `stage`).
    pub const GPU_MEMORY_STAGE_PEAK_BYTES: &str = "radio_gpu_memory_stage_peak_bytes";
    /// GPU memory in use on the device, bytes.
    pub const GPU_MEMORY_USED_BYTES: &str = "radio_gpu_memory_used_bytes";
    /// GPU memory on the device, bytes.
    pub const GPU_MEMORY_TOTAL_BYTES: &str = "radio_gpu_memory_total_bytes";
    /// GPU utilisation, 0–1.
    pub const GPU_UTILIZATION_RATIO: &str = "radio_gpu_utilization_ratio";
    /// Always 1; the labels describe the worker's memory plan.
    pub const PLAN_INFO: &str = "radio_worker_plan_info";
    /// The longest track this worker accepts, seconds.
    pub const MAX_DURATION_SECONDS: &str = "radio_worker_max_duration_seconds";
    /// 1 while a job runs on this worker.
    pub const BUSY: &str = "radio_worker_busy";
    /// Resident memory of the worker process, bytes.
    pub const PROCESS_RESIDENT_BYTES: &str = "radio_worker_resident_memory_bytes";

    /// Every name above.
    pub const ALL: &[&str] = &[
        STAGE_SECONDS,
        QUEUE_WAIT_SECONDS,
        END_TO_END_SECONDS,
        REALTIME_FACTOR,
        JOBS_TOTAL,
        RETRIES_TOTAL,
        DEAD_LETTERED_TOTAL,
        OOM_RETRIES_TOTAL,
        SONGS_WRITTEN_TOTAL,
        GPU_MEMORY_PEAK_BYTES,
        GPU_MEMORY_LAST_PEAK_BYTES,
        GPU_MEMORY_STAGE_PEAK_BYTES,
        GPU_MEMORY_USED_BYTES,
        GPU_MEMORY_TOTAL_BYTES,
        GPU_UTILIZATION_RATIO,
        PLAN_INFO,
        MAX_DURATION_SECONDS,
        BUSY,
        PROCESS_RESIDENT_BYTES,
    ];
}

/// Queue metrics, exported by every worker (identical values; aggregate with `max`).
pub mod queue {
    /// Jobs waiting in a stream and not yet delivered: the consumer group's lag (label `priority`).
    pub const DEPTH: &str = "radio_queue_depth";
    /// Delivered but unacknowledged entries (label `priority`).
    pub const PENDING: &str = "radio_queue_pending";
    /// Age of the oldest pending entry, seconds (label `priority`).
    pub const OLDEST_PENDING_AGE_SECONDS: &str = "radio_queue_oldest_pending_age_seconds";
    /// Retries waiting for their backoff.
    pub const DELAYED: &str = "radio_queue_delayed";
    /// Entries in the dead stream.
    pub const DEAD: &str = "radio_queue_dead";
    /// Workers with a fresh heartbeat.
    pub const LIVE_WORKERS: &str = "radio_queue_live_workers";
    /// Bytes Redis has allocated (`used_memory` of `INFO memory`).
    pub const REDIS_MEMORY_BYTES: &str = "radio_redis_memory_bytes";
    /// Redis's `maxmemory` (0: no limit).
    pub const REDIS_MAXMEMORY_BYTES: &str = "radio_redis_maxmemory_bytes";
    /// The share of `maxmemory` above which the `RadioRedisMemoryHigh` alert fires
    /// (`RADIO_REDIS_MEMORY_ALERT_SHARE`).
    pub const REDIS_MEMORY_ALERT_SHARE: &str = "radio_redis_memory_alert_share";
    /// Results (encoded audio) stored in Redis and not yet delivered.
    pub const RESULTS_STORED: &str = "radio_results_stored";

    /// Every name above.
    pub const ALL: &[&str] = &[
        DEPTH,
        PENDING,
        OLDEST_PENDING_AGE_SECONDS,
        DELAYED,
        DEAD,
        LIVE_WORKERS,
        REDIS_MEMORY_BYTES,
        REDIS_MAXMEMORY_BYTES,
        REDIS_MEMORY_ALERT_SHARE,
        RESULTS_STORED,
    ];
}

/// Bot metrics.
pub mod bot {
    /// Slash commands handled (labels `command`, `outcome`: ok, user_error, error).
    pub const COMMANDS_TOTAL: &str = "radio_bot_commands_total";
    /// Voice connections held now.
    pub const VOICE_SESSIONS: &str = "radio_bot_voice_sessions";
    /// Stations that ran out of tracks while playing.
    pub const BUFFER_UNDERRUNS_TOTAL: &str = "radio_bot_buffer_underruns_total";
    /// Tracks started (label `source`: radio, request).
    pub const TRACKS_PLAYED_TOTAL: &str = "radio_bot_tracks_played_total";
    /// Seconds between an event being written and the bot handling it.
    pub const EVENT_LAG_SECONDS: &str = "radio_bot_event_lag_seconds";
    /// Seconds from a job's `succeeded` event to its track being queued for playback.
    pub const TRACK_READY_SECONDS: &str = "radio_bot_track_ready_seconds";
    /// Stations running now.
    pub const ACTIVE_STATIONS: &str = "radio_bot_active_stations";
    /// Bytes of audio in the bot's track cache (`BOT_CACHE_DIR`).
    pub const TRACK_CACHE_BYTES: &str = "radio_bot_track_cache_bytes";

    /// Every name above.
    pub const ALL: &[&str] = &[
        COMMANDS_TOTAL,
        VOICE_SESSIONS,
        BUFFER_UNDERRUNS_TOTAL,
        TRACKS_PLAYED_TOTAL,
        EVENT_LAG_SECONDS,
        TRACK_READY_SECONDS,
        ACTIVE_STATIONS,
        TRACK_CACHE_BYTES,
    ];
}

/// Every metric name the project exports.
pub fn all() -> impl Iterator<Item = &'static str> {
    worker::ALL
        .iter()
        .chain(queue::ALL)
        .chain(bot::ALL)
        .copied()
}
