//! What users read: now-playing embeds, progress lines, the queue, settings and stats.

use std::fmt::Write as _;
use std::time::Duration;

use radio_shared::job::JobId;
use radio_shared::queue::EventKind;
use radio_shared::station::{
    PlaybackStatus, StationSettings, StationState, StationStats, StationTrack, TrackSource,
};
use twilight_model::channel::message::Embed;
use twilight_util::builder::embed::{EmbedBuilder, EmbedFieldBuilder, EmbedFooterBuilder};

/// The accent colour of the bot's embeds.
const COLOUR: u32 = 0x5865F2;
/// Lyrics lines shown in a now-playing embed.
const LYRICS_LINES: usize = 8;

/// `1:05`.
pub fn clock(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    format!("{}:{:02}", total / 60, total % 60)
}

/// `2 h 03 min`, `4 min 10 s`.
pub fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A track's title, or a placeholder while it has none.
pub fn title(track: &StationTrack) -> String {
    track
        .meta
        .as_ref()
        .map(|m| m.title.trim())
        .filter(|t| !t.is_empty())
        .map_or_else(|| "Untitled".to_string(), str::to_string)
}

/// The now-playing embed: title, caption, a lyrics excerpt, duration, generation time and worker.
pub fn now_playing(track: &StationTrack) -> Embed {
    let mut embed = EmbedBuilder::new()
        .color(COLOUR)
        .title(cut(&title(track), 256));
    if let Some(meta) = &track.meta {
        if !meta.caption.trim().is_empty() {
            embed = embed.description(cut(meta.caption.trim(), 1000));
        }
        let excerpt: Vec<&str> = meta
            .lyrics
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(LYRICS_LINES)
            .collect();
        if !excerpt.is_empty() {
            embed = embed.field(EmbedFieldBuilder::new(
                "Lyrics",
                cut(&excerpt.join("\n"), 1000),
            ));
        }
        embed = embed
            .field(EmbedFieldBuilder::new("Duration", clock(f64::from(meta.duration_s))).inline())
            .field(
                EmbedFieldBuilder::new(
                    "Generated in",
                    format!(
                        "{:.1} s ({:.1}× real time)",
                        meta.total_seconds,
                        meta.realtime_factor()
                    ),
                )
                .inline(),
            )
            .field(EmbedFieldBuilder::new("Worker", cut(&meta.worker, 100)).inline());
        let mut details = Vec::new();
        if let Some(bpm) = meta.bpm {
            details.push(format!("{bpm} BPM"));
        }
        if let Some(key) = &meta.keyscale {
            details.push(key.clone());
        }
        details.push(format!("seed {}", meta.seed));
        embed = embed.footer(EmbedFooterBuilder::new(details.join(" · ")));
    }
    if let Some(user) = &track.requested_by
        && track.source == TrackSource::Request
    {
        embed = embed.field(EmbedFieldBuilder::new("Requested by", format!("<@{user}>")).inline());
    }
    embed.build()
}

/// The line a progress message shows for a job event, `None` for events that change nothing.
pub fn progress_line(kind: &EventKind) -> Option<String> {
    Some(match kind {
        EventKind::Queued { position } => queued_line(position.unwrap_or(0)),
        EventKind::Started { attempt, .. } if *attempt > 1 => {
            format!("🎼 Generating (attempt {attempt})…")
        }
        EventKind::Started { .. } => "🎼 A worker picked it up…".to_string(),
        EventKind::Progress(p) => format!(
            "🎼 {} — {:.0}%",
            capitalise(p.stage.describe()),
            (p.fraction.clamp(0.0, 1.0) * 100.0)
        ),
        EventKind::Succeeded(_) => "✅ Generated — it plays next in line.".to_string(),
        EventKind::Retrying {
            attempt,
            max_attempts,
            error,
            ..
        } => format!(
            "🔁 Attempt {attempt}/{max_attempts} failed ({}); trying again…",
            cut(error, 200)
        ),
        EventKind::Failed { error } => format!("❌ Generation failed: {}", cut(error, 300)),
        EventKind::Cancelled => "⏹️ Cancelled.".to_string(),
        EventKind::Released { .. } => "🔁 Its worker stopped; another one takes over…".to_string(),
        EventKind::CancelRequested | EventKind::Other(_) => return None,
    })
}

/// "Queued — 2 songs ahead".
pub fn queued_line(position: u64) -> String {
    match position {
        0 => "⏳ Queued — next for a worker.".to_string(),
        1 => "⏳ Queued — 1 song ahead.".to_string(),
        n => format!("⏳ Queued — {n} songs ahead."),
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `/radio queue`.
pub fn queue(
    state: &StationState,
    progress: &std::collections::HashMap<JobId, String>,
    buffer_size: usize,
) -> String {
    let mut out = String::new();
    match &state.now_playing {
        Some(track) => {
            let _ = writeln!(out, "**Now playing:** {}", title(track));
        }
        None => {
            let _ = writeln!(out, "**Now playing:** nothing");
        }
    }
    if state.ready.is_empty() {
        let _ = writeln!(out, "**Up next:** nothing ready yet");
    } else {
        let _ = writeln!(out, "**Up next:**");
        for (i, track) in state.ready.iter().enumerate().take(15) {
            let who = match (&track.source, &track.requested_by) {
                (TrackSource::Request, Some(user)) => format!(" — requested by <@{user}>"),
                _ => String::new(),
            };
            let _ = writeln!(out, "{}. {}{who}", i + 1, title(track));
        }
    }
    if !state.generating.is_empty() {
        let _ = writeln!(out, "**Being generated:**");
        for track in state.generating.iter().take(15) {
            let kind = match track.source {
                TrackSource::Radio => "radio",
                TrackSource::Request => "request",
            };
            let line = progress
                .get(&track.job)
                .cloned()
                .unwrap_or_else(|| "waiting".into());
            let _ = writeln!(out, "• {kind}: {line}");
        }
    }
    let _ = write!(
        out,
        "\nStatus: {}. Buffer: {} of {} track(s) ahead.",
        status(state.status),
        state.ready.len() + state.generating.len(),
        buffer_size
    );
    out
}

/// "playing", "paused", "stopped".
pub fn status(status: PlaybackStatus) -> &'static str {
    match status {
        PlaybackStatus::Stopped => "stopped",
        PlaybackStatus::Playing => "playing",
        PlaybackStatus::Paused => "paused",
    }
}

/// `/radio settings`.
pub fn settings(settings: &StationSettings, state: &StationState, max_length_max: f32) -> Embed {
    let music = &settings.music;
    let language = if music.instrumental {
        "instrumental".to_string()
    } else {
        music.language.clone()
    };
    let or_none = |s: &str| {
        if s.trim().is_empty() {
            "—".to_string()
        } else {
            cut(s, 200)
        }
    };
    let mut embed = EmbedBuilder::new()
        .color(COLOUR)
        .title("Station settings")
        .field(EmbedFieldBuilder::new("Genre", or_none(&music.genre)).inline())
        .field(EmbedFieldBuilder::new("Theme", or_none(&music.theme)).inline())
        .field(EmbedFieldBuilder::new("Style", or_none(&music.style)).inline())
        .field(EmbedFieldBuilder::new("Language", language).inline())
        .field(
            EmbedFieldBuilder::new("Track length", format!("{:.0} s", settings.duration_s))
                .inline(),
        )
        .field(
            EmbedFieldBuilder::new(
                "Max length",
                match settings.max_length_s {
                    Some(m) => format!("{m:.0} s"),
                    None => format!("{max_length_max:.0} s (default)"),
                },
            )
            .inline(),
        )
        .field(
            EmbedFieldBuilder::new("Radio mode", if settings.auto { "on" } else { "off" }).inline(),
        )
        .field(EmbedFieldBuilder::new("Status", status(state.status)).inline());
    if let Some(channel) = &state.voice_channel {
        embed =
            embed.field(EmbedFieldBuilder::new("Voice channel", format!("<#{channel}>")).inline());
    }
    if let Some(preset) = &settings.preset {
        embed = embed.footer(EmbedFooterBuilder::new(format!("Preset: {preset}")));
    }
    embed.build()
}

/// Inputs of the stats embed besides the counters.
#[derive(Debug, Clone)]
pub struct StatsContext {
    /// This guild's tracks ahead of playback.
    pub guild_queue: usize,
    /// Jobs waiting for a worker, all guilds.
    pub global_waiting: Option<u64>,
    /// Workers online.
    pub workers: usize,
    /// Bot uptime.
    pub uptime: Duration,
}

fn stats_block(stats: &StationStats) -> String {
    let seconds = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |s| format!("{s:.1} s"));
    format!(
        "Played: **{}** ({} radio, {} requested)\nGenerated: **{}** ({} radio, {} requested)\n\
         Generation time: avg {}, p95 {}\nReal-time factor: {}\nErrors: {}",
        stats.played,
        stats.played_radio,
        stats.played_request,
        stats.generated,
        stats.generated_radio,
        stats.generated_request,
        seconds(stats.mean_generation_s()),
        seconds(stats.p95_generation_s()),
        stats
            .realtime_factor()
            .map_or_else(|| "—".to_string(), |r| format!("{r:.2}×")),
        stats.errors,
    )
}

/// `/radio stats`.
pub fn stats(guild: &StationStats, global: &StationStats, ctx: &StatsContext) -> Embed {
    EmbedBuilder::new()
        .color(COLOUR)
        .title("Radio stats")
        .field(EmbedFieldBuilder::new("This server", stats_block(guild)))
        .field(EmbedFieldBuilder::new("All servers", stats_block(global)))
        .field(
            EmbedFieldBuilder::new(
                "Queue",
                format!(
                    "{} track(s) ahead here; {} job(s) waiting for a worker overall",
                    ctx.guild_queue,
                    ctx.global_waiting
                        .map_or_else(|| "?".to_string(), |n| n.to_string())
                ),
            )
            .inline(),
        )
        .field(EmbedFieldBuilder::new("Workers online", ctx.workers.to_string()).inline())
        .field(EmbedFieldBuilder::new("Bot uptime", uptime(ctx.uptime)).inline())
        .build()
}

/// `/radio help`.
pub fn help(dj_role: Option<&str>) -> String {
    let who = match dj_role {
        Some(role) => format!("members with Manage Server or the `{role}` role"),
        None => "members with Manage Server".to_string(),
    };
    format!(
        "**Ace Radio** — AI-generated music, non-stop.\n\
         **Station** (for {who}):\n\
         `/radio play` start the station in your voice channel (genre, theme, language, duration)\n\
         `/radio join` join your voice channel · `/radio leave` stop and leave\n\
         `/radio skip` · `/radio pause` · `/radio resume` · `/radio stop`\n\
         `/radio genre` · `/radio theme` · `/radio style` · `/radio language` · `/radio preset`\n\
         `/radio maxlength` longest track for this server · `/radio auto` radio mode on/off\n\
         **Everyone:**\n\
         `/radio generate` one song from your prompt (and lyrics), played next\n\
         `/radio nowplaying` · `/radio queue` · `/radio settings` · `/radio stats` · `/radio upload` (current track as a file)\n\
         In radio mode the bot keeps a few tracks generated ahead, so the music never stops."
    )
}
