//! Measurements, not a pass/fail test: the bot's resident memory with 10 active stations, and the
//! time from a job's `succeeded` event to its track being queued for playback.
//!
//! Run with (dev profile; its dependencies are built with opt-level 2):
//!
//! ```sh
//! RADIO_BOT_MEASURE=1 cargo test --workspace --test it bot::measure -- --nocapture
//! ```
//!
//! The bot runs in a child process (this test binary, started again with `RADIO_BOT_MEASURE_CHILD`),
//! so its memory is measured without the fake Discord, the simulated worker and the test harness.
//! It plays through the recording player at 5× speed (5 s tracks last 1 s), so ten stations go
//! through many tracks in a short run.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use radio_bot::player::recording::{Logged, RecordingPlayer};
use radio_bot::{BotConfig, Playback};
use radio_shared::config::RedisConfig;
use radio_shared::queue::{EventKind, Queue};
use radio_shared::station::StationStore;
use radio_tests::fake_discord::{FakeDiscord, Member, World, ids};
use radio_tests::{TestRedis, fast_settings};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{FakeWorker, WorkerPlan};

const STATIONS: u64 = 10;
const CHILD: &str = "RADIO_BOT_MEASURE_CHILD";
const TEST_NAME: &str = "bot::measure::bot_memory_and_track_ready_latency_with_ten_stations";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bot_memory_and_track_ready_latency_with_ten_stations() {
    if std::env::var_os(CHILD).is_some() {
        child().await;
        return;
    }
    if std::env::var_os("RADIO_BOT_MEASURE").is_none() {
        println!(
            "skipped: set RADIO_BOT_MEASURE=1 to measure the bot (see tests/tests/it/bot/measure.rs)"
        );
        return;
    }
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let fake = FakeDiscord::start(World::guilds(STATIONS)).await;
    let worker = FakeWorker::start(
        &queue,
        WorkerPlan {
            steps: Vec::new(),
            step_delay: Duration::from_millis(10),
            ..WorkerPlan::default()
        },
    );
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("REDIS_URL", redis.url())
        .env("RADIO_PREFIX", queue.keys().prefix().as_str())
        .env("DISCORD_API_PROXY", fake.api_proxy())
        .env("DISCORD_GATEWAY_URL", fake.gateway_url())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the bot process");
    let pid = child.id();
    fake.wait_identified(1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_kib = rss_kib(pid);

    for i in 0..STATIONS {
        fake.command(
            ids::GUILD + i,
            &Member::dj(ids::LISTENER),
            "play",
            json!([]),
        );
    }
    let store = StationStore::new(queue.clone());
    for i in 0..STATIONS {
        let guild = (ids::GUILD + i).to_string();
        radio_tests::eventually(Duration::from_secs(60), "every station to play", || {
            let store = store.clone();
            let guild = guild.clone();
            async move { (store.stats(Some(&guild)).await.ok()?.played >= 2).then_some(()) }
        })
        .await;
    }
    // Resident memory while ten stations play, sampled every half second for 20 s.
    let mut samples = Vec::new();
    for _ in 0..40 {
        samples.push(rss_kib(pid) as f64);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let peak = samples.iter().copied().fold(0.0, f64::max);
    let busy_kib = median(&mut samples);
    let played = store.stats(None).await.expect("stats").played;

    // Stop the bot (close its stdin) and collect what it measured.
    drop(child.stdin.take());
    let stdout = child.stdout.take().expect("child stdout");
    let report = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // The test harness prints "test … " on the same line before the test's own output.
            .find_map(|line| {
                line.split_once("MEASURE ")
                    .map(|(_, report)| report.to_string())
            })
    })
    .await
    .expect("reader")
    .expect("the bot printed no MEASURE line");
    let _ = child.wait();
    worker.stop().await;
    let report: serde_json::Value = serde_json::from_str(&report).expect("report JSON");
    let mut latencies: Vec<f64> = report["latencies_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default();
    let n = latencies.len();
    latencies.sort_by(f64::total_cmp);
    let p95 = latencies
        .get(((n as f64 * 0.95).ceil() as usize).clamp(1, n.max(1)) - 1)
        .copied()
        .unwrap_or(f64::NAN);
    println!(
        "bot RSS: idle {:.1} MiB; 10 active stations: median {:.1} MiB, peak {:.1} MiB (40 samples over 20 s, {played} tracks played in all)",
        idle_kib as f64 / 1024.0,
        busy_kib / 1024.0,
        peak / 1024.0
    );
    println!(
        "succeeded event -> track queued for playback: median {:.2} ms, p95 {:.2} ms, max {:.2} ms over {n} tracks",
        median(&mut latencies.clone()),
        p95,
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    assert!(n > 0, "no track was queued");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return f64::NAN;
    }
    values[values.len() / 2]
}

/// The bot process: runs until its stdin closes, then prints the ready latencies it saw.
async fn child() {
    let env = radio_shared::config::Env;
    let redis = RedisConfig::from_env(&env).expect("REDIS_URL and RADIO_PREFIX");
    let queue = Queue::connect(&redis, fast_settings())
        .await
        .expect("connect to Redis");
    let mut config = BotConfig::new("fake-token");
    config.api_proxy = env.raw("DISCORD_API_PROXY");
    config.gateway_url = env.raw("DISCORD_GATEWAY_URL");
    config.dj_role = Some("DJ".into());
    config.cache_dir =
        std::env::temp_dir().join(format!("radio-measure-tracks-{}", std::process::id()));
    let player = RecordingPlayer::with_speed(5.0);
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("metrics listener");
    let stop = shutdown.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(std::io::stdin()).read_line(&mut line);
        stop.cancel();
    });
    radio_bot::run_with(
        config,
        queue.clone(),
        listener,
        shutdown,
        Playback::Custom(std::sync::Arc::new(player.clone())),
    )
    .await
    .expect("bot");
    // When each job's succeeded event was written (the entry id's time, Redis clock = this host's).
    let mut follower = queue.follow_events_from("0-0");
    let mut succeeded = std::collections::HashMap::new();
    loop {
        let events = follower
            .next(Duration::from_millis(200))
            .await
            .expect("events");
        if events.is_empty() {
            break;
        }
        for event in events {
            if matches!(event.kind, EventKind::Succeeded(_))
                && let Some(at) = event.at_ms()
            {
                succeeded.insert(event.job.clone(), at as f64);
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    let latencies: Vec<f64> = player
        .log()
        .into_iter()
        .filter_map(|entry| match entry.what {
            Logged::Enqueued { job, .. } if seen.insert(job.clone()) => {
                let queued = entry.wall.duration_since(UNIX_EPOCH).ok()?.as_secs_f64() * 1000.0;
                Some(queued - succeeded.get(&job)?)
            }
            _ => None,
        })
        .collect();
    println!("MEASURE {}", json!({ "latencies_ms": latencies }));
}
