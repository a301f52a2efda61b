//! The `radio-bot` binary: configuration errors name the setting, and `radio-bot healthcheck` answers
//! for container health checks.

use std::process::{Command, Output};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Runs `radio-bot` with only the given environment, in an empty directory (no `.env`).
fn radio_bot(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = std::env::temp_dir().join(format!("radio-bot-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_radio-bot"));
    command.args(args).current_dir(&dir).env_clear();
    for (name, value) in env {
        command.env(name, value);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run radio-bot: {e}"))
}

#[test]
fn without_a_token_the_bot_says_which_setting_is_missing() {
    let out = radio_bot(&[], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DISCORD_TOKEN"), "{stderr}");
    assert!(stderr.contains("discord.com/developers"), "{stderr}");
}

#[test]
fn a_bad_setting_is_named_with_what_it_accepts() {
    let out = radio_bot(&[], &[("DISCORD_TOKEN", "t"), ("BUFFER_SIZE", "lots")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("BUFFER_SIZE"), "{stderr}");
    assert!(stderr.contains("0 to 8"), "{stderr}");
    let out = radio_bot(
        &[],
        &[("DISCORD_TOKEN", "t"), ("DISCORD_GATEWAY_URL", "http://x")],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DISCORD_GATEWAY_URL"),
        "{out:?}"
    );
    let out = radio_bot(&[], &[("DISCORD_TOKEN", "t"), ("DEFAULT_DURATION", "900")]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DEFAULT_DURATION"),
        "{out:?}"
    );
}

#[test]
fn the_token_never_reaches_the_output() {
    let out = radio_bot(
        &[],
        &[
            ("DISCORD_TOKEN", "super-secret-token"),
            ("REDIS_URL", "nope://"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("REDIS_URL"), "{all}");
    assert!(!all.contains("super-secret-token"), "{all}");
}

/// A one-route HTTP server answering every request with `status`.
async fn health_server(status: &'static str) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let body = "ok\n";
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    addr
}

async fn healthcheck(addr: String) -> Output {
    tokio::task::spawn_blocking(move || {
        radio_bot(&["healthcheck"], &[("BOT_METRICS_ADDR", addr.as_str())])
    })
    .await
    .expect("healthcheck")
}

#[tokio::test]
async fn healthcheck_exits_zero_only_when_healthz_answers_200() {
    let healthy = health_server("200 OK").await;
    let out = healthcheck(healthy.to_string()).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // A wildcard address is asked on loopback.
    let wildcard = format!("0.0.0.0:{}", healthy.port());
    assert_eq!(healthcheck(wildcard).await.status.code(), Some(0));

    let sick = health_server("503 Service Unavailable").await;
    let out = healthcheck(sick.to_string()).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("503"));

    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let out = healthcheck(closed.to_string()).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("BOT_METRICS_ADDR"),
        "{out:?}"
    );
}
