//! `radioctl bench`: no-op jobs through the real queue protocol, to measure what a Redis deployment
//! sustains. It uses a throwaway key prefix and deletes its keys afterwards.

use std::time::Instant;

use anyhow::Context;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use radio_shared::config::RedisConfig;
use radio_shared::job::{
    GenerateTask, JobSpec, Priority, ResultMeta, SongRequest, Station, Writer,
};
use radio_shared::keys::Prefix;
use radio_shared::queue::{EnqueueRequest, Queue, QueueSettings};

/// One run's figures.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    /// Jobs pushed through.
    pub jobs: usize,
    /// Concurrent consumers.
    pub consumers: usize,
    /// Jobs enqueued per second (50 concurrent producers).
    pub enqueue_per_s: f64,
    /// Jobs claimed and completed per second.
    pub jobs_per_s: f64,
}

/// Enqueues `jobs` no-op jobs, then drains them with each consumer count in turn.
pub async fn run(
    redis: &RedisConfig,
    jobs: usize,
    consumer_counts: &[usize],
) -> anyhow::Result<Vec<BenchResult>> {
    let mut results = Vec::new();
    for &consumers in consumer_counts {
        let prefix =
            Prefix::new(&format!("bench-{}", ulid::Ulid::new())).map_err(anyhow::Error::msg)?;
        let config = RedisConfig {
            prefix,
            ..redis.clone()
        };
        let settings = QueueSettings {
            guild_cap: 0,
            ..QueueSettings::default()
        };
        let queue = Queue::connect(&config, settings).await?;
        let outcome = measure(&queue, jobs, consumers).await;
        cleanup(&queue)
            .await
            .context("deleting the benchmark's keys")?;
        results.push(outcome?);
    }
    Ok(results)
}

async fn measure(queue: &Queue, jobs: usize, consumers: usize) -> anyhow::Result<BenchResult> {
    let spec = || {
        JobSpec::generate(
            Priority::Radio,
            GenerateTask {
                station: Station::default(),
                song: SongRequest {
                    duration_s: 10.0,
                    ..SongRequest::default()
                },
                ..GenerateTask::default()
            },
        )
    };
    let started = Instant::now();
    stream::iter(0..jobs)
        .map(|_| queue.enqueue(EnqueueRequest::new(spec())))
        .buffer_unordered(50)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let enqueue_secs = started.elapsed().as_secs_f64();

    let meta = ResultMeta {
        title: String::new(),
        caption: String::new(),
        lyrics: String::new(),
        bpm: None,
        keyscale: None,
        timesignature: None,
        language: "en".into(),
        duration_s: 10.0,
        seed: 0,
        writer: Writer::User,
        worker: "bench".into(),
        format: Default::default(),
        stage_seconds: Default::default(),
        total_seconds: 0.0,
        peak_vram_bytes: 0,
    };
    let started = Instant::now();
    let tasks: Vec<_> = (0..consumers)
        .map(|n| {
            let consumer = queue.consumer(format!("bench-{n}"));
            let meta = meta.clone();
            tokio::spawn(async move {
                let mut done = 0usize;
                // Stop when a non-blocking claim finds nothing: the streams are drained.
                while let Some(Ok(job)) = consumer.claim_now().await? {
                    job.complete(b"", &meta).await?;
                    done += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut done = 0;
    for task in tasks {
        done += task.await.context("a bench consumer panicked")??;
    }
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(done == jobs, "only {done} of {jobs} jobs completed");
    Ok(BenchResult {
        jobs,
        consumers,
        enqueue_per_s: jobs as f64 / enqueue_secs,
        jobs_per_s: jobs as f64 / secs,
    })
}

async fn cleanup(queue: &Queue) -> anyhow::Result<()> {
    let keys = queue
        .keys_starting_with(queue.keys().prefix().as_str())
        .await?;
    let mut conn = queue.conn();
    for chunk in keys.chunks(500) {
        redis::cmd("DEL")
            .arg(chunk)
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(())
}
