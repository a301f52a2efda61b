//! The bot's Prometheus metrics. Names come from [`radio_shared::metrics::bot`]; no ids in labels.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use radio_shared::metrics::{DURATION_BUCKETS, bot};

/// Every metric the bot exports, in a registry of its own (several bots can run in one test process).
#[derive(Debug, Clone)]
pub struct BotMetrics {
    registry: Registry,
    /// Slash commands handled, by `command` and `outcome` (ok, user_error, error).
    pub commands: IntCounterVec,
    /// Voice connections held now.
    pub voice_sessions: IntGauge,
    /// Times a playing station ran out of tracks.
    pub buffer_underruns: IntCounter,
    /// Tracks started, by `source` (radio, request).
    pub tracks_played: IntCounterVec,
    /// Seconds between an event being written to Redis and the bot handling it.
    pub event_lag: Histogram,
    /// Seconds from a job's `succeeded` event to its track being queued for playback.
    pub track_ready: Histogram,
    /// Stations on (playing or paused) now.
    pub active_stations: IntGauge,
    /// Bytes of audio in the track cache.
    pub track_cache_bytes: IntGauge,
}

impl BotMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let commands = IntCounterVec::new(
            Opts::new(
                bot::COMMANDS_TOTAL,
                "Slash commands handled, by command and outcome.",
            ),
            &["command", "outcome"],
        )
        .unwrap_or_else(|e| unreachable_metric(bot::COMMANDS_TOTAL, e));
        let voice_sessions = IntGauge::new(bot::VOICE_SESSIONS, "Voice connections held now.")
            .unwrap_or_else(|e| unreachable_metric(bot::VOICE_SESSIONS, e));
        let buffer_underruns = IntCounter::new(
            bot::BUFFER_UNDERRUNS_TOTAL,
            "Times a playing station ran out of tracks.",
        )
        .unwrap_or_else(|e| unreachable_metric(bot::BUFFER_UNDERRUNS_TOTAL, e));
        let tracks_played = IntCounterVec::new(
            Opts::new(bot::TRACKS_PLAYED_TOTAL, "Tracks started, by source."),
            &["source"],
        )
        .unwrap_or_else(|e| unreachable_metric(bot::TRACKS_PLAYED_TOTAL, e));
        let event_lag = Histogram::with_opts(
            HistogramOpts::new(
                bot::EVENT_LAG_SECONDS,
                "Seconds between an event being written and the bot handling it.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )
        .unwrap_or_else(|e| unreachable_metric(bot::EVENT_LAG_SECONDS, e));
        let track_ready = Histogram::with_opts(
            HistogramOpts::new(
                bot::TRACK_READY_SECONDS,
                "Seconds from a job's succeeded event to its track being queued for playback.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )
        .unwrap_or_else(|e| unreachable_metric(bot::TRACK_READY_SECONDS, e));
        let active_stations = IntGauge::new(bot::ACTIVE_STATIONS, "Stations on now.")
            .unwrap_or_else(|e| unreachable_metric(bot::ACTIVE_STATIONS, e));
        let track_cache_bytes = IntGauge::new(
            bot::TRACK_CACHE_BYTES,
            "Bytes of audio in the track cache (BOT_CACHE_DIR).",
        )
        .unwrap_or_else(|e| unreachable_metric(bot::TRACK_CACHE_BYTES, e));
        let metrics = Self {
            registry,
            commands,
            voice_sessions,
            buffer_underruns,
            tracks_played,
            event_lag,
            track_ready,
            active_stations,
            track_cache_bytes,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 8] = [
            Box::new(metrics.commands.clone()),
            Box::new(metrics.voice_sessions.clone()),
            Box::new(metrics.buffer_underruns.clone()),
            Box::new(metrics.tracks_played.clone()),
            Box::new(metrics.event_lag.clone()),
            Box::new(metrics.track_ready.clone()),
            Box::new(metrics.active_stations.clone()),
            Box::new(metrics.track_cache_bytes.clone()),
        ];
        for collector in collectors {
            if let Err(e) = metrics.registry.register(collector) {
                tracing::error!(error = %e, "a bot metric could not be registered");
            }
        }
        // Label values that exist from the start, so dashboards show zeros instead of gaps.
        for source in ["radio", "request"] {
            metrics.tracks_played.with_label_values(&[source]);
        }
        metrics
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for BotMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn unreachable_metric<T>(name: &str, e: prometheus::Error) -> T {
    // Names and help texts are constants; prometheus only refuses malformed ones.
    panic!("metric {name} is malformed: {e}")
}
