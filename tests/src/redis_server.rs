//! A private `redis-server` for one test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use radio_shared::config::RedisConfig;
use radio_shared::keys::Prefix;
use radio_shared::queue::{Queue, QueueSettings};

/// A `redis-server` on a free port with no persistence, killed on drop.
#[derive(Debug)]
pub struct TestRedis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl TestRedis {
    /// Starts a server and waits until it answers PING (at most 10 s).
    pub fn start() -> Self {
        Self::start_on(crate::free_port(), &[])
    }

    /// Starts a server on `port` with extra `redis-server` arguments (e.g. `--enable-debug-command
    /// local`) and waits until it answers PING.
    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("radio-test-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}). Install it (Debian: apt-get install redis-server) \
                     or run scripts/test, which installs everything the tests need"
                )
            });
        let mut server = Self { child, port, dir };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "redis-server on port {} exited at start: {status}",
                    self.port
                );
            }
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_connection()
            {
                match redis::cmd("PING").query::<String>(&mut conn) {
                    Ok(_) => return,
                    // Up, with the default user switched off (an ACL file).
                    Err(e) if e.code() == Some("NOAUTH") => return,
                    Err(_) => {}
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its private folder (removed with it): tests keep their other files here too.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A config for this server with a unique prefix.
    pub fn config(&self) -> RedisConfig {
        let prefix = Prefix::new(&format!("t{}", ulid::Ulid::new())).unwrap_or_default();
        RedisConfig::new(self.url(), prefix).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A config for this server with the prefix `queue` uses (a second client of the same deployment).
    pub fn config_for(&self, queue: &Queue) -> RedisConfig {
        RedisConfig::new(self.url(), queue.keys().prefix().clone())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A queue on this server with fast test timings: heartbeat 100 ms, reclaim after 400 ms.
    pub async fn queue(&self) -> Queue {
        self.queue_with(fast_settings()).await
    }

    /// A queue on this server with the given settings.
    pub async fn queue_with(&self, settings: QueueSettings) -> Queue {
        Queue::connect(&self.config(), settings)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test Redis: {e}"))
    }

    /// A plain connection for assertions and for writing raw entries.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap_or_else(|e| panic!("{e}"))
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test Redis: {e}"))
    }
}

/// Queue settings that make lease expiry and retries happen within a test's patience.
pub fn fast_settings() -> QueueSettings {
    QueueSettings {
        heartbeat: Duration::from_millis(100),
        reclaim_after: Duration::from_millis(400),
        block: Duration::from_millis(200),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        ..QueueSettings::default()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server --sentinel` monitoring one primary as `name`, on a free port, killed on drop.
#[derive(Debug)]
pub struct TestSentinel {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl TestSentinel {
    /// Starts a sentinel watching the primary on 127.0.0.1:`primary_port` with quorum 2, marking it
    /// down after 1 s without an answer; waits until it answers PING.
    pub fn start(name: &str, primary_port: u16) -> Self {
        let port = crate::free_port();
        let dir =
            std::env::temp_dir().join(format!("radio-test-sentinel-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // Sentinel rewrites its configuration file as it learns, so it gets its own copy.
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {name} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 10000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir.display()
            ),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", conf.display()));
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server --sentinel ({e})"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                && let Ok(mut conn) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinel on port {port} did not answer PING within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, dir }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs one command against it and returns the reply.
    pub fn command<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn)
    }
}

impl Drop for TestSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
