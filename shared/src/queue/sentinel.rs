//! Redis behind Sentinel: `redis+sentinel://[user:password@]host1:port1,host2:port2,…/<primary name>[/db]`.
//!
//! The queue asks the sentinels which node is the primary, connects to it, and keeps asking once a
//! second; when the answer changes (a failover), it opens connections to the new primary and every later
//! command of this process goes there. Commands in flight at the switch fail like any dropped
//! connection: workers retry their claims, a completion is tried again (`ClaimedJob::complete`), and any
//! other outcome that could not be recorded is redone after the reclaim time (a song generated twice,
//! never one lost). The credentials are the primary's; the
//! sentinels are asked without them.

use std::sync::Weak;
use std::time::Duration;

use redis::{AsyncConnectionConfig, Client, RedisError};

use super::{Connections, Inner, QueueError};

/// How often the sentinels are asked where the primary is.
const POLL: Duration = Duration::from_secs(1);
/// How long one sentinel may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// A parsed `redis+sentinel://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// `host:port` of each sentinel.
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the primary by.
    pub primary: String,
    /// `user:password` (or `:password`) for the primary, if any.
    userinfo: Option<String>,
    /// The database number, if not 0.
    db: Option<u32>,
}

const SCHEME: &str = "redis+sentinel://";

impl SentinelUrl {
    /// The start of a URL that selects Sentinel.
    pub const SCHEME_PREFIX: &'static str = SCHEME;

    /// Parses a `redis+sentinel://` URL; `Ok(None)` for any other scheme.
    pub fn parse(url: &str) -> Result<Option<Self>, String> {
        let Some(rest) = url.strip_prefix(SCHEME) else {
            return Ok(None);
        };
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((user, rest)) => (Some(user.to_string()), rest),
            None => (None, rest),
        };
        let mut parts = rest.split('/');
        let hosts = parts.next().unwrap_or_default();
        let primary = parts.next().unwrap_or_default().to_string();
        let db = match parts.next().filter(|d| !d.is_empty()) {
            Some(d) => Some(
                d.parse::<u32>()
                    .map_err(|_| format!("the database must be a number, got {d:?}"))?,
            ),
            None => None,
        };
        if parts.next().is_some() {
            return Err("expected redis+sentinel://host:port,…/<primary name>[/db]".into());
        }
        let sentinels: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                {
                    Ok(h.to_string())
                } else {
                    Err(format!("sentinel {h:?} is not host:port"))
                }
            })
            .collect::<Result<_, _>>()?;
        if sentinels.is_empty() {
            return Err(
                "name at least one sentinel: redis+sentinel://host:26379,…/<primary name>".into(),
            );
        }
        if primary.is_empty() {
            return Err("name the primary the sentinels monitor: redis+sentinel://host:26379/<primary name>".into());
        }
        Ok(Some(Self {
            sentinels,
            primary,
            userinfo,
            db,
        }))
    }

    /// The `redis://` URL of the node at `addr` (`host:port`), with this URL's credentials and database.
    pub fn node_url(&self, addr: &str) -> String {
        let user = self
            .userinfo
            .as_deref()
            .map_or(String::new(), |u| format!("{u}@"));
        let db = self.db.map_or(String::new(), |d| format!("/{d}"));
        format!("redis://{user}{addr}{db}")
    }

    /// The primary's `host:port` by the first sentinel that knows it. Errors name every sentinel and why.
    pub async fn primary_address(&self) -> Result<String, QueueError> {
        let mut why = Vec::new();
        let mut last_error = None;
        for sentinel in &self.sentinels {
            match ask(sentinel, &self.primary).await {
                Ok(Some(addr)) => return Ok(addr),
                Ok(None) => why.push(format!("{sentinel}: does not monitor {:?}", self.primary)),
                Err(e) => {
                    why.push(format!("{sentinel}: {e}"));
                    last_error = Some(e);
                }
            }
        }
        Err(QueueError::NoPrimary {
            primary: self.primary.clone(),
            detail: why.join("; "),
            source: last_error,
        })
    }
}

async fn ask(sentinel: &str, primary: &str) -> Result<Option<String>, RedisError> {
    let client = Client::open(format!("redis://{sentinel}"))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(ASK_TIMEOUT))
        .set_response_timeout(Some(ASK_TIMEOUT));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(primary)
        .query_async(&mut conn)
        .await?;
    Ok(addr.map(|(host, port)| {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }))
}

/// Keeps the queue's connections on the primary the sentinels name, until the queue is dropped.
pub(super) async fn follow(inner: Weak<Inner>, url: SentinelUrl, mut current: String) {
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut complained = false;
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let addr = match url.primary_address().await {
            Ok(addr) => addr,
            Err(e) => {
                // Once per outage, not once a second.
                if !complained {
                    tracing::warn!(error = %e, "cannot learn the Redis primary from the sentinels");
                    complained = true;
                }
                continue;
            }
        };
        complained = false;
        if addr == current {
            continue;
        }
        let node = url.node_url(&addr);
        match Connections::open_primary(&node, &inner.settings).await {
            Ok(connections) => {
                tracing::warn!(
                    from = %current,
                    to = %addr,
                    primary = %url.primary,
                    "the Redis primary moved (Sentinel failover); following it"
                );
                *inner
                    .connections
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = connections;
                current = addr;
            }
            Err(e) => {
                tracing::warn!(to = %addr, error = %e, "the new Redis primary does not answer yet")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_sentinels_the_primary_credentials_and_database() {
        let url = SentinelUrl::parse("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26380/radio/2")
            .expect("valid")
            .expect("sentinel");
        assert_eq!(url.sentinels, ["10.0.0.1:26379", "10.0.0.2:26380"]);
        assert_eq!(url.primary, "radio");
        assert_eq!(url.node_url("10.0.0.9:6379"), "redis://:pw@10.0.0.9:6379/2");
        let bare = SentinelUrl::parse("redis+sentinel://s1:26379/mymaster")
            .expect("valid")
            .expect("sentinel");
        assert_eq!(bare.node_url("[::1]:6379"), "redis://[::1]:6379");
        assert_eq!(SentinelUrl::parse("redis://127.0.0.1:6379"), Ok(None));
        for bad in [
            "redis+sentinel://s1:26379",
            "redis+sentinel:///mymaster",
            "redis+sentinel://s1/mymaster",
            "redis+sentinel://s1:26379/mymaster/x",
            "redis+sentinel://s1:26379/mymaster/0/extra",
        ] {
            assert!(SentinelUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
