//! `scripts/up`, the README's first command: the whole stack on this machine, a demo track, and a clean
//! stop that leaves no process behind.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use radio_tests::audio::decode_ogg_opus;
use radio_tests::{eventually, free_port, http_get, workspace_root};

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| !stat.contains(") Z "))
            .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_up_runs_the_stack_writes_a_demo_track_and_stops_everything_it_started() {
    let state = std::env::temp_dir().join(format!("radio-up-{}", ulid::Ulid::new()));
    let (redis_port, worker_port, prometheus_port, inspector_port) =
        (free_port(), free_port(), free_port(), free_port());
    let up = tokio::process::Command::new(workspace_root().join("scripts/up"))
        .arg("--non-interactive")
        .current_dir(workspace_root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("UP_STATE_DIR", &state)
        // This test run has just built the binaries in the same profile.
        .env("UP_SKIP_BUILD", "1")
        .env("UP_SKIP_DOTENV", "1")
        .env("REDIS_URL", format!("redis://127.0.0.1:{redis_port}"))
        .env("UP_WORKER_PORT", worker_port.to_string())
        .env("UP_PROMETHEUS_PORT", prometheus_port.to_string())
        .env("UP_INSPECTOR_PORT", inspector_port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("scripts/up");

    let demo = state.join("demo.ogg");
    let output = eventually(Duration::from_secs(300), "the demo track", || {
        let demo = demo.clone();
        async move {
            let bytes = std::fs::read(&demo).ok()?;
            // The file is written in one go by radioctl; wait until it decodes.
            decode_ogg_opus(bytes).ok()
        }
    })
    .await;
    assert_eq!((output.sample_rate, output.channels), (48_000, 2));
    assert!((output.seconds() - 20.0).abs() < 0.05, "{output:?}");

    let started: Vec<(u32, String)> = std::fs::read_to_string(state.join("pids"))
        .expect("pids")
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(pid, name)| Some((pid.parse().ok()?, name.to_string())))
        .collect();
    let names: Vec<&str> = started.iter().map(|(_, n)| n.as_str()).collect();
    assert!(
        names.contains(&"redis-server"),
        "it started its own Redis: {names:?}"
    );
    assert!(names.contains(&"radio-worker"), "{names:?}");
    assert!(names.contains(&"radioctl-serve"), "{names:?}");
    let (status, overview) = http_get(&format!("127.0.0.1:{inspector_port}"), "/api/overview")
        .await
        .expect("the inspector's overview");
    assert_eq!(status, 200, "{overview}");
    assert!(overview.contains("\"workers\""), "{overview}");
    assert!(!names.contains(&"radio-bot"), "no DISCORD_TOKEN, no bot");
    let (status, _) = http_get(&format!("127.0.0.1:{worker_port}"), "/healthz")
        .await
        .expect("healthz");
    assert_eq!(status, 200);
    if names.contains(&"prometheus") {
        eventually(Duration::from_secs(30), "Prometheus ready", || async move {
            let (status, _) = http_get(&format!("127.0.0.1:{prometheus_port}"), "/-/ready")
                .await
                .ok()?;
            (status == 200).then_some(())
        })
        .await;
    }

    let pid = up.id().expect("pid");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = tokio::time::timeout(Duration::from_secs(60), up.wait_with_output())
        .await
        .expect("scripts/up stops within a minute")
        .expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Ace Radio is running"), "{stdout}");
    assert!(
        stdout.contains(&format!("http://127.0.0.1:{inspector_port}/")),
        "scripts/up prints the inspector's address: {stdout}"
    );
    // scripts/test fetched the small real model (.runtime/llm), so the demo song is the LLM's.
    assert!(
        stdout.contains("(written by llm)"),
        "the demo song should come from the real model: {stdout}"
    );
    assert!(
        stdout.contains("stopping what scripts/up started"),
        "{stdout}"
    );
    assert_eq!(
        out.status.code(),
        Some(130),
        "stopped by the signal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (pid, name) in &started {
        assert!(
            !alive(*pid),
            "{name} (pid {pid}) is still running after scripts/up stopped"
        );
    }
    let _ = std::fs::remove_dir_all(&state);
}
