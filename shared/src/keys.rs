//! The Redis key schema, defined once.
//!
//! Every key of a deployment starts with the same prefix wrapped in a Redis Cluster hash tag, e.g.
//! `{radio}:jobs:radio`, so all keys land in one slot and multi-key Lua scripts stay legal on a
//! cluster. The Lua scripts never spell a key themselves: they receive keys, or key prefixes such as
//! `{radio}:job:`, from this module.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{p}:jobs:interactive`, `{p}:jobs:radio` | stream, group `workers` | one entry per delivery attempt: `job` (id) and `spec` (JSON) |
//! | `{p}:job:<id>` | hash | spec, state, attempts, worker, timestamps, progress, error, result meta, history |
//! | `{p}:result:<id>` | string | the encoded audio (Ogg Opus) |
//! | `{p}:events` | stream | lifecycle and progress events |
//! | `{p}:delayed` | sorted set | job ids waiting for their retry backoff, scored by due time (ms) |
//! | `{p}:dead` | stream | jobs that failed for good and malformed entries, with the reason |
//! | `{p}:entries` | hash | `<stream key> <entry id>` → job id for every unacknowledged entry |
//! | `{p}:workers` | sorted set | worker ids by last heartbeat (ms) |
//! | `{p}:worker:<id>` | string (TTL) | the worker's registration as JSON |
//! | `{p}:guild:<id>` | hash | a station's persisted settings and state |
//! | `{p}:guild:<id>:active` | set | the guild's jobs that have not finished (the per-guild cap) |
//! | `{p}:dedup:<key>` | string (TTL) | the job id an idempotency key already produced |
//! | `{p}:stats` | hash | deployment-wide counters shown by `/radio stats` |
//! | `{p}:stations` | set | guild ids whose station the bot resumes after a restart |
//! | `{p}:bot:events_cursor` | string | id of the last event the bot handled (where it resumes following) |
//! | `{p}:guild:<id>:stats` | hash | one station's counters shown by `/radio stats` |
//! | `{p}:guild:<id>:generation_times`, `{p}:stats:generation_times` | list | recent generation times (s), newest first, capped |
//! | `{p}:stats:counted:<what>:<job>` | string (TTL) | marks a job as counted, so a replayed event is not counted twice |

use std::fmt;

use crate::job::{JobId, Priority};

/// The consumer group every worker reads the job streams through.
pub const CONSUMER_GROUP: &str = "workers";

/// A validated key prefix, stored with its hash tag (`{radio}`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Prefix(String);

impl Prefix {
    /// Wraps `name` in a hash tag. Accepts letters, digits, `_`, `-`, `.` and `:` (1–64 characters);
    /// a name already written as `{name}` is taken as is.
    pub fn new(name: &str) -> Result<Self, &'static str> {
        let bare = name
            .strip_prefix('{')
            .and_then(|n| n.strip_suffix('}'))
            .unwrap_or(name);
        let valid = !bare.is_empty()
            && bare.len() <= 64
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if valid {
            Ok(Self(format!("{{{bare}}}")))
        } else {
            Err("1 to 64 characters of letters, digits, '_', '-', '.' or ':' (e.g. radio)")
        }
    }

    /// The prefix with its braces, e.g. `{radio}`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Self("{radio}".into())
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Builds every key of one deployment.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: Prefix,
}

impl Keys {
    /// The schema under `prefix`.
    pub fn new(prefix: Prefix) -> Self {
        Self { prefix }
    }

    /// The deployment's prefix.
    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// The job stream of one priority.
    pub fn stream(&self, priority: Priority) -> String {
        self.key(&format!("jobs:{}", priority.as_str()))
    }

    /// Every job stream, most urgent first: the order workers claim in.
    pub fn streams(&self) -> [String; 2] {
        Priority::CLAIM_ORDER.map(|p| self.stream(p))
    }

    /// The hash holding one job's record.
    pub fn job(&self, id: &JobId) -> String {
        format!("{}{id}", self.job_prefix())
    }

    /// The common start of every job hash key (handed to Lua, which appends the id).
    pub fn job_prefix(&self) -> String {
        self.key("job:")
    }

    /// The encoded audio of a finished job.
    pub fn result(&self, id: &JobId) -> String {
        format!("{}{id}", self.result_prefix())
    }

    /// The common start of every result key.
    pub fn result_prefix(&self) -> String {
        self.key("result:")
    }

    /// The ids of stored results, scored by when each expires: counts what Redis holds in audio
    /// without scanning the keyspace (`radio_results_stored`).
    pub fn results(&self) -> String {
        self.key("results")
    }

    /// The ids of finished jobs, scored by when they finished (µs): the oldest records are dropped first
    /// once more than `RADIO_JOB_HISTORY_MAX` are kept.
    pub fn finished(&self) -> String {
        self.key("finished")
    }

    /// Lifecycle and progress events.
    pub fn events(&self) -> String {
        self.key("events")
    }

    /// Retries waiting for their backoff.
    pub fn delayed(&self) -> String {
        self.key("delayed")
    }

    /// Dead letters.
    pub fn dead(&self) -> String {
        self.key("dead")
    }

    /// `<stream key> <entry id>` → job id for unacknowledged entries.
    pub fn entries(&self) -> String {
        self.key("entries")
    }

    /// Live workers by last heartbeat.
    pub fn workers(&self) -> String {
        self.key("workers")
    }

    /// One worker's registration.
    pub fn worker(&self, id: &str) -> String {
        format!("{}{id}", self.worker_prefix())
    }

    /// The common start of every worker registration key.
    pub fn worker_prefix(&self) -> String {
        self.key("worker:")
    }

    /// A station's persisted settings and state.
    pub fn guild(&self, guild_id: &str) -> String {
        self.key(&format!("guild:{guild_id}"))
    }

    /// The set of a guild's unfinished jobs.
    pub fn guild_active(&self, guild_id: &str) -> String {
        format!("{}{guild_id}:active", self.guild_prefix())
    }

    /// The common start of every guild key.
    pub fn guild_prefix(&self) -> String {
        self.key("guild:")
    }

    /// The idempotency record of an enqueue key.
    pub fn dedup(&self, key: &str) -> String {
        self.key(&format!("dedup:{key}"))
    }

    /// Deployment-wide counters.
    pub fn stats(&self) -> String {
        self.key("stats")
    }

    /// The set of guild ids whose station should be resumed when the bot starts.
    pub fn stations(&self) -> String {
        self.key("stations")
    }

    /// The bot's position in the events stream (the id of the last event it handled).
    pub fn bot_events_cursor(&self) -> String {
        self.key("bot:events_cursor")
    }

    /// One guild's station counters (`/radio stats`).
    pub fn guild_stats(&self, guild_id: &str) -> String {
        format!("{}{guild_id}:stats", self.guild_prefix())
    }

    /// One member's recent song requests in a guild, scored by when they were made (ms): the per-member
    /// limit counts them.
    pub fn member_requests(&self, guild_id: &str, member_id: &str) -> String {
        format!(
            "{}{guild_id}:member:{member_id}:requests",
            self.guild_prefix()
        )
    }

    /// One guild's recent generation times in seconds, newest first (a capped list).
    pub fn guild_generation_times(&self, guild_id: &str) -> String {
        format!("{}{guild_id}:generation_times", self.guild_prefix())
    }

    /// The deployment's recent generation times in seconds, newest first (a capped list).
    pub fn generation_times(&self) -> String {
        self.key("stats:generation_times")
    }

    /// Marks that `what` (e.g. `generated`, `played`) was already counted for a job, so a replayed
    /// event is not counted twice.
    pub fn stats_counted(&self, what: &str, id: &JobId) -> String {
        self.key(&format!("stats:counted:{what}:{id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_hash_tag() {
        let keys = Keys::new(Prefix::new("test-1").expect("valid"));
        let id = JobId::new();
        for key in [
            keys.stream(Priority::Radio),
            keys.job(&id),
            keys.result(&id),
            keys.results(),
            keys.finished(),
            keys.events(),
            keys.delayed(),
            keys.dead(),
            keys.entries(),
            keys.workers(),
            keys.worker("w1"),
            keys.guild("42"),
            keys.guild_active("42"),
            keys.dedup("abc"),
            keys.stats(),
        ] {
            assert!(key.starts_with("{test-1}:"), "{key}");
        }
        assert_eq!(keys.streams()[0], "{test-1}:jobs:interactive");
    }

    #[test]
    fn prefixes_are_validated() {
        assert_eq!(Prefix::new("{radio}").expect("valid").as_str(), "{radio}");
        assert!(Prefix::new("").is_err());
        assert!(Prefix::new("has space").is_err());
        assert!(Prefix::new("a}b").is_err());
    }
}
