//! `/radio play` end to end: deferred within 3 s, a job in Redis, progress edits as the job moves,
//! a voice join through songbird's gateway handshake, the track queued and played.

use std::time::Duration;

use radio_bot::player::recording::RecordingPlayer;
use radio_shared::job::{JobState, Priority, Stage};
use radio_shared::station::{PlaybackStatus, StationStore};
use radio_tests::fake_discord::{FakeDiscord, Member, World, ids};
use radio_tests::http_get;
use radio_tests::{TestRedis, eventually};
use serde_json::json;

use super::{FakeWorker, RunningBot, WorkerPlan, string_option};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn play_is_deferred_then_follows_its_job_until_the_track_plays() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let fake = FakeDiscord::start(World::default_guild()).await;
    // A worker is online (registered) but takes jobs only once the test has seen the queued state.
    let presence = FakeWorker::start(
        &queue,
        WorkerPlan {
            consume: false,
            ..WorkerPlan::default()
        },
    );
    let player = RecordingPlayer::with_speed(2.0);
    let bot = RunningBot::start(&redis, &queue, &fake, player.clone(), |_, _| {}).await;
    fake.wait_identified(1, Duration::from_secs(10)).await;
    let commands = fake
        .wait(Duration::from_secs(5), "command registration", || {
            fake.requests()
                .into_iter()
                .find(|r| r.method == "PUT" && r.path.ends_with("/commands"))
        })
        .await;
    let registered = commands.json().expect("commands JSON");
    assert_eq!(registered[0]["name"], "radio");
    assert!(
        registered[0]["options"]
            .as_array()
            .is_some_and(|o| o.len() == 21),
        "{registered}"
    );

    let sent = fake.command(
        ids::GUILD,
        &Member::manager(ids::LISTENER),
        "play",
        serde_json::json!([string_option("genre", "synthwave")]),
    );

    // Deferred (type 5, public) within Discord's 3 seconds.
    let (callback, body) = fake.callback(&sent, Duration::from_secs(3)).await;
    assert_eq!(body["type"], 5, "{body}");
    assert_eq!(
        body["data"]["flags"].as_u64().unwrap_or(0) & 64,
        0,
        "public"
    );
    assert!(callback.at - sent.at < Duration::from_secs(3));

    // The voice join went through the gateway: op 4 for the user's channel, answered by the fake,
    // and songbird's join_gateway returned (the player was attached only after it).
    let join = fake
        .wait(Duration::from_secs(5), "a voice state update", || {
            fake.voice_updates().into_iter().next()
        })
        .await;
    assert_eq!(join["channel_id"], ids::VOICE.to_string());
    assert_eq!(join["guild_id"], ids::GUILD.to_string());
    eventually(Duration::from_secs(5), "the player to be attached", || {
        let attached = player.is_attached(ids::GUILD);
        async move { attached.then_some(()) }
    })
    .await;

    // A job is in Redis, for this guild, with the new genre, interactive (someone waits for it).
    let store = StationStore::new(queue.clone());
    let first = eventually(Duration::from_secs(5), "the first job", || {
        let store = store.clone();
        async move {
            let stored = store.load(&ids::GUILD.to_string()).await.ok()?;
            let first = stored.state.generating.first().map(|t| t.job.clone());
            first.or_else(|| stored.state.now_playing.map(|t| t.job))
        }
    })
    .await;
    let record = queue.job_required(&first).await.expect("job record");
    let spec = record.spec.expect("spec");
    assert_eq!(
        spec.guild_id.as_deref(),
        Some(ids::GUILD.to_string().as_str())
    );
    assert_eq!(spec.priority, Priority::Interactive);
    assert_eq!(spec.generate_task().station.genre, "synthwave");

    // The response shows the queue position first.
    fake.wait(Duration::from_secs(5), "the queued edit", || {
        fake.edits(&sent).first().map(|(_, j)| j["content"].clone())
    })
    .await;
    // Then a worker takes the job, with progress over about two seconds, so at least one
    // "generating n%" edit goes out between the coalesced ones.
    let worker = FakeWorker::start(
        &queue,
        WorkerPlan {
            steps: vec![
                (Stage::Llm, 0.1),
                (Stage::Diffusion, 0.3),
                (Stage::Diffusion, 0.6),
                (Stage::VaeDecode, 0.9),
            ],
            step_delay: Duration::from_millis(500),
            ..WorkerPlan::default()
        },
    );

    // The response follows the job and ends on the now-playing card.
    let edits = fake
        .wait(Duration::from_secs(20), "the now-playing edit", || {
            let edits = fake.edits(&sent);
            let done = edits.iter().any(|(_, j)| {
                j["content"]
                    .as_str()
                    .is_some_and(|c| c.contains("Now playing"))
            });
            done.then_some(edits)
        })
        .await;
    let contents: Vec<String> = edits
        .iter()
        .map(|(_, j)| j["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        contents[0].contains("Queued"),
        "the first edit shows the queue position: {contents:?}"
    );
    assert!(
        contents.iter().any(|c| c.contains('%')),
        "an edit shows generation progress: {contents:?}"
    );
    let (_, last) = edits.last().expect("edits");
    assert_eq!(last["embeds"][0]["title"], "Track 1", "{last}");
    let fields = last["embeds"][0]["fields"].to_string();
    for shown in ["Lyrics", "Duration", "Generated in", "Worker"] {
        assert!(fields.contains(shown), "{shown} missing from {fields}");
    }
    for pair in edits.windows(2) {
        let gap = pair[1].0.at - pair[0].0.at;
        assert!(
            gap >= Duration::from_millis(1400),
            "edits {gap:?} apart: {contents:?}"
        );
    }
    assert_eq!(player.started(ids::GUILD).first(), Some(&first));
    assert_eq!(
        queue.job_required(&first).await.expect("job").state,
        JobState::Succeeded
    );

    // Radio mode keeps going: the buffer holds two tracks ahead of the one playing.
    eventually(Duration::from_secs(10), "a full buffer", || {
        let store = store.clone();
        async move {
            let state = store.load(&ids::GUILD.to_string()).await.ok()?.state;
            (state.status == PlaybackStatus::Playing
                && state.now_playing.is_some()
                && state.ready.len() + state.generating.len() == 2)
                .then_some(())
        }
    })
    .await;

    // Later radio tracks are announced in the channel where the station was started.
    let announcement = fake
        .wait(
            Duration::from_secs(15),
            "a now-playing announcement",
            || {
                fake.requests().into_iter().find(|r| {
                    r.method == "POST"
                        && r.path == format!("/api/v10/channels/{}/messages", ids::TEXT)
                })
            },
        )
        .await;
    let announced = announcement.json().expect("message JSON");
    assert!(
        announced["embeds"][0]["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("Track")),
        "{announced}"
    );

    // What listeners can look up meanwhile.
    let sent = fake.command(
        ids::GUILD,
        &Member::listener(ids::LISTENER),
        "queue",
        json!([]),
    );
    let (_, body) = fake.callback(&sent, Duration::from_secs(3)).await;
    let text = body["data"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(text.contains("**Now playing:** Track"), "{text}");
    assert!(text.contains("Buffer: 2 of 2"), "{text}");
    let sent = fake.command(
        ids::GUILD,
        &Member::listener(ids::LISTENER),
        "nowplaying",
        json!([]),
    );
    let (_, body) = fake.callback(&sent, Duration::from_secs(3)).await;
    assert!(
        body["data"]["embeds"][0]["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("Track")),
        "{body}"
    );
    let sent = fake.command(
        ids::GUILD,
        &Member::listener(ids::LISTENER),
        "stats",
        json!([]),
    );
    let (_, body) = fake.callback(&sent, Duration::from_secs(3)).await;
    let stats = body["data"]["embeds"][0].to_string();
    for shown in [
        "Played: **",
        "radio",
        "p95",
        "Real-time factor",
        "Workers online",
        "Bot uptime",
    ] {
        assert!(stats.contains(shown), "{shown} missing from {stats}");
    }

    let (status, metrics) = http_get(bot.metrics, "/metrics")
        .await
        .expect("GET /metrics");
    assert_eq!(status, 200);
    for line in [
        "radio_bot_commands_total{command=\"play\",outcome=\"ok\"} 1",
        "radio_bot_voice_sessions 1",
        "radio_bot_active_stations 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    assert!(metrics.contains("radio_bot_track_ready_seconds_count"));
    assert!(metrics.contains("radio_bot_tracks_played_total{source=\"radio\"}"));
    promtool_accepts(&metrics);
    let (status, _) = http_get(bot.metrics, "/healthz")
        .await
        .expect("GET /healthz");
    assert_eq!(status, 200);

    bot.stop().await;
    worker.stop().await;
    presence.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generate_plays_the_request_next_and_upload_posts_the_playing_track() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let fake = FakeDiscord::start(World::default_guild()).await;
    let worker = FakeWorker::start(&queue, WorkerPlan::default());
    let player = RecordingPlayer::with_speed(0.5);
    let bot = RunningBot::start(&redis, &queue, &fake, player.clone(), |_, _| {}).await;
    fake.wait_identified(1, Duration::from_secs(10)).await;

    // Anyone may request a song; the bot joins the requester's channel.
    let sent = fake.command(
        ids::GUILD,
        &Member::listener(ids::LISTENER),
        "generate",
        serde_json::json!([string_option("prompt", "a calm piano piece")]),
    );
    let (_, body) = fake.callback(&sent, Duration::from_secs(3)).await;
    assert_eq!(body["type"], 5, "{body}");
    let started = fake
        .wait(Duration::from_secs(15), "the request to play", || {
            player.started(ids::GUILD).into_iter().next()
        })
        .await;
    let record = queue.job_required(&started).await.expect("job");
    let spec = record.spec.expect("spec");
    assert_eq!(
        spec.generate_task().song.caption.as_deref(),
        Some("a calm piano piece")
    );
    assert_eq!(spec.requested_by, Some(ids::LISTENER.to_string()));
    // A listener's request on a stopped station plays alone: starting the radio needs `/radio play`.
    let jobs = queue.jobs(None, 100).await.expect("jobs");
    assert_eq!(jobs.len(), 1, "no radio tracks were queued: {jobs:?}");

    // /radio upload posts the playing track as an .ogg within the limit.
    let upload = fake.command(
        ids::GUILD,
        &Member::listener(ids::LISTENER),
        "upload",
        serde_json::json!([]),
    );
    let posted = fake
        .wait(Duration::from_secs(5), "the uploaded file", || {
            fake.requests_for(&upload)
                .into_iter()
                .find(|r| r.method == "PATCH" && r.has_file("Track_1.ogg"))
        })
        .await;
    let audio = super::fixture_audio();
    assert!(
        posted
            .body
            .windows(audio.len().min(64))
            .any(|w| w == &audio[..audio.len().min(64)]),
        "the attachment carries the track's bytes"
    );

    bot.stop().await;
    worker.stop().await;
}

/// `promtool check metrics` (Debian package `prometheus`) accepts the exposition.
fn promtool_accepts(metrics: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}); install it with apt-get install prometheus")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_over_the_request_limit_is_told_when_to_ask_again() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let fake = FakeDiscord::start(World::default_guild()).await;
    let worker = FakeWorker::start(&queue, WorkerPlan::default());
    let player = RecordingPlayer::with_speed(0.5);
    let bot = RunningBot::start(&redis, &queue, &fake, player.clone(), |config, _| {
        config.request_limit.limit = 2;
        config.request_limit.window = Duration::from_secs(600);
    })
    .await;
    fake.wait_identified(1, Duration::from_secs(10)).await;
    let generate = |prompt: &str| {
        fake.command(
            ids::GUILD,
            &Member::listener(ids::LISTENER),
            "generate",
            serde_json::json!([string_option("prompt", prompt)]),
        )
    };
    let mut accepted = Vec::new();
    for prompt in ["first song", "second song"] {
        let sent = generate(prompt);
        let (_, body) = fake.callback(&sent, Duration::from_secs(3)).await;
        assert_eq!(body["type"], 5, "accepted and deferred: {body}");
        accepted.push(sent.id);
    }
    let third = generate("third song");
    let (_, body) = fake.callback(&third, Duration::from_secs(3)).await;
    assert_eq!(body["type"], 4, "answered at once: {body}");
    assert_eq!(
        body["data"]["flags"].as_u64().unwrap_or(0) & 64,
        64,
        "privately: {body}"
    );
    let text = body["data"]["content"].as_str().unwrap_or_default();
    assert!(
        text.contains("You have asked for 2 songs in the last 10 min")
            && text.contains("You can ask again in 10 min"),
        "{text}"
    );
    // Each request is enqueued under its interaction id: the refused one has none.
    let mut raw = redis.raw().await;
    let dedup = |sent: u64| queue.keys().dedup(&sent.to_string());
    let refused: bool = redis::cmd("EXISTS")
        .arg(dedup(third.id))
        .query_async(&mut raw)
        .await
        .expect("EXISTS");
    assert!(!refused, "the refused request enqueued nothing");
    for id in accepted {
        let enqueued: bool =
            eventually(Duration::from_secs(5), "an accepted request's job", || {
                let (key, mut raw) = (dedup(id), raw.clone());
                async move {
                    let found: bool = redis::cmd("EXISTS")
                        .arg(key)
                        .query_async(&mut raw)
                        .await
                        .ok()?;
                    found.then_some(true)
                }
            })
            .await;
        assert!(enqueued);
    }
    bot.stop().await;
    worker.stop().await;
}
