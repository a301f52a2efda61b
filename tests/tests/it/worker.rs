//! `radio-worker run`, the real binary on the tiny model pack, against a test Redis.

use std::process::Stdio;
use std::time::Duration;

use radio_shared::job::{
    GenerateTask, JobId, JobSpec, JobState, Priority, SongRequest, Station, Writer,
};
use radio_shared::queue::{CancelOutcome, EnqueueRequest, JobRecord, Queue};
use radio_tests::{TestRedis, WorkerProcess, eventually, tiny_gguf};
use tokio::io::AsyncWriteExt;

pub(crate) const READY: Duration = Duration::from_secs(60);

/// The longest track the tiny pack renders (its silence latent holds 60 s); about 2 s of work here.
pub(crate) const LONG: f32 = 60.0;

pub(crate) async fn enqueue(queue: &Queue, duration_s: f32, seed: u64) -> JobId {
    let spec = JobSpec::generate(
        Priority::Radio,
        GenerateTask {
            station: Station::default(),
            song: SongRequest {
                duration_s,
                seed: Some(seed),
                ..SongRequest::default()
            },
            ..GenerateTask::default()
        },
    );
    queue
        .enqueue(EnqueueRequest::new(spec))
        .await
        .expect("enqueue")
        .id
}

pub(crate) async fn record(queue: &Queue, id: &JobId) -> JobRecord {
    queue.job_required(id).await.expect("record")
}

/// Waits until a job is running on `worker` and returns it.
pub(crate) async fn running_on(queue: &Queue, ids: &[JobId], worker: &WorkerProcess) -> JobId {
    eventually(
        Duration::from_secs(60),
        "a job running on the worker",
        || {
            let (queue, ids) = (queue.clone(), ids.to_vec());
            let prefix = format!("{}-", worker.id);
            async move {
                for id in ids {
                    let r = queue.job(&id).await.ok()??;
                    if r.state == JobState::Running
                        && r.worker.as_deref().is_some_and(|w| w.starts_with(&prefix))
                    {
                        return Some(id);
                    }
                }
                None
            }
        },
    )
    .await
}

pub(crate) async fn wait_state(
    queue: &Queue,
    id: &JobId,
    state: JobState,
    timeout: Duration,
) -> JobRecord {
    eventually(timeout, &format!("job {id} to be {state}"), || {
        let (queue, id) = (queue.clone(), id.clone());
        async move { queue.job(&id).await.ok()?.filter(|r| r.state == state) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_twenty_jobs_and_a_killed_worker_loses_nothing() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let mut a = WorkerProcess::start(&redis, &queue, &[]);
    let mut b = WorkerProcess::start(&redis, &queue, &[]);
    a.ready(READY).await;
    b.ready(READY).await;
    let mut ids = Vec::new();
    for seed in 0..20 {
        ids.push(enqueue(&queue, 30.0, seed).await);
    }

    let victim = running_on(&queue, &ids, &a).await;
    a.crash();

    eventually(Duration::from_secs(180), "all 20 jobs to succeed", || {
        let (queue, ids) = (queue.clone(), ids.clone());
        async move {
            for id in &ids {
                if queue.job(id).await.ok()??.state != JobState::Succeeded {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;

    let victim = record(&queue, &victim).await;
    assert_eq!(
        victim.attempts, 2,
        "the killed worker's job ran again: {:?}",
        victim.history
    );
    let finisher = victim
        .result
        .as_ref()
        .map(|m| m.worker.clone())
        .unwrap_or_default();
    assert!(
        finisher.starts_with(&b.id),
        "the surviving worker finished it, not {finisher}"
    );
    let first_holder = victim
        .history
        .iter()
        .find(|h| h.state == "running")
        .map(|h| h.note.clone());
    assert!(
        first_holder.is_some_and(|n| n.starts_with(&a.id)),
        "{:?}",
        victim.history
    );
    for id in &ids {
        let r = record(&queue, id).await;
        let successes = r.history.iter().filter(|h| h.state == "succeeded").count();
        assert_eq!(successes, 1, "{id} succeeded exactly once");
        assert!(
            queue
                .result(id)
                .await
                .expect("result")
                .is_some_and(|audio| audio.starts_with(b"OggS"))
        );
    }
    let status = queue.status().await.expect("status");
    assert!(
        status.streams.iter().all(|s| s.pending == 0),
        "nothing left claimed: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_running_job_back_and_another_worker_finishes_it() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let mut a = WorkerProcess::start(&redis, &queue, &[("RADIO_SHUTDOWN_GRACE_SECS", "0")]);
    a.ready(READY).await;
    let id = enqueue(&queue, LONG, 1).await;
    running_on(&queue, std::slice::from_ref(&id), &a).await;

    a.terminate();
    assert_eq!(
        a.exit_code(Duration::from_secs(30)).await,
        Some(0),
        "clean exit:\n{}",
        a.log()
    );
    let released = record(&queue, &id).await;
    assert_eq!(released.state, JobState::Queued, "{:?}", released.history);
    assert!(
        released
            .history
            .iter()
            .any(|h| h.note.contains("shut down"))
    );
    let live = queue.live_workers().await.expect("workers");
    assert!(live.iter().all(|w| w.id != a.id), "the worker deregistered");

    let mut b = WorkerProcess::start(&redis, &queue, &[]);
    b.ready(READY).await;
    let done = wait_state(&queue, &id, JobState::Succeeded, Duration::from_secs(120)).await;
    assert_eq!(done.attempts, 1, "a handed-back attempt is not counted");
    assert!(done.result.is_some_and(|m| m.worker.starts_with(&b.id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_job_finish_within_the_grace_period() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let mut a = WorkerProcess::start(&redis, &queue, &[("RADIO_SHUTDOWN_GRACE_SECS", "120")]);
    a.ready(READY).await;
    let id = enqueue(&queue, LONG, 2).await;
    let queued_after = enqueue(&queue, 10.0, 3).await;
    running_on(&queue, std::slice::from_ref(&id), &a).await;
    a.terminate();
    assert_eq!(
        a.exit_code(Duration::from_secs(120)).await,
        Some(0),
        "{}",
        a.log()
    );
    let done = record(&queue, &id).await;
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.history);
    assert_eq!(
        record(&queue, &queued_after).await.state,
        JobState::Queued,
        "no new job after SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_too_long_for_one_worker_is_handed_back_and_runs_on_one_that_accepts_it() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let mut short = WorkerProcess::start(
        &redis,
        &queue,
        &[
            ("MAX_DURATION_SECS", "20"),
            ("RUST_LOG", "info,radio_shared=debug"),
        ],
    );
    let mut long = WorkerProcess::start(&redis, &queue, &[("MAX_DURATION_SECS", "120")]);
    short.ready(READY).await;
    long.ready(READY).await;
    // Four long tracks: the long worker runs one at a time, so the short one sees the others waiting.
    let mut ids = Vec::new();
    for seed in 1..=4 {
        ids.push(enqueue(&queue, LONG, seed).await);
    }
    for id in &ids {
        let done = wait_state(&queue, id, JobState::Succeeded, Duration::from_secs(120)).await;
        assert_eq!(done.attempts, 1, "a hand-back is not an attempt");
        assert!(
            done.result.is_some_and(|m| m.worker.starts_with(&long.id)),
            "{id} ran on the worker that accepts it"
        );
    }
    assert!(
        short.log().contains("handed back a job too long"),
        "the short worker saw a long job and handed it back:\n{}",
        short.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_longer_than_every_worker_accepts_fails_with_the_largest_duration_on_offer() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let mut w = WorkerProcess::start(&redis, &queue, &[("MAX_DURATION_SECS", "20")]);
    w.ready(READY).await;
    let too_long = enqueue(&queue, LONG, 1).await;
    let fine = enqueue(&queue, 10.0, 2).await;
    let failed = wait_state(&queue, &too_long, JobState::Failed, Duration::from_secs(30)).await;
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("60 s") && error.contains("20 s"), "{error}");
    assert_eq!(failed.attempts, 0, "it never started");
    wait_state(&queue, &fine, JobState::Succeeded, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_running_job_stops_and_the_worker_carries_on() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let mut w = WorkerProcess::start(&redis, &queue, &[]);
    w.ready(READY).await;
    let long = enqueue(&queue, LONG, 1).await;
    let next = enqueue(&queue, 10.0, 2).await;
    running_on(&queue, std::slice::from_ref(&long), &w).await;
    eventually(Duration::from_secs(30), "diffusion progress", || {
        let (queue, long) = (queue.clone(), long.clone());
        async move {
            queue
                .job(&long)
                .await
                .ok()??
                .progress
                .filter(|p| p.fraction > 0.15)
        }
    })
    .await;
    assert_eq!(
        queue.cancel(&long, "test").await.expect("cancel"),
        CancelOutcome::Cancelling
    );
    let cancelled = wait_state(&queue, &long, JobState::Cancelled, Duration::from_secs(30)).await;
    assert!(
        cancelled.progress.is_some_and(|p| p.fraction < 0.95),
        "stopped before the end"
    );
    assert!(queue.result(&long).await.expect("result").is_none());
    wait_state(&queue, &next, JobState::Succeeded, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_writes_the_song_when_a_model_is_configured() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let gguf = tiny_gguf();
    let mut w = WorkerProcess::start(
        &redis,
        &queue,
        &[("LLM_MODEL_PATH", gguf.to_str().expect("utf-8"))],
    );
    w.ready(READY).await;
    let id = enqueue(&queue, 10.0, 5).await;
    let done = wait_state(&queue, &id, JobState::Succeeded, Duration::from_secs(120)).await;
    let meta = done.result.expect("meta");
    assert_eq!(meta.writer, Writer::Llm, "{meta:?}");
    assert!(meta.stage_seconds.contains_key("llm"));
    let metrics = w.metrics().await;
    assert!(
        metrics.contains("radio_songs_written_total{writer=\"llm\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_show_stage_timings_and_peak_memory_after_a_job() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let mut w = WorkerProcess::start(&redis, &queue, &[]);
    w.ready(READY).await;
    let id = enqueue(&queue, 10.0, 9).await;
    wait_state(&queue, &id, JobState::Succeeded, Duration::from_secs(60)).await;
    let metrics = eventually(Duration::from_secs(10), "the job in the metrics", || {
        let addr = w.metrics_addr.clone();
        async move {
            let (_, body) = radio_tests::http_get(&addr, "/metrics").await.ok()?;
            body.contains("radio_jobs_total{outcome=\"succeeded\"} 1")
                .then_some(body)
        }
    })
    .await;

    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    let mut stdin = promtool.stdin.take().expect("stdin");
    stdin.write_all(metrics.as_bytes()).await.expect("write");
    drop(stdin);
    let out = promtool.wait_with_output().await.expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    for stage in ["llm", "text_encode", "diffusion", "vae_decode", "encode"] {
        let series = format!("radio_job_stage_duration_seconds_count{{stage=\"{stage}\"}} 1");
        assert!(metrics.contains(&series), "missing {series}");
    }
    // On CPU the peak is 0 bytes, labelled device="cpu".
    assert!(metrics.contains("radio_gpu_memory_peak_bytes_count{device=\"cpu\"} 1"));
    assert!(metrics.contains("radio_gpu_memory_last_peak_bytes{device=\"cpu\"} 0"));
    assert!(metrics.contains("radio_worker_plan_info{"), "plan info");
    assert!(metrics.contains("radio_job_realtime_factor_count 1"));
    assert!(metrics.contains("radio_job_queue_wait_seconds_count{priority=\"radio\"} 1"));
    // The tiny pack's silence latent holds 60 s, the longest track it can render.
    assert!(
        metrics.contains("radio_worker_max_duration_seconds 60"),
        "{metrics}"
    );
}

/// Resident memory of a process, bytes.
fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
        })
        .unwrap_or(0)
        * 1024
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The figures in the README's performance section: worker RSS idle and during a tiny-pack job, and the
/// time from SIGKILL of a worker to its job running on another, with the default heartbeat (5 s) and
/// reclaim time (15 s). Slow (about two minutes), so it runs only with RADIO_WORKER_MEASURE=1:
///   RADIO_WORKER_MEASURE=1 cargo test --workspace --test it worker::measure -- --nocapture
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_worker_memory_and_takeover_after_a_crash() {
    if std::env::var("RADIO_WORKER_MEASURE").is_err() {
        eprintln!(
            "skipped: set RADIO_WORKER_MEASURE=1 to measure worker memory and crash takeover (about 2 min)"
        );
        return;
    }
    let redis = TestRedis::start();
    let queue = redis
        .queue_with(radio_shared::queue::QueueSettings::default())
        .await;
    let mut a = WorkerProcess::start(&redis, &queue, &[]);
    a.ready(READY).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(rss_bytes(a.pid()) as f64);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = enqueue(&queue, LONG, 1).await;
    let mut busy = Vec::new();
    while queue
        .job(&id)
        .await
        .ok()
        .flatten()
        .is_some_and(|r| !r.state.is_terminal())
    {
        busy.push(rss_bytes(a.pid()) as f64);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mib = |b: f64| b / 1_048_576.0;
    eprintln!(
        "worker RSS idle: median {:.1} MiB; during a {LONG} s tiny-pack job: median {:.1} MiB, peak {:.1} MiB ({} samples)",
        mib(median(idle)),
        mib(median(busy.clone())),
        mib(busy.iter().copied().fold(0.0, f64::max)),
        busy.len()
    );

    let mut takeovers = Vec::new();
    for trial in 0..5 {
        let mut b = WorkerProcess::start(&redis, &queue, &[]);
        b.ready(READY).await;
        let id = enqueue(&queue, LONG, 100 + trial).await;
        let (victim, survivor) = {
            let on_a = running_on_any(&queue, &id, &[&a, &b]).await;
            if on_a == 0 {
                (&mut a, &b)
            } else {
                (&mut b, &a)
            }
        };
        victim.crash();
        let killed_ms = radio_tests::now_ms();
        let prefix = format!("{}-", survivor.id);
        let taken = eventually(
            Duration::from_secs(60),
            "the job running on the survivor",
            || {
                let (queue, id, prefix) = (queue.clone(), id.clone(), prefix.clone());
                async move {
                    let r = queue.job(&id).await.ok()??;
                    r.history
                        .iter()
                        .find(|h| h.state == "running" && h.note.starts_with(&prefix))
                        .map(|h| h.t)
                }
            },
        )
        .await;
        takeovers.push(taken.saturating_sub(killed_ms) as f64 / 1000.0);
        wait_state(&queue, &id, JobState::Succeeded, Duration::from_secs(60)).await;
        // Keep one live worker named `a` for the next trial.
        if survivor.id != a.id {
            a = b;
        }
    }
    eprintln!(
        "SIGKILL to the job running on another worker (heartbeat 5 s, reclaim after 15 s): median {:.1} s over {} kills: {takeovers:?}",
        median(takeovers.clone()),
        takeovers.len()
    );
}

/// Which of `workers` runs job `id` (index), once it is running.
async fn running_on_any(queue: &Queue, id: &JobId, workers: &[&WorkerProcess]) -> usize {
    let prefixes: Vec<String> = workers.iter().map(|w| format!("{}-", w.id)).collect();
    eventually(Duration::from_secs(60), "the job running", || {
        let (queue, id, prefixes) = (queue.clone(), id.clone(), prefixes.clone());
        async move {
            let r = queue.job(&id).await.ok()??;
            let worker = r.worker.filter(|_| r.state == JobState::Running)?;
            prefixes.iter().position(|p| worker.starts_with(p))
        }
    })
    .await
}

/// On a machine with an NVIDIA GPU and the ONNX Runtime GPU build (`scripts/fetch-onnxruntime --gpu`),
/// a worker plans for the card, runs a job on CUDA and measures a peak above zero. Elsewhere it says why
/// it was skipped: CI machines have no GPU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_gpu_the_worker_runs_on_cuda_and_measures_its_peak_memory() {
    let gpu = match radio_worker::vram::GpuMonitor::probe(0) {
        Ok(gpu) => gpu,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let ort =
        radio_tests::workspace_root().join(".runtime/onnxruntime-gpu/libonnxruntime.so.1.31.1");
    if !ort.exists() {
        eprintln!(
            "skipped: {} is missing; run scripts/fetch-onnxruntime --gpu",
            ort.display()
        );
        return;
    }
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let ort = ort.to_string_lossy().into_owned();
    let mut w = WorkerProcess::start(&redis, &queue, &[("ORT_DYLIB_PATH", ort.as_str())]);
    w.ready(READY).await;
    let id = enqueue(&queue, LONG, 7).await;
    let done = wait_state(&queue, &id, JobState::Succeeded, Duration::from_secs(120)).await;
    let meta = done.result.expect("meta");
    assert!(
        meta.peak_vram_bytes > 0,
        "a job on {} used no GPU memory?",
        gpu.info().name
    );
    let metrics = w.metrics().await;
    let device = format!("device=\"{}\"", gpu.info().name);
    assert!(
        metrics.contains(&format!("radio_gpu_memory_peak_bytes_count{{{device}}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains("dit=\"cuda\""),
        "the plan puts the DiT on CUDA: {metrics}"
    );
    assert!(
        !w.log().contains("CUDA is not usable"),
        "CUDA was really used:\n{}",
        w.log()
    );
}
