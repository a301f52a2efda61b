//! Faults an operator meets, with real processes: Redis not up yet when a process starts, Redis that
//! answers slowly, and a worker frozen (SIGSTOP) past its lease.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use radio_shared::config::RedisConfig;
use radio_shared::job::{JobId, JobState};
use radio_shared::keys::Prefix;
use radio_shared::queue::{Queue, QueueSettings};
use radio_tests::{
    TestRedis, TestSentinel, WorkerProcess, binary, eventually, fast_settings, free_port,
};

use crate::worker::{LONG, READY, enqueue, record, running_on, wait_state};

/// Every `succeeded` event of `id` in the events stream.
async fn succeeded_events(redis: &TestRedis, queue: &Queue, id: &JobId) -> usize {
    let mut raw = redis.raw().await;
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(queue.keys().events())
        .arg("-")
        .arg("+")
        .query_async(&mut raw)
        .await
        .expect("XRANGE events");
    entries
        .iter()
        .filter(|(_, f)| {
            f.get("job").map(String::as_str) == Some(id.as_str())
                && f.get("type").map(String::as_str) == Some("succeeded")
        })
        .count()
}

/// Waits until `worker`, back from a freeze or a partition, has registered again, then long enough for
/// it to finish the render it was in and try to record it.
async fn rejoined(queue: &Queue, worker: &WorkerProcess) {
    eventually(
        Duration::from_secs(60),
        "the worker to register again",
        || {
            let queue = queue.clone();
            let id = worker.id.clone();
            async move {
                let workers = queue.live_workers().await.ok()?;
                workers.iter().any(|w| w.id == id).then_some(())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_before_redis_waits_for_it_then_works() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let prefix = Prefix::new(&format!("t{}", ulid::Ulid::new())).expect("prefix");
    let settings = fast_settings();
    let mut worker = WorkerProcess::start_for(
        &url,
        prefix.as_str(),
        &settings,
        &[("REDIS_CONNECT_TIMEOUT_SECS", "60")],
    );
    // Nothing listens yet: the worker must wait, not exit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        worker.running(),
        "the worker exited without Redis:\n{}",
        worker.log()
    );
    let redis = TestRedis::start_on(port, &[]);
    worker.ready(READY).await;
    let log = worker.log();
    assert!(
        log.contains("Redis cannot be reached yet"),
        "each failed attempt is logged with its reason:\n{log}"
    );

    let config = RedisConfig::new(redis.url(), prefix).expect("config");
    let queue = Queue::connect(&config, settings).await.expect("connect");
    let id = enqueue(&queue, 10.0, 1).await;
    wait_state(&queue, &id, JobState::Succeeded, Duration::from_secs(60)).await;
}

#[tokio::test]
async fn without_redis_a_process_gives_up_after_the_connect_timeout_with_a_clear_error() {
    let nobody = format!("redis://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = tokio::process::Command::new(binary("radioctl"))
        .arg("status")
        .env("REDIS_URL", &nobody)
        .env("REDIS_CONNECT_TIMEOUT_SECS", "1.5")
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("radioctl");
    let waited = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("did not answer within") && stderr.contains("REDIS_CONNECT_TIMEOUT_SECS"),
        "{stderr}"
    );
    assert!(
        stderr.matches("Redis cannot be reached yet").count() >= 1,
        "it said it was waiting: {stderr}"
    );
    assert!(
        waited >= Duration::from_millis(1400),
        "it gave up early: {waited:?}"
    );

    // A refusal waiting cannot fix (a password the server does not have) ends at once.
    let redis = TestRedis::start();
    let wrong = format!("redis://:not-the-password@127.0.0.1:{}", redis.port());
    let started = Instant::now();
    let out = tokio::process::Command::new(binary("radioctl"))
        .arg("status")
        .env("REDIS_URL", &wrong)
        .env("REDIS_CONNECT_TIMEOUT_SECS", "60")
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("radioctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("cannot be reached yet"),
        "a wrong password is not retried: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a wrong password must not wait out REDIS_CONNECT_TIMEOUT_SECS"
    );
    assert!(
        !stderr.contains("not-the-password"),
        "the password stays out of errors: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stalling_longer_than_a_heartbeat_loses_no_lease_and_runs_no_job_twice() {
    let redis = TestRedis::start_on(free_port(), &["--enable-debug-command", "local"]);
    // Heartbeats every 0.5 s; a lease is taken over after 4 s without one.
    let settings = QueueSettings {
        heartbeat: Duration::from_millis(500),
        reclaim_after: Duration::from_secs(4),
        block: Duration::from_millis(500),
        ..fast_settings()
    };
    let queue = redis.queue_with(settings).await;
    let mut a = WorkerProcess::start(&redis, &queue, &[]);
    let mut b = WorkerProcess::start(&redis, &queue, &[]);
    a.ready(READY).await;
    b.ready(READY).await;
    let mut ids = Vec::new();
    for seed in 0..8 {
        ids.push(enqueue(&queue, LONG, seed).await);
    }
    running_on(&queue, &ids, &a).await;

    // Redis stalls for 1.5 s (three heartbeats) three times while the jobs run.
    // (redis-cli: the harness's own connections time out before a 1.5 s reply.)
    for _ in 0..3 {
        let out = tokio::process::Command::new("redis-cli")
            .args(["-p", &redis.port().to_string(), "DEBUG", "SLEEP", "1.5"])
            .output()
            .await
            .expect("redis-cli");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "OK",
            "DEBUG SLEEP (the test server allows DEBUG from loopback): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
    }

    for id in &ids {
        let r = wait_state(&queue, id, JobState::Succeeded, Duration::from_secs(120)).await;
        let claims = r.history.iter().filter(|h| h.state == "running").count();
        assert_eq!(
            (r.attempts, claims),
            (1, 1),
            "{id} ran more than once: {:?}",
            r.history
        );
        assert!(
            !r.history.iter().any(|h| h.note.contains("reclaimed")),
            "{id}'s lease was taken over: {:?}",
            r.history
        );
        assert_eq!(succeeded_events(&redis, &queue, id).await, 1);
    }
    assert!(a.running() && b.running(), "a stall is not fatal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_loses_its_job_and_its_late_outcome_is_refused() {
    let redis = TestRedis::start();
    // Leases are taken over after 1 s without a heartbeat.
    let queue = redis.queue().await;
    let mut frozen = WorkerProcess::start(&redis, &queue, &[]);
    frozen.ready(READY).await;
    let id = enqueue(&queue, LONG, 3).await;
    running_on(&queue, std::slice::from_ref(&id), &frozen).await;
    frozen.freeze();
    let mut rescuer = WorkerProcess::start(&redis, &queue, &[]);
    rescuer.ready(READY).await;
    let done = wait_state(&queue, &id, JobState::Succeeded, Duration::from_secs(60)).await;
    let finisher = done
        .result
        .as_ref()
        .map(|m| m.worker.clone())
        .unwrap_or_default();
    assert!(
        finisher.starts_with(&rescuer.id),
        "the job was finished by {finisher}, not the worker that took it over"
    );

    // The frozen worker wakes up mid-job: whatever it reports now is refused.
    frozen.thaw();
    rejoined(&queue, &frozen).await;
    let after = record(&queue, &id).await;
    assert_eq!(after.state, JobState::Succeeded);
    assert_eq!(
        after.result, done.result,
        "the late result did not replace the real one"
    );
    assert_eq!(
        after
            .history
            .iter()
            .filter(|h| h.state == "succeeded")
            .count(),
        1,
        "{:?}",
        after.history
    );
    assert_eq!(
        succeeded_events(&redis, &queue, &id).await,
        1,
        "one outcome published"
    );
    assert!(
        frozen.running(),
        "the woken worker carries on:\n{}",
        frozen.log()
    );

    // And it still works: the next job runs on whichever worker claims it.
    let next = enqueue(&queue, 10.0, 4).await;
    wait_state(&queue, &next, JobState::Succeeded, Duration::from_secs(60)).await;
}

/// The port of the primary `sentinel` names.
fn primary_port(sentinel: &TestSentinel, name: &str) -> Option<u16> {
    let addr: Option<(String, u16)> = sentinel
        .command(&["SENTINEL", "get-master-addr-by-name", name])
        .ok()?;
    addr.map(|(_, port)| port)
}

/// How many of `ids` have succeeded.
async fn succeeded(queue: &Queue, ids: &[JobId]) -> usize {
    let mut n = 0;
    for id in ids {
        if queue
            .job(id)
            .await
            .ok()
            .flatten()
            .is_some_and(|r| r.state == JobState::Succeeded)
        {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_follow_sentinel_failovers_and_every_job_succeeds() {
    const NAME: &str = "radio-test";
    const JOBS: usize = 30;
    let first = TestRedis::start_on(free_port(), &[]);
    let second = TestRedis::start_on(
        free_port(),
        &["--replicaof", "127.0.0.1", &first.port().to_string()],
    );
    let sentinels: Vec<TestSentinel> = (0..3)
        .map(|_| TestSentinel::start(NAME, first.port()))
        .collect();
    // A failover needs the sentinels to know the replica and each other (hello messages, every 2 s).
    eventually(
        Duration::from_secs(30),
        "the sentinels to see the replica and each other",
        || {
            let ready = sentinels.iter().all(|s| {
                let replicas: Vec<redis::Value> = s
                    .command(&["SENTINEL", "replicas", NAME])
                    .unwrap_or_default();
                let peers: Vec<redis::Value> = s
                    .command(&["SENTINEL", "sentinels", NAME])
                    .unwrap_or_default();
                replicas.len() == 1 && peers.len() == 2
            });
            async move { ready.then_some(()) }
        },
    )
    .await;

    let hosts: Vec<String> = sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port()))
        .collect();
    let url = format!("redis+sentinel://{}/{NAME}", hosts.join(","));
    let prefix = Prefix::new(&format!("t{}", ulid::Ulid::new())).expect("prefix");
    let settings = QueueSettings {
        heartbeat: Duration::from_millis(200),
        reclaim_after: Duration::from_millis(1500),
        block: Duration::from_millis(500),
        ..fast_settings()
    };
    let config =
        RedisConfig::new(&url, prefix.clone()).expect("a sentinel URL is a valid REDIS_URL");
    let queue = Queue::connect(&config, settings.clone())
        .await
        .expect("connect through the sentinels");
    let mut a = WorkerProcess::start_for(&url, prefix.as_str(), &settings, &[]);
    let mut b = WorkerProcess::start_for(&url, prefix.as_str(), &settings, &[]);
    a.ready(READY).await;
    b.ready(READY).await;
    let mut ids = Vec::new();
    for seed in 0..JOBS as u64 {
        ids.push(enqueue(&queue, 30.0, seed).await);
    }
    // The jobs are on the replica before anything fails (asynchronous replication could lose them).
    // (redis-cli: the harness's own connections time out before WAIT's answer.)
    let out = tokio::process::Command::new("redis-cli")
        .args(["-p", &first.port().to_string(), "WAIT", "1", "5000"])
        .output()
        .await
        .expect("redis-cli WAIT");
    let acked = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(acked, "1", "the replica acknowledged the enqueued jobs");

    let progress = |at_least: usize, what: &'static str| {
        let (queue, ids) = (queue.clone(), ids.clone());
        eventually(Duration::from_secs(120), what, move || {
            let (queue, ids) = (queue.clone(), ids.clone());
            async move { (succeeded(&queue, &ids).await >= at_least).then_some(()) }
        })
    };
    progress(5, "5 jobs before the failover").await;

    // 1. A planned failover: the replica becomes the primary.
    let reply: String = sentinels[0]
        .command(&["SENTINEL", "FAILOVER", NAME])
        .expect("SENTINEL FAILOVER");
    assert_eq!(reply, "OK");
    eventually(
        Duration::from_secs(30),
        "the sentinels to name the replica",
        || {
            let moved = primary_port(&sentinels[0], NAME) == Some(second.port());
            async move { moved.then_some(()) }
        },
    )
    .await;
    let before_kill = succeeded(&queue, &ids).await;
    progress(
        (before_kill + 5).min(JOBS),
        "5 more jobs on the new primary",
    )
    .await;

    // 2. The primary is killed: the sentinels promote the old one, now its replica.
    drop(second);
    eventually(
        Duration::from_secs(60),
        "the sentinels to promote the survivor",
        || {
            let moved = primary_port(&sentinels[1], NAME) == Some(first.port());
            async move { moved.then_some(()) }
        },
    )
    .await;
    progress(JOBS, "every job to succeed").await;

    let mut twice = 0;
    for id in &ids {
        let r = record(&queue, id).await;
        let claims = r
            .history
            .iter()
            .filter(|h| h.state == "running" && !h.note.starts_with("cancel requested"))
            .count();
        if claims > 1 {
            twice += 1;
        }
        assert!(
            queue
                .result(id)
                .await
                .expect("result")
                .is_some_and(|audio| audio.starts_with(b"OggS")),
            "{id} succeeded with its audio"
        );
    }
    eprintln!(
        "sentinel failovers (one planned, one SIGKILL): {JOBS} jobs, {JOBS} succeeded, {twice} run more than once, 0 lost"
    );
    assert!(
        a.running() && b.running(),
        "the workers rode out both failovers"
    );

    // radioctl follows the sentinels too.
    let out = tokio::process::Command::new(binary("radioctl"))
        .args(["status", "--json"])
        .env("REDIS_URL", &url)
        .env("RADIO_PREFIX", prefix.as_str())
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("radioctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(
        status["workers"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
}

/// A network namespace joined to this one by a veth pair (`host` ↔ `inside`), removed on drop.
struct Partition {
    name: String,
    host_link: String,
    host_ip: String,
    inside_ip: String,
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {} (this test needs root to create a network namespace)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Partition {
    fn create() -> Self {
        // Unique per test process; a /30 in 10.231.0.0/16 picked from the pid.
        let n = std::process::id() % 16_000;
        let name = format!("radio-part-{n}");
        let (host_link, inside_link) = (format!("rph{n}"), format!("rpi{n}"));
        let (a, b) = ((n * 4) / 256, (n * 4) % 256);
        let host_ip = format!("10.231.{a}.{}", b + 1);
        let inside_ip = format!("10.231.{a}.{}", b + 2);
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &name])
            .output();
        ip(&["netns", "add", &name]);
        let partition = Self {
            name: name.clone(),
            host_link: host_link.clone(),
            host_ip: host_ip.clone(),
            inside_ip: inside_ip.clone(),
        };
        ip(&[
            "link",
            "add",
            &host_link,
            "type",
            "veth",
            "peer",
            "name",
            &inside_link,
        ]);
        ip(&["link", "set", &inside_link, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_link]);
        ip(&["link", "set", &host_link, "up"]);
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{inside_ip}/30"),
            "dev",
            &inside_link,
        ]);
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "link",
            "set",
            &inside_link,
            "up",
        ]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        partition
    }

    /// Cuts the link (both ends see it down) or restores it.
    fn set_connected(&self, up: bool) {
        ip(&[
            "link",
            "set",
            &self.host_link,
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", &self.host_link])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_from_redis_loses_its_job_and_rejoins_when_the_network_returns() {
    let partition = Partition::create();
    let port = free_port();
    let bind = format!("127.0.0.1 {}", partition.host_ip);
    let redis = TestRedis::start_on(port, &["--bind", &bind, "--protected-mode", "no"]);
    // Leases are taken over after 2 s without a heartbeat.
    let settings = QueueSettings {
        heartbeat: Duration::from_millis(300),
        reclaim_after: Duration::from_secs(2),
        block: Duration::from_millis(500),
        ..fast_settings()
    };
    let queue = redis.queue_with(settings.clone()).await;
    let inside_metrics = format!("{}:{}", partition.inside_ip, free_port());
    let mut cut_off = WorkerProcess::start_wrapped(
        &["ip", "netns", "exec", &partition.name],
        &format!("redis://{}:{port}", partition.host_ip),
        queue.keys().prefix().as_str(),
        &settings,
        &[("METRICS_ADDR", &inside_metrics)],
    );
    cut_off.ready(READY).await;
    let id = enqueue(&queue, LONG, 5).await;
    running_on(&queue, std::slice::from_ref(&id), &cut_off).await;
    partition.set_connected(false);

    let mut rescuer = WorkerProcess::start(&redis, &queue, &[]);
    rescuer.ready(READY).await;
    let done = wait_state(&queue, &id, JobState::Succeeded, Duration::from_secs(60)).await;
    let finisher = done
        .result
        .as_ref()
        .map(|m| m.worker.clone())
        .unwrap_or_default();
    assert!(
        finisher.starts_with(&rescuer.id),
        "finished by {finisher}, not the worker that took it over"
    );

    // The network returns: the cut-off worker reconnects, registers again and works; the job it lost
    // keeps its one outcome.
    partition.set_connected(true);
    rejoined(&queue, &cut_off).await;
    let after = record(&queue, &id).await;
    assert_eq!(
        after.result, done.result,
        "the late result did not replace the real one"
    );
    assert_eq!(
        succeeded_events(&redis, &queue, &id).await,
        1,
        "one outcome published"
    );
    assert!(
        cut_off.running(),
        "the cut-off worker carries on:\n{}",
        cut_off.log()
    );
    let mut more = Vec::new();
    for seed in 0..4 {
        more.push(enqueue(&queue, 10.0, 10 + seed).await);
    }
    for id in &more {
        wait_state(&queue, id, JobState::Succeeded, Duration::from_secs(60)).await;
    }
}
