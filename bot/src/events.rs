//! One task follows the job events of every guild from Redis and hands each to its guild's station.
//! Its position is saved after every batch, so a restarted bot continues where it stopped (a station
//! also re-checks its unfinished jobs when it loads, for events that were trimmed meanwhile).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::state::State;
use crate::station::Msg;

/// How long one read waits for events.
const BLOCK: Duration = Duration::from_secs(2);

/// Follows events until `shutdown`.
pub(crate) async fn follow(state: Arc<State>, shutdown: CancellationToken) {
    let mut follower = loop {
        let start = async {
            match state.store.events_cursor().await? {
                Some(cursor) => Ok(state.queue.follow_events_from(cursor)),
                None => state.queue.follow_events().await,
            }
        };
        match start.await {
            Ok(follower) => break follower,
            Err(e) => {
                warn!(error = %e, "cannot start following job events; retrying in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    };
    debug!(from = follower.last_id(), "following job events");
    loop {
        let batch = tokio::select! {
            batch = follower.next(BLOCK) => batch,
            () = shutdown.cancelled() => break,
        };
        let events = match batch {
            Ok(events) => events,
            Err(e) => {
                warn!(error = %e, "reading job events failed; retrying in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => break,
                }
            }
        };
        if events.is_empty() {
            continue;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for event in events {
            if let Some(at) = event.at_ms() {
                state
                    .metrics
                    .event_lag
                    .observe(now_ms.saturating_sub(at) as f64 / 1000.0);
            }
            let station = event
                .guild
                .as_deref()
                .and_then(|g| g.parse::<u64>().ok())
                .and_then(|g| state.stations.get(g));
            if let Some(station) = station {
                station.send(Msg::Event(event));
            }
        }
        if let Err(e) = state.store.save_events_cursor(follower.last_id()).await {
            warn!(error = %e, "saving the events cursor failed");
        }
    }
}
