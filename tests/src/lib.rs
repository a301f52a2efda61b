//! The integration-test harness: a private `redis-server` per test, free ports, the paths of the
//! workspace's binaries, and small helpers to wait for things.
//!
//! Every test gets its own Redis (a fresh `redis-server` on a free port, stopped when the test ends), so
//! tests run in parallel without seeing each other. If `redis-server` is not installed the test fails
//! with a message that says how to get it; `scripts/test` installs it.

pub mod audio;
pub mod debian_root;
pub mod fake_discord;
pub mod redis_server;
pub mod worker_process;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

pub use redis_server::{TestRedis, TestSentinel, fast_settings};
pub use worker_process::{WorkerProcess, tiny_gguf, tiny_pack};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free TCP port on 127.0.0.1: {e}"))
}

/// The workspace root (the parent of `tests/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The path of a workspace binary built by the same `cargo test --workspace` run
/// (`target/<profile>/<name>`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no current exe: {e}"));
    // target/<profile>/deps/<test binary> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "binary {} is missing: `cargo test --workspace` builds it (cargo builds a package's binaries for \
         that package's own integration tests, so each binary's package needs one)",
        path.display()
    );
    path
}

pub use radio_shared::queue::now_ms;

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET path` over HTTP/1.0 from `addr` (`host:port` or a socket address): the status code and the body.
pub async fn http_get(addr: impl std::fmt::Display, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = addr.to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    Ok((status, body.to_string()))
}
