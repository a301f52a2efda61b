//! A real `radio-worker run` process on the tiny model pack, against a test Redis.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use radio_shared::queue::{Queue, QueueSettings};

use crate::{TestRedis, binary, free_port, http_get, workspace_root};

/// The bundled tiny pack (random weights: noise, not music).
pub fn tiny_pack() -> PathBuf {
    workspace_root().join("worker/assets/tiny-pack")
}

/// The tiny GGUF the song writer tests use.
pub fn tiny_gguf() -> PathBuf {
    workspace_root().join("worker/tests/fixtures/tiny-songwriter.gguf")
}

/// A running worker, killed on drop.
#[derive(Debug)]
pub struct WorkerProcess {
    child: Child,
    /// Its `METRICS_ADDR`.
    pub metrics_addr: String,
    /// Its `WORKER_ID` (consumer names are `<id>-<slot>`).
    pub id: String,
    log: PathBuf,
}

impl WorkerProcess {
    /// Starts a worker with fast queue timings; `extra` adds or overrides environment variables.
    pub fn start(redis: &TestRedis, queue: &Queue, extra: &[(&str, &str)]) -> Self {
        Self::start_for(
            &redis.url(),
            queue.keys().prefix().as_str(),
            queue.settings(),
            extra,
        )
    }

    /// Starts a worker for the deployment at `redis_url` with `prefix` and the timings of `s`, whether
    /// or not that Redis runs yet.
    pub fn start_for(
        redis_url: &str,
        prefix: &str,
        s: &QueueSettings,
        extra: &[(&str, &str)],
    ) -> Self {
        Self::start_wrapped(&[], redis_url, prefix, s, extra)
    }

    /// [`WorkerProcess::start_for`] run through `wrapper` (e.g. `ip netns exec <name>`); a
    /// `METRICS_ADDR` in `extra` is where [`WorkerProcess::ready`] looks for it.
    pub fn start_wrapped(
        wrapper: &[&str],
        redis_url: &str,
        prefix: &str,
        s: &QueueSettings,
        extra: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let metrics_addr = extra
            .iter()
            .find(|(k, _)| *k == "METRICS_ADDR")
            .map_or_else(|| format!("127.0.0.1:{port}"), |(_, v)| v.to_string());
        let id = format!("test-worker-{port}");
        let log = std::env::temp_dir().join(format!("{id}.log"));
        let log_file =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary("radio-worker"));
                c
            }
            None => Command::new(binary("radio-worker")),
        };
        command
            .arg("run")
            .current_dir(workspace_root())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("REDIS_URL", redis_url)
            .env("RADIO_PREFIX", prefix)
            .env("MODELS_DIR", tiny_pack())
            .env("METRICS_ADDR", &metrics_addr)
            .env("WORKER_ID", &id)
            .env(
                "RADIO_HEARTBEAT_SECS",
                s.heartbeat.as_secs_f64().to_string(),
            )
            .env(
                "RADIO_RECLAIM_AFTER_SECS",
                s.reclaim_after.as_secs_f64().to_string(),
            )
            .env("RADIO_BLOCK_SECS", s.block.as_secs_f64().to_string())
            .env("RADIO_BACKOFF_BASE_SECS", "0.05")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file);
        if let Ok(path) = std::env::var("ORT_DYLIB_PATH") {
            command.env("ORT_DYLIB_PATH", path);
        }
        for (k, v) in extra {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start radio-worker: {e}"));
        Self {
            child,
            metrics_addr,
            id,
            log,
        }
    }

    /// Waits until `/healthz` answers 200 (the worker registered and is claiming).
    pub async fn ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("radio-worker exited at start ({status}):\n{}", self.log());
            }
            if let Ok((200, _)) = http_get(&self.metrics_addr, "/healthz").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "radio-worker not ready within {timeout:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /metrics`.
    pub async fn metrics(&self) -> String {
        match http_get(&self.metrics_addr, "/metrics").await {
            Ok((200, body)) => body,
            other => panic!("GET /metrics: {other:?}"),
        }
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Freezes the process (SIGSTOP): it holds its connections and does nothing, like a worker stuck
    /// in a driver call or a paused VM.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Wakes a frozen process (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// Whether the process is still running (not exited).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGKILL and reaps the process (a crash).
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit; returns its exit code.
    pub async fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "radio-worker did not exit within {timeout:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // A frozen process dies of SIGKILL too; waking it first keeps its exit orderly for the reaper.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
