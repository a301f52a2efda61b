//! The per-member limit on song requests: at most `limit` in any `window`, counted in Redis by one
//! script, so every bot process of a deployment agrees.

use std::time::Duration;

use super::{Queue, QueueError, split_reply, value_at};

/// How many song requests one member may make per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimit {
    /// Requests per window; 0 means no limit.
    pub limit: u32,
    /// The sliding window.
    pub window: Duration,
}

/// Whether a request may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Admitted; the member has made this many requests in the window, this one included.
    Admitted {
        /// Requests in the window.
        used: u32,
    },
    /// The member is at the limit; the oldest request leaves the window after this long.
    Limited {
        /// When the next request would be admitted.
        retry_after: Duration,
    },
}

impl Queue {
    /// Counts request `request_id` of `member` in `guild` against `limit`, or refuses it. The same id
    /// admitted twice counts once (a retried interaction).
    pub async fn admit_request(
        &self,
        guild: &str,
        member: &str,
        request_id: &str,
        limit: RequestLimit,
    ) -> Result<Admission, QueueError> {
        const DOING: &str = "counting a member's requests";
        if limit.limit == 0 {
            return Ok(Admission::Admitted { used: 0 });
        }
        let reply: redis::Value = self
            .inner
            .scripts
            .admit
            .key(self.keys().member_requests(guild, member))
            .arg(request_id)
            .arg(limit.limit)
            .arg(limit.window.as_millis().max(1) as u64)
            .invoke_async(&mut self.conn())
            .await
            .map_err(QueueError::redis(DOING))?;
        let (tag, rest) = split_reply(DOING, reply)?;
        let value: u64 = value_at(DOING, &rest, 0)?;
        match tag.as_str() {
            "ok" => Ok(Admission::Admitted { used: value as u32 }),
            "limited" => Ok(Admission::Limited {
                retry_after: Duration::from_millis(value),
            }),
            other => Err(QueueError::protocol(DOING, other)),
        }
    }

    /// Takes back an admitted request that did not go ahead (the enqueue failed), so it does not count.
    pub async fn refund_request(
        &self,
        guild: &str,
        member: &str,
        request_id: &str,
    ) -> Result<(), QueueError> {
        let mut conn = self.conn();
        redis::cmd("ZREM")
            .arg(self.keys().member_requests(guild, member))
            .arg(request_id)
            .query_async::<()>(&mut conn)
            .await
            .map_err(QueueError::redis("taking back a member's request"))
    }
}
