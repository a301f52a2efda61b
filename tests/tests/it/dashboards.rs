//! The Grafana dashboards: their shape (fixed uids, a `$datasource` variable, a unit on every panel,
//! only metric names the code defines), and every PromQL expression evaluated by a real Prometheus that
//! scrapes a real worker and a real bot.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use radio_bot::player::recording::RecordingPlayer;
use radio_shared::job::{GenerateTask, JobSpec, JobState, Priority, SongRequest};
use radio_shared::queue::EnqueueRequest;
use radio_tests::fake_discord::{FakeDiscord, Member, World, ids};
use radio_tests::{TestRedis, WorkerProcess, eventually, free_port, http_get, workspace_root};
use serde_json::Value;

use crate::bot::RunningBot;

fn dashboards() -> Vec<(PathBuf, Value)> {
    let dir = workspace_root().join("grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let json =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push((path, json));
    }
    assert!(out.len() >= 3, "queue, workers and bot dashboards");
    out
}

/// Every (dashboard, panel title, expression).
fn expressions() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (path, d) in dashboards() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for panel in d["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((
                        name.clone(),
                        panel["title"].as_str().unwrap_or("?").to_string(),
                        expr.to_string(),
                    ));
                }
            }
        }
    }
    out
}

/// `radio_*` metric names in an expression, histogram suffixes removed.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in expr.match_indices("radio_") {
        let name: String = expr[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_string();
        names.insert(base);
    }
    names
}

#[test]
fn dashboards_have_fixed_uids_a_datasource_variable_and_a_unit_on_every_panel() {
    let mut uids = BTreeSet::new();
    for (path, d) in dashboards() {
        let uid = d["uid"].as_str().unwrap_or_default();
        assert!(
            uid.starts_with("ace-radio-"),
            "{}: uid {uid:?}",
            path.display()
        );
        assert!(uids.insert(uid.to_string()), "duplicate uid {uid}");
        let vars = d["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            vars.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{}: no $datasource variable",
            path.display()
        );
        for panel in d["panels"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            let unit = panel["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .unwrap_or_default();
            assert!(
                !unit.is_empty(),
                "{}: panel {title:?} has no unit",
                path.display()
            );
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
            for target in panel["targets"].as_array().into_iter().flatten() {
                assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            }
        }
    }
    let provider = std::fs::read_to_string(
        workspace_root().join("grafana/provisioning/dashboards/ace-radio.yml"),
    )
    .expect("dashboard provider");
    let provider: serde_yaml_ng::Value = serde_yaml_ng::from_str(&provider).expect("YAML");
    assert_eq!(
        provider["providers"][0]["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards")
    );
}

#[test]
fn dashboards_use_only_metric_names_the_code_defines() {
    let defined: BTreeSet<&str> = radio_shared::metrics::all().collect();
    for (dashboard, panel, expr) in expressions() {
        let names = metric_names(&expr);
        assert!(
            !names.is_empty(),
            "{dashboard} / {panel}: no radio_ metric in {expr}"
        );
        for name in names {
            assert!(
                defined.contains(name.as_str()),
                "{dashboard} / {panel}: {name} is not in radio_shared::metrics"
            );
        }
    }
}

/// A Prometheus on a free port, killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Prometheus {
    fn start(targets: &[(&str, String)]) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("radio-prometheus-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut config = String::from(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n",
        );
        for (job, target) in targets {
            config +=
                &format!("  - {{job_name: {job}, static_configs: [{{targets: ['{target}']}}]}}\n");
        }
        std::fs::write(dir.join("prometheus.yml"), config).expect("config");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start prometheus ({e}); scripts/test installs the Debian package")
            });
        Self {
            child,
            addr: format!("127.0.0.1:{port}"),
            dir,
        }
    }

    /// `/api/v1/query` at the current time: the JSON answer.
    async fn query(&self, expr: &str) -> Value {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let (status, body) = http_get(&self.addr, &path)
            .await
            .unwrap_or_else(|e| panic!("query {expr}: {e}"));
        let json: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{expr}: {e}: {body}"));
        assert_eq!(status, 200, "{expr}: {json}");
        json
    }

    /// The first sample of an instant query, `None` while Prometheus is starting or has no data.
    async fn scalar(&self, expr: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let (_, body) = http_get(&self.addr, &path).await.ok()?;
        let json: Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_dashboard_query_evaluates_against_prometheus_scraping_a_real_worker_and_bot() {
    let redis = TestRedis::start();
    let queue = redis.queue().await;
    let mut worker = WorkerProcess::start(&redis, &queue, &[]);
    worker.ready(Duration::from_secs(60)).await;
    let fake = FakeDiscord::start(World::default_guild()).await;
    let bot = RunningBot::start(
        &redis,
        &queue,
        &fake,
        RecordingPlayer::with_speed(1.0),
        |_, _| {},
    )
    .await;
    fake.wait_identified(1, Duration::from_secs(10)).await;
    let help = fake.command(
        ids::GUILD,
        &Member::listener(ids::LISTENER),
        "help",
        serde_json::json!([]),
    );
    fake.callback(&help, Duration::from_secs(5)).await;

    // One job through the real worker, so the worker's histograms have observations.
    let spec = JobSpec::generate(
        Priority::Interactive,
        GenerateTask {
            song: SongRequest {
                duration_s: 10.0,
                seed: Some(1),
                ..SongRequest::default()
            },
            ..GenerateTask::default()
        },
    );
    let id = queue
        .enqueue(EnqueueRequest::new(spec))
        .await
        .expect("enqueue")
        .id;
    eventually(Duration::from_secs(60), "the job to succeed", || {
        let (queue, id) = (queue.clone(), id.clone());
        async move { (queue.job(&id).await.ok()??.state == JobState::Succeeded).then_some(()) }
    })
    .await;

    let prometheus = Prometheus::start(&[
        ("radio-worker", worker.metrics_addr.clone()),
        ("radio-bot", bot.metrics.to_string()),
    ]);
    // Both targets up, and enough scrapes for rate() to have two samples.
    eventually(Duration::from_secs(60), "both targets scraped", || {
        let p = &prometheus;
        async move {
            let up = p.scalar("sum(up)").await?;
            let scrapes = p.scalar("min(count_over_time(up[1m]))").await?;
            (up == 2.0 && scrapes >= 3.0).then_some(())
        }
    })
    .await;

    let mut without_data = Vec::new();
    for (dashboard, panel, expr) in expressions() {
        let answer = prometheus.query(&expr).await;
        assert_eq!(
            answer["status"], "success",
            "{dashboard} / {panel}: {expr}: {answer}"
        );
        if answer["data"]["result"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            without_data.push(format!("{dashboard} / {panel}: {expr}"));
        }
    }
    // Every metric a dashboard names is really exported by one of the two processes.
    let names: BTreeSet<String> = expressions()
        .iter()
        .flat_map(|(_, _, e)| metric_names(e))
        .collect();
    for name in &names {
        let series = prometheus
            .query(&format!("count({{__name__=~\"{name}(_bucket)?\"}})"))
            .await;
        assert!(
            series["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty()),
            "{name} is on a dashboard but neither the worker nor the bot exports it"
        );
    }
    // Panels about things that did not happen in this test (retries, OOM fallbacks, voice) may be empty;
    // the worker's core panels must not be.
    for must in ["Stage duration (p50)", "Jobs waiting", "GPU memory"] {
        assert!(
            !without_data
                .iter()
                .any(|p| p.contains(&format!("/ {must}:"))),
            "{must} has no data: {without_data:#?}"
        );
    }
    bot.stop().await;
}
