//! `radioctl`: inspect and repair the job queue of an Ace Radio deployment.
//!
//! Exit codes: 0 ok, 1 the operation failed, 2 bad usage. Every command takes `--json`.

/// `print!` for output another program may stop reading (`radioctl jobs | head`): a closed pipe ends
/// radioctl quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// `println!` with the same handling of a closed pipe as [`out!`].
macro_rules! outln {
    ($($arg:tt)*) => {{
        out!($($arg)*);
        out!("\n");
    }};
}

mod bench;
mod serve;
mod table;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::json;

use radio_shared::cli::SongArgs;
use radio_shared::config::{Env, RedisConfig, load_dotenv};
use radio_shared::job::{AudioFormat, GenerateTask, JobId, JobSpec, JobState, Priority, Station};
use radio_shared::queue::{
    CancelOutcome, EnqueueRequest, EventKind, JobRecord, Queue, QueueSettings, now_ms,
};
use table::{Table, age, bytes, utc};

#[derive(Debug, Parser)]
#[command(
    name = "radioctl",
    version,
    about = "Inspect and repair the Ace Radio job queue"
)]
struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Depth per stream, pending per consumer, oldest pending age, delayed, dead, live workers.
    Status,
    /// List jobs still in Redis, newest first.
    Jobs {
        /// Only jobs in this state (queued, running, retrying, succeeded, failed, cancelled).
        #[arg(long)]
        state: Option<JobState>,
        /// At most this many rows.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Everything about one job: spec, state history, attempts, errors, result.
    Show {
        /// The job id.
        id: JobId,
    },
    /// Enqueue a generation job.
    Enqueue(Box<EnqueueArgs>),
    /// Follow a job until it ends; with --out, write its audio (and remove it from Redis, unless
    /// --keep). Exits 0 only if it succeeded.
    Wait {
        /// The job id.
        id: JobId,
        /// Where to write the audio.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Leave the audio in Redis after writing it (it expires after RADIO_RESULT_TTL_SECS).
        #[arg(long, requires = "out")]
        keep: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
    },
    /// Cancel a job, queued or running.
    Cancel {
        /// The job id.
        id: JobId,
    },
    /// Put failed jobs back in their stream with their attempts reset.
    Retry {
        /// The job id.
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        id: Option<JobId>,
        /// Retry every job in the dead stream.
        #[arg(long)]
        all_dead: bool,
    },
    /// List the dead stream.
    Dead,
    /// Push no-op jobs through a throwaway prefix and report jobs per second.
    Bench {
        /// Jobs per run.
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        /// Concurrent consumers; one run per value.
        #[arg(long, value_delimiter = ',', default_value = "1,50")]
        consumers: Vec<usize>,
    },
    /// Serve the web inspector: the queue, every job, live progress, audio, cancel and retry.
    Serve {
        /// Where to listen. Anything but a loopback address needs RADIO_WEB_TOKEN, which actions then
        /// need too.
        #[arg(long, env = "RADIO_WEB_ADDR", default_value = serve::DEFAULT_ADDR)]
        addr: SocketAddr,
        /// Do not serve: exit 0 if the inspector on --addr answers /healthz (container health checks).
        #[arg(long)]
        healthcheck: bool,
    },
    /// Delete dead letters.
    Purge {
        /// Purge the dead stream (the only thing purge deletes).
        #[arg(long, required = true)]
        dead: bool,
        /// Confirm.
        #[arg(long, required = true)]
        yes: bool,
    },
}

#[derive(Debug, clap::Args)]
struct EnqueueArgs {
    #[command(flatten)]
    song: SongArgs,
    /// Station genre.
    #[arg(long, default_value = "lofi hip hop")]
    genre: String,
    /// Station theme.
    #[arg(long, default_value = "late night city")]
    theme: String,
    /// Station style.
    #[arg(long, default_value = "")]
    style: String,
    /// No vocals.
    #[arg(long)]
    instrumental: bool,
    /// The Discord guild the job counts against.
    #[arg(long)]
    guild: Option<String>,
    /// Which stream: interactive is claimed before radio.
    #[arg(long, default_value = "interactive", value_parser = ["interactive", "radio"])]
    priority: String,
    /// Store the result as ogg (Ogg Opus), wav or flac.
    #[arg(long, default_value = "ogg")]
    format: AudioFormat,
    /// Idempotency key: enqueuing the same key twice gives one job.
    #[arg(long)]
    dedup: Option<String>,
    /// Attempts before the job is dead-lettered.
    #[arg(long)]
    max_attempts: Option<u32>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    radio_shared::telemetry::init_logging("warn");
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    load_dotenv()?;
    let env = Env;
    let redis = RedisConfig::from_env(&env)?;
    let settings = QueueSettings::from_env(&env)?;
    let json = cli.json;
    let command = match cli.command {
        Command::Bench { jobs, consumers } => {
            print_bench(&bench::run(&redis, jobs, &consumers).await?, json)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Serve {
            addr,
            healthcheck: true,
        } => {
            serve::healthcheck(addr).await?;
            return Ok(ExitCode::SUCCESS);
        }
        other => other,
    };
    let queue = Queue::connect_waiting(&redis, settings).await?;
    match command {
        Command::Bench { .. } => {}
        Command::Serve { addr, .. } => serve::run(queue, addr, env.raw("RADIO_WEB_TOKEN")).await?,
        Command::Status => status(&queue, json).await?,
        Command::Jobs { state, limit } => jobs(&queue, state, limit, json).await?,
        Command::Show { id } => show(&queue, &id, json).await?,
        Command::Enqueue(args) => enqueue(&queue, *args, json).await?,
        Command::Wait {
            id,
            out,
            keep,
            timeout,
        } => {
            let out = out.map(|path| Output { path, keep });
            return wait(&queue, &id, out, Duration::from_secs(timeout), json).await;
        }
        Command::Cancel { id } => {
            let outcome = queue.cancel(&id, "radioctl").await?;
            let (word, text) = match outcome {
                CancelOutcome::Cancelled => ("cancelled", format!("{id}: cancelled")),
                CancelOutcome::Cancelling => (
                    "cancelling",
                    format!("{id}: running; its worker stops at the next step"),
                ),
                CancelOutcome::AlreadyFinished(state) => {
                    ("finished", format!("{id}: already finished ({state})"))
                }
            };
            print_out(json, &json!({ "id": id, "outcome": word }), &text);
        }
        Command::Retry { id, all_dead } => retry(&queue, id, all_dead, json).await?,
        Command::Dead => dead(&queue, json).await?,
        Command::Purge { .. } => {
            let n = queue.purge_dead().await?;
            print_out(
                json,
                &json!({ "purged": n }),
                &format!("purged {n} dead letters from {}", queue.keys().dead()),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_bench(results: &[bench::BenchResult], json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string(results)?);
        return Ok(());
    }
    let mut table = Table::new(&["CONSUMERS", "JOBS", "ENQUEUE/S", "JOBS/S"]);
    for r in results {
        table.row(vec![
            r.consumers.to_string(),
            r.jobs.to_string(),
            format!("{:.0}", r.enqueue_per_s),
            format!("{:.0}", r.jobs_per_s),
        ]);
    }
    out!("{}", table.render());
    Ok(())
}

fn print_out(json: bool, value: &serde_json::Value, text: &str) {
    if json {
        outln!("{value}");
    } else {
        outln!("{text}");
    }
}

/// Where `radioctl wait` writes a finished job's audio.
struct Output {
    path: PathBuf,
    /// Leave the result in Redis afterwards.
    keep: bool,
}

async fn status(queue: &Queue, json: bool) -> anyhow::Result<()> {
    let status = queue.status().await?;
    if json {
        outln!("{}", serde_json::to_string(&status)?);
        return Ok(());
    }
    let mut streams = Table::new(&["STREAM", "WAITING", "PENDING", "OLDEST PENDING", "LENGTH"]);
    for s in &status.streams {
        streams.row(vec![
            s.key.clone(),
            s.waiting.to_string(),
            s.pending.to_string(),
            s.oldest_pending_age_ms.map_or_else(|| "-".into(), age),
            s.length.to_string(),
        ]);
    }
    out!("{}", streams.render());
    outln!(
        "delayed retries: {}    dead letters: {}",
        status.delayed,
        status.dead
    );
    let limit = match status.memory.used_share() {
        Some(share) => format!(
            " of maxmemory {} ({:.0} %)",
            bytes(status.memory.max_bytes),
            share * 100.0
        ),
        None => " (no maxmemory set)".into(),
    };
    outln!(
        "results stored: {}    redis memory: {}{limit}",
        status.results_stored,
        bytes(status.memory.used_bytes)
    );
    let mut consumers = Table::new(&["CONSUMER", "STREAM", "PENDING", "IDLE"]);
    let mut any = false;
    for s in &status.streams {
        for c in &s.consumers {
            any = true;
            consumers.row(vec![
                c.name.clone(),
                s.priority.as_str().into(),
                c.pending.to_string(),
                age(c.idle_ms),
            ]);
        }
    }
    if any {
        out!("\n");
        out!("{}", consumers.render());
    }
    out!("\n");
    if status.workers.is_empty() {
        outln!("no live workers");
    } else {
        let now = now_ms();
        let mut workers = Table::new(&[
            "WORKER",
            "GPU",
            "PROFILE",
            "MAX TRACK",
            "BUSY WITH",
            "DONE",
            "HEARTBEAT",
        ]);
        for w in &status.workers {
            workers.row(vec![
                w.id.clone(),
                w.gpu.clone(),
                w.profile.clone(),
                format!("{:.0} s", w.max_duration_s),
                w.busy_with.clone().unwrap_or_else(|| "-".into()),
                w.jobs_done.to_string(),
                match w.heartbeat_ms {
                    0 => "-".into(), // registered by a worker too old to say
                    at => format!("{} ago", age(now.saturating_sub(at))),
                },
            ]);
        }
        out!("{}", workers.render());
        for w in &status.workers {
            outln!("  {}: {}", w.id, w.plan);
        }
    }
    Ok(())
}

async fn jobs(
    queue: &Queue,
    state: Option<JobState>,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let rows = queue.jobs(state, limit).await?;
    if json {
        outln!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    let mut table = Table::new(&[
        "ID", "STATE", "PRIORITY", "GUILD", "ATTEMPTS", "WORKER", "CREATED", "ERROR",
    ]);
    for r in rows {
        table.row(vec![
            r.id.to_string(),
            r.state.to_string(),
            r.priority.map_or("-", Priority::as_str).into(),
            r.guild.unwrap_or_else(|| "-".into()),
            r.attempts.to_string(),
            r.worker.unwrap_or_else(|| "-".into()),
            r.created_ms.map_or_else(|| "-".into(), utc),
            r.error.map(|e| truncate(&e, 60)).unwrap_or_default(),
        ]);
    }
    out!("{}", table.render());
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

async fn show(queue: &Queue, id: &JobId, json: bool) -> anyhow::Result<()> {
    let record = queue.job_required(id).await?;
    if json {
        outln!("{}", serde_json::to_string(&record)?);
        return Ok(());
    }
    out!("{}", describe(&record));
    Ok(())
}

fn describe(r: &JobRecord) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<14}{v}\n"));
    line("job", r.id.to_string());
    line("state", r.state.to_string());
    line("priority", r.priority.map_or("-", Priority::as_str).into());
    line("guild", r.guild.clone().unwrap_or_else(|| "-".into()));
    line(
        "attempts",
        format!(
            "{} of {}",
            r.attempts,
            r.max_attempts.map_or_else(|| "?".into(), |m| m.to_string())
        ),
    );
    if let Some(w) = &r.worker {
        line("worker", w.clone());
    }
    if let Some(p) = &r.progress {
        line(
            "progress",
            format!("{} {:.0}%", p.stage.describe(), p.fraction * 100.0),
        );
    }
    if r.cancel_requested {
        line("cancel", "requested".into());
    }
    if let Some(e) = &r.error {
        line("error", e.clone());
    }
    if let Some(n) = r.result_bytes {
        line("result", bytes(n));
    }
    if let Some(m) = &r.result {
        line("title", m.title.clone());
        line("writer", m.writer.as_str().to_string());
        line(
            "audio",
            format!(
                "{:.1} s {} seed {}",
                m.duration_s,
                m.format.as_str(),
                m.seed
            ),
        );
        line(
            "took",
            format!(
                "{:.2} s (real-time factor {:.2})",
                m.total_seconds,
                m.realtime_factor()
            ),
        );
    }
    match &r.spec {
        Ok(spec) => line("spec", spec.encode()),
        Err(e) => line("spec", format!("unreadable: {e}")),
    }
    out.push_str("history\n");
    let mut table = Table::new(&["  TIME", "STATE", "NOTE"]);
    for h in &r.history {
        table.row(vec![
            format!("  {}", utc(h.t)),
            h.state.clone(),
            h.note.clone(),
        ]);
    }
    out.push_str(&table.render());
    out
}

async fn enqueue(queue: &Queue, args: EnqueueArgs, json: bool) -> anyhow::Result<()> {
    let song = args.song.to_request().map_err(anyhow::Error::msg)?;
    let station = Station {
        genre: args.genre,
        theme: args.theme,
        style: args.style,
        language: song.language.clone().unwrap_or_else(|| "en".into()),
        instrumental: args.instrumental,
    };
    let priority: Priority = args.priority.parse().map_err(anyhow::Error::msg)?;
    let mut spec = JobSpec::generate(
        priority,
        GenerateTask {
            station,
            song,
            recent_titles: Vec::new(),
            format: args.format,
        },
    );
    spec.guild_id = args.guild;
    spec.requested_by = Some("radioctl".into());
    spec.max_attempts = args.max_attempts;
    let mut request = EnqueueRequest::new(spec);
    if let Some(key) = args.dedup {
        request = request.dedup(key);
    }
    let enqueued = queue.enqueue(request).await?;
    let text = if enqueued.duplicate {
        format!("{} (already enqueued with this dedup key)", enqueued.id)
    } else {
        enqueued.id.to_string()
    };
    print_out(
        json,
        &json!({ "id": enqueued.id, "position": enqueued.position, "duplicate": enqueued.duplicate }),
        &text,
    );
    Ok(())
}

async fn wait(
    queue: &Queue,
    id: &JobId,
    out: Option<Output>,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let record = queue
        .wait_for(id, timeout, |event| {
            if json {
                return;
            }
            let text = match &event.kind {
                EventKind::Queued { position } => match position {
                    Some(p) => format!("queued, {p} ahead"),
                    None => "queued".into(),
                },
                EventKind::Started {
                    worker, attempt, ..
                } => {
                    format!("running on {worker} (attempt {attempt})")
                }
                EventKind::Progress(p) => {
                    format!("{} {:.0}%", p.stage.describe(), p.fraction * 100.0)
                }
                EventKind::Retrying {
                    error, retry_in_ms, ..
                } => {
                    format!(
                        "attempt failed ({error}); retrying in {}",
                        age(*retry_in_ms)
                    )
                }
                EventKind::Released { worker } => {
                    format!("released by {worker}; waiting for another worker")
                }
                EventKind::CancelRequested => "cancel requested".into(),
                _ => return,
            };
            eprintln!("{id}: {text}");
        })
        .await?;
    let Some(record) = record else {
        bail!("{id} did not finish within {} s", timeout.as_secs());
    };
    if record.state != JobState::Succeeded {
        let error = record
            .error
            .clone()
            .unwrap_or_else(|| record.state.to_string());
        if json {
            outln!(
                "{}",
                json!({ "id": id, "state": record.state, "error": error })
            );
        }
        eprintln!("error: job {id} ended {}: {error}", record.state);
        return Ok(ExitCode::from(1));
    }
    let mut written = None;
    if let Some(Output { path, keep }) = &out {
        let audio = queue.result(id).await?.with_context(|| {
            format!(
                "job {id} succeeded but its result {} has expired",
                queue.keys().result(id)
            )
        })?;
        if let (Some(meta), Some(wanted)) = (&record.result, AudioFormat::from_path(path))
            && meta.format != wanted
        {
            eprintln!(
                "warning: {} asks for {} but the job stored {}; writing the bytes as stored",
                path.display(),
                wanted.as_str(),
                meta.format.as_str()
            );
        }
        std::fs::write(path, &audio).with_context(|| format!("writing {}", path.display()))?;
        written = Some(audio.len());
        // Delivered: Redis keeps audio only until someone has it.
        if !keep {
            queue.forget_result(id).await?;
        }
    }
    let out = out.map(|o| o.path);
    let title = record
        .result
        .as_ref()
        .map(|m| m.title.clone())
        .unwrap_or_default();
    let text = match (&out, written) {
        (Some(path), Some(n)) => format!(
            "{id}: succeeded \"{title}\" → {} ({})",
            path.display(),
            bytes(n as u64)
        ),
        _ => format!("{id}: succeeded \"{title}\""),
    };
    print_out(
        json,
        &json!({ "id": id, "state": record.state, "out": out, "bytes": written, "result": record.result }),
        &text,
    );
    Ok(ExitCode::SUCCESS)
}

async fn retry(queue: &Queue, id: Option<JobId>, all_dead: bool, json: bool) -> anyhow::Result<()> {
    if all_dead {
        let (retried, skipped) = queue.retry_all_dead().await?;
        if json {
            let skipped: Vec<_> = skipped
                .iter()
                .map(|(d, why)| json!({ "entry": d.entry, "job": d.job, "reason": why }))
                .collect();
            outln!("{}", json!({ "retried": retried, "skipped": skipped }));
        } else {
            outln!("retried {} jobs", retried.len());
            for (d, why) in skipped {
                outln!("skipped dead letter {}: {why}", d.entry);
            }
        }
        return Ok(());
    }
    let Some(id) = id else {
        bail!("give a job id or --all-dead");
    };
    queue.retry(&id).await?;
    print_out(
        json,
        &json!({ "retried": [id] }),
        &format!("{id}: queued again"),
    );
    Ok(())
}

async fn dead(queue: &Queue, json: bool) -> anyhow::Result<()> {
    let letters = queue.dead_letters().await?;
    if json {
        outln!("{}", serde_json::to_string(&letters)?);
        return Ok(());
    }
    let mut table = Table::new(&["ENTRY", "JOB", "ATTEMPTS", "FAILED", "ERROR"]);
    for d in letters {
        table.row(vec![
            d.entry,
            d.job
                .map_or_else(|| "(malformed)".into(), |j| j.to_string()),
            d.attempts.map_or_else(|| "-".into(), |a| a.to_string()),
            d.failed_ms.map_or_else(|| "-".into(), utc),
            truncate(&d.error, 80),
        ]);
    }
    out!("{}", table.render());
    Ok(())
}
