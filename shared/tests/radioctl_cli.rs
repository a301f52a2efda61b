//! `radioctl`'s command line, without Redis: every command is there, takes `--json`, and bad usage
//! exits 2. (This test also makes `cargo test --workspace` build `radioctl` for the workspace's
//! integration tests, which run the binary against a real Redis.)

use std::process::Command;

fn radioctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_radioctl"))
        .args(args)
        .env("REDIS_URL", "redis://127.0.0.1:1")
        // Exit codes, not patience: the wait for an unreachable Redis is tested in faults.rs.
        .env("REDIS_CONNECT_TIMEOUT_SECS", "0")
        .output()
        .expect("run radioctl")
}

#[test]
fn every_command_is_listed_and_takes_json() {
    let help = radioctl(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for command in [
        "status", "jobs", "show", "enqueue", "wait", "cancel", "retry", "dead", "purge", "bench",
        "serve",
    ] {
        assert!(
            text.contains(command),
            "{command} missing from --help:\n{text}"
        );
        let sub = radioctl(&[command, "--help"]);
        assert!(
            String::from_utf8_lossy(&sub.stdout).contains("--json"),
            "{command} takes --json"
        );
    }
}

#[test]
fn enqueue_takes_the_same_song_flags_as_the_worker() {
    let help = radioctl(&["enqueue", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--caption",
        "--lyrics",
        "--duration",
        "--seed",
        "--bpm",
        "--key",
        "--language",
        "--shift",
        "--genre",
        "--theme",
        "--style",
        "--guild",
        "--priority",
    ] {
        assert!(text.contains(flag), "{flag} missing:\n{text}");
    }
}

#[test]
fn bad_usage_exits_2_and_an_unreachable_redis_exits_1() {
    assert_eq!(radioctl(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        radioctl(&["enqueue", "--shift", "9"]).status.code(),
        Some(2)
    );
    let down = radioctl(&["status"]);
    assert_eq!(down.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("cannot reach Redis at redis://127.0.0.1:1")
    );
}
