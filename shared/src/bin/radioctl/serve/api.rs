//! The JSON API under `/api/`: the same reads and repairs as `radioctl status`, `jobs`, `show`,
//! `cancel`, `retry` and `purge`, the stored audio with range requests, and the events stream as
//! server-sent events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use radio_shared::job::{AudioFormat, JobId, JobState, Priority};
use radio_shared::queue::{
    CancelOutcome, Event, EventKind, HistoryEntry, JobFilter, Queue, QueueError, now_ms,
};

/// What every handler shares.
#[derive(Clone)]
pub struct App {
    pub queue: Queue,
    /// Events as JSON, with their job id, from the one task that follows the events stream.
    pub events: broadcast::Sender<Arc<LiveEvent>>,
    /// Ends the live streams when the server shuts down.
    pub shutdown: CancellationToken,
}

/// One event of the events stream, ready to send.
#[derive(Debug)]
pub struct LiveEvent {
    job: JobId,
    json: String,
}

/// Who the actions are recorded as (`cancelled by …`).
const ACTOR: &str = "radioctl serve";
/// Minutes of outcomes the overview shows.
const OUTCOME_MINUTES: u32 = 30;
/// The most rows one page of jobs may ask for.
const MAX_PER_PAGE: usize = 200;

/// An error as the API answers it: a status and `{"error": "…"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        let status = match &e {
            QueueError::UnknownJob { .. } => StatusCode::NOT_FOUND,
            QueueError::Conflict(_) | QueueError::GuildFull { .. } => StatusCode::CONFLICT,
            QueueError::Invalid(_) => StatusCode::BAD_REQUEST,
            QueueError::Connect { .. }
            | QueueError::Redis { .. }
            | QueueError::Pool(_)
            | QueueError::Unreachable { .. }
            | QueueError::NoPrimary { .. } => StatusCode::SERVICE_UNAVAILABLE,
            QueueError::Protocol { .. } | QueueError::BadUrl { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self {
            status,
            message: e.to_string(),
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse()
        .map_err(|e| ApiError::bad_request(format!("{raw:?} is not a job id: {e}")))
}

/// `GET /healthz`: 200 while Redis answers, 503 with the reason otherwise.
pub async fn healthz(State(app): State<App>) -> Response {
    match app.queue.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

/// `GET /api/overview`: streams, delayed, dead, memory, live workers with their current job's
/// progress, and jobs per minute by outcome.
pub async fn overview(State(app): State<App>) -> ApiResult {
    let status = app.queue.status().await?;
    let per_minute = app.queue.finished_per_minute(OUTCOME_MINUTES).await?;
    let now = now_ms();
    let mut workers = Vec::with_capacity(status.workers.len());
    for w in &status.workers {
        let job = match w.busy_with.as_deref().map(str::parse::<JobId>) {
            Some(Ok(id)) => app
                .queue
                .job(&id)
                .await?
                .map(|r| json!({ "id": r.id, "state": r.state, "progress": r.progress })),
            _ => None,
        };
        let mut value = serde_json::to_value(w).unwrap_or_default();
        value["heartbeat_age_ms"] =
            json!((w.heartbeat_ms > 0).then(|| now.saturating_sub(w.heartbeat_ms)));
        value["job"] = job.unwrap_or(Value::Null);
        workers.push(value);
    }
    Ok(Json(json!({
        "now_ms": now,
        "streams": status.streams,
        "delayed": status.delayed,
        "dead": status.dead,
        "results_stored": status.results_stored,
        "memory": {
            "used_bytes": status.memory.used_bytes,
            "max_bytes": status.memory.max_bytes,
            "used_share": status.memory.used_share(),
        },
        "workers": workers,
        "per_minute": per_minute,
    })))
}

/// The query of `GET /api/jobs`.
#[derive(Debug, Deserialize)]
pub struct JobsQuery {
    state: Option<String>,
    stream: Option<String>,
    guild: Option<String>,
    q: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

/// `GET /api/jobs?state=&stream=&guild=&q=&page=&per_page=`: one page of jobs, newest first.
pub async fn jobs(
    State(app): State<App>,
    query: Result<Query<JobsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(query) = query?;
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let state = nonempty(query.state)
        .map(|s| s.parse::<JobState>())
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("state: {e}")))?;
    let priority = nonempty(query.stream)
        .map(|s| s.parse::<Priority>())
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("stream: {e}")))?;
    let per_page = query.per_page.unwrap_or(25);
    if per_page == 0 || per_page > MAX_PER_PAGE {
        return Err(ApiError::bad_request(format!(
            "per_page must be 1–{MAX_PER_PAGE}, got {per_page}"
        )));
    }
    let page = query.page.unwrap_or(1).max(1);
    let filter = JobFilter {
        state,
        priority,
        guild: nonempty(query.guild).map(|g| g.trim().to_string()),
        text: nonempty(query.q),
    };
    let offset = (page - 1).saturating_mul(per_page);
    let found = app.queue.job_page(&filter, offset, per_page).await?;
    Ok(Json(json!({
        "jobs": found.jobs,
        "total": found.total,
        "page": page,
        "per_page": per_page,
        "pages": found.total.div_ceil(per_page),
    })))
}

/// One attempt of a job, pieced together from its state history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    /// Counted from 1 in the history kept (a job's history keeps its first and latest 49 lines).
    pub number: u32,
    /// The consumer that ran it.
    pub worker: String,
    /// Claimed, ms since the epoch.
    pub started_ms: u64,
    /// Ended, if it has.
    pub ended_ms: Option<u64>,
    /// How it ended: `succeeded`, `failed`, `retrying`, `cancelled`, `handed back`.
    pub outcome: Option<String>,
    /// The error it ended with.
    pub error: Option<String>,
}

/// The attempts in a job's history: each `running` line that is a claim opens one, and the next
/// transition closes it.
pub fn attempts(history: &[HistoryEntry]) -> Vec<Attempt> {
    let mut out: Vec<Attempt> = Vec::new();
    for h in history {
        if h.state == "running" && !h.note.starts_with("cancel requested") {
            out.push(Attempt {
                number: out.len() as u32 + 1,
                worker: h.note.clone(),
                started_ms: h.t,
                ended_ms: None,
                outcome: None,
                error: None,
            });
            continue;
        }
        let Some(open) = out.last_mut().filter(|a| a.ended_ms.is_none()) else {
            continue;
        };
        let (outcome, error) = match h.state.as_str() {
            "succeeded" => ("succeeded", None),
            "cancelled" => ("cancelled", None),
            "failed" => ("failed", Some(h.note.clone())),
            "retrying" => ("retrying", Some(h.note.clone())),
            "queued" => ("handed back", None),
            _ => continue,
        };
        open.ended_ms = Some(h.t);
        open.outcome = Some(outcome.to_string());
        open.error = error;
    }
    out
}

/// `GET /api/jobs/{id}`: the whole record, its attempts, and where its audio is.
pub async fn job(State(app): State<App>, Path(id): Path<String>) -> ApiResult {
    let id = job_id(&id)?;
    let record = app.queue.job_required(&id).await?;
    let audio_stored = record.state == JobState::Succeeded && app.queue.has_result(&id).await?;
    let format = record.result.as_ref().map(|m| m.format);
    let (spec, spec_error) = match &record.spec {
        Ok(spec) => (serde_json::to_value(spec).unwrap_or_default(), None),
        Err(e) => (Value::Null, Some(e.clone())),
    };
    let mut value = serde_json::to_value(&record).unwrap_or_default();
    value["spec"] = spec;
    value["spec_error"] = json!(spec_error);
    value["attempts_detail"] = json!(attempts(&record.history));
    value["audio"] = match (audio_stored, format) {
        (true, Some(format)) => json!({
            "url": format!("/api/jobs/{id}/audio"),
            "content_type": format.mime(),
            "bytes": record.result_bytes,
        }),
        _ => Value::Null,
    };
    Ok(Json(value))
}

/// A byte range of a body of `len` bytes, as asked by a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// The whole body (no `Range`, or one this server ignores, as HTTP allows).
    Whole,
    /// Bytes `start..=end`.
    Part { start: usize, end: usize },
    /// A range outside the body: 416.
    Unsatisfiable,
}

/// Reads a `Range: bytes=…` header for a body of `len` bytes. One range is served; a list of several
/// is answered with the whole body, which HTTP permits.
pub fn byte_range(header: Option<&str>, len: usize) -> ByteRange {
    // The unit is case-insensitive; anything unparsable is ignored (the whole body), as HTTP says.
    let Some(spec) = header.map(str::trim).and_then(|h| {
        h.get(..6)
            .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
            .map(|_| &h[6..])
    }) else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return ByteRange::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = if first.is_empty() {
        // The last `last` bytes.
        match last.parse::<usize>() {
            Err(_) => return ByteRange::Whole,
            Ok(0) => return ByteRange::Unsatisfiable,
            Ok(n) => Some((len.saturating_sub(n), len.checked_sub(1))),
        }
    } else {
        let Ok(start) = first.parse::<usize>() else {
            return ByteRange::Whole;
        };
        let end = if last.is_empty() {
            len.checked_sub(1)
        } else {
            match last.parse::<usize>() {
                Ok(end) if end >= start => Some(end.min(len.saturating_sub(1))),
                _ => return ByteRange::Whole,
            }
        };
        Some((start, end))
    };
    match parsed {
        Some((start, Some(end))) if start < len && start <= end => ByteRange::Part { start, end },
        _ => ByteRange::Unsatisfiable,
    }
}

/// `GET /api/jobs/{id}/audio`: the stored result with its media type, honouring `Range`.
pub async fn audio(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let record = app.queue.job_required(&id).await?;
    let format = record
        .result
        .as_ref()
        .map_or(AudioFormat::OggOpus, |m| m.format);
    let Some(body) = app.queue.result(&id).await? else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "job {id} has no audio in Redis: it is {}, or its result was delivered (the bot keeps \
                 tracks in its own cache) or expired after RADIO_RESULT_TTL_SECS",
                record.state
            ),
        });
    };
    let len = body.len();
    let range = byte_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    );
    let mut response = match range {
        ByteRange::Whole => (StatusCode::OK, body).into_response(),
        ByteRange::Part { start, end } => {
            let mut r = (StatusCode::PARTIAL_CONTENT, body[start..=end].to_vec()).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
        ByteRange::Unsatisfiable => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.mime()),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) =
        HeaderValue::from_str(&format!("inline; filename=\"{id}.{}\"", format.extension()))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// `POST /api/jobs/{id}/cancel`.
pub async fn cancel(State(app): State<App>, Path(id): Path<String>) -> ApiResult {
    let id = job_id(&id)?;
    let outcome = match app.queue.cancel(&id, ACTOR).await? {
        CancelOutcome::Cancelled => json!({ "id": id, "outcome": "cancelled" }),
        CancelOutcome::Cancelling => json!({ "id": id, "outcome": "cancelling" }),
        CancelOutcome::AlreadyFinished(state) => {
            json!({ "id": id, "outcome": "finished", "state": state })
        }
    };
    Ok(Json(outcome))
}

/// `POST /api/jobs/{id}/retry`: a failed job back into its stream.
pub async fn retry(State(app): State<App>, Path(id): Path<String>) -> ApiResult {
    let id = job_id(&id)?;
    app.queue.retry(&id).await?;
    Ok(Json(json!({ "retried": [id] })))
}

/// `POST /api/dead/retry`: every dead letter's job back into its stream.
pub async fn retry_dead(State(app): State<App>) -> ApiResult {
    let (retried, skipped) = app.queue.retry_all_dead().await?;
    let skipped: Vec<_> = skipped
        .iter()
        .map(|(d, why)| json!({ "entry": d.entry, "job": d.job, "reason": why }))
        .collect();
    Ok(Json(json!({ "retried": retried, "skipped": skipped })))
}

/// `POST /api/dead/purge`: deletes the dead letters.
pub async fn purge_dead(State(app): State<App>) -> ApiResult {
    Ok(Json(json!({ "purged": app.queue.purge_dead().await? })))
}

/// `GET /api/dead`: the dead letters, oldest first.
pub async fn dead(State(app): State<App>) -> ApiResult {
    Ok(Json(json!({ "dead": app.queue.dead_letters().await? })))
}

/// The query of `GET /api/events`.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    job: Option<String>,
}

/// `GET /api/events[?job=…]`: every event (or one job's) as it happens, as server-sent events. A
/// client that falls behind gets a `resync` event and should read the state again.
pub async fn events(
    State(app): State<App>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Query(query) = query?;
    let only = query.job.as_deref().map(job_id).transpose()?;
    let state = (app.events.subscribe(), app.shutdown.clone(), only);
    let stream = futures::stream::unfold(state, |(mut rx, shutdown, only)| async move {
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => return None,
                r = rx.recv() => r,
            };
            let event = match received {
                Ok(e) if only.as_ref().is_none_or(|j| *j == e.job) => {
                    SseEvent::default().data(e.json.as_str())
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    SseEvent::default().event("resync").data("{}")
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            return Some((Ok(event), (rx, shutdown, only)));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// An event as the pages read it: `type` and the fields of that kind.
pub fn event_json(e: &Event) -> Value {
    let mut v = json!({ "id": e.id, "job": e.job, "guild": e.guild, "at_ms": e.at_ms() });
    let (kind, fields) = match &e.kind {
        EventKind::Queued { position } => ("queued", json!({ "position": position })),
        EventKind::Started {
            worker,
            attempt,
            reclaimed,
        } => (
            "started",
            json!({ "worker": worker, "attempt": attempt, "reclaimed": reclaimed }),
        ),
        EventKind::Progress(p) => ("progress", json!({ "progress": p })),
        EventKind::Succeeded(meta) => (
            "succeeded",
            json!({ "title": meta.as_ref().map(|m| m.title.clone()) }),
        ),
        EventKind::Retrying {
            error,
            attempt,
            max_attempts,
            retry_in_ms,
        } => (
            "retrying",
            json!({ "error": error, "attempt": attempt, "max_attempts": max_attempts, "retry_in_ms": retry_in_ms }),
        ),
        EventKind::Failed { error } => ("failed", json!({ "error": error })),
        EventKind::CancelRequested => ("cancel_requested", json!({})),
        EventKind::Cancelled => ("cancelled", json!({})),
        EventKind::Released { worker } => ("released", json!({ "worker": worker })),
        EventKind::Other(kind) => (kind.as_str(), json!({})),
    };
    v["type"] = json!(kind);
    if let (Some(v), Value::Object(fields)) = (v.as_object_mut(), fields) {
        v.extend(fields);
    }
    v
}

/// Follows the events stream for every open page: one Redis reader however many pages listen.
pub async fn follow_events(app: App) {
    let mut follower = loop {
        match app.queue.follow_events().await {
            Ok(f) => break f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow the events stream; retrying in 1 s");
                tokio::select! {
                    () = app.shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    loop {
        let next = tokio::select! {
            () = app.shutdown.cancelled() => return,
            next = follower.next(Duration::from_secs(5)) => next,
        };
        match next {
            Ok(events) => {
                for e in events {
                    let live = LiveEvent {
                        json: event_json(&e).to_string(),
                        job: e.job,
                    };
                    // No page listening is fine.
                    let _ = app.events.send(Arc::new(live));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the events stream failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_http() {
        assert_eq!(byte_range(None, 100), ByteRange::Whole);
        assert_eq!(
            byte_range(Some("bytes=0-"), 100),
            ByteRange::Part { start: 0, end: 99 }
        );
        assert_eq!(
            byte_range(Some("bytes=10-19"), 100),
            ByteRange::Part { start: 10, end: 19 }
        );
        assert_eq!(
            byte_range(Some("bytes=90-500"), 100),
            ByteRange::Part { start: 90, end: 99 }
        );
        assert_eq!(
            byte_range(Some("bytes=-10"), 100),
            ByteRange::Part { start: 90, end: 99 }
        );
        assert_eq!(
            byte_range(Some("bytes=-500"), 100),
            ByteRange::Part { start: 0, end: 99 }
        );
        assert_eq!(
            byte_range(Some("bytes=100-"), 100),
            ByteRange::Unsatisfiable
        );
        assert_eq!(byte_range(Some("bytes=-0"), 100), ByteRange::Unsatisfiable);
        assert_eq!(byte_range(Some("bytes=0-"), 0), ByteRange::Unsatisfiable);
        // Malformed or several ranges: the whole body, as HTTP allows.
        assert_eq!(byte_range(Some("bytes=5-2"), 100), ByteRange::Whole);
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 100), ByteRange::Whole);
        assert_eq!(byte_range(Some("items=0-1"), 100), ByteRange::Whole);
        assert_eq!(byte_range(Some("bytes=x-"), 100), ByteRange::Whole);
        assert_eq!(byte_range(Some("bytes=-abc"), 100), ByteRange::Whole);
        assert_eq!(
            byte_range(Some("Bytes=0-0"), 100),
            ByteRange::Part { start: 0, end: 0 }
        );
        assert_eq!(byte_range(Some("bytes"), 100), ByteRange::Whole);
    }

    fn line(t: u64, state: &str, note: &str) -> HistoryEntry {
        HistoryEntry {
            t,
            state: state.into(),
            note: note.into(),
        }
    }

    #[test]
    fn attempts_are_read_from_the_history() {
        let history = [
            line(1, "queued", "enqueued"),
            line(2, "running", "w1-0"),
            line(3, "retrying", "CUDA out of memory"),
            line(4, "queued", "retry due"),
            line(5, "running", "w2-0 (reclaimed)"),
            line(6, "running", "cancel requested by radioctl"),
            line(7, "cancelled", "cancelled by radioctl"),
        ];
        let found = attempts(&history);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].worker, "w1-0");
        assert_eq!(found[0].outcome.as_deref(), Some("retrying"));
        assert_eq!(found[0].error.as_deref(), Some("CUDA out of memory"));
        assert_eq!(found[1].number, 2);
        assert_eq!(found[1].started_ms, 5);
        assert_eq!(found[1].ended_ms, Some(7));
        assert_eq!(found[1].outcome.as_deref(), Some("cancelled"));
    }
}
