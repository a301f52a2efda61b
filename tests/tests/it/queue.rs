//! The queue protocol against a real redis-server: delivery, leases, retries, dead letters,
//! cancellation, fairness and shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use radio_shared::job::{
    GenerateTask, JobId, JobSpec, JobState, Priority, Progress, ResultMeta, SongRequest, Stage,
    Station, Writer,
};
use radio_shared::queue::{
    CancelOutcome, ClaimedJob, Consumer, EnqueueRequest, EventKind, FinishOutcome, JobFailure,
    Queue, QueueError, QueueSettings,
};
use radio_tests::{TestRedis, eventually, fast_settings};
use redis::AsyncCommands;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

fn spec(priority: Priority) -> JobSpec {
    JobSpec::generate(
        priority,
        GenerateTask {
            station: Station::default(),
            song: SongRequest {
                duration_s: 10.0,
                ..SongRequest::default()
            },
            ..GenerateTask::default()
        },
    )
}

fn meta(worker: &str) -> ResultMeta {
    ResultMeta {
        title: "Test Tone".into(),
        caption: "c".into(),
        lyrics: "[Instrumental]".into(),
        bpm: Some(90),
        keyscale: Some("A minor".into()),
        timesignature: Some(4),
        language: "en".into(),
        duration_s: 10.0,
        seed: 1,
        writer: Writer::Template,
        worker: worker.into(),
        format: Default::default(),
        stage_seconds: Default::default(),
        total_seconds: 0.5,
        peak_vram_bytes: 0,
    }
}

async fn enqueue(queue: &Queue, spec: JobSpec) -> JobId {
    queue
        .enqueue(EnqueueRequest::new(spec))
        .await
        .expect("enqueue")
        .id
}

/// Claims the next job within `timeout`.
async fn claim(consumer: &Consumer, timeout: Duration) -> ClaimedJob {
    let shutdown = CancellationToken::new();
    tokio::time::timeout(timeout, consumer.claim_next(&shutdown))
        .await
        .unwrap_or_else(|_| panic!("{} claimed nothing within {timeout:?}", consumer.name()))
        .expect("claim")
        .expect("not shut down")
}

async fn state(queue: &Queue, id: &JobId) -> JobState {
    queue.job_required(id).await.expect("job").state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_jobs_through_four_consumers_finish_exactly_once_even_when_one_dies() {
    let redis = TestRedis::start();
    // Leases of 2 s: a shared machine's stall of a few hundred ms must not pass a live job on.
    let queue = redis
        .queue_with(QueueSettings {
            reclaim_after: Duration::from_secs(2),
            ..fast_settings()
        })
        .await;
    let mut ids = Vec::new();
    for i in 0..1000 {
        let priority = if i % 3 == 0 {
            Priority::Interactive
        } else {
            Priority::Radio
        };
        ids.push(enqueue(&queue, spec(priority)).await);
    }

    // One consumer claims a job and dies: its lease stops, nobody acknowledges the entry.
    let doomed = queue.consumer("doomed");
    let abandoned = claim(&doomed, Duration::from_secs(5)).await;
    let abandoned_id = abandoned.spec().id.clone();
    drop(abandoned);

    let completions: Arc<Mutex<HashMap<JobId, u32>>> = Arc::default();
    let claims: Arc<Mutex<HashMap<JobId, u32>>> = Arc::default();
    let reclaimed_by: Arc<Mutex<Option<String>>> = Arc::default();
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for n in 0..4 {
        let consumer = queue.consumer(format!("consumer-{n}"));
        let completions = completions.clone();
        let claims = claims.clone();
        let reclaimed_by = reclaimed_by.clone();
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(job) = consumer.claim_next(&shutdown).await.expect("claim") {
                if job.reclaimed() {
                    *reclaimed_by.lock().await = Some(consumer.name().to_string());
                }
                let id = job.spec().id.clone();
                *claims.lock().await.entry(id.clone()).or_default() += 1;
                let outcome = job
                    .complete(b"audio", &meta(consumer.name()))
                    .await
                    .expect("complete");
                if outcome == FinishOutcome::Succeeded {
                    *completions.lock().await.entry(id).or_default() += 1;
                }
            }
        }));
    }
    let started = tokio::time::Instant::now();
    eventually(Duration::from_secs(60), "all 1000 jobs to succeed", || {
        let completions = completions.clone();
        async move { (completions.lock().await.len() == 1000).then_some(()) }
    })
    .await;
    shutdown.cancel();
    for t in tasks {
        t.await.expect("consumer task");
    }

    let completions = completions.lock().await;
    assert!(
        completions.values().all(|&n| n == 1),
        "a job completed twice"
    );
    // Delivered once each: no live lease was taken over, and only the abandoned job ran twice.
    let claims = claims.lock().await;
    let twice: Vec<_> = claims.iter().filter(|&(_, &n)| n != 1).collect();
    assert!(twice.is_empty(), "claimed more than once: {twice:?}");
    assert_eq!(claims.len(), 1000);
    for id in &ids {
        let record = queue.job_required(id).await.expect("record");
        assert_eq!(record.state, JobState::Succeeded, "{id}");
        if *id != abandoned_id {
            assert_eq!(record.attempts, 1, "{id} was run more than once");
        }
    }
    let record = queue.job_required(&abandoned_id).await.expect("record");
    assert_eq!(
        record.attempts, 2,
        "the abandoned job ran once more elsewhere"
    );
    assert!(
        reclaimed_by.lock().await.is_some(),
        "another consumer reclaimed it"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    let status = queue.status().await.expect("status");
    assert!(
        status
            .streams
            .iter()
            .all(|s| s.pending == 0 && s.waiting == 0),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_dead_consumers_job_is_taken_over_within_the_reclaim_time() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let id = enqueue(&queue, spec(Priority::Radio)).await;
    let first = queue.consumer("first");
    let job = claim(&first, Duration::from_secs(2)).await;
    drop(job); // the process died: no more heartbeats

    let second = queue.consumer("second");
    let started = tokio::time::Instant::now();
    let job = claim(&second, Duration::from_secs(3)).await;
    let waited = started.elapsed();
    assert_eq!(job.spec().id, id);
    assert!(job.reclaimed());
    assert_eq!(job.attempt(), 2);
    let reclaim = queue.settings().reclaim_after;
    assert!(
        waited <= reclaim + queue.settings().block + Duration::from_millis(300),
        "took {waited:?}"
    );
    job.complete(b"x", &meta("second")).await.expect("complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_inference_thread_does_not_lose_its_lease() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    enqueue(&queue, spec(Priority::Radio)).await;
    let job = claim(&queue.consumer("busy"), Duration::from_secs(2)).await;
    // A GPU call that blocks its thread for five reclaim periods.
    let blocked = queue.settings().reclaim_after * 5;
    tokio::task::spawn_blocking(move || std::thread::sleep(blocked))
        .await
        .expect("blocking task");
    // Nobody else may take the job meanwhile.
    let other = queue.consumer("other");
    assert!(matches!(
        other.claim_now().await.expect("claim"),
        Some(Err(_))
    ));
    assert!(!job.control().lease_lost());
    assert_eq!(
        job.complete(b"x", &meta("busy")).await.expect("complete"),
        FinishOutcome::Succeeded
    );
}

#[tokio::test]
async fn a_job_that_always_fails_is_dead_lettered_with_its_error_and_retry_brings_it_back() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let id = enqueue(&queue, spec(Priority::Interactive)).await;
    let consumer = queue.consumer("w");
    let max = queue.settings().max_attempts;
    for attempt in 1..=max {
        let job = claim(&consumer, Duration::from_secs(3)).await;
        assert_eq!(job.attempt(), attempt);
        let outcome = job
            .fail(JobFailure::transient(format!("boom {attempt}")))
            .await
            .expect("fail");
        if attempt < max {
            assert!(
                matches!(outcome, FinishOutcome::Retrying { .. }),
                "{outcome:?}"
            );
            assert_eq!(state(&queue, &id).await, JobState::Retrying);
        } else {
            assert_eq!(outcome, FinishOutcome::Failed);
        }
    }
    let record = queue.job_required(&id).await.expect("record");
    assert_eq!(record.state, JobState::Failed);
    assert!(
        record
            .error
            .as_deref()
            .is_some_and(|e| e.contains("boom 3")),
        "{:?}",
        record.error
    );
    let dead = queue.dead_letters().await.expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].job.as_ref(), Some(&id));
    assert!(dead[0].error.contains("boom 3"));

    queue.retry(&id).await.expect("retry");
    assert!(queue.dead_letters().await.expect("dead").is_empty());
    let job = claim(&consumer, Duration::from_secs(2)).await;
    assert_eq!(job.spec().id, id);
    assert_eq!(job.attempt(), 1, "attempts start over");
    job.complete(b"x", &meta("w")).await.expect("complete");
    assert_eq!(state(&queue, &id).await, JobState::Succeeded);
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_at_once() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let id = enqueue(&queue, spec(Priority::Radio)).await;
    let job = claim(&queue.consumer("w"), Duration::from_secs(2)).await;
    let outcome = job
        .fail(JobFailure::permanent("duration too long for every worker"))
        .await;
    assert_eq!(outcome.expect("fail"), FinishOutcome::Failed);
    let record = queue.job_required(&id).await.expect("record");
    assert_eq!((record.state, record.attempts), (JobState::Failed, 1));
}

#[tokio::test]
async fn a_job_whose_workers_keep_dying_is_dead_lettered_after_max_attempts() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let id = enqueue(&queue, spec(Priority::Radio)).await;
    for n in 0..queue.settings().max_attempts {
        let job = claim(
            &queue.consumer(format!("crashy-{n}")),
            Duration::from_secs(3),
        )
        .await;
        drop(job);
    }
    // The next claim finds the attempts exhausted and dead-letters instead of running it again.
    let consumer = queue.consumer("last");
    let claimed = tokio::time::timeout(
        Duration::from_secs(2),
        consumer.claim_next(&CancellationToken::new()),
    )
    .await;
    assert!(claimed.is_err(), "nothing is left to claim");
    let record = queue.job_required(&id).await.expect("record");
    assert_eq!(record.state, JobState::Failed);
    assert!(
        record
            .error
            .as_deref()
            .is_some_and(|e| e.contains("gave up after 3 attempts")),
        "{:?}",
        record.error
    );
    assert_eq!(queue.dead_letters().await.expect("dead").len(), 1);
}

#[tokio::test]
async fn malformed_entries_are_dead_lettered_with_the_reason_and_the_consumer_keeps_working() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let stream = queue.keys().stream(Priority::Interactive);
    let mut raw = redis.raw().await;
    let _: String = raw
        .xadd(&stream, "*", &[("garbage", "fields")])
        .await
        .expect("xadd");
    let bad_json_id = JobId::new();
    let _: String = raw
        .xadd(
            &stream,
            "*",
            &[("job", bad_json_id.as_str()), ("spec", "{not json")],
        )
        .await
        .expect("xadd");
    let future_id = JobId::new();
    let future = format!("{{\"v\": 7, \"id\": \"{future_id}\", \"kind\": \"generate\"}}");
    let _: String = raw
        .xadd(
            &stream,
            "*",
            &[("job", future_id.as_str()), ("spec", future.as_str())],
        )
        .await
        .expect("xadd");
    let good = enqueue(&queue, spec(Priority::Interactive)).await;

    let job = claim(&queue.consumer("w"), Duration::from_secs(3)).await;
    assert_eq!(
        job.spec().id,
        good,
        "the consumer skipped the bad entries and got the good job"
    );
    job.complete(b"x", &meta("w")).await.expect("complete");

    let dead = queue.dead_letters().await.expect("dead");
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert!(
        dead[0].error.contains("malformed")
            && dead[0]
                .raw
                .as_deref()
                .is_some_and(|r| r.contains("garbage"))
    );
    assert!(
        dead[1].error.contains("not a valid job"),
        "{}",
        dead[1].error
    );
    assert!(
        dead[2].error.contains("wire version 7"),
        "{}",
        dead[2].error
    );
    assert_eq!(state(&queue, &bad_json_id).await, JobState::Failed);
    let status = queue.status().await.expect("status");
    assert_eq!(status.streams[0].pending, 0, "nothing left unacknowledged");
}

#[tokio::test]
async fn an_entry_added_with_plain_redis_cli_is_adopted_and_run() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let spec = spec(Priority::Radio);
    let mut raw = redis.raw().await;
    let _: String = raw
        .xadd(
            queue.keys().stream(Priority::Radio),
            "*",
            &[("job", spec.id.as_str()), ("spec", spec.encode().as_str())],
        )
        .await
        .expect("xadd");
    let job = claim(&queue.consumer("w"), Duration::from_secs(2)).await;
    assert_eq!(job.spec(), &spec);
    job.complete(b"x", &meta("w")).await.expect("complete");
    assert_eq!(state(&queue, &spec.id).await, JobState::Succeeded);
}

#[tokio::test]
async fn the_same_dedup_key_twice_gives_one_job() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let first = queue
        .enqueue(EnqueueRequest::new(spec(Priority::Interactive)).dedup("interaction-42"))
        .await
        .expect("enqueue");
    let second = queue
        .enqueue(EnqueueRequest::new(spec(Priority::Interactive)).dedup("interaction-42"))
        .await
        .expect("enqueue");
    assert!(!first.duplicate && second.duplicate);
    assert_eq!(first.id, second.id);
    assert_eq!(queue.jobs(None, 100).await.expect("jobs").len(), 1);
    let status = queue.status().await.expect("status");
    assert_eq!(status.streams[0].waiting, 1);
}

#[tokio::test]
async fn a_cancelled_queued_job_never_runs() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let cancelled = enqueue(&queue, spec(Priority::Radio)).await;
    let kept = enqueue(&queue, spec(Priority::Radio)).await;
    assert_eq!(
        queue.cancel(&cancelled, "test").await.expect("cancel"),
        CancelOutcome::Cancelled
    );
    assert_eq!(state(&queue, &cancelled).await, JobState::Cancelled);
    let consumer = queue.consumer("w");
    let job = claim(&consumer, Duration::from_secs(2)).await;
    assert_eq!(job.spec().id, kept);
    job.complete(b"x", &meta("w")).await.expect("complete");
    assert!(matches!(
        consumer.claim_now().await.expect("claim"),
        Some(Err(_))
    ));
    assert_eq!(
        queue.cancel(&cancelled, "test").await.expect("cancel"),
        CancelOutcome::AlreadyFinished(JobState::Cancelled)
    );
    let status = queue.status().await.expect("status");
    assert_eq!(status.streams[1].pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_stops_at_its_next_step_when_cancelled_from_another_process() {
    let redis = TestRedis::start();
    let worker_side = redis.queue().await;
    let id = enqueue(&worker_side, spec(Priority::Interactive)).await;
    let job = claim(&worker_side.consumer("w"), Duration::from_secs(2)).await;
    let control = job.control();
    let runtime = tokio::runtime::Handle::current();
    // A "pipeline" on a blocking thread: 8 steps of 50 ms, reporting after each.
    let steps = tokio::task::spawn_blocking(move || {
        let mut done = 0;
        for step in 0..8 {
            std::thread::sleep(Duration::from_millis(50));
            done = step + 1;
            let progress = Progress {
                stage: Stage::Diffusion,
                fraction: done as f32 / 8.0,
            };
            if runtime.block_on(control.report(progress)).expect("report") {
                break;
            }
        }
        done
    });
    // Another process (its own connection) cancels after the second step has been reported.
    let canceller = Queue::connect(
        &redis.config_for(&worker_side),
        worker_side.settings().clone(),
    )
    .await
    .expect("connect");
    eventually(Duration::from_secs(2), "two steps", || {
        let q = canceller.clone();
        let id = id.clone();
        async move {
            let p = q.job_required(&id).await.ok()?.progress?;
            (p.fraction >= 0.25).then_some(())
        }
    })
    .await;
    assert_eq!(
        canceller.cancel(&id, "test").await.expect("cancel"),
        CancelOutcome::Cancelling
    );
    let done = steps.await.expect("steps");
    assert!(done < 8, "it stopped early");
    assert!(
        done <= 4,
        "it stopped within a step of the cancel, after step {done}"
    );
    assert_eq!(
        job.cancelled("stopped").await.expect("ack"),
        FinishOutcome::Cancelled
    );
    assert_eq!(state(&canceller, &id).await, JobState::Cancelled);
}

#[tokio::test]
async fn a_guild_cannot_queue_more_than_its_cap() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let cap = queue.settings().guild_cap;
    let guild_job = |g: &str| {
        let mut s = spec(Priority::Radio);
        s.guild_id = Some(g.into());
        s
    };
    let mut first = None;
    for _ in 0..cap {
        let id = enqueue(&queue, guild_job("greedy")).await;
        first.get_or_insert(id);
    }
    let err = queue
        .enqueue(EnqueueRequest::new(guild_job("greedy")))
        .await
        .expect_err("full");
    assert!(
        matches!(err, QueueError::GuildFull { active, .. } if active == u64::from(cap)),
        "{err}"
    );
    // Another guild is not affected.
    enqueue(&queue, guild_job("polite")).await;
    // When one of the greedy guild's jobs finishes, it may queue again.
    let first = first.expect("one job");
    assert_eq!(
        queue.cancel(&first, "test").await.expect("cancel"),
        CancelOutcome::Cancelled
    );
    enqueue(&queue, guild_job("greedy")).await;
}

#[tokio::test]
async fn interactive_jobs_are_claimed_before_radio_jobs() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let radio = enqueue(&queue, spec(Priority::Radio)).await;
    let radio2 = enqueue(&queue, spec(Priority::Radio)).await;
    let interactive = enqueue(&queue, spec(Priority::Interactive)).await;
    let consumer = queue.consumer("w");
    let mut order = Vec::new();
    for _ in 0..3 {
        let job = claim(&consumer, Duration::from_secs(2)).await;
        order.push(job.spec().id.clone());
        job.complete(b"x", &meta("w")).await.expect("complete");
    }
    assert_eq!(order, vec![interactive, radio, radio2]);
}

#[tokio::test]
async fn graceful_shutdown_releases_the_running_job_and_another_consumer_finishes_it() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let id = enqueue(&queue, spec(Priority::Interactive)).await;
    let leaving = claim(&queue.consumer("leaving"), Duration::from_secs(2)).await;
    assert_eq!(
        leaving.release("shutting down").await.expect("release"),
        FinishOutcome::Released
    );
    assert_eq!(state(&queue, &id).await, JobState::Queued);

    let started = tokio::time::Instant::now();
    let job = claim(&queue.consumer("staying"), Duration::from_secs(2)).await;
    assert!(
        started.elapsed() < queue.settings().reclaim_after,
        "taken at once, not after the reclaim time"
    );
    assert_eq!(job.spec().id, id);
    assert_eq!(job.attempt(), 1, "a released attempt does not count");
    job.complete(b"x", &meta("staying"))
        .await
        .expect("complete");
    let record = queue.job_required(&id).await.expect("record");
    assert_eq!(record.state, JobState::Succeeded);
    assert!(record.history.iter().any(|h| h.note == "shutting down"));
}

#[tokio::test]
async fn results_expire_and_events_tell_the_whole_story() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let mut events = queue.follow_events().await.expect("follow");
    let id = enqueue(&queue, spec(Priority::Interactive)).await;
    let job = claim(&queue.consumer("w"), Duration::from_secs(2)).await;
    job.control()
        .report(Progress {
            stage: Stage::Diffusion,
            fraction: 0.5,
        })
        .await
        .expect("report");
    job.complete(b"the audio", &meta("w"))
        .await
        .expect("complete");

    assert_eq!(
        queue.result(&id).await.expect("result").as_deref(),
        Some(&b"the audio"[..])
    );
    let mut raw = redis.raw().await;
    let ttl: i64 = raw.ttl(queue.keys().result(&id)).await.expect("ttl");
    assert!(
        ttl > 0 && ttl <= queue.settings().result_ttl.as_secs() as i64,
        "{ttl}"
    );
    let ttl: i64 = raw.ttl(queue.keys().job(&id)).await.expect("ttl");
    assert!(ttl > 0, "a finished job's record expires");

    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        for e in events
            .next(Duration::from_millis(500))
            .await
            .expect("events")
        {
            assert_eq!(e.job, id);
            kinds.push(e.kind);
        }
    }
    assert!(
        matches!(kinds[0], EventKind::Queued { position: Some(1) }),
        "{kinds:?}"
    );
    assert!(matches!(kinds[1], EventKind::Started { attempt: 1, .. }));
    assert!(matches!(
        kinds[2],
        EventKind::Progress(Progress {
            stage: Stage::Diffusion,
            ..
        })
    ));
    assert!(matches!(&kinds[3], EventKind::Succeeded(Some(m)) if m.title == "Test Tone"));
}

#[tokio::test]
async fn a_pending_entry_deleted_by_hand_is_recovered_from_the_job_record() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let id = enqueue(&queue, spec(Priority::Radio)).await;
    let job = claim(&queue.consumer("dies"), Duration::from_secs(2)).await;
    drop(job);
    // An operator deletes the pending entry: Redis 7 XAUTOCLAIM reports its id as deleted.
    let entry = queue
        .job_required(&id)
        .await
        .expect("record")
        .entry
        .expect("entry");
    let mut raw = redis.raw().await;
    let _: u64 = raw
        .xdel(queue.keys().stream(Priority::Radio), &[&entry])
        .await
        .expect("xdel");

    let job = claim(&queue.consumer("rescuer"), Duration::from_secs(3)).await;
    assert_eq!(
        job.spec().id,
        id,
        "the job was put back in line from its hash"
    );
    job.complete(b"x", &meta("rescuer"))
        .await
        .expect("complete");
}

#[tokio::test]
async fn the_same_entry_id_in_both_streams_does_not_mix_up_their_jobs() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let radio = enqueue(&queue, spec(Priority::Radio)).await;
    let job = claim(&queue.consumer("dies"), Duration::from_secs(2)).await;
    drop(job);
    let entry = queue
        .job_required(&radio)
        .await
        .expect("record")
        .entry
        .expect("entry");
    // Stream ids come from each stream's clock: the interactive stream can hold the same id. Here it
    // is forced, with a job added by hand, which runs and finishes first.
    let other = spec(Priority::Interactive);
    let mut raw = redis.raw().await;
    let _: String = raw
        .xadd(
            queue.keys().stream(Priority::Interactive),
            &entry,
            &[
                ("job", other.id.as_str()),
                ("spec", other.encode().as_str()),
            ],
        )
        .await
        .expect("xadd with the radio entry's id");
    let job = claim(&queue.consumer("other"), Duration::from_secs(2)).await;
    assert_eq!(job.spec().id, other.id);
    job.complete(b"x", &meta("other")).await.expect("complete");

    // The radio entry is deleted under its claim: its job must still be found and put back in line.
    let _: u64 = raw
        .xdel(queue.keys().stream(Priority::Radio), &[&entry])
        .await
        .expect("xdel");
    let job = claim(&queue.consumer("rescuer"), Duration::from_secs(3)).await;
    assert_eq!(job.spec().id, radio);
    job.complete(b"x", &meta("rescuer"))
        .await
        .expect("complete");
    assert_eq!(state(&queue, &radio).await, JobState::Succeeded);
}

#[tokio::test]
async fn trimming_never_drops_a_pending_or_undelivered_entry() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let done = enqueue(&queue, spec(Priority::Radio)).await;
    let held = enqueue(&queue, spec(Priority::Radio)).await;
    let waiting = enqueue(&queue, spec(Priority::Radio)).await;
    let consumer = queue.consumer("w");
    let first = claim(&consumer, Duration::from_secs(2)).await;
    assert_eq!(first.spec().id, done);
    first.complete(b"x", &meta("w")).await.expect("complete");
    let second = claim(&consumer, Duration::from_secs(2)).await;
    assert_eq!(second.spec().id, held);

    let (trimmed, _) = queue
        .maintain(Duration::from_secs(3600))
        .await
        .expect("maintain");
    assert_eq!(trimmed, 1, "only the acknowledged entry goes");
    second.complete(b"x", &meta("w")).await.expect("complete");
    let third = claim(&consumer, Duration::from_secs(2)).await;
    assert_eq!(third.spec().id, waiting);
    third.complete(b"x", &meta("w")).await.expect("complete");
}

#[tokio::test]
async fn a_lease_taken_over_by_another_worker_is_reported_lost() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    enqueue(&queue, spec(Priority::Radio)).await;
    let job = claim(&queue.consumer("slow"), Duration::from_secs(2)).await;
    let control = job.control();
    // Simulate a network partition: the lease is not renewed, another worker takes over.
    drop(job);
    let other = claim(&queue.consumer("fast"), Duration::from_secs(3)).await;
    // The first worker's progress report now learns it lost the job.
    let stop = control
        .report(Progress {
            stage: Stage::Diffusion,
            fraction: 0.1,
        })
        .await
        .expect("report");
    assert!(stop && control.lease_lost());
    other.complete(b"x", &meta("fast")).await.expect("complete");
}

fn worker_info(id: &str, max_duration_s: f32) -> radio_shared::queue::WorkerInfo {
    radio_shared::queue::WorkerInfo {
        id: id.into(),
        host: "test".into(),
        gpu: "cpu".into(),
        vram_total_bytes: 0,
        profile: "cpu".into(),
        plan: String::new(),
        max_duration_s,
        concurrency: 1,
        busy_with: None,
        jobs_done: 0,
        started_ms: 0,
        heartbeat_ms: 0,
        version: "test".into(),
    }
}

fn long_spec(duration_s: f32) -> JobSpec {
    let mut s = spec(Priority::Interactive);
    let radio_shared::job::Task::Generate(task) = &mut s.task;
    task.song.duration_s = duration_s;
    s
}

#[tokio::test]
async fn a_job_too_long_for_a_worker_goes_to_one_that_accepts_it() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    queue
        .register_worker(&worker_info("big", 240.0), Duration::from_secs(10))
        .await
        .expect("register");
    let id = enqueue(&queue, long_spec(120.0)).await;
    let small = queue
        .consumer("small")
        .with_max_duration(Duration::from_secs(60));
    assert!(
        matches!(small.claim_now().await.expect("claim"), Some(Err(_))),
        "the small worker does not start it"
    );
    assert_eq!(state(&queue, &id).await, JobState::Queued);

    let big = queue
        .consumer("big")
        .with_max_duration(Duration::from_secs(240));
    let started = tokio::time::Instant::now();
    let job = claim(&big, Duration::from_secs(2)).await;
    assert!(
        started.elapsed() < queue.settings().reclaim_after,
        "handed back at once"
    );
    assert_eq!((job.spec().id.clone(), job.attempt()), (id, 1));
    job.complete(b"x", &meta("big")).await.expect("complete");
}

#[tokio::test]
async fn a_job_too_long_for_every_live_worker_fails_naming_the_largest_duration_on_offer() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    queue
        .register_worker(&worker_info("medium", 90.0), Duration::from_secs(10))
        .await
        .expect("register");
    let id = enqueue(&queue, long_spec(300.0)).await;
    let small = queue
        .consumer("small")
        .with_max_duration(Duration::from_secs(60));
    assert!(matches!(
        small.claim_now().await.expect("claim"),
        Some(Err(_))
    ));
    let record = queue.job_required(&id).await.expect("record");
    assert_eq!(record.state, JobState::Failed);
    let error = record.error.unwrap_or_default();
    assert!(error.contains("300 s") && error.contains("90 s"), "{error}");
    assert_eq!(queue.dead_letters().await.expect("dead").len(), 1);
    assert_eq!(queue.status().await.expect("status").streams[0].pending, 0);
}

#[tokio::test]
async fn finished_records_are_capped_oldest_first_and_results_are_counted_until_delivered() {
    let redis = TestRedis::start();
    let queue = redis
        .queue_with(QueueSettings {
            job_history_max: 3,
            ..fast_settings()
        })
        .await;
    let consumer = queue.consumer("w");
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = enqueue(&queue, spec(Priority::Radio)).await;
        claim(&consumer, Duration::from_secs(2))
            .await
            .complete(b"audio", &meta("w"))
            .await
            .expect("complete");
        ids.push(id);
    }
    // Only the three newest finished records stay; the results are untouched by the cap.
    for (i, id) in ids.iter().enumerate() {
        let kept = queue.job(id).await.expect("job").is_some();
        assert_eq!(kept, i >= 2, "record {i} of 5 with a cap of 3");
    }
    let status = queue.status().await.expect("status");
    assert_eq!(status.results_stored, 5);
    assert!(status.memory.used_bytes > 0, "{:?}", status.memory);

    // A delivered result leaves Redis and the count.
    queue.forget_result(&ids[4]).await.expect("forget");
    assert!(queue.result(&ids[4]).await.expect("result").is_none());
    assert_eq!(queue.status().await.expect("status").results_stored, 4);
    // A record retried by an operator since it was filed runs again: the cap passes it over.
    let mut once = spec(Priority::Radio);
    once.max_attempts = Some(1);
    let retried = enqueue(&queue, once).await;
    claim(&consumer, Duration::from_secs(2))
        .await
        .fail(JobFailure::transient("boom"))
        .await
        .expect("fail");
    queue.retry(&retried).await.expect("retry");
    let job = claim(&consumer, Duration::from_secs(2)).await;
    for _ in 0..4 {
        let id = enqueue(&queue, spec(Priority::Interactive)).await;
        queue.cancel(&id, "test").await.expect("cancel");
    }
    assert_eq!(state(&queue, &retried).await, JobState::Running);
    job.complete(b"audio", &meta("w")).await.expect("complete");
    assert_eq!(state(&queue, &retried).await, JobState::Succeeded);
}

#[tokio::test]
async fn a_job_handed_back_again_and_again_keeps_a_bounded_history() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let id = enqueue(&queue, spec(Priority::Radio)).await;
    let consumer = queue.consumer("w");
    for _ in 0..40 {
        claim(&consumer, Duration::from_secs(2))
            .await
            .release("shutting down")
            .await
            .expect("release");
    }
    let record = queue.job_required(&id).await.expect("record");
    assert_eq!(
        record.history.len(),
        50,
        "81 lines (enqueued, then 40 claims and hand-backs), capped at 50"
    );
    assert_eq!(record.history[0].note, "enqueued", "the first line stays");
    assert_eq!(
        record.history.last().map(|h| h.note.as_str()),
        Some("shutting down"),
        "the latest lines stay"
    );
    assert_eq!(state(&queue, &id).await, JobState::Queued);
}

#[tokio::test]
async fn the_member_request_limit_holds_across_processes_and_counts_each_request_once() {
    use radio_shared::queue::{Admission, RequestLimit};
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    // A second "bot process" of the same deployment.
    let other = radio_shared::queue::Queue::connect(&redis.config_for(&queue), fast_settings())
        .await
        .expect("second connection");
    let limit = RequestLimit {
        limit: 5,
        window: Duration::from_secs(60),
    };
    let mut attempts = Vec::new();
    for i in 0..20 {
        let q = if i % 2 == 0 {
            queue.clone()
        } else {
            other.clone()
        };
        attempts.push(tokio::spawn(async move {
            q.admit_request("g1", "m1", &format!("interaction-{i}"), limit)
                .await
                .expect("admit")
        }));
    }
    let mut admitted = 0;
    for attempt in attempts {
        match attempt.await.expect("task") {
            Admission::Admitted { .. } => admitted += 1,
            Admission::Limited { retry_after } => {
                assert!(retry_after > Duration::ZERO && retry_after <= limit.window)
            }
        }
    }
    assert_eq!(admitted, 5, "exactly the limit, whichever process asked");

    // The same interaction again (a retried request) counts once; another member is not affected.
    let first_admitted = queue
        .admit_request("g1", "m2", "interaction-a", limit)
        .await
        .expect("admit");
    assert_eq!(first_admitted, Admission::Admitted { used: 1 });
    let again = other
        .admit_request("g1", "m2", "interaction-a", limit)
        .await
        .expect("admit");
    assert_eq!(again, Admission::Admitted { used: 1 });

    // A request that did not go ahead is taken back.
    let full = RequestLimit { limit: 1, ..limit };
    assert!(matches!(
        queue
            .admit_request("g2", "m1", "x", full)
            .await
            .expect("admit"),
        Admission::Admitted { .. }
    ));
    assert!(matches!(
        queue
            .admit_request("g2", "m1", "y", full)
            .await
            .expect("admit"),
        Admission::Limited { .. }
    ));
    queue.refund_request("g2", "m1", "x").await.expect("refund");
    assert!(matches!(
        queue
            .admit_request("g2", "m1", "y", full)
            .await
            .expect("admit"),
        Admission::Admitted { .. }
    ));
    // The window slides: a short one lets the member in again once it has passed.
    let short = RequestLimit {
        limit: 1,
        window: Duration::from_millis(300),
    };
    queue
        .admit_request("g3", "m1", "p", short)
        .await
        .expect("admit");
    assert!(matches!(
        queue
            .admit_request("g3", "m1", "q", short)
            .await
            .expect("admit"),
        Admission::Limited { .. }
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(matches!(
        queue
            .admit_request("g3", "m1", "q", short)
            .await
            .expect("admit"),
        Admission::Admitted { .. }
    ));
}
