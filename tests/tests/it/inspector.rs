//! `radioctl serve`, the web inspector: its API and access rules over real HTTP, and the pages in a real
//! browser (Debian's chromium, headless, driven by playwright-core from `tests/browser/`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use radio_shared::job::{JobId, JobState};
use radio_shared::queue::{JobFailure, Queue};
use radio_tests::{TestRedis, WorkerProcess, binary, eventually, workspace_root};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::bot::meta;

/// A running `radioctl serve`, killed on drop.
struct Inspector {
    _child: Child,
    /// The address it printed (0.0.0.0:port when bound to every interface).
    addr: SocketAddr,
}

fn radioctl_command(redis: &TestRedis, queue: &Queue) -> Command {
    let mut command = Command::new(binary("radioctl"));
    command
        .env("REDIS_URL", redis.url())
        .env("RADIO_PREFIX", queue.keys().prefix().as_str())
        .env("RADIO_BLOCK_SECS", "0.2")
        .env_remove("RADIO_WEB_TOKEN")
        .env_remove("RADIO_WEB_ADDR")
        .env_remove("RUST_LOG");
    command
}

impl Inspector {
    async fn start(redis: &TestRedis, queue: &Queue, addr: &str, token: Option<&str>) -> Self {
        let mut command = radioctl_command(redis, queue);
        command
            .args(["serve", "--addr", addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(token) = token {
            command.env("RADIO_WEB_TOKEN", token);
        }
        let mut child = command.spawn().expect("start radioctl serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            BufReader::new(stdout).read_line(&mut first),
        )
        .await
        .expect("radioctl serve printed no address within 20 s")
        .expect("read its stdout");
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        Self {
            _child: child,
            addr,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// One HTTP/1.1 exchange, read whole.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(addr, method, path, headers, "").await
}

/// One request with `body`; `Host` is `addr` unless `headers` name another.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body);
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let reply = Reply {
        status,
        body: raw[split + 4..].to_vec(),
        headers,
    };
    assert!(
        reply.header("transfer-encoding").is_none(),
        "this client reads whole bodies only: {reply:?}"
    );
    reply
}

async fn enqueue(redis: &TestRedis, queue: &Queue, caption: &str) -> JobId {
    let out = radioctl_command(redis, queue)
        .args(["enqueue", "--caption", caption, "--duration", "30"])
        .output()
        .await
        .expect("radioctl enqueue");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("job id")
}

/// This machine's first non-loopback IPv4 address: requests to it arrive from it, not from loopback.
fn non_loopback_address() -> IpAddr {
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global"])
        .output()
        .expect("ip addr (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|ip| ip.parse().ok())
        .expect("this test needs a non-loopback IPv4 address on some interface (ip -4 addr)")
}

#[tokio::test]
async fn the_api_serves_jobs_audio_and_actions_to_whom_it_should() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let done = enqueue(&redis, &queue, "lofi, rain").await;
    let waiting = enqueue(&redis, &queue, "waiting <script>").await;
    let job = queue
        .consumer("test-worker")
        .claim_next(&CancellationToken::new())
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!(job.spec().id, done);
    let audio: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    job.complete(&audio, &meta("Night Bus <b>Home</b>", "test-worker"))
        .await
        .expect("complete");

    // Loopback, no token: reads and actions are open, headers are strict.
    let open = Inspector::start(&redis, &queue, "127.0.0.1:0", None).await;
    let page = request(open.addr, "GET", "/", &[]).await;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));

    let overview = request(open.addr, "GET", "/api/overview", &[]).await.json();
    assert_eq!(overview["streams"][0]["priority"], "interactive");
    assert_eq!(overview["streams"][0]["waiting"], 1, "{overview}");
    let succeeded: u64 = overview["per_minute"]
        .as_array()
        .expect("per_minute")
        .iter()
        .map(|m| m["succeeded"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(succeeded, 1, "{overview}");

    let list = request(open.addr, "GET", "/api/jobs?state=succeeded", &[])
        .await
        .json();
    assert_eq!(list["total"], 1);
    assert_eq!(list["jobs"][0]["id"], done.as_str());
    assert_eq!(list["jobs"][0]["title"], "Night Bus <b>Home</b>");
    let found = request(open.addr, "GET", "/api/jobs?q=WAITING%20%3Cscript", &[])
        .await
        .json();
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["jobs"][0]["id"], waiting.as_str());
    let paged = request(open.addr, "GET", "/api/jobs?per_page=1&page=2", &[])
        .await
        .json();
    assert_eq!(
        (paged["total"].as_u64(), paged["pages"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        paged["jobs"][0]["id"],
        done.as_str(),
        "newest first: page 2 is the older job"
    );
    let bad = request(open.addr, "GET", "/api/jobs?state=sleeping", &[]).await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("sleeping")
    );
    let bad_page = request(open.addr, "GET", "/api/jobs?page=x", &[]).await;
    assert_eq!(bad_page.status, 400);
    assert!(
        bad_page.json()["error"].as_str().is_some(),
        "errors are JSON"
    );

    // A page of another site whose name now resolves to 127.0.0.1 (DNS rebinding) gets nothing.
    let rebound = format!("evil.example:{}", open.addr.port());
    let rebinding = request(open.addr, "GET", "/api/overview", &[("Host", &rebound)]).await;
    assert_eq!(rebinding.status, 403, "{rebinding:?}");
    let by_name = format!("localhost:{}", open.addr.port());
    assert_eq!(
        request(open.addr, "GET", "/api/overview", &[("Host", &by_name)])
            .await
            .status,
        200
    );

    let shown = request(open.addr, "GET", &format!("/api/jobs/{done}"), &[])
        .await
        .json();
    assert_eq!(shown["state"], "succeeded");
    assert_eq!(shown["spec"]["song"]["caption"], "lofi, rain");
    assert_eq!(shown["attempts_detail"][0]["outcome"], "succeeded");
    assert_eq!(shown["audio"]["content_type"], "audio/ogg");
    assert_eq!(
        request(open.addr, "GET", "/api/jobs/nope", &[])
            .await
            .status,
        400
    );
    assert_eq!(
        request(
            open.addr,
            "GET",
            &format!("/api/jobs/{}", JobId::new()),
            &[]
        )
        .await
        .status,
        404
    );

    // The audio, whole and in ranges, as a media element asks for it.
    let url = format!("/api/jobs/{done}/audio");
    let whole = request(open.addr, "GET", &url, &[]).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("content-type"), Some("audio/ogg"));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(whole.body, audio);
    let part = request(open.addr, "GET", &url, &[("Range", "bytes=100-199")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 100-199/10000"));
    assert_eq!(part.body, audio[100..200]);
    let tail = request(open.addr, "GET", &url, &[("Range", "bytes=-10")]).await;
    assert_eq!(tail.status, 206);
    assert_eq!(tail.header("content-range"), Some("bytes 9990-9999/10000"));
    assert_eq!(tail.body, audio[9_990..]);
    let beyond = request(open.addr, "GET", &url, &[("Range", "bytes=20000-")]).await;
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), Some("bytes */10000"));
    let none = request(open.addr, "GET", &format!("/api/jobs/{waiting}/audio"), &[]).await;
    assert_eq!(none.status, 404);

    // Actions: only with the inspector's header (another site's page cannot send it).
    let cancel = format!("/api/jobs/{waiting}/cancel");
    let forged = request(open.addr, "POST", &cancel, &[]).await;
    assert_eq!(forged.status, 403, "{forged:?}");
    let from_elsewhere = request(
        open.addr,
        "POST",
        &cancel,
        &[
            ("X-Radio-Inspector", "1"),
            ("Origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(from_elsewhere.status, 403);
    assert_eq!(
        queue.job_required(&waiting).await.expect("record").state,
        JobState::Queued
    );
    let cancelled = request(open.addr, "POST", &cancel, &[("X-Radio-Inspector", "1")]).await;
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    assert_eq!(cancelled.json()["outcome"], "cancelled");
    let retry = format!("/api/jobs/{waiting}/retry");
    let conflict = request(open.addr, "POST", &retry, &[("X-Radio-Inspector", "1")]).await;
    assert_eq!(conflict.status, 409, "only failed jobs can be retried");
    drop(open);

    // Every interface without a token: refused at start, with what to do.
    let refused = radioctl_command(&redis, &queue)
        .args(["serve", "--addr", "0.0.0.0:0"])
        .output()
        .await
        .expect("radioctl serve");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("RADIO_WEB_TOKEN"), "{stderr}");

    // Every interface with a token: a non-loopback peer needs it to look and to act; loopback may look.
    let token = "correct-horse-battery-staple";
    let shared = Inspector::start(&redis, &queue, "0.0.0.0:0", Some(token)).await;
    let outside = SocketAddr::new(non_loopback_address(), shared.addr.port());
    let inside = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), shared.addr.port());
    assert_eq!(
        request(outside, "GET", "/api/overview", &[]).await.status,
        401
    );
    let redirected = request(outside, "GET", "/jobs?state=failed", &[]).await;
    assert_eq!(redirected.status, 303);
    assert_eq!(
        redirected.header("location"),
        Some("/login?next=/jobs%3Fstate%3Dfailed")
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(
        request(
            outside,
            "GET",
            "/api/overview",
            &[("Authorization", &bearer)]
        )
        .await
        .status,
        200
    );
    let second = enqueue(&redis, &queue, "second").await;
    let cancel = format!("/api/jobs/{second}/cancel");
    let anonymous = request(outside, "POST", &cancel, &[("X-Radio-Inspector", "1")]).await;
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("RADIO_WEB_TOKEN")
    );
    let wrong = request(
        outside,
        "POST",
        &cancel,
        &[
            ("X-Radio-Inspector", "1"),
            ("Authorization", "Bearer guess"),
        ],
    )
    .await;
    assert_eq!(wrong.status, 401);
    // A reverse proxy makes every client a loopback peer: with a token, loopback needs it too.
    assert_eq!(
        request(inside, "GET", "/api/overview", &[]).await.status,
        401
    );
    let local_action = request(inside, "POST", &cancel, &[("X-Radio-Inspector", "1")]).await;
    assert_eq!(
        local_action.status, 401,
        "with a token set, loopback actions need it too"
    );

    // The login form sets the cookie, and returns only to a path of this server.
    let tricked = request(outside, "GET", "/login?next=/%09/evil.example", &[]).await;
    let form = String::from_utf8_lossy(&tricked.body).into_owned();
    assert!(form.contains(r#"name="next" value="/""#), "{form}");
    let form_type = [("Content-Type", "application/x-www-form-urlencoded")];
    let refused = send(
        outside,
        "POST",
        "/login",
        &form_type,
        "token=guess&next=%2Fjobs",
    )
    .await;
    assert_eq!(refused.status, 401);
    assert!(refused.header("set-cookie").is_none());
    let body = format!("token={token}&next=%2Fjobs");
    let signed_in = send(outside, "POST", "/login", &form_type, &body).await;
    assert_eq!(signed_in.status, 303);
    assert_eq!(signed_in.header("location"), Some("/jobs"));
    let cookie = signed_in
        .header("set-cookie")
        .unwrap_or_default()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap_or_default();
    assert_eq!(
        request(outside, "GET", "/api/overview", &[("Cookie", pair)])
            .await
            .status,
        200
    );
    assert_eq!(
        queue.job_required(&second).await.expect("record").state,
        JobState::Queued,
        "refused actions changed nothing"
    );
    let allowed = request(
        outside,
        "POST",
        &cancel,
        &[("X-Radio-Inspector", "1"), ("Authorization", &bearer)],
    )
    .await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(
        queue.job_required(&second).await.expect("record").state,
        JobState::Cancelled
    );
}

/// Where the browser test's node script and its packages live.
fn browser_dir() -> PathBuf {
    workspace_root().join("tests/browser")
}

#[tokio::test]
async fn an_operator_follows_cancels_retries_and_listens_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/test installs Debian's chromium (apt-get install chromium)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is missing: scripts/test runs `npm ci` in tests/browser"
    );
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    // A job that failed for good, with markup in its caption and error (both come from outside).
    let failed = enqueue(
        &redis,
        &queue,
        "<script>window.__xss = 1</script> dream pop",
    )
    .await;
    let job = queue
        .consumer("earlier-worker")
        .claim_next(&CancellationToken::new())
        .await
        .expect("claim")
        .expect("the job");
    job.fail(JobFailure::permanent(
        "decoder said <img src=x onerror=\"window.__xss = 2\">",
    ))
    .await
    .expect("fail");
    let inspector = Inspector::start(&redis, &queue, "127.0.0.1:0", None).await;
    let screenshots = match std::env::var("RADIO_WEB_SCREENSHOTS") {
        // Relative to the workspace (cargo runs tests in tests/).
        Ok(dir) => workspace_root().join(dir),
        Err(_) => redis.dir().join("screenshots"),
    };
    std::fs::create_dir_all(&screenshots).expect("screenshot folder");

    let mut node = Command::new("node")
        .arg("inspector.mjs")
        .current_dir(browser_dir())
        .env("INSPECTOR_URL", inspector.url())
        .env("RADIOCTL", binary("radioctl"))
        .env("REDIS_URL", redis.url())
        .env("RADIO_PREFIX", queue.keys().prefix().as_str())
        .env("FAILED_JOB", failed.as_str())
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node (scripts/test installs nodejs)");
    let mut stdin = node.stdin.take().expect("stdin");
    let mut lines = BufReader::new(node.stdout.take().expect("stdout")).lines();
    let mut stderr = node.stderr.take().expect("stderr");
    let mut worker = None;
    let mut steps = Vec::new();
    let mut result = None;
    let run = async {
        while let Some(line) = lines.next_line().await.expect("node's stdout") {
            if line == "START_WORKER" {
                let mut w = WorkerProcess::start(&redis, &queue, &[]);
                w.ready(Duration::from_secs(60)).await;
                worker = Some(w);
                stdin.write_all(b"started\n").await.expect("tell node");
            } else if let Some(json) = line.strip_prefix("RESULT ") {
                result = Some(serde_json::from_str::<Value>(json).expect("result JSON"));
            } else {
                steps.push(line);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .unwrap_or_else(|_| panic!("the browser run took over 5 minutes; steps: {steps:#?}"));
    let status = node.wait().await.expect("node exit");
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err).await;
    let worker_log = worker.as_ref().map(WorkerProcess::log).unwrap_or_default();
    assert!(
        status.success(),
        "the browser run failed after {steps:#?}:\n{err}\nworker log:\n{worker_log}"
    );
    let result = result.unwrap_or_else(|| panic!("no RESULT line; steps: {steps:#?}"));

    // What the pages showed is what Redis holds.
    let state = |id: &str| {
        let id: JobId = id.parse().expect("job id");
        let queue = queue.clone();
        async move { queue.job_required(&id).await.expect("record").state }
    };
    let live = result["live"].as_str().expect("live job");
    assert_eq!(state(live).await, JobState::Succeeded);
    assert_eq!(
        state(result["cancelled"].as_str().expect("cancelled job")).await,
        JobState::Cancelled
    );
    eventually(Duration::from_secs(5), "the retried job's record", || {
        let state = state(failed.as_str());
        async move { (state.await == JobState::Succeeded).then_some(()) }
    })
    .await;
    let duration = result["audio_duration_s"].as_f64().unwrap_or_default();
    assert!(
        (29.0..31.0).contains(&duration),
        "the player read {duration} s for a 30 s track"
    );
    for shot in ["inspector-overview.png", "inspector-job.png"] {
        let size = std::fs::metadata(screenshots.join(shot)).map_or(0, |m| m.len());
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
}
