//! A restarted bot resumes its stations from Redis: it rejoins the voice channel, replays the track
//! that was cut off, picks up jobs that finished while it was down, keeps the buffer full, and its
//! stats count radio tracks too.

use std::time::Duration;

use radio_bot::player::recording::RecordingPlayer;
use radio_shared::station::{PlaybackStatus, StationStore};
use radio_tests::fake_discord::{FakeDiscord, Member, World, ids};
use radio_tests::{TestRedis, eventually};
use serde_json::json;

use super::{FakeWorker, RunningBot, WorkerPlan};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_bot_resumes_the_station_where_it_was() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let fake = FakeDiscord::start(World::default_guild()).await;
    let worker = FakeWorker::start(&queue, WorkerPlan::default());
    let store = StationStore::new(queue.clone());
    let guild = ids::GUILD.to_string();

    // First life: start the station and let two tracks play (5 s tracks at 2× speed), then stop the
    // bot in the middle of a track.
    let first_player = RecordingPlayer::with_speed(2.0);
    let bot = RunningBot::start(&redis, &queue, &fake, first_player.clone(), |_, _| {}).await;
    fake.wait_identified(1, Duration::from_secs(10)).await;
    let sent = fake.command(ids::GUILD, &Member::dj(ids::LISTENER), "play", json!([]));
    let (_, body) = fake.callback(&sent, Duration::from_secs(3)).await;
    assert_eq!(body["type"], 5);
    fake.wait(
        Duration::from_secs(30),
        "a second track to be playing",
        || {
            (first_player.started(ids::GUILD).len() >= 2)
                .then(|| first_player.current(ids::GUILD))
                .flatten()
        },
    )
    .await;
    bot.stop().await;
    let saved = store.load(&guild).await.expect("load").state;
    assert_eq!(saved.status, PlaybackStatus::Playing);
    assert_eq!(saved.voice_channel, Some(ids::VOICE.to_string()));
    // The track cut off by the stop.
    let interrupted = saved
        .now_playing
        .clone()
        .map(|t| t.job)
        .expect("a track was playing when the bot stopped");
    let joins_before = fake.voice_updates().len();

    // While the bot is down, the worker finishes what was queued.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Second life: nobody runs a command; the station comes back by itself.
    let second_player = RecordingPlayer::with_speed(5.0);
    let bot = RunningBot::start(&redis, &queue, &fake, second_player.clone(), |_, _| {}).await;
    fake.wait_identified(2, Duration::from_secs(10)).await;
    let rejoin = fake
        .wait(Duration::from_secs(10), "the voice rejoin", || {
            fake.voice_updates().into_iter().nth(joins_before)
        })
        .await;
    assert_eq!(rejoin["channel_id"], ids::VOICE.to_string());
    fake.wait(
        Duration::from_secs(20),
        "tracks to play after the restart",
        || (second_player.started(ids::GUILD).len() >= 3).then_some(()),
    )
    .await;
    let replayed = second_player.started(ids::GUILD);
    assert_eq!(
        replayed[0], interrupted,
        "the track that was cut off plays again first"
    );
    let first_life = first_player.started(ids::GUILD);
    assert!(
        replayed[1..].iter().all(|j| !first_life.contains(j)),
        "after the cut-off track, only new tracks play"
    );
    assert!(
        second_player.gaps(ids::GUILD).iter().all(Duration::is_zero),
        "{:?}",
        second_player.gaps(ids::GUILD)
    );
    eventually(Duration::from_secs(10), "a full buffer", || {
        let store = store.clone();
        let guild = guild.clone();
        async move {
            let state = store.load(&guild).await.ok()?.state;
            (state.ready.len() + state.generating.len() == 2).then_some(())
        }
    })
    .await;

    // Stats survive the restart and count every radio track, once (a replayed track counts once).
    let distinct = |player: &RecordingPlayer| {
        let mut all = first_life.clone();
        all.extend(player.started(ids::GUILD));
        all.sort();
        all.dedup();
        all.len() as u64
    };
    let before = distinct(&second_player);
    let stats = store.stats(Some(&guild)).await.expect("stats");
    let after = distinct(&second_player);
    assert!(
        (before..=after).contains(&stats.played),
        "played {} not within {before}..={after}",
        stats.played
    );
    assert!(stats.generated_radio >= stats.played, "{stats:?}");
    assert_eq!(stats.generated_request, 0);
    assert!(stats.p95_generation_s().is_some());
    let global = store.stats(None).await.expect("global stats");
    assert!(global.generated >= stats.generated, "{global:?}");

    bot.stop().await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bot_restarted_without_its_track_cache_generates_new_tracks_instead_of_replaying() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let fake = FakeDiscord::start(World::default_guild()).await;
    let worker = FakeWorker::start(&queue, WorkerPlan::default());
    let store = StationStore::new(queue.clone());
    let guild = ids::GUILD.to_string();

    let first_player = RecordingPlayer::new();
    let bot = RunningBot::start(&redis, &queue, &fake, first_player.clone(), |_, _| {}).await;
    fake.wait_identified(1, Duration::from_secs(10)).await;
    fake.command(ids::GUILD, &Member::dj(ids::LISTENER), "play", json!([]));
    // 5 s tracks at real speed: the stop lands in the middle of the first one.
    eventually(Duration::from_secs(30), "a track to be playing", || {
        let store = store.clone();
        let guild = guild.clone();
        async move { store.load(&guild).await.ok()?.state.now_playing }
    })
    .await;
    bot.stop().await;
    let saved = store.load(&guild).await.expect("load").state;
    let interrupted = saved
        .now_playing
        .map(|t| t.job)
        .expect("the bot stopped during a track");
    // The bot took every finished track out of Redis: only its cache had the audio.
    assert!(
        queue.result(&interrupted).await.expect("result").is_none(),
        "the playing track's audio left Redis when the bot took it"
    );

    // Second life on another machine: same Redis, an empty cache.
    let elsewhere = redis.dir().join("another-host-cache");
    let second_player = RecordingPlayer::with_speed(5.0);
    let bot = RunningBot::start(&redis, &queue, &fake, second_player.clone(), |config, _| {
        config.cache_dir = elsewhere
    })
    .await;
    fake.wait_identified(2, Duration::from_secs(10)).await;
    fake.wait(
        Duration::from_secs(20),
        "new tracks to play after the restart",
        || (second_player.started(ids::GUILD).len() >= 2).then_some(()),
    )
    .await;
    let played = second_player.started(ids::GUILD);
    assert!(
        !played.contains(&interrupted),
        "a track whose audio was lost is not replayed: {played:?}"
    );
    assert!(
        played
            .iter()
            .all(|j| !first_player.started(ids::GUILD).contains(j)),
        "only new tracks play"
    );
    bot.stop().await;
    worker.stop().await;
}
