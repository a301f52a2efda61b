//! `radioctl serve`: a web inspector over the same queue API as the other commands.
//!
//! The pages are plain HTML, CSS and JavaScript compiled into the binary (`assets/`): nothing to build
//! and nothing loaded from elsewhere. They read the JSON API under `/api/` ([`api`]) and follow
//! `/api/events`, so progress and new jobs appear without a reload. Every action goes through the
//! queue's atomic scripts, as `radioctl cancel`, `retry` and `purge` do. Who may look and who may act is
//! decided in [`access`].

mod access;
mod api;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, Form, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use radio_shared::queue::Queue;

use access::{Access, COOKIE};
use api::App;

/// Where the inspector listens unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9402";

/// Serves the inspector on `addr` until SIGINT or SIGTERM. `token` is `RADIO_WEB_TOKEN`.
pub async fn run(queue: Queue, addr: SocketAddr, token: Option<String>) -> anyhow::Result<()> {
    let access = Arc::new(Access::new(token));
    access.check_config(addr).map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (is another inspector running? pass --addr)")
    })?;
    let local = listener.local_addr().context("reading the bound address")?;
    let shutdown = CancellationToken::new();
    let (events, _) = broadcast::channel(1024);
    let app = App {
        queue,
        events,
        shutdown: shutdown.clone(),
    };
    tokio::spawn(api::follow_events(app.clone()));
    let access_note = if access.has_token() {
        "every request needs RADIO_WEB_TOKEN"
    } else {
        "loopback only; no RADIO_WEB_TOKEN set"
    };
    // The first line on stdout is the address, for scripts (and tests) that pass port 0.
    println!("inspector listening on http://{local}/ ({access_note})");
    let service = router(app, access).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            terminated().await;
            shutdown.cancel();
        })
        .await
        .context("serving the inspector")?;
    Ok(())
}

async fn terminated() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `radioctl serve --healthcheck`: exits 0 when the inspector on `addr` answers `/healthz` (its Redis
/// answers too), for container health checks in images without curl.
pub async fn healthcheck(addr: SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        stream
            .write_all(format!("GET /healthz HTTP/1.0\r\nHost: {target}\r\n\r\n").as_bytes())
            .await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = tokio::time::timeout(std::time::Duration::from_secs(5), exchange)
        .await
        .with_context(|| format!("the inspector on {target} did not answer within 5 s"))?
        .with_context(|| format!("cannot reach the inspector on {target}"))?;
    let status_line = String::from_utf8_lossy(&reply);
    let status_line = status_line.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status_line.split_whitespace().nth(1) == Some("200"),
        "the inspector on {target} is unhealthy: {status_line}"
    );
    Ok(())
}

fn router(app: App, access: Arc<Access>) -> Router {
    let guarded = Router::new()
        .route("/", get(|| page("overview", "Overview")))
        .route("/jobs", get(|| page("jobs", "Jobs")))
        .route("/jobs/{id}", get(|| page("job", "Job")))
        .route("/api/overview", get(api::overview))
        .route("/api/jobs", get(api::jobs))
        .route("/api/jobs/{id}", get(api::job))
        .route("/api/jobs/{id}/audio", get(api::audio))
        .route("/api/jobs/{id}/cancel", post(api::cancel))
        .route("/api/jobs/{id}/retry", post(api::retry))
        .route("/api/dead", get(api::dead))
        .route("/api/dead/retry", post(api::retry_dead))
        .route("/api/dead/purge", post(api::purge_dead))
        .route("/api/events", get(api::events))
        .fallback(not_found)
        .with_state(app.clone())
        .layer(middleware::from_fn_with_state(access.clone(), guard));
    let open = Router::new()
        .route("/login", get(login_page).post(login))
        .route(
            "/static/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/static/app.css",
            get(|| asset("text/css; charset=utf-8", APP_CSS)),
        )
        // No icon: an empty answer instead of a 404 in every browser console.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .with_state(access);
    let health = Router::new()
        .route("/healthz", get(api::healthz))
        .with_state(app);
    Router::new()
        .merge(open)
        .merge(health)
        .merge(guarded)
        .layer(middleware::from_fn(secure))
}

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The page shell: the script builds `main` from the API.
async fn page(name: &'static str, title: &'static str) -> Html<String> {
    Html(shell(name, title, "<p class=\"muted\">Loading…</p>"))
}

fn shell(name: &str, title: &str, main: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Ace Radio inspector</title>
<link rel="stylesheet" href="/static/app.css">
<script src="/static/app.js" defer></script>
</head>
<body data-page="{name}">
<header>
  <a class="brand" href="/">Ace Radio <span>inspector</span></a>
  <nav><a href="/">Overview</a><a href="/jobs">Jobs</a></nav>
  <span id="live" class="live" title="server-sent events from the events stream">offline</span>
</header>
<div id="notice" role="status" hidden></div>
<main id="main">{main}</main>
<dialog id="confirm">
  <form method="dialog">
    <p id="confirm-text"></p>
    <div class="buttons"><button value="no">Keep</button><button value="yes" id="confirm-yes" class="danger">Confirm</button></div>
  </form>
</dialog>
</body>
</html>
"#
    )
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": "no such page or API route" })),
    )
        .into_response()
}

/// Applies the access policy to everything but the login form, the assets and `/healthz`.
async fn guard(
    State(access): State<Arc<Access>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let Err(refusal) = access.check(peer.ip(), request.method(), request.headers()) else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if !path.starts_with("/api/") && refusal.wants_login() {
        let next = request.uri().path_and_query().map_or("/", |p| p.as_str());
        return Redirect::to(&format!("/login?next={}", percent_encode(next))).into_response();
    }
    (
        refusal.status(),
        axum::Json(serde_json::json!({ "error": refusal.message() })),
    )
        .into_response()
}

async fn secure(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    access::security_headers(response.headers_mut());
    response
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Only a path on this server is a place to return to: `/` then unreserved characters, `%`, and a
/// query (no `//`, no backslash, no control characters a browser would strip into `//`).
fn local_path(next: Option<&str>) -> &str {
    let safe = |p: &str| {
        p.starts_with('/')
            && !p.starts_with("//")
            && p.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'/' | b'.' | b'_' | b'~' | b'%' | b'?' | b'=' | b'&' | b'+' | b'-'
                    )
            })
    };
    match next {
        Some(p) if safe(p) => p,
        _ => "/",
    }
}

async fn login_page(Query(query): Query<LoginQuery>) -> Html<String> {
    Html(login_html(local_path(query.next.as_deref()), None))
}

fn login_html(next: &str, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\">{}</p>", escape_html(e))
    });
    let form = format!(
        r#"<section class="login"><h1>Sign in</h1>
<p>Actions on this inspector need its token, <code>RADIO_WEB_TOKEN</code>.</p>{error}
<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label>Token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
<button type="submit">Sign in</button>
</form></section>"#,
        next = escape_html(next)
    );
    shell("login", "Sign in", &form)
}

async fn login(State(access): State<Arc<Access>>, Form(form): Form<LoginForm>) -> Response {
    let next = local_path(form.next.as_deref()).to_string();
    if !access.has_token() {
        return Redirect::to(&next).into_response();
    }
    if !access.is_token(form.token.trim()) {
        // Slows down guessing; the token should be long and random anyway.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        return (
            StatusCode::UNAUTHORIZED,
            Html(login_html(
                &next,
                Some("That is not the inspector's token."),
            )),
        )
            .into_response();
    }
    let mut response = Redirect::to(&next).into_response();
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        form.token.trim()
    );
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            response.headers_mut().insert(header::SET_COOKIE, v);
            response
        }
        Err(_) => (
            StatusCode::BAD_REQUEST,
            Html(login_html(
                &next,
                Some("The token has characters a cookie cannot carry; use a bearer header."),
            )),
        )
            .into_response(),
    }
}

/// Text made safe to put between HTML tags or in a quoted attribute.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes everything but unreserved characters and `/`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_form_returns_only_to_local_paths_and_escapes_them() {
        assert_eq!(local_path(Some("/jobs?state=failed")), "/jobs?state=failed");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(
            local_path(Some("/\t/evil.example")),
            "/",
            "browsers strip the tab into //"
        );
        assert_eq!(local_path(Some("/jobs\r\nSet-Cookie: x=y")), "/");
        assert_eq!(local_path(None), "/");
        let html = login_html("/jobs?q=\"><script>", None);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&quot;&gt;&lt;script&gt;"), "{html}");
        assert_eq!(percent_encode("/jobs?q=a b"), "/jobs%3Fq%3Da%20b");
    }
}
