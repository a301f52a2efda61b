//! The deployment files, checked statically (no Docker engine runs here): the compose file has the
//! services, health checks, GPU reservation and durability settings the README documents, and the
//! Prometheus configuration and alert rules pass promtool.

use std::process::Command;

use radio_tests::workspace_root;
use serde_yaml_ng::Value;

fn compose() -> Value {
    let path = workspace_root().join("docker-compose.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|e| panic!("docker-compose.yml is not valid YAML: {e}"))
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(String::from))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

#[test]
fn the_compose_file_declares_every_service_with_health_checks_and_gpu_reservations() {
    let c = compose();
    let services = &c["services"];
    for name in [
        "redis",
        "prometheus",
        "grafana",
        "bot",
        "worker",
        "inspector",
    ] {
        assert!(services.get(name).is_some(), "service {name} is missing");
    }
    // The web inspector is published on the host's loopback only, and needs its token.
    let inspector = &services["inspector"];
    for port in strings(&inspector["ports"]) {
        assert!(
            port.starts_with("127.0.0.1:"),
            "inspector published beyond loopback: {port}"
        );
    }
    assert!(
        inspector["environment"]["RADIO_WEB_TOKEN"]
            .as_str()
            .is_some_and(|t| t.contains(":?")),
        "the compose file must refuse to start the inspector without RADIO_WEB_TOKEN"
    );

    let redis = &services["redis"];
    let command = strings(&redis["command"]).join(" ");
    assert!(
        command.contains("--appendonly yes"),
        "Redis must run with AOF: {command}"
    );
    let health = strings(&redis["healthcheck"]["test"]).join(" ");
    assert!(
        health.contains("redis-cli") && health.contains("ping"),
        "{health}"
    );
    // Least privilege: the ACL file is rendered and used, and each role connects as its own user.
    assert!(command.contains("--aclfile /data/users.acl"), "{command}");
    assert!(
        strings(&redis["entrypoint"])
            .join(" ")
            .contains("render-acl"),
        "the ACL file is rendered before Redis starts"
    );
    for (service, user) in [
        ("worker", "radio-worker"),
        ("bot", "radio-bot"),
        ("inspector", "radio-radioctl"),
    ] {
        let url = services[service]["environment"]["REDIS_URL"]
            .as_str()
            .unwrap_or_default();
        assert!(
            url.starts_with(&format!("redis://{user}:")),
            "{service} connects as {user}: {url}"
        );
    }

    let worker = &services["worker"];
    let device = &worker["deploy"]["resources"]["reservations"]["devices"][0];
    assert_eq!(device["driver"].as_str(), Some("nvidia"));
    assert!(device["count"].as_u64().is_some() || device["count"].as_str() == Some("all"));
    assert_eq!(strings(&device["capabilities"]), vec!["gpu"]);
    assert_eq!(
        strings(&worker["healthcheck"]["test"]),
        vec!["CMD", "/usr/local/bin/radio-worker", "healthcheck"]
    );
    let volumes = strings(&worker["volumes"]);
    assert!(
        volumes.iter().any(|v| v.ends_with(":/models:ro")),
        "models are mounted read-only: {volumes:?}"
    );

    assert_eq!(
        strings(&services["bot"]["healthcheck"]["test"]),
        vec!["CMD", "/usr/local/bin/radio-bot", "healthcheck"]
    );
    for name in ["bot", "worker"] {
        assert_eq!(
            services[name]["depends_on"]["redis"]["condition"].as_str(),
            Some("service_healthy"),
            "{name} waits for a healthy Redis"
        );
    }
    let grafana = &services["grafana"];
    let env = &grafana["environment"];
    assert!(
        env["GF_SECURITY_ADMIN_PASSWORD"]
            .as_str()
            .is_some_and(|v| v.starts_with("${GRAFANA_ADMIN_PASSWORD")),
        "the admin password comes from the environment"
    );
    assert_eq!(
        env["GF_AUTH_ANONYMOUS_ENABLED"].as_str(),
        Some("${GRAFANA_ANONYMOUS:-false}")
    );
    assert_eq!(
        grafana["depends_on"]["prometheus"]["condition"].as_str(),
        Some("service_healthy")
    );
    for (name, service) in services.as_mapping().into_iter().flatten() {
        assert!(
            service.get("healthcheck").is_some(),
            "{name:?} has no healthcheck"
        );
    }
}

#[test]
fn docker_compose_accepts_the_file_when_the_client_has_compose() {
    let probe = Command::new("docker").args(["compose", "version"]).output();
    match probe {
        Ok(out) if out.status.success() => {
            let out = Command::new("docker")
                .args(["compose", "-f", "docker-compose.yml", "config", "--quiet"])
                .current_dir(workspace_root())
                // Every setting the file requires (`${NAME:?…}`).
                .env("GRAFANA_ADMIN_PASSWORD", "test")
                .env("RADIO_WEB_TOKEN", "test")
                .env("REDIS_BOT_PASSWORD", "test")
                .env("REDIS_WORKER_PASSWORD", "test")
                .env("REDIS_RADIOCTL_PASSWORD", "test")
                .output()
                .expect("docker compose config");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        _ => eprintln!(
            "docker compose is not available here: the static YAML checks above stand in for it"
        ),
    }
}

#[test]
fn the_prometheus_config_and_alert_rules_pass_promtool() {
    let dir = workspace_root().join("deploy/prometheus");
    let rules = Command::new("promtool")
        .args(["check", "rules"])
        .arg(dir.join("alerts.yml"))
        .output()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    assert!(
        rules.status.success(),
        "{}",
        String::from_utf8_lossy(&rules.stdout)
    );
    // The config names the rules by their in-container path; check a copy that points next to it.
    let tmp = std::env::temp_dir().join(format!("promcfg-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let config = std::fs::read_to_string(dir.join("prometheus.yml")).expect("prometheus.yml");
    std::fs::write(
        tmp.join("prometheus.yml"),
        config.replace("/etc/prometheus/alerts.yml", "alerts.yml"),
    )
    .expect("write");
    std::fs::copy(dir.join("alerts.yml"), tmp.join("alerts.yml")).expect("copy");
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(tmp.join("prometheus.yml"))
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn env_example_documents_every_setting_the_binaries_read() {
    let root = workspace_root();
    let example = std::fs::read_to_string(root.join(".env.example")).expect(".env.example");
    let documented = |name: &str| {
        example
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| word == name)
    };
    // The files where settings are read; every all-caps string literal with an underscore in them is a
    // setting's name (Redis commands and codes have none).
    let sources = [
        "shared/src/config.rs",
        "shared/src/queue/mod.rs",
        "shared/src/telemetry.rs",
        "shared/src/bin/radioctl/main.rs",
        "worker/src/config.rs",
        "worker/src/songwriter/config.rs",
        "worker/src/pipeline/runtime.rs",
        "worker/src/main.rs",
        "bot/src/config.rs",
        "bot/src/main.rs",
    ];
    let mut seen = 0;
    for source in sources {
        let text =
            std::fs::read_to_string(root.join(source)).unwrap_or_else(|e| panic!("{source}: {e}"));
        // Unit tests at the end of a file hold sample values, not settings.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for literal in code.split('"').skip(1).step_by(2) {
            let is_name = literal.contains('_')
                && literal.starts_with(|c: char| c.is_ascii_uppercase())
                && literal
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if is_name {
                seen += 1;
                assert!(
                    documented(literal),
                    "{literal} (read in {source}) is not in .env.example"
                );
            }
        }
    }
    assert!(
        seen > 30,
        "found only {seen} setting names: did the sources move?"
    );
}
