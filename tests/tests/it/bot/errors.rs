//! Everything a user can get wrong ends in a clear ephemeral message, and station-changing commands
//! need Manage Server or the DJ role.

use std::time::Duration;

use radio_bot::player::recording::RecordingPlayer;
use radio_shared::job::{GenerateTask, JobSpec, Priority, SongRequest};
use radio_shared::queue::EnqueueRequest;
use radio_shared::station::StationStore;
use radio_tests::fake_discord::{FakeDiscord, Member, World, ids};
use radio_tests::http_get;
use radio_tests::{TestRedis, eventually};
use serde_json::json;

use super::{FakeWorker, RunningBot, WorkerPlan, integer_option, string_option};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_user_error_gets_its_own_ephemeral_message() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let fake = FakeDiscord::start(World::default_guild()).await;
    let player = RecordingPlayer::new();
    let bot = RunningBot::start(&redis, &queue, &fake, player.clone(), |_, settings| {
        settings.guild_cap = 2;
    })
    .await;
    fake.wait_identified(1, Duration::from_secs(10)).await;
    let manager = |user| Member::manager(user);

    // Not in a voice channel.
    let sent = fake.command(ids::GUILD, &manager(ids::NOT_IN_VOICE), "play", json!([]));
    let text = fake.ephemeral_text(&sent, WAIT).await;
    assert!(text.contains("Join a voice channel"), "{text}");

    // The bot may not connect to the user's channel (@everyone is denied Connect there).
    let sent = fake.command(
        ids::GUILD,
        &manager(ids::LOCKED_LISTENER),
        "play",
        json!([]),
    );
    let text = fake.ephemeral_text(&sent, WAIT).await;
    assert!(text.contains("Connect permission"), "{text}");
    assert!(
        text.contains(&format!("<#{}>", ids::LOCKED_VOICE)),
        "{text}"
    );

    // It may connect but not speak there.
    let sent = fake.command(ids::GUILD, &manager(ids::MUTED_LISTENER), "play", json!([]));
    let text = fake.ephemeral_text(&sent, WAIT).await;
    assert!(
        text.contains("the Speak permission") && !text.contains("Connect"),
        "{text}"
    );

    // No worker online.
    let sent = fake.command(ids::GUILD, &manager(ids::LISTENER), "play", json!([]));
    let text = fake.ephemeral_text(&sent, WAIT).await;
    assert!(text.contains("No music worker is online"), "{text}");

    // A worker that accepts at most 30 s (registered, but it takes no jobs, so they stay queued).
    let worker = FakeWorker::start(
        &queue,
        WorkerPlan {
            max_duration_s: 30.0,
            consume: false,
            ..WorkerPlan::default()
        },
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = fake.command(
        ids::GUILD,
        &manager(ids::LISTENER),
        "play",
        json!([integer_option("duration", 120)]),
    );
    let text = fake.ephemeral_text(&sent, WAIT).await;
    assert!(text.contains("between 6 and 30 seconds"), "{text}");
    assert!(text.contains("workers accept up to 30 s"), "{text}");

    // The server's own limit is named when it is the tighter one.
    let sent = fake.command(
        ids::GUILD,
        &manager(ids::LISTENER),
        "maxlength",
        json!([integer_option("seconds", 20)]),
    );
    let (_, body) = fake.callback(&sent, WAIT).await;
    assert!(
        body["data"]["content"]
            .as_str()
            .unwrap_or_default()
            .contains("20 s"),
        "{body}"
    );
    let sent = fake.command(
        ids::GUILD,
        &manager(ids::LISTENER),
        "generate",
        json!([string_option("prompt", "x"), integer_option("duration", 25)]),
    );
    let text = fake.ephemeral_text(&sent, WAIT).await;
    assert!(text.contains("maxlength is 20 s"), "{text}");

    // Nothing playing.
    for sub in ["skip", "pause", "nowplaying", "upload"] {
        let sent = fake.command(ids::GUILD, &manager(ids::LISTENER), sub, json!([]));
        let text = fake.ephemeral_text(&sent, WAIT).await;
        assert!(text.contains("Nothing is playing"), "{sub}: {text}");
    }
    let sent = fake.command(ids::GUILD, &manager(ids::LISTENER), "leave", json!([]));
    let text = fake.ephemeral_text(&sent, WAIT).await;
    assert!(text.contains("not in a voice channel"), "{text}");

    // The guild's queue is full: two unfinished jobs already (the cap is 2).
    for _ in 0..2 {
        let mut spec = JobSpec::generate(
            Priority::Radio,
            GenerateTask {
                song: SongRequest {
                    duration_s: 10.0,
                    ..SongRequest::default()
                },
                ..GenerateTask::default()
            },
        );
        spec.guild_id = Some(ids::GUILD.to_string());
        queue
            .enqueue(EnqueueRequest::new(spec))
            .await
            .expect("enqueue");
    }
    let sent = fake.command(
        ids::GUILD,
        &Member::listener(ids::LISTENER),
        "generate",
        json!([string_option("prompt", "a sea shanty")]),
    );
    let text = fake.ephemeral_text(&sent, Duration::from_secs(10)).await;
    assert!(text.contains("queue is full"), "{text}");
    // The refused request left nothing behind in the station.
    let stored = StationStore::new(queue.clone())
        .load(&ids::GUILD.to_string())
        .await
        .expect("station");
    assert!(stored.state.generating.is_empty(), "{:?}", stored.state);
    assert!(
        !stored.state.status.is_on() && !stored.state.requests_only,
        "a refused request leaves the station off: {:?}",
        stored.state
    );
    // `/radio play` hears the same when its first track is refused.
    let sent = fake.command(ids::GUILD, &manager(ids::LISTENER), "play", json!([]));
    let text = fake.ephemeral_text(&sent, Duration::from_secs(10)).await;
    assert!(text.contains("queue is full"), "{text}");

    // Counted once each (the count lands just after the reply, so it is awaited).
    let addr = bot.metrics;
    eventually(
        WAIT,
        "six refused /radio play commands counted",
        || async move {
            let (_, metrics) = http_get(addr, "/metrics").await.ok()?;
            metrics
                .contains("radio_bot_commands_total{command=\"play\",outcome=\"user_error\"} 6")
                .then_some(())
        },
    )
    .await;
    bot.stop().await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changing_the_station_needs_manage_server_or_the_dj_role() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let fake = FakeDiscord::start(World::default_guild()).await;
    let bot = RunningBot::start(
        &redis,
        &queue,
        &fake,
        RecordingPlayer::new(),
        |config, _| {
            config.guild_id = Some(ids::GUILD);
        },
    )
    .await;
    fake.wait_identified(1, Duration::from_secs(10)).await;
    // With DISCORD_GUILD_ID, /radio is registered in that guild only.
    fake.wait(WAIT, "guild command registration", || {
        fake.requests().into_iter().find(|r| {
            r.method == "PUT"
                && r.path
                    == format!(
                        "/api/v10/applications/{}/guilds/{}/commands",
                        ids::APPLICATION,
                        ids::GUILD
                    )
        })
    })
    .await;
    let store = StationStore::new(queue.clone());
    let genre = |name: &str| json!([string_option("name", name)]);

    // Neither: refused, and the setting does not change.
    let sent = fake.command(
        ids::GUILD,
        &Member::listener(ids::LISTENER),
        "genre",
        genre("polka"),
    );
    let text = fake.ephemeral_text(&sent, WAIT).await;
    assert!(
        text.contains("Manage Server permission or the `DJ` role"),
        "{text}"
    );
    for sub in ["play", "skip", "stop", "leave", "join", "auto", "preset"] {
        let sent = fake.command(ids::GUILD, &Member::listener(ids::LISTENER), sub, json!([]));
        let text = fake.ephemeral_text(&sent, WAIT).await;
        assert!(text.contains("Manage Server"), "{sub}: {text}");
    }

    // The DJ role: allowed.
    let sent = fake.command(
        ids::GUILD,
        &Member::dj(ids::LISTENER),
        "genre",
        genre("jazz"),
    );
    let (_, body) = fake.callback(&sent, WAIT).await;
    assert_eq!(body["type"], 4, "{body}");
    assert_eq!(
        body["data"]["flags"].as_u64().unwrap_or(0) & 64,
        0,
        "public"
    );
    assert!(
        body["data"]["content"]
            .as_str()
            .unwrap_or_default()
            .contains("jazz")
    );
    let settings = store
        .load(&ids::GUILD.to_string())
        .await
        .expect("load")
        .settings
        .expect("saved settings");
    assert_eq!(settings.music.genre, "jazz");

    // Manage Server: allowed.
    let sent = fake.command(
        ids::GUILD,
        &Member::manager(ids::NOT_IN_VOICE),
        "genre",
        genre("bossa nova"),
    );
    let (_, body) = fake.callback(&sent, WAIT).await;
    assert_eq!(body["type"], 4, "{body}");
    let settings = store
        .load(&ids::GUILD.to_string())
        .await
        .expect("load")
        .settings
        .expect("saved settings");
    assert_eq!(settings.music.genre, "bossa nova");

    // Reading commands are open to everyone, and private.
    for sub in ["settings", "queue", "help", "stats"] {
        let sent = fake.command(ids::GUILD, &Member::listener(ids::LISTENER), sub, json!([]));
        let (_, body) = fake.callback(&sent, WAIT).await;
        assert_eq!(body["type"], 4, "{sub}: {body}");
        assert_eq!(
            body["data"]["flags"].as_u64().unwrap_or(0) & 64,
            64,
            "{sub}: {body}"
        );
    }
    let sent = fake.command(
        ids::GUILD,
        &Member::listener(ids::LISTENER),
        "settings",
        json!([]),
    );
    let (_, body) = fake.callback(&sent, WAIT).await;
    assert!(
        body["data"]["embeds"].to_string().contains("bossa nova"),
        "{body}"
    );

    // Autocomplete offers genres and keeps free text first.
    let sent = fake.autocomplete(
        ids::GUILD,
        &Member::listener(ids::LISTENER),
        "genre",
        json!([{"name": "name", "type": 3, "value": "lo", "focused": true}]),
    );
    let (_, body) = fake.callback(&sent, WAIT).await;
    assert_eq!(body["type"], 8, "{body}");
    let choices = body["data"]["choices"].to_string();
    assert!(choices.contains("lofi hip hop"), "{choices}");

    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_token_stops_the_bot_with_a_message_that_says_what_to_check() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let fake = FakeDiscord::start(World::default_guild()).await;
    fake.reject_identify(4004);
    let bot = RunningBot::start(&redis, &queue, &fake, RecordingPlayer::new(), |_, _| {}).await;
    let error = bot
        .ended(Duration::from_secs(15))
        .await
        .expect_err("the bot cannot run without a valid token");
    assert!(error.to_string().contains("DISCORD_TOKEN"), "{error}");
}
