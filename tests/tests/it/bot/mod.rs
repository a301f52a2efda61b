//! The Discord bot: the real `radio_bot::run_with` against a fake Discord, a real redis-server, a
//! simulated worker (a queue consumer that returns a real Ogg Opus fixture) and the recording player.

mod discord;
mod errors;
mod measure;
mod restart;
mod soak;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use radio_bot::player::recording::RecordingPlayer;
use radio_bot::{BotConfig, Playback};
use radio_shared::job::{Progress, ResultMeta, Stage, Writer};
use radio_shared::queue::{Queue, QueueSettings, WorkerInfo};
use radio_tests::fake_discord::FakeDiscord;
use radio_tests::{TestRedis, fast_settings, workspace_root};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The Ogg Opus fixture every simulated job returns (5 s, 48 kHz stereo, 20 ms frames).
pub fn fixture_audio() -> Vec<u8> {
    let path = workspace_root().join("tests/fixtures/tone-5s.ogg");
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A bot running in this process.
pub struct RunningBot {
    /// Where `/metrics` and `/healthz` listen.
    pub metrics: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningBot {
    /// Starts the bot with the recording `player` against `fake`, on the deployment of `queue`.
    pub async fn start(
        redis: &TestRedis,
        queue: &Queue,
        fake: &FakeDiscord,
        player: RecordingPlayer,
        configure: impl FnOnce(&mut BotConfig, &mut QueueSettings),
    ) -> Self {
        Self::start_as(redis, redis.config_for(queue), fake, player, configure).await
    }

    /// [`RunningBot::start`] connecting with `connection` (another Redis user, say).
    pub async fn start_as(
        redis: &TestRedis,
        connection: radio_shared::config::RedisConfig,
        fake: &FakeDiscord,
        player: RecordingPlayer,
        configure: impl FnOnce(&mut BotConfig, &mut QueueSettings),
    ) -> Self {
        // Logs go through the test harness, so they show only for failing tests.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn,radio_bot=info"))
            .with_test_writer()
            .try_init();
        let mut config = BotConfig::new("fake-token");
        config.api_proxy = Some(fake.api_proxy());
        config.gateway_url = Some(fake.gateway_url());
        config.dj_role = Some("DJ".into());
        config.buffer_size = 2;
        // One cache per Redis: a bot restarted on the same deployment finds its tracks again.
        config.cache_dir = redis.dir().join("bot-tracks");
        let mut settings = fast_settings();
        configure(&mut config, &mut settings);
        let bot_queue = Queue::connect(&connection, settings)
            .await
            .unwrap_or_else(|e| panic!("bot queue: {e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("metrics listener: {e}"));
        let metrics = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(radio_bot::run_with(
            config,
            bot_queue,
            listener,
            shutdown.clone(),
            Playback::Custom(Arc::new(player)),
        ));
        Self {
            metrics,
            shutdown,
            task,
        }
    }

    /// Waits for the bot to end by itself (without a shutdown) and returns how it ended.
    pub async fn ended(self, timeout: Duration) -> anyhow::Result<()> {
        tokio::time::timeout(timeout, self.task)
            .await
            .unwrap_or_else(|_| panic!("the bot kept running for {timeout:?}"))
            .unwrap_or_else(|e| panic!("the bot task panicked: {e}"))
    }

    /// Stops the bot and waits until it has saved its stations.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .unwrap_or_else(|_| panic!("the bot did not stop within 15 s"))
            .unwrap_or_else(|e| panic!("the bot task panicked: {e}"))
            .unwrap_or_else(|e| panic!("the bot failed: {e:#}"));
    }
}

/// How the simulated worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    /// The longest track it accepts (in its registration).
    pub max_duration_s: f32,
    /// Progress reports per job.
    pub steps: Vec<(Stage, f32)>,
    /// The wait before each report and before completing.
    pub step_delay: Duration,
    /// Claim and run jobs (`false`: only register as live).
    pub consume: bool,
    /// The audio every job returns (default: the 5 s fixture).
    pub audio: Option<Arc<[u8]>>,
}

impl Default for WorkerPlan {
    fn default() -> Self {
        Self {
            max_duration_s: 120.0,
            steps: vec![(Stage::Llm, 0.1), (Stage::Diffusion, 0.5)],
            step_delay: Duration::from_millis(50),
            consume: true,
            audio: None,
        }
    }
}

/// A simulated worker: registered as live, claiming jobs and completing them with the fixture.
pub struct FakeWorker {
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeWorker {
    /// Starts it on `queue`'s deployment.
    pub fn start(queue: &Queue, plan: WorkerPlan) -> Self {
        let shutdown = CancellationToken::new();
        let id = format!("fake-worker-{}", ulid::Ulid::new());
        let info = WorkerInfo {
            id: id.clone(),
            host: "test".into(),
            gpu: "cpu".into(),
            vram_total_bytes: 0,
            profile: "cpu".into(),
            plan: "simulated".into(),
            max_duration_s: plan.max_duration_s,
            concurrency: 1,
            busy_with: None,
            jobs_done: 0,
            started_ms: 0,
            heartbeat_ms: 0,
            version: "test".into(),
        };
        let mut tasks = Vec::new();
        {
            let queue = queue.clone();
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let _ = queue.register_worker(&info, Duration::from_secs(3)).await;
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
                let _ = queue.deregister_worker(&info.id).await;
            }));
        }
        if plan.consume {
            let consumer = queue.consumer(id.clone());
            let shutdown = shutdown.clone();
            let audio = plan.audio.clone().unwrap_or_else(|| fixture_audio().into());
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                while let Ok(Some(job)) = consumer.claim_next(&shutdown).await {
                    n += 1;
                    let control = job.control();
                    for (stage, fraction) in &plan.steps {
                        tokio::time::sleep(plan.step_delay).await;
                        let _ = control
                            .report(Progress {
                                stage: *stage,
                                fraction: *fraction,
                            })
                            .await;
                    }
                    tokio::time::sleep(plan.step_delay).await;
                    let meta = meta(&format!("Track {n}"), &id);
                    let _ = job.complete(&audio, &meta).await;
                }
            }));
        }
        Self { shutdown, tasks }
    }

    /// Stops it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// What the simulated worker reports about a track.
pub fn meta(title: &str, worker: &str) -> ResultMeta {
    ResultMeta {
        title: title.into(),
        caption: "a test tone, two sines".into(),
        lyrics: "[verse]\nla la la\n[chorus]\noh oh".into(),
        bpm: Some(120),
        keyscale: Some("A major".into()),
        timesignature: Some(4),
        language: "en".into(),
        duration_s: 5.0,
        seed: 7,
        writer: Writer::Template,
        worker: worker.into(),
        format: Default::default(),
        stage_seconds: Default::default(),
        total_seconds: 0.2,
        peak_vram_bytes: 0,
    }
}

/// `[{name, type: 3, value}]` for string options.
pub fn string_option(name: &str, value: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "type": 3, "value": value})
}

/// `{name, type: 4, value}` for an integer option.
pub fn integer_option(name: &str, value: i64) -> serde_json::Value {
    serde_json::json!({"name": name, "type": 4, "value": value})
}
