//! Redis memory stays bounded while stations play: ten stations against the fake Discord, a fast
//! simulated worker returning real-size audio (60 s of Ogg Opus at the worker's bitrate, about 1 MB),
//! playback at 60× (a 60 s track lasts 1 s), several hundred tracks in all. Redis's `used_memory`
//! must level off at a bound set by stations × buffer × track size, not grow with tracks played, and
//! every track that was generated must reach the player.
//!
//! The suite runs 300 tracks; a longer soak:
//!
//! ```sh
//! RADIO_SOAK_TRACKS=3000 cargo test --workspace --test it bot::soak -- --nocapture
//! ```

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use radio_bot::player::recording::RecordingPlayer;
use radio_shared::job::{AudioFormat, JobState};
use radio_shared::queue::{QueueSettings, RedisMemory};
use radio_shared::station::StationStore;
use radio_tests::fake_discord::{FakeDiscord, Member, World, ids};
use radio_tests::{TestRedis, fast_settings};
use serde_json::json;

use super::{FakeWorker, RunningBot, WorkerPlan};

const STATIONS: u64 = 10;
const BUFFER: usize = 2;
const SPEED: f64 = 60.0;
/// Finished records kept: low enough that the long soak reaches the cap and levels off (the default,
/// 10,000, levels off later and higher: README, "Redis memory").
const HISTORY_MAX: u64 = 500;

/// 60 s of stereo noise under a tone, encoded as the worker encodes (noise keeps Opus near its
/// bitrate, as music does): about 1 MB, like a real 60 s track.
fn real_size_track() -> Vec<u8> {
    let frames = 60 * 48_000;
    let mut state: u32 = 0x1234_5678;
    let mut samples = Vec::with_capacity(frames * 2);
    for i in 0..frames {
        let tone = (i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin() * 0.2;
        for _ in 0..2 {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            samples.push(tone + noise * 0.4);
        }
    }
    radio_worker::audio::encode(&samples, AudioFormat::OggOpus).expect("encode the soak track")
}

async fn redis_memory(redis: &TestRedis) -> RedisMemory {
    let mut conn = redis.raw().await;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .expect("INFO memory");
    RedisMemory::from_info(&info)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_memory_levels_off_while_ten_stations_play_hundreds_of_tracks() {
    let target: usize = std::env::var("RADIO_SOAK_TRACKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let track = real_size_track();
    let track_bytes = track.len() as u64;
    assert!(
        (700_000..1_400_000).contains(&track_bytes),
        "a 60 s track should be about 1 MB, got {track_bytes}"
    );

    let redis = TestRedis::start();
    let settings = QueueSettings {
        job_history_max: HISTORY_MAX,
        ..fast_settings()
    };
    let queue = redis.queue_with(settings.clone()).await;
    let fake = FakeDiscord::start(World::guilds(STATIONS)).await;
    let worker = FakeWorker::start(
        &queue,
        WorkerPlan {
            steps: Vec::new(),
            step_delay: Duration::from_millis(5),
            audio: Some(Arc::from(track)),
            ..WorkerPlan::default()
        },
    );
    let player = RecordingPlayer::with_speed(SPEED);
    let bot = RunningBot::start(&redis, &queue, &fake, player.clone(), |config, bot| {
        config.buffer_size = BUFFER;
        *bot = settings;
    })
    .await;
    fake.wait_identified(1, Duration::from_secs(30)).await;
    let baseline = redis_memory(&redis).await.used_bytes;
    for i in 0..STATIONS {
        fake.command(
            ids::GUILD + i,
            &Member::dj(ids::LISTENER),
            "play",
            json!([]),
        );
    }

    // Sample Redis's memory while the stations play, until `target` tracks have started.
    let started = || -> usize {
        (0..STATIONS)
            .map(|i| player.started(ids::GUILD + i).len())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(60 + target as u64 / 2);
    let mut samples: Vec<(usize, u64)> = Vec::new();
    while started() < target {
        assert!(
            Instant::now() < deadline,
            "only {} of {target} tracks started in time",
            started()
        );
        samples.push((started(), redis_memory(&redis).await.used_bytes));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let played = started();
    let results_left = queue.status().await.expect("status").results_stored;
    // The bot's own copy holds what the stations still need, not every track played.
    let (_, metrics) = radio_tests::http_get(bot.metrics, "/metrics")
        .await
        .expect("bot metrics");
    let cache_bytes: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("radio_bot_track_cache_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .expect("radio_bot_track_cache_bytes");
    let cache_bound = STATIONS * (BUFFER as u64 + 2) * track_bytes;
    assert!(
        cache_bytes > 0 && cache_bytes <= cache_bound,
        "track cache {cache_bytes} bytes, expected 1..={cache_bound} (stations × (buffer + 2) tracks)"
    );
    // What one finished job's record costs (its spec, song description and history).
    let record_bytes = match queue
        .jobs(Some(JobState::Succeeded), 1)
        .await
        .expect("jobs")
        .first()
    {
        Some(job) => {
            let mut conn = redis.raw().await;
            redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(queue.keys().job(&job.id))
                .query_async::<Option<u64>>(&mut conn)
                .await
                .expect("MEMORY USAGE")
                .unwrap_or(0)
        }
        None => 0,
    };
    bot.stop().await;
    worker.stop().await;

    // The bound: every station's playing and buffered tracks at once, twice over, plus 4 MB for the
    // job records and events of the run. Results kept for their TTL would pass it after ~70 tracks.
    let slack = 4 * 1024 * 1024;
    let bound = baseline + 2 * STATIONS * (BUFFER as u64 + 1) * track_bytes + slack;
    let peak = samples.iter().map(|(_, m)| *m).max().unwrap_or(0);
    let late: Vec<u64> = samples
        .iter()
        .filter(|(n, _)| *n >= played / 2)
        .map(|(_, m)| *m)
        .collect();
    let mut sorted = late.clone();
    sorted.sort_unstable();
    let median_late = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "soak: {played} tracks of {:.2} MB on {STATIONS} stations (buffer {BUFFER}, {SPEED}× playback); \
         Redis used_memory: baseline {:.1} MiB, median over the second half {:.1} MiB \
         ({:.2} MiB per station above baseline), peak {:.1} MiB, bound {:.1} MiB; {} samples; \
         results left in Redis at the end: {results_left}; track cache {:.1} MiB; \
         one finished record: {record_bytes} bytes \
         (at most {HISTORY_MAX} kept)",
        track_bytes as f64 / 1e6,
        mib(baseline),
        mib(median_late),
        mib(median_late.saturating_sub(baseline)) / STATIONS as f64,
        mib(peak),
        mib(bound),
        samples.len(),
        mib(cache_bytes),
    );
    assert!(
        peak <= bound,
        "Redis grew to {:.1} MiB, past the bound of {:.1} MiB for {STATIONS} stations: audio is piling up",
        mib(peak),
        mib(bound)
    );

    // No track missed: every job that succeeded for a station played, was still queued for playback
    // when the bot stopped, or finished after it stopped and still waits in Redis for its restart.
    let store = StationStore::new(queue.clone());
    let succeeded = queue
        .jobs(Some(JobState::Succeeded), usize::MAX)
        .await
        .expect("jobs");
    let mut missed = Vec::new();
    for i in 0..STATIONS {
        let guild = ids::GUILD + i;
        let state = store.load(&guild.to_string()).await.expect("load").state;
        let reached: HashSet<_> = player
            .started(guild)
            .into_iter()
            .chain(state.ready.iter().map(|t| t.job.clone()))
            .chain(state.now_playing.iter().map(|t| t.job.clone()))
            .collect();
        let waiting: HashSet<_> = state.generating.iter().map(|t| t.job.clone()).collect();
        for job in succeeded
            .iter()
            .filter(|j| j.guild.as_deref() == Some(guild.to_string().as_str()))
            .filter(|j| !reached.contains(&j.id))
        {
            let kept_for_restart =
                waiting.contains(&job.id) && queue.result(&job.id).await.expect("result").is_some();
            if !kept_for_restart {
                missed.push(job.id.clone());
            }
        }
    }
    assert!(
        missed.is_empty(),
        "tracks generated but never played: {missed:?}"
    );
    let stats = store.stats(None).await.expect("stats");
    assert_eq!(stats.errors, 0, "{stats:?}");
}
