//! `radioctl`, the real binary, against a populated Redis.

use std::process::Output;
use std::time::Duration;

use radio_shared::job::{JobId, JobState, ResultMeta, Writer};
use radio_shared::queue::{JobFailure, Queue, WorkerInfo};
use radio_tests::{TestRedis, binary};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Runs radioctl against `queue`'s deployment.
async fn radioctl(redis: &TestRedis, queue: &Queue, args: &[&str]) -> Output {
    tokio::process::Command::new(binary("radioctl"))
        .args(args)
        .env("REDIS_URL", redis.url())
        .env("RADIO_PREFIX", queue.keys().prefix().as_str())
        .env("RADIO_BLOCK_SECS", "0.2")
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run radioctl")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "radioctl failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

async fn enqueue_json(redis: &TestRedis, queue: &Queue, extra: &[&str]) -> JobId {
    let mut args = vec![
        "enqueue",
        "--json",
        "--caption",
        "test tone",
        "--duration",
        "12",
    ];
    args.extend_from_slice(extra);
    let out = json(&radioctl(redis, queue, &args).await);
    out["id"].as_str().expect("id").parse().expect("job id")
}

fn meta() -> ResultMeta {
    ResultMeta {
        title: "Fixture".into(),
        caption: "test tone".into(),
        lyrics: "[Instrumental]".into(),
        bpm: None,
        keyscale: None,
        timesignature: None,
        language: "en".into(),
        duration_s: 12.0,
        seed: 7,
        writer: Writer::User,
        worker: "test-worker".into(),
        format: Default::default(),
        stage_seconds: Default::default(),
        total_seconds: 1.0,
        peak_vram_bytes: 0,
    }
}

#[tokio::test]
async fn enqueue_jobs_show_and_status_report_what_is_in_redis() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let interactive = enqueue_json(
        &redis,
        &queue,
        &["--guild", "42", "--key", "a minor", "--bpm", "90"],
    )
    .await;
    let radio = enqueue_json(&redis, &queue, &["--priority", "radio"]).await;

    // The job is really in Redis, with the flags turned into its spec.
    let record = queue.job_required(&interactive).await.expect("record");
    let spec = record.spec.expect("spec");
    let song = &spec.generate_task().song;
    assert_eq!(
        (song.keyscale.as_deref(), song.bpm),
        (Some("A minor"), Some(90))
    );
    assert_eq!(spec.guild_id.as_deref(), Some("42"));

    let jobs = json(&radioctl(&redis, &queue, &["jobs", "--json"]).await);
    let ids: Vec<&str> = jobs
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        vec![radio.as_str(), interactive.as_str()],
        "newest first"
    );

    let queued = json(&radioctl(&redis, &queue, &["jobs", "--state", "queued", "--json"]).await);
    assert_eq!(queued.as_array().map(Vec::len), Some(2));
    let running = json(&radioctl(&redis, &queue, &["jobs", "--state", "running", "--json"]).await);
    assert_eq!(running.as_array().map(Vec::len), Some(0));

    let status = json(&radioctl(&redis, &queue, &["status", "--json"]).await);
    assert_eq!(status["streams"][0]["waiting"], 1);
    assert_eq!(status["streams"][1]["waiting"], 1);
    assert_eq!(status["dead"], 0);

    // Human output is an aligned table.
    let table = stdout(&radioctl(&redis, &queue, &["status"]).await);
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("STREAM")),
        "{table}"
    );
    assert!(table.contains("no live workers"), "{table}");

    // A live worker shows with its limits, heartbeat and plan.
    let worker = WorkerInfo {
        id: "gpu-host-1-77".into(),
        host: "gpu-host".into(),
        gpu: "NVIDIA GeForce RTX 3060".into(),
        vram_total_bytes: 12 << 30,
        profile: "12gb".into(),
        plan: "dit cuda (resident), vae tile 256".into(),
        max_duration_s: 240.0,
        concurrency: 1,
        busy_with: None,
        jobs_done: 3,
        started_ms: 0,
        heartbeat_ms: 0,
        version: "test".into(),
    };
    queue
        .register_worker(&worker, Duration::from_secs(30))
        .await
        .expect("register");
    let table = stdout(&radioctl(&redis, &queue, &["status"]).await);
    let row = table
        .lines()
        .find(|l| l.starts_with("gpu-host-1-77"))
        .unwrap_or_else(|| panic!("no worker row: {table}"));
    assert!(
        row.contains("RTX 3060") && row.contains("240 s") && row.contains("ago"),
        "{row}"
    );
    assert!(
        table.contains("gpu-host-1-77: dit cuda (resident), vae tile 256"),
        "{table}"
    );
    let status = json(&radioctl(&redis, &queue, &["status", "--json"]).await);
    let heartbeat = status["workers"][0]["heartbeat_ms"].as_u64().unwrap_or(0);
    assert!(
        heartbeat > 0,
        "the registration carries its heartbeat: {status}"
    );
    queue
        .deregister_worker(&worker.id)
        .await
        .expect("deregister");

    let shown = json(&radioctl(&redis, &queue, &["show", interactive.as_str(), "--json"]).await);
    assert_eq!(shown["state"], "queued");
    assert_eq!(shown["history"][0]["state"], "queued");
    let text = stdout(&radioctl(&redis, &queue, &["show", interactive.as_str()]).await);
    assert!(
        text.contains("history") && text.contains("queued"),
        "{text}"
    );
}

#[tokio::test]
async fn wait_writes_the_audio_and_exits_zero_only_on_success() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let ok = enqueue_json(&redis, &queue, &[]).await;
    let bad = enqueue_json(&redis, &queue, &["--max-attempts", "1"]).await;

    // A worker: succeeds the first job, fails the second for good.
    let worker = queue.consumer("test-worker");
    let worker_task = tokio::spawn(async move {
        let shutdown = CancellationToken::new();
        for _ in 0..2 {
            let job = worker
                .claim_next(&shutdown)
                .await
                .expect("claim")
                .expect("job");
            tokio::time::sleep(Duration::from_millis(200)).await;
            if job.spec().max_attempts == Some(1) {
                job.fail(JobFailure::transient("CUDA error: out of memory"))
                    .await
                    .expect("fail");
            } else {
                job.complete(b"OggS fake audio", &meta())
                    .await
                    .expect("complete");
            }
        }
    });

    let dir = tempdir();
    let out_path = dir.join("song.ogg");
    let path = out_path.to_str().expect("utf-8");
    // --keep leaves the audio in Redis; without it, a written result is removed (delivered).
    let out = radioctl(
        &redis,
        &queue,
        &["wait", ok.as_str(), "--out", path, "--keep"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(queue.result(&ok).await.expect("result").is_some(), "kept");
    std::fs::remove_file(&out_path).expect("remove");
    let out = radioctl(&redis, &queue, &["wait", ok.as_str(), "--out", path]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&out_path).expect("written"),
        b"OggS fake audio"
    );
    assert!(
        queue.result(&ok).await.expect("result").is_none(),
        "the written result left Redis"
    );
    assert_eq!(queue.status().await.expect("status").results_stored, 0);
    assert!(
        stdout(&out).contains("succeeded \"Fixture\""),
        "{}",
        stdout(&out)
    );

    let out = radioctl(
        &redis,
        &queue,
        &["wait", bad.as_str(), "--out", "/dev/null"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("out of memory"), "{}", stderr(&out));
    worker_task.await.expect("worker");

    let out = radioctl(&redis, &queue, &["wait", bad.as_str(), "--json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let parsed: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(parsed["state"], "failed");
}

#[tokio::test]
async fn cancel_dead_retry_and_purge_repair_jobs() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let doomed = enqueue_json(&redis, &queue, &["--max-attempts", "1"]).await;
    let cancelled = enqueue_json(&redis, &queue, &[]).await;

    let out = json(&radioctl(&redis, &queue, &["cancel", cancelled.as_str(), "--json"]).await);
    assert_eq!(out["outcome"], "cancelled");
    assert_eq!(
        queue.job_required(&cancelled).await.expect("record").state,
        JobState::Cancelled
    );

    let job = queue
        .consumer("w")
        .claim_next(&CancellationToken::new())
        .await
        .expect("claim")
        .expect("job");
    job.fail(JobFailure::transient("boom")).await.expect("fail");

    let dead = json(&radioctl(&redis, &queue, &["dead", "--json"]).await);
    assert_eq!(dead.as_array().map(Vec::len), Some(1));
    assert_eq!(dead[0]["job"], doomed.as_str());
    assert!(
        dead[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("boom"))
    );

    let retried = json(&radioctl(&redis, &queue, &["retry", "--all-dead", "--json"]).await);
    assert_eq!(retried["retried"][0], doomed.as_str());
    assert_eq!(
        queue.job_required(&doomed).await.expect("record").state,
        JobState::Queued
    );
    let dead = json(&radioctl(&redis, &queue, &["dead", "--json"]).await);
    assert_eq!(dead.as_array().map(Vec::len), Some(0));

    // Fail it again, then purge.
    let job = queue
        .consumer("w")
        .claim_next(&CancellationToken::new())
        .await
        .expect("claim")
        .expect("job");
    job.fail(JobFailure::permanent("bad input"))
        .await
        .expect("fail");
    let refused = radioctl(&redis, &queue, &["purge", "--dead"]).await;
    assert_eq!(refused.status.code(), Some(2), "purge needs --yes");
    let purged = json(&radioctl(&redis, &queue, &["purge", "--dead", "--yes", "--json"]).await);
    assert_eq!(purged["purged"], 1);
    assert!(queue.dead_letters().await.expect("dead").is_empty());

    // Retrying a job that is not failed says why.
    let out = radioctl(&redis, &queue, &["retry", cancelled.as_str()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is cancelled, not failed"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn errors_name_what_was_wrong_and_usage_errors_exit_2() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let unknown = JobId::new();
    let out = radioctl(&redis, &queue, &["show", unknown.as_str()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&queue.keys().job(&unknown)),
        "names the key: {}",
        stderr(&out)
    );

    let out = radioctl(&redis, &queue, &["show", "not-an-id"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = radioctl(&redis, &queue, &["enqueue", "--duration", "9000"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("song.duration_s"), "{}", stderr(&out));

    let out = radioctl(&redis, &queue, &["enqueue", "--key", "H major"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--key"), "{}", stderr(&out));

    let out = tokio::process::Command::new(binary("radioctl"))
        .args(["status"])
        .env("REDIS_URL", "redis://127.0.0.1:1")
        // No wait for Redis to come up (tested in faults.rs): the error is what this checks.
        .env("REDIS_CONNECT_TIMEOUT_SECS", "0")
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach Redis at redis://127.0.0.1:1"),
        "{}",
        stderr(&out)
    );
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("radioctl-test-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
