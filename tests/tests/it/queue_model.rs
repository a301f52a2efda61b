//! Property tests of the queue's state machine through the real Lua scripts on a real Redis: random
//! interleavings of enqueue, claim, complete, fail, cancel, release, crash (a dropped claim) and waits
//! long enough for reclaims and retries. After every step each guild's count of unfinished jobs matches
//! the records; at the end, after a drain, every job has exactly one outcome: none lost, none finished
//! twice.
//!
//! `RADIO_QUEUE_MODEL_CASES` sets how many random sequences run (default 12, a few seconds each).

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use radio_shared::job::{GenerateTask, JobId, JobSpec, JobState, Priority, SongRequest};
use radio_shared::queue::{
    ClaimedJob, EnqueueRequest, FinishOutcome, JobFailure, Queue, QueueError, QueueSettings,
};
use radio_tests::{TestRedis, fast_settings};

use crate::bot::meta;

const GUILDS: [&str; 3] = ["g0", "g1", "g2"];

#[derive(Debug, Clone)]
enum Op {
    Enqueue {
        guild: usize,
        radio: bool,
    },
    Claim {
        consumer: usize,
    },
    Complete {
        slot: usize,
    },
    Fail {
        slot: usize,
        permanent: bool,
    },
    Cancel {
        job: usize,
    },
    Release {
        slot: usize,
    },
    /// The holder dies: its lease stops, and the job is taken over after the reclaim time.
    Crash {
        slot: usize,
    },
    /// Long enough for crashed leases to expire and retries to fall due.
    Wait,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..GUILDS.len(), any::<bool>()).prop_map(|(guild, radio)| Op::Enqueue { guild, radio }),
        4 => (0..3usize).prop_map(|consumer| Op::Claim { consumer }),
        2 => any::<usize>().prop_map(|slot| Op::Complete { slot }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(slot, permanent)| Op::Fail { slot, permanent }),
        1 => any::<usize>().prop_map(|job| Op::Cancel { job }),
        1 => any::<usize>().prop_map(|slot| Op::Release { slot }),
        1 => any::<usize>().prop_map(|slot| Op::Crash { slot }),
        1 => Just(Op::Wait),
    ]
}

fn settings() -> QueueSettings {
    QueueSettings {
        heartbeat: Duration::from_millis(40),
        reclaim_after: Duration::from_millis(150),
        block: Duration::from_millis(50),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(40),
        max_attempts: 3,
        guild_cap: 0,
        ..fast_settings()
    }
}

async fn enqueue(queue: &Queue, guild: &str, radio: bool) -> JobId {
    let priority = if radio {
        Priority::Radio
    } else {
        Priority::Interactive
    };
    let mut spec = JobSpec::generate(
        priority,
        GenerateTask {
            song: SongRequest {
                duration_s: 10.0,
                ..SongRequest::default()
            },
            ..GenerateTask::default()
        },
    );
    spec.guild_id = Some(guild.to_string());
    queue
        .enqueue(EnqueueRequest::new(spec))
        .await
        .expect("enqueue")
        .id
}

/// Checks that each guild's set of unfinished jobs holds exactly its jobs not in a terminal state.
async fn guild_counts_match(redis: &TestRedis, queue: &Queue, jobs: &[(JobId, usize)]) {
    let mut raw = redis.raw().await;
    for (g, guild) in GUILDS.iter().enumerate() {
        let active: i64 = redis::cmd("SCARD")
            .arg(queue.keys().guild_active(guild))
            .query_async(&mut raw)
            .await
            .expect("SCARD");
        let mut unfinished = 0;
        for (id, _) in jobs.iter().filter(|(_, jg)| *jg == g) {
            let record = queue.job(id).await.expect("record").expect("no job lost");
            if !record.state.is_terminal() {
                unfinished += 1;
            }
        }
        assert_eq!(
            active, unfinished,
            "guild {guild}: the count of unfinished jobs drifted from the records"
        );
    }
}

/// What a finishing call may answer; an error from Redis is a test failure.
fn finished(outcome: Result<FinishOutcome, QueueError>) -> FinishOutcome {
    outcome.unwrap_or_else(|e| panic!("finishing failed: {e}"))
}

async fn run(redis: &TestRedis, ops: Vec<Op>) {
    let queue = redis.queue_with(settings()).await;
    let consumers: Vec<_> = (0..3).map(|i| queue.consumer(format!("c{i}"))).collect();
    let mut jobs: Vec<(JobId, usize)> = Vec::new();
    let mut held: Vec<ClaimedJob> = Vec::new();
    let audio = b"OggS model".to_vec();
    let meta = meta("model", "c");
    for op in ops {
        match op {
            Op::Enqueue { guild, radio } => {
                jobs.push((enqueue(&queue, GUILDS[guild], radio).await, guild));
            }
            Op::Claim { consumer } => {
                if let Some(Ok(job)) = consumers[consumer].claim_now().await.expect("claim") {
                    held.push(job);
                }
            }
            Op::Complete { slot } if !held.is_empty() => {
                let job = held.remove(slot % held.len());
                finished(job.complete(&audio, &meta).await);
            }
            Op::Fail { slot, permanent } if !held.is_empty() => {
                let job = held.remove(slot % held.len());
                let failure = if permanent {
                    JobFailure::permanent("model: permanent")
                } else {
                    JobFailure::transient("model: transient")
                };
                finished(job.fail(failure).await);
            }
            Op::Cancel { job } if !jobs.is_empty() => {
                let (id, _) = &jobs[job % jobs.len()];
                queue.cancel(id, "model").await.expect("cancel");
            }
            Op::Release { slot } if !held.is_empty() => {
                let job = held.remove(slot % held.len());
                finished(job.release("model").await);
            }
            Op::Crash { slot } if !held.is_empty() => {
                drop(held.remove(slot % held.len()));
            }
            Op::Wait => tokio::time::sleep(Duration::from_millis(200)).await,
            _ => {}
        }
        guild_counts_match(redis, &queue, &jobs).await;
    }

    // Drain: whoever still holds a job finishes it (a cancelled one ends cancelled); crashed leases
    // expire, retries fall due, and everything left is claimed and completed.
    for job in held.drain(..) {
        finished(job.complete(&audio, &meta).await);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut open = 0;
        for (id, _) in &jobs {
            if !queue
                .job_required(id)
                .await
                .expect("record")
                .state
                .is_terminal()
            {
                open += 1;
            }
        }
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} jobs never finished: lost"
        );
        match consumers[0].claim_now().await.expect("claim") {
            Some(Ok(job)) => {
                finished(job.complete(&audio, &meta).await);
            }
            _ => tokio::time::sleep(Duration::from_millis(30)).await,
        }
    }
    guild_counts_match(redis, &queue, &jobs).await;

    // Exactly one outcome per job, in its record and in the events stream.
    let mut raw = redis.raw().await;
    let events: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(queue.keys().events())
        .arg("-")
        .arg("+")
        .query_async(&mut raw)
        .await
        .expect("events");
    for (id, _) in &jobs {
        let record = queue.job_required(id).await.expect("record");
        let terminal_lines = record
            .history
            .iter()
            .filter(|h| matches!(h.state.as_str(), "succeeded" | "failed" | "cancelled"))
            .count();
        assert_eq!(
            terminal_lines, 1,
            "{id} finished {terminal_lines} times: {:?}",
            record.history
        );
        let outcomes = events
            .iter()
            .filter(|(_, f)| f.get("job").map(String::as_str) == Some(id.as_str()))
            .filter(|(_, f)| {
                matches!(
                    f.get("type").map(String::as_str),
                    Some("succeeded" | "failed" | "cancelled")
                )
            })
            .count();
        assert_eq!(outcomes, 1, "{id} published {outcomes} outcomes");
        if record.state == JobState::Succeeded {
            assert!(
                queue.result(id).await.expect("result").is_some(),
                "{id} succeeded without its audio"
            );
        }
    }
    // Entries of jobs that ended while their entry waited (cancelled in line) or was held by a dead
    // consumer are acknowledged by the next claims, never handed out again.
    tokio::time::sleep(settings().reclaim_after + Duration::from_millis(50)).await;
    for _ in 0..100 {
        match consumers[0].claim_now().await.expect("claim") {
            Some(Ok(job)) => panic!("a finished job was handed out again: {}", job.spec().id),
            Some(Err(_)) => break,
            None => {}
        }
    }
    let status = queue.status().await.expect("status");
    assert!(
        status
            .streams
            .iter()
            .all(|s| s.pending == 0 && s.waiting == 0),
        "nothing left in the streams: {status:?}"
    );
    assert_eq!(status.delayed, 0, "no retry left waiting");
}

#[test]
fn random_interleavings_lose_no_job_and_finish_none_twice() {
    let cases = std::env::var("RADIO_QUEUE_MODEL_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(12);
    let redis = TestRedis::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        runtime.block_on(run(&redis, ops));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
