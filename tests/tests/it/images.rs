//! The production images' runtime stages, proven without a Docker engine.
//!
//! Each Dockerfile's last stage is read (base image, `apt-get install` packages, `COPY`, `ENV`,
//! `USER`, `HEALTHCHECK`) and rebuilt as a root filesystem from Debian's packages: the packages its base
//! image documents containing, plus those the stage installs, with their dependencies
//! (`radio_tests::debian_root`). The binaries of this build (and the ONNX Runtime library, the CPU build
//! standing in for the GPU one) are copied in where the stage copies them, every `NEEDED` library must
//! be there, and each binary then runs inside it under `chroot` as the stage's non-root user:
//! `--version`, `healthcheck` (which must say "not healthy" in its own words, not fail to load), and
//! for the worker `plan --profile 8gb` and `pack verify` on the tiny pack (which loads ONNX Runtime).
//!
//! What cannot be fetched here is held as documented lists: the packages of distroless's
//! `cc-debian12` (its `base/config.bzl` and `cc/config.bzl`) are Debian packages and are fetched as
//! such; NVIDIA's CUDA runtime image is Ubuntu 24.04 plus CUDA, so its Ubuntu base libraries are stood
//! in for by the Debian packages of the same libraries, and the CUDA libraries are not checked (the
//! CPU build links none; README, "What the image tests prove").
//!
//! The test binaries are the dev profile's; a profile changes code generation, not which libraries
//! a binary links, so their `NEEDED` lists are the release build's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use radio_tests::{binary, debian_root, workspace_root};

/// A base image and what its publisher documents it contains.
struct DocumentedBase {
    /// The `FROM` reference, up to its tag (variables substituted).
    image: &'static str,
    /// Debian packages with the same libraries.
    packages: &'static [&'static str],
    /// Users it defines, by name.
    users: &'static [(&'static str, u32)],
    /// Where the list comes from.
    source: &'static str,
}

const BASES: &[DocumentedBase] = &[
    DocumentedBase {
        image: "gcr.io/distroless/cc-debian12:nonroot",
        packages: &[
            "libc6",
            "libssl3",
            "libgomp1",
            "libstdc++6",
            "libgcc-s1",
            "gcc-12-base",
        ],
        users: &[("root", 0), ("nonroot", 65532)],
        source: "GoogleContainerTools/distroless base/config.bzl (libc6, libssl3) and cc/config.bzl \
                 (libgomp1, libstdc++6, libgcc-s1, gcc-12-base); nonroot is uid 65532",
    },
    DocumentedBase {
        image: "nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04",
        packages: &["libc6", "libgcc-s1", "gcc-12-base", "libstdc++6", "zlib1g"],
        users: &[("root", 0)],
        source: "the ubuntu:24.04 base libraries NVIDIA's CUDA images build on (glibc, libgcc, \
                 libstdc++, zlib), as Debian 12 packages; CUDA and cuDNN come with the image",
    },
];

/// What a Dockerfile's runtime stage does, as far as running the binaries goes.
#[derive(Debug, Default)]
struct RuntimeStage {
    dockerfile: PathBuf,
    from: String,
    apt_packages: Vec<String>,
    /// `(source in the build stage, destination, --chown)`.
    copies: Vec<(String, String, Option<String>)>,
    env: BTreeMap<String, String>,
    user: Option<String>,
    /// `useradd … --uid N NAME` lines.
    added_users: Vec<(String, u32)>,
    healthcheck: Vec<String>,
    /// The build stage's RUN lines (where the copied files come from).
    build_runs: Vec<String>,
}

impl RuntimeStage {
    fn read(dockerfile: &Path) -> Self {
        let text = std::fs::read_to_string(dockerfile)
            .unwrap_or_else(|e| panic!("{}: {e}", dockerfile.display()));
        // Instructions with their continuation lines joined, comments dropped.
        let mut instructions: Vec<(String, String)> = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
                continue;
            }
            match trimmed.strip_suffix('\\') {
                Some(part) => {
                    current.push_str(part);
                    current.push(' ');
                }
                None => {
                    current.push_str(trimmed);
                    let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                    instructions.push((keyword.to_uppercase(), args.trim().to_string()));
                    current.clear();
                }
            }
        }
        let mut args: BTreeMap<String, String> = BTreeMap::new();
        let mut stage = Self {
            dockerfile: dockerfile.to_path_buf(),
            ..Self::default()
        };
        let mut stage_index = 0;
        let last_from = instructions.iter().filter(|(k, _)| k == "FROM").count();
        for (keyword, rest) in instructions {
            let rest = substitute(&rest, &args);
            match keyword.as_str() {
                "ARG" if stage_index == 0 => {
                    if let Some((k, v)) = rest.split_once('=') {
                        args.insert(k.to_string(), v.to_string());
                    }
                }
                "FROM" => {
                    stage_index += 1;
                    if stage_index == last_from {
                        stage.from = rest.split_whitespace().next().unwrap_or_default().into();
                    }
                }
                "RUN" if stage_index < last_from => stage.build_runs.push(rest),
                "RUN" => {
                    stage.apt_packages.extend(apt_installed(&rest));
                    stage.added_users.extend(useradd(&rest));
                }
                "COPY" if stage_index == last_from => {
                    let words: Vec<&str> = rest.split_whitespace().collect();
                    let chown = words
                        .iter()
                        .find_map(|w| w.strip_prefix("--chown="))
                        .map(str::to_string);
                    let plain: Vec<&str> =
                        words.into_iter().filter(|w| !w.starts_with("--")).collect();
                    if let [source, destination] = plain[..] {
                        stage
                            .copies
                            .push((source.into(), destination.into(), chown));
                    }
                }
                "ENV" if stage_index == last_from => {
                    for pair in rest.split_whitespace() {
                        if let Some((k, v)) = pair.split_once('=') {
                            stage.env.insert(k.into(), v.into());
                        }
                    }
                }
                "USER" if stage_index == last_from => stage.user = Some(rest),
                "HEALTHCHECK" if stage_index == last_from => {
                    let json = rest.split_once("CMD").map(|(_, j)| j.trim()).unwrap_or("");
                    stage.healthcheck = serde_json::from_str(json).unwrap_or_else(|e| {
                        panic!(
                            "{}: HEALTHCHECK CMD is not an exec-form array ({e}): {json}",
                            dockerfile.display()
                        )
                    });
                }
                _ => {}
            }
        }
        stage
    }

    fn base(&self) -> &'static DocumentedBase {
        BASES
            .iter()
            .find(|b| b.image == self.from)
            .unwrap_or_else(|| {
                panic!(
                    "{} runs on {}, whose contents this test does not know: add what its publisher \
                     documents to BASES",
                    self.dockerfile.display(),
                    self.from
                )
            })
    }

    /// The stage's user as a uid, from the base image's users or a `useradd` in the stage.
    fn uid(&self) -> u32 {
        let user = self.user.as_deref().unwrap_or("root");
        let known = self
            .base()
            .users
            .iter()
            .map(|(n, u)| (n.to_string(), *u))
            .chain(self.added_users.iter().cloned())
            .find(|(name, uid)| name == user || uid.to_string() == user);
        known.map(|(_, uid)| uid).unwrap_or_else(|| {
            panic!(
                "{}: USER {user} is neither in the base image nor added in the stage",
                self.dockerfile.display()
            )
        })
    }
}

/// `${NAME}` and `$NAME` from ARG defaults.
fn substitute(text: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in args {
        out = out
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    out
}

/// The packages of every `apt-get install` in a RUN line.
fn apt_installed(run: &str) -> Vec<String> {
    run.split("&&")
        .filter_map(|command| command.split_once("apt-get install"))
        .flat_map(|(_, rest)| {
            rest.split_whitespace()
                .take_while(|w| *w != ";")
                .filter(|w| !w.starts_with('-'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `(name, uid)` of every `useradd … --uid N … NAME` in a RUN line.
fn useradd(run: &str) -> Vec<(String, u32)> {
    run.split("&&")
        .filter_map(|command| {
            let words: Vec<&str> = command.split_whitespace().collect();
            if !words.contains(&"useradd") {
                return None;
            }
            let uid = words.windows(2).find(|w| w[0] == "--uid" || w[0] == "-u")?[1]
                .parse()
                .ok()?;
            Some((words.last()?.to_string(), uid))
        })
        .collect()
}

/// The file of this checkout that stands in for what the build stage puts at `source`.
fn local_file(source: &str) -> PathBuf {
    let name = Path::new(source)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    match name {
        "radio-bot" | "radio-worker" | "radioctl" => binary(name),
        // The GPU folder holds the same library names; the CPU build is what this machine has.
        "onnxruntime" => workspace_root().join(".runtime/onnxruntime"),
        // An empty folder made for the image (the bot's track cache).
        _ => PathBuf::new(),
    }
}

fn copy_into(root: &Path, source: &Path, destination: &str) {
    let target = root.join(destination.trim_start_matches('/'));
    if source.as_os_str().is_empty() {
        std::fs::create_dir_all(&target).expect("create a folder in the root");
        return;
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).expect("create a folder in the root");
    }
    let status = Command::new("cp")
        .args(["-a", "-L"])
        .arg(source)
        .arg(&target)
        .status()
        .expect("cp");
    assert!(
        status.success(),
        "copying {} into the root failed",
        source.display()
    );
}

/// The stage rebuilt under `root`: its packages unpacked and its files copied in.
fn assemble(stage: &RuntimeStage, root: &Path) {
    let wanted: Vec<String> = stage
        .base()
        .packages
        .iter()
        .map(|p| p.to_string())
        .chain(stage.apt_packages.iter().cloned())
        .collect();
    let packages = debian_root::closure(&wanted).unwrap_or_else(|e| panic!("{e}"));
    let cache = workspace_root().join("target/image-debs");
    debian_root::assemble(root, &packages, &cache).unwrap_or_else(|e| panic!("{e}"));
    for (source, destination, chown) in &stage.copies {
        copy_into(root, &local_file(source), destination);
        if let Some(owner) = chown {
            let _ = Command::new("chown")
                .arg("-R")
                .arg(owner)
                .arg(root.join(destination.trim_start_matches('/')))
                .status();
        }
    }
    // Both bases have a world-writable /tmp.
    let tmp = root.join("tmp");
    std::fs::create_dir_all(&tmp).expect("create /tmp in the root");
    let _ = Command::new("chmod").arg("1777").arg(&tmp).status();
}

/// Every ELF file the stage copies, with the libraries it needs that the root lacks.
fn missing_libraries(stage: &RuntimeStage, root: &Path) -> Vec<String> {
    let extra: Vec<String> = stage
        .env
        .get("LD_LIBRARY_PATH")
        .map(|p| {
            p.split(':')
                .map(|d| d.trim_start_matches('/').to_string())
                .collect()
        })
        .unwrap_or_default();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut missing = Vec::new();
    for (_, destination, _) in &stage.copies {
        let copied = root.join(destination.trim_start_matches('/'));
        let files: Vec<PathBuf> = if copied.is_dir() {
            std::fs::read_dir(&copied)
                .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
                .unwrap_or_default()
        } else {
            vec![copied]
        };
        for file in files.into_iter().filter(|f| is_elf(f)) {
            for soname in debian_root::needed(&file).unwrap_or_else(|e| panic!("{e}")) {
                if !debian_root::provides(root, &soname, &extra) {
                    missing.push(format!(
                        "{} needs {soname}",
                        file.strip_prefix(root).unwrap_or(&file).display()
                    ));
                }
            }
        }
    }
    missing
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// Runs `args` inside `root` as the stage's user, with the stage's environment only.
fn run_inside(stage: &RuntimeStage, root: &Path, args: &[&str]) -> Output {
    let uid = stage.uid();
    // Found on this machine's PATH: the command's own environment is the image's.
    let chroot = std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("chroot"))
                .find(|p| p.exists())
        })
        .expect("chroot (coreutils) on PATH");
    Command::new(chroot)
        .arg(format!("--userspec={uid}:{uid}"))
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(&stage.env)
        .output()
        .expect("chroot runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A rebuilt image's root folder; removed on drop, after unmounting its `/proc`.
struct ImageRoot {
    dir: PathBuf,
    proc_mounted: bool,
}

impl ImageRoot {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("radio-image-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self {
            dir,
            proc_mounted: false,
        }
    }

    /// Every container has a `/proc` (ONNX Runtime reads `/proc/self/fd` to open model files):
    /// the host's is bind-mounted, read-only.
    fn mount_proc(&mut self) -> bool {
        let target = self.dir.join("proc");
        std::fs::create_dir_all(&target).expect("create /proc in the root");
        self.proc_mounted = Command::new("mount")
            .args(["--bind", "-o", "ro", "/proc"])
            .arg(&target)
            .status()
            .is_ok_and(|s| s.success());
        self.proc_mounted
    }
}

impl Drop for ImageRoot {
    fn drop(&mut self) {
        if self.proc_mounted {
            let unmounted = Command::new("umount")
                .arg("-l")
                .arg(self.dir.join("proc"))
                .status()
                .is_ok_and(|s| s.success());
            if !unmounted {
                // Never delete through a mounted /proc.
                return;
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Rebuilds the runtime stage of `dockerfile`, with `extra` files copied in as an operator would mount
/// them, checks every library, then runs its health check and `commands` inside it as its user.
fn check_image(dockerfile: &str, extra: &[(PathBuf, &str)], commands: &[&[&str]]) {
    let stage = RuntimeStage::read(&workspace_root().join(dockerfile));
    assert!(
        stage.uid() != 0,
        "{dockerfile}: the runtime stage runs as root; add a USER"
    );
    let name = dockerfile.split('/').next().unwrap_or("image");
    let mut image = ImageRoot::new(name);
    let root = image.dir.clone();
    assemble(&stage, &root);
    for (source, destination) in extra {
        copy_into(&root, source, destination);
    }
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&root)
        .status();
    let missing = missing_libraries(&stage, &root);
    assert!(
        missing.is_empty(),
        "{dockerfile}: the runtime stage ({} + apt-get install {:?}) lacks libraries: {}. \
         Install their packages in that stage or link them statically. Base contents: {}",
        stage.from,
        stage.apt_packages,
        missing.join("; "),
        stage.base().source
    );
    if !is_root() || !image.mount_proc() {
        println!(
            "{dockerfile}: libraries checked; running the binaries needs root (chroot, a /proc mount): skipped"
        );
        return;
    }
    // The health check the image declares runs and answers in its own words (nothing listens here).
    let health: Vec<&str> = stage.healthcheck.iter().map(String::as_str).collect();
    let out = run_inside(&stage, &root, &health);
    assert!(
        !out.status.success() && text(&out).contains("cannot connect"),
        "{dockerfile}: HEALTHCHECK {health:?} should report the service as not listening: {}",
        text(&out)
    );
    for command in commands {
        let out = run_inside(&stage, &root, command);
        assert!(
            out.status.success(),
            "{dockerfile}: {command:?} failed inside the runtime stage: {}",
            text(&out)
        );
    }
}

#[test]
fn the_bot_image_runtime_stage_has_every_library_and_runs_the_bot() {
    check_image(
        "bot/Dockerfile",
        &[],
        &[
            &["/usr/local/bin/radio-bot", "--version"],
            // The compose file's inspector service runs it from this image.
            &["/usr/local/bin/radioctl", "--version"],
        ],
    );
}

#[test]
fn the_worker_image_runtime_stage_has_every_library_and_runs_the_worker() {
    // The tiny pack where compose mounts the models (MODELS_DIR=/models/acestep15 in the image).
    check_image(
        "worker/Dockerfile",
        &[(
            workspace_root().join("worker/assets/tiny-pack"),
            "/models/acestep15",
        )],
        &[
            &["/usr/local/bin/radio-worker", "--version"],
            &["/usr/local/bin/radio-worker", "plan", "--profile", "8gb"],
            // Loads ONNX Runtime from ORT_DYLIB_PATH and renders a smoke track on the tiny pack.
            &[
                "/usr/local/bin/radio-worker",
                "pack",
                "verify",
                "/models/acestep15",
            ],
        ],
    );
}

#[test]
fn every_path_the_images_and_compose_name_exists_and_they_agree() {
    let root = workspace_root();
    let bot = RuntimeStage::read(&root.join("bot/Dockerfile"));
    let worker = RuntimeStage::read(&root.join("worker/Dockerfile"));
    let compose: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root.join("docker-compose.yml")).expect("docker-compose.yml"),
    )
    .expect("compose YAML");

    for stage in [&bot, &worker] {
        let file = stage.dockerfile.display();
        // Everything copied from the build stage is made there.
        for (source, _, _) in &stage.copies {
            assert!(
                stage
                    .build_runs
                    .iter()
                    .any(|run| run.contains(source.as_str())),
                "{file}: COPY {source} names nothing its build stage writes"
            );
        }
        // The health check runs a binary the stage copies in.
        let health = stage.healthcheck.first().expect("a HEALTHCHECK");
        assert!(
            stage
                .copies
                .iter()
                .any(|(_, destination, _)| destination == health),
            "{file}: HEALTHCHECK runs {health}, which the stage does not copy in"
        );
    }
    // The binaries the build stages compile exist in this workspace.
    for (stage, name) in [(&bot, "radio-bot"), (&worker, "radio-worker")] {
        assert!(
            stage
                .build_runs
                .iter()
                .any(|run| run.contains(&format!("--bin {name}"))),
            "{} does not build {name}",
            stage.dockerfile.display()
        );
        assert!(
            binary(name).exists(),
            "{name} is not a binary of this build"
        );
    }

    // ONNX Runtime: the version scripts/fetch-onnxruntime fetches is the file the image and compose load.
    let fetch = std::fs::read_to_string(root.join("scripts/fetch-onnxruntime")).expect("script");
    let version = fetch
        .lines()
        .find_map(|l| l.strip_prefix("ORT_VERSION="))
        .expect("ORT_VERSION in scripts/fetch-onnxruntime");
    let library = format!("/opt/onnxruntime/libonnxruntime.so.{version}");
    assert_eq!(
        worker.env.get("ORT_DYLIB_PATH"),
        Some(&library),
        "worker/Dockerfile's ORT_DYLIB_PATH"
    );
    assert!(
        worker
            .copies
            .iter()
            .any(|(_, destination, _)| destination == "/opt/onnxruntime"),
        "worker/Dockerfile copies no /opt/onnxruntime"
    );
    assert!(
        fetch.contains(".runtime/onnxruntime-gpu")
            && worker
                .build_runs
                .iter()
                .any(|r| r.contains(".runtime/onnxruntime-gpu")),
        "the worker image copies the folder scripts/fetch-onnxruntime --gpu writes"
    );
    assert!(
        root.join(".runtime/onnxruntime")
            .join(format!("libonnxruntime.so.{version}"))
            .exists(),
        "scripts/fetch-onnxruntime did not write libonnxruntime.so.{version}"
    );
    let services = &compose["services"];
    assert_eq!(
        services["worker"]["environment"]["ORT_DYLIB_PATH"].as_str(),
        Some(library.as_str()),
        "compose's worker ORT_DYLIB_PATH"
    );

    // Compose's health checks run the binaries where the images put them.
    for (service, stage) in [("bot", &bot), ("worker", &worker)] {
        let test: Vec<&str> = services[service]["healthcheck"]["test"]
            .as_sequence()
            .map(|s| s.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let declared: Vec<&str> = stage.healthcheck.iter().map(String::as_str).collect();
        assert_eq!(
            test.get(1..),
            Some(&declared[..]),
            "compose's {service} health check differs from its image's"
        );
    }
    // Files compose mounts from the repository exist.
    let mut mounted = 0;
    for (name, service) in services.as_mapping().expect("services") {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let Some(source) = volume.as_str().and_then(|v| v.split(':').next()) else {
                continue;
            };
            if let Some(relative) = source.strip_prefix("./") {
                mounted += 1;
                assert!(
                    root.join(relative).exists(),
                    "compose service {:?} mounts {source}, which is not in the repository",
                    name.as_str()
                );
            }
        }
    }
    assert!(
        mounted >= 4,
        "found only {mounted} mounted repository paths"
    );
    // The bot's cache folder is where its image says, owned by its user.
    assert_eq!(
        bot.env.get("BOT_CACHE_DIR").map(String::as_str),
        Some("/cache")
    );
    assert!(
        bot.copies
            .iter()
            .any(|(_, d, chown)| d == "/cache" && chown.as_deref() == Some("65532:65532")),
        "bot/Dockerfile: /cache must belong to the nonroot user"
    );
}
