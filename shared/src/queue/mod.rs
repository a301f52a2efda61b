//! The job queue on Redis Streams.
//!
//! One [`Queue`] handle per process carries two kinds of connection: a multiplexed connection that
//! pipelines every short command and script (it reconnects by itself), and a small pool that lends whole
//! connections to blocking reads (`XREAD BLOCK`), whose response timeout is longer than the block time
//! (DESIGN §9: a shorter client timeout fails the call while the server still delivers).
//!
//! Delivery is at least once. A job leaves its stream's pending list only by `XACK` in the same script
//! that writes its terminal state. Workers keep a lease on the entry they run (an `XCLAIM … JUSTID` every
//! heartbeat, from a tokio task that a blocked inference thread cannot starve); an entry idle longer than
//! `reclaim_after` belongs to the next worker that claims.

mod admin;
mod consumer;
mod events;
mod lease;
mod limits;
mod producer;
mod record;
mod registry;
mod scripts;
mod sentinel;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, RedisError};
use secrecy::ExposeSecret;
use tokio::sync::OnceCell;

pub use admin::{
    ConsumerStatus, DeadLetter, JobFilter, JobPage, JobSummary, MinuteOutcomes, QueueStatus,
    RedisMemory, StreamStatus,
};
pub use consumer::{Consumer, now_ms};
pub use events::{Event, EventFollower, EventKind};
pub use lease::{ClaimedJob, FinishOutcome, JobControl, JobFailure};
pub use limits::{Admission, RequestLimit};
pub use producer::{CancelOutcome, EnqueueRequest, Enqueued};
pub use record::{HistoryEntry, JobRecord};
pub use registry::WorkerInfo;

use crate::config::{ConfigError, Env, RedisConfig};
use crate::job::JobId;
use crate::keys::{CONSUMER_GROUP, Keys};
use scripts::Scripts;
pub use sentinel::SentinelUrl;

/// Timing and limits of the queue protocol. Every worker and producer of one deployment should agree.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// How often a worker renews the lease on the job it runs.
    pub heartbeat: Duration,
    /// An entry whose lease is older than this is taken over by the next claiming worker (≈ 3 heartbeats).
    pub reclaim_after: Duration,
    /// The longest a blocking read waits before looking again.
    pub block: Duration,
    /// Attempts before a job is dead-lettered, unless its spec says otherwise.
    pub max_attempts: u32,
    /// The first retry waits about this long; each further retry doubles it.
    pub backoff_base: Duration,
    /// The longest a retry waits.
    pub backoff_max: Duration,
    /// How long a finished job's audio stays in Redis when nobody collects it. The bot removes a
    /// result as soon as it has the track, so this bounds only what is never collected.
    pub result_ttl: Duration,
    /// How long a finished job's record stays in Redis.
    pub job_ttl: Duration,
    /// The most finished job records kept; past it the oldest are dropped (0: no cap, TTL only).
    pub job_history_max: u64,
    /// How long an idempotency key maps to its job.
    pub dedup_ttl: Duration,
    /// Unfinished jobs one guild may have at once (0: no cap).
    pub guild_cap: u32,
    /// Approximate length the events stream is trimmed to.
    pub events_maxlen: u64,
    /// Connections for blocking reads.
    pub blocking_pool_size: usize,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(5),
            reclaim_after: Duration::from_secs(15),
            block: Duration::from_secs(2),
            max_attempts: 3,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            result_ttl: Duration::from_secs(3600),
            job_ttl: Duration::from_secs(7 * 24 * 3600),
            job_history_max: 10_000,
            dedup_ttl: Duration::from_secs(24 * 3600),
            guild_cap: 10,
            events_maxlen: 10_000,
            blocking_pool_size: 8,
        }
    }
}

impl QueueSettings {
    /// Reads the `RADIO_*` queue settings; unset ones keep their defaults.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let settings = Self {
            heartbeat: env.seconds("RADIO_HEARTBEAT_SECS", d.heartbeat)?,
            reclaim_after: env.seconds("RADIO_RECLAIM_AFTER_SECS", d.reclaim_after)?,
            block: env.seconds("RADIO_BLOCK_SECS", d.block)?,
            max_attempts: env.parse("RADIO_MAX_ATTEMPTS", d.max_attempts, "a whole number ≥ 1")?,
            backoff_base: env.seconds("RADIO_BACKOFF_BASE_SECS", d.backoff_base)?,
            backoff_max: env.seconds("RADIO_BACKOFF_MAX_SECS", d.backoff_max)?,
            result_ttl: env.seconds("RADIO_RESULT_TTL_SECS", d.result_ttl)?,
            job_ttl: env.seconds("RADIO_JOB_TTL_SECS", d.job_ttl)?,
            job_history_max: env.parse(
                "RADIO_JOB_HISTORY_MAX",
                d.job_history_max,
                "a whole number of finished jobs to keep (0: no cap, RADIO_JOB_TTL_SECS only)",
            )?,
            dedup_ttl: env.seconds("RADIO_DEDUP_TTL_SECS", d.dedup_ttl)?,
            guild_cap: env.parse(
                "RADIO_GUILD_QUEUE_CAP",
                d.guild_cap,
                "a whole number (0: no cap)",
            )?,
            events_maxlen: d.events_maxlen,
            blocking_pool_size: d.blocking_pool_size,
        };
        settings.check()?;
        Ok(settings)
    }

    /// Rejects combinations that would break the lease protocol.
    pub fn check(&self) -> Result<(), ConfigError> {
        let err = |name: &str, value: String, expected: &str| ConfigError {
            name: name.into(),
            value,
            expected: expected.into(),
        };
        if self.heartbeat.is_zero() {
            return Err(err(
                "RADIO_HEARTBEAT_SECS",
                "0".into(),
                "more than 0 seconds",
            ));
        }
        if self.reclaim_after < self.heartbeat * 2 {
            return Err(err(
                "RADIO_RECLAIM_AFTER_SECS",
                format!("{:?}", self.reclaim_after),
                "at least twice RADIO_HEARTBEAT_SECS (three times is the default)",
            ));
        }
        if self.max_attempts == 0 {
            return Err(err("RADIO_MAX_ATTEMPTS", "0".into(), "a whole number ≥ 1"));
        }
        Ok(())
    }

    /// The backoff before retry number `attempt` (1-based): exponential, capped, with ±25 % jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let capped = exp.min(self.backoff_max);
        let jitter = 0.75 + rand::random::<f64>() * 0.5;
        capped.mul_f64(jitter)
    }
}

/// What went wrong talking to the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis could not be reached at start.
    #[error("cannot reach Redis at {url}: {source} (is redis-server running? check REDIS_URL)")]
    Connect {
        /// The URL without its password.
        url: String,
        /// The client's error.
        source: RedisError,
    },
    /// A command failed.
    #[error("Redis failed while {doing}: {source}")]
    Redis {
        /// What the queue was doing.
        doing: &'static str,
        /// The client's error.
        source: RedisError,
    },
    /// No pooled connection for a blocking read.
    #[error("no Redis connection for a blocking read: {0}")]
    Pool(String),
    /// Redis answered something this build does not understand.
    #[error("unexpected reply from Redis while {doing}: {detail}")]
    Protocol {
        /// What the queue was doing.
        doing: &'static str,
        /// The reply.
        detail: String,
    },
    /// No job with this id.
    #[error(
        "no job {id} (key {key} does not exist; finished jobs expire after RADIO_JOB_TTL_SECS)"
    )]
    UnknownJob {
        /// The id asked for.
        id: JobId,
        /// The key that was looked up.
        key: String,
    },
    /// The guild reached its cap of unfinished jobs.
    #[error("guild {guild} already has {active} unfinished jobs (the cap is {cap})")]
    GuildFull {
        /// The guild.
        guild: String,
        /// Its unfinished jobs.
        active: u64,
        /// The cap.
        cap: u32,
    },
    /// The spec failed validation.
    #[error("invalid job: {0}")]
    Invalid(#[from] crate::job::DecodeError),
    /// The request makes no sense in the job's current state.
    #[error("{0}")]
    Conflict(String),
    /// `REDIS_URL` could not be understood.
    #[error("REDIS_URL {url} is invalid: {detail}")]
    BadUrl {
        /// The URL without its password.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The sentinels named no primary that answers as one (none reachable, or a failover under way).
    #[error("no Redis primary {primary:?} from the sentinels: {detail}")]
    NoPrimary {
        /// The primary's name (or the node asked).
        primary: String,
        /// What each sentinel said.
        detail: String,
        /// The last connection error, if any.
        #[source]
        source: Option<RedisError>,
    },
    /// Redis stayed unreachable for as long as a starting process waits for it.
    #[error(
        "Redis at {url} did not answer within {waited_s} s ({attempts} attempts; REDIS_CONNECT_TIMEOUT_SECS sets the wait): {source}"
    )]
    Unreachable {
        /// The URL without its password.
        url: String,
        /// Seconds waited.
        waited_s: u64,
        /// Connection attempts made.
        attempts: u32,
        /// The last attempt's error.
        source: Box<QueueError>,
    },
}

impl QueueError {
    /// Whether this is Redis being out of reach for now (not running yet, restarting, loading its
    /// data, a network cut) rather than a refusal that waiting cannot fix (a wrong password, a bad URL).
    pub fn is_unreachable(&self) -> bool {
        let transient = |e: &RedisError| {
            e.is_connection_refusal()
                || e.is_connection_dropped()
                || e.is_timeout()
                || e.is_io_error()
                || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
        };
        match self {
            QueueError::Connect { source, .. } | QueueError::Redis { source, .. } => {
                transient(source)
            }
            QueueError::Unreachable { .. } | QueueError::NoPrimary { .. } => true,
            _ => false,
        }
    }

    /// Whether trying the same command again soon may succeed: Redis out of reach, or a node that is no
    /// longer (or not yet) the primary during a failover.
    pub fn is_transient(&self) -> bool {
        use redis::ServerErrorKind::{MasterDown, ReadOnly, TryAgain};
        let failover = |e: &RedisError| {
            matches!(
                e.kind(),
                redis::ErrorKind::Server(ReadOnly | MasterDown | TryAgain)
            )
        };
        self.is_unreachable()
            || matches!(self, QueueError::Redis { source, .. } if failover(source))
    }

    fn redis(doing: &'static str) -> impl FnOnce(RedisError) -> QueueError {
        move |source| QueueError::Redis { doing, source }
    }

    fn protocol(doing: &'static str, detail: impl std::fmt::Debug) -> QueueError {
        QueueError::Protocol {
            doing,
            detail: format!("{detail:?}"),
        }
    }
}

/// A handle on one deployment's queue. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Keys,
    settings: QueueSettings,
    /// Replaced when a Sentinel failover moves the primary; read for every command.
    connections: RwLock<Connections>,
    scripts: Scripts,
    /// Wakes idle consumers of this process when a job stream grows (started on first use).
    waker: OnceCell<consumer::NewEntries>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("prefix", self.inner.keys.prefix())
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// The connections to the Redis node in use: pipelined short commands, and a pool of whole
/// connections for blocking reads. Replaced as a unit when a Sentinel failover moves the primary.
#[derive(Clone)]
struct Connections {
    conn: ConnectionManager,
    blocking: Pool,
}

impl Connections {
    /// Connects to the node at `url` (a `redis://`, `rediss://` or unix URL).
    async fn open(
        url: &str,
        display_url: &str,
        settings: &QueueSettings,
    ) -> Result<Self, QueueError> {
        let connect_err = |source| QueueError::Connect {
            url: display_url.to_string(),
            source,
        };
        let client = Client::open(url).map_err(connect_err)?;
        let short = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client, short)
            .await
            .map_err(connect_err)?;
        // Blocking reads get whole connections whose timeout outlasts BLOCK by a wide margin.
        let blocking_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(settings.block + Duration::from_secs(10)));
        let manager = Manager::new_with_config(url, blocking_config).map_err(connect_err)?;
        let blocking = Pool::builder(manager)
            .max_size(settings.blocking_pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.block + Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| QueueError::Pool(e.to_string()))?;
        Ok(Self { conn, blocking })
    }

    /// Connects to the node at `url` and checks that it is a primary (`ROLE`): during a failover the
    /// sentinels may still name a node that has just become a replica.
    async fn open_primary(url: &str, settings: &QueueSettings) -> Result<Self, QueueError> {
        let display = crate::config::redact_url(url);
        let connections = Self::open(url, &display, settings).await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE")
            .query_async(&mut connections.conn.clone())
            .await
            .map_err(QueueError::redis("asking a node its role"))?;
        match role.first().map(redis::from_redis_value_ref::<String>) {
            Some(Ok(r)) if r == "master" => Ok(connections),
            other => Err(QueueError::NoPrimary {
                primary: display,
                detail: format!("the node is not a primary (ROLE says {other:?})"),
                source: None,
            }),
        }
    }
}

impl Queue {
    /// Connects, checks that Redis answers, and creates the consumer groups if they are missing. With a
    /// `redis+sentinel://` URL it connects to the primary the sentinels name and follows failovers.
    pub async fn connect(
        config: &RedisConfig,
        settings: QueueSettings,
    ) -> Result<Self, QueueError> {
        let url = config.url.expose_secret();
        let sentinel = SentinelUrl::parse(url).map_err(|e| QueueError::BadUrl {
            url: config.display_url(),
            detail: e,
        })?;
        let (connections, primary) = match &sentinel {
            None => (
                Connections::open(url, &config.display_url(), &settings).await?,
                None,
            ),
            Some(s) => {
                let addr = s.primary_address().await?;
                (
                    Connections::open_primary(&s.node_url(&addr), &settings).await?,
                    Some(addr),
                )
            }
        };
        let queue = Self {
            inner: Arc::new(Inner {
                keys: Keys::new(config.prefix.clone()),
                settings,
                connections: RwLock::new(connections),
                scripts: Scripts::new(),
                waker: OnceCell::new(),
            }),
        };
        queue.ensure_groups().await?;
        if let (Some(s), Some(addr)) = (sentinel, primary) {
            tokio::spawn(sentinel::follow(Arc::downgrade(&queue.inner), s, addr));
        }
        Ok(queue)
    }

    /// [`Queue::connect`], waiting for a Redis that cannot be reached yet: a process started before
    /// Redis (or during its restart) tries again with backoff (0.5 s doubling to 5 s) for
    /// `config.connect_timeout`, logging each failed attempt with its reason, then gives up with
    /// [`QueueError::Unreachable`]. Errors waiting cannot fix (a wrong password) return at once.
    pub async fn connect_waiting(
        config: &RedisConfig,
        settings: QueueSettings,
    ) -> Result<Self, QueueError> {
        let started = tokio::time::Instant::now();
        let deadline = started + config.connect_timeout;
        let mut delay = Duration::from_millis(500);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let error = match Self::connect(config, settings.clone()).await {
                Ok(queue) => {
                    if attempts > 1 {
                        tracing::info!(url = %config.display_url(), attempts, "Redis answers; connected");
                    }
                    return Ok(queue);
                }
                Err(e) if e.is_unreachable() => e,
                Err(e) => return Err(e),
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(QueueError::Unreachable {
                    url: config.display_url(),
                    waited_s: (now - started).as_secs(),
                    attempts,
                    source: Box::new(error),
                });
            }
            let wait = delay.min(deadline - now);
            tracing::warn!(
                url = %config.display_url(),
                attempt = attempts,
                retry_in_ms = wait.as_millis() as u64,
                error = %error,
                "Redis cannot be reached yet; trying again (REDIS_CONNECT_TIMEOUT_SECS bounds the wait)"
            );
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// The key schema of this deployment.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The protocol settings.
    pub fn settings(&self) -> &QueueSettings {
        &self.inner.settings
    }

    /// How finished jobs are kept, as the scripts that end a job take it: `<ttl s>:<history max>:<key
    /// of the finished index>`. One argument, so every script that can finish a job keeps its
    /// records the same way.
    pub(crate) fn retention(&self) -> String {
        let settings = self.settings();
        format!(
            "{}:{}:{}",
            settings.job_ttl.as_secs().max(1),
            settings.job_history_max,
            self.keys().finished()
        )
    }

    /// A connection for short commands (clone per use; requests are pipelined).
    pub fn conn(&self) -> ConnectionManager {
        self.connections().conn
    }

    fn connections(&self) -> Connections {
        self.inner
            .connections
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    async fn blocking_conn(&self) -> Result<deadpool_redis::Connection, QueueError> {
        self.connections()
            .blocking
            .get()
            .await
            .map_err(|e| QueueError::Pool(e.to_string()))
    }

    async fn ensure_groups(&self) -> Result<(), QueueError> {
        let mut conn = self.conn();
        for stream in self.keys().streams() {
            let created: Result<(), RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&stream)
                .arg(CONSUMER_GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(source) => {
                    return Err(QueueError::Redis {
                        doing: "creating the consumer group",
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// The id of the newest entry of `stream`, or `0-0` when it is empty: a position to read after.
    async fn newest_entry_id(&self, stream: &str) -> Result<String, QueueError> {
        let mut conn = self.conn();
        let newest: Vec<(String, HashMap<String, redis::Value>)> = redis::cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis("reading the newest stream entry"))?;
        Ok(newest
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_string(), |(id, _)| id))
    }

    /// Every key of this deployment whose name starts with `prefix` (a `SCAN`, so it does not block Redis).
    pub async fn keys_starting_with(&self, prefix: &str) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn();
        let pattern = format!("{}*", escape_glob(prefix));
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(QueueError::redis("scanning keys"))?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Checks that Redis answers (health checks).
    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.conn();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(QueueError::redis("pinging Redis"))?;
        Ok(())
    }
}

/// The reply of `XREAD`: per stream, its entries as (id, fields).
type XReadReply<F> = Option<Vec<(String, Vec<(String, F)>)>>;

/// Reads a Lua reply `{tag, ...}` into its tag and the rest.
fn split_reply(
    doing: &'static str,
    reply: redis::Value,
) -> Result<(String, Vec<redis::Value>), QueueError> {
    match reply {
        redis::Value::Array(mut items) if !items.is_empty() => {
            let tag = items.remove(0);
            let tag: String =
                redis::from_redis_value(tag).map_err(|e| QueueError::protocol(doing, e))?;
            Ok((tag, items))
        }
        other => Err(QueueError::protocol(doing, other)),
    }
}

/// Converts one element of a script reply.
fn value_at<T: redis::FromRedisValue>(
    doing: &'static str,
    items: &[redis::Value],
    index: usize,
) -> Result<T, QueueError> {
    let item = items
        .get(index)
        .ok_or_else(|| QueueError::protocol(doing, format!("reply has no element {index}")))?;
    redis::from_redis_value_ref(item).map_err(|e| QueueError::protocol(doing, e))
}

/// Escapes glob metacharacters for `SCAN MATCH`.
fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Milliseconds since the Unix epoch encoded in a stream entry id (`1700000000000-0`).
pub fn entry_time_ms(entry_id: &str) -> Option<u64> {
    entry_id.split_once('-').and_then(|(ms, _)| ms.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let s = QueueSettings {
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(10),
            ..QueueSettings::default()
        };
        let first = s.backoff(1);
        assert!(first >= Duration::from_millis(1500) && first <= Duration::from_millis(2500));
        let third = s.backoff(3);
        assert!(third >= Duration::from_secs(6) && third <= Duration::from_secs(10));
        assert!(s.backoff(30) <= Duration::from_millis(12_500));
    }

    #[test]
    fn a_reclaim_time_below_two_heartbeats_is_refused() {
        let s = QueueSettings {
            heartbeat: Duration::from_secs(5),
            reclaim_after: Duration::from_secs(6),
            ..QueueSettings::default()
        };
        assert_eq!(
            s.check().expect_err("too short").name,
            "RADIO_RECLAIM_AFTER_SECS"
        );
    }

    #[test]
    fn entry_ids_carry_their_time() {
        assert_eq!(entry_time_ms("1700000000123-4"), Some(1_700_000_000_123));
        assert_eq!(entry_time_ms("garbage"), None);
    }
}
