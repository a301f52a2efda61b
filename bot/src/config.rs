//! The bot's settings, read from the environment (and `.env`). Every error names the setting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use radio_shared::config::{ConfigError, Env};
use radio_shared::job::{MAX_DURATION_S, MIN_DURATION_S};
use radio_shared::queue::RequestLimit;
use secrecy::SecretString;

/// The default number of tracks kept generated ahead of the one playing.
pub const DEFAULT_BUFFER_SIZE: usize = 2;
/// The default address of `/metrics` and `/healthz`.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9401";
/// The default track length of a new station, seconds.
pub const DEFAULT_DURATION_S: f32 = 60.0;
/// The default upper bound of `/radio maxlength`, seconds.
pub const DEFAULT_MAX_LENGTH_MAX_S: f32 = 300.0;
/// The most tracks a station may keep ahead of playback.
pub const MAX_BUFFER_SIZE: usize = 8;
/// The default size limit of the track cache, MiB.
pub const DEFAULT_CACHE_MAX_MB: u64 = 1024;

/// Everything the bot needs besides Redis (which `main` connects and hands to [`crate::run`]).
#[derive(Debug, Clone)]
pub struct BotConfig {
    /// The bot token (`DISCORD_TOKEN`). Never logged.
    pub token: SecretString,
    /// Register the commands in this guild only (`DISCORD_GUILD_ID`): they appear at once, which is
    /// what development wants; global commands can take a while to show up.
    pub guild_id: Option<u64>,
    /// Members with this role (a name, or a role id) may change the station without Manage Server
    /// (`DJ_ROLE`).
    pub dj_role: Option<String>,
    /// Tracks kept generated ahead of the one playing (`BUFFER_SIZE`).
    pub buffer_size: usize,
    /// Where `/metrics` and `/healthz` listen (`BOT_METRICS_ADDR`); `main` binds it.
    pub metrics_addr: SocketAddr,
    /// `host:port` of a plain-HTTP Discord REST proxy, e.g. twilight-http-proxy (`DISCORD_API_PROXY`).
    pub api_proxy: Option<String>,
    /// A `ws://` or `wss://` gateway URL to use instead of Discord's (`DISCORD_GATEWAY_URL`).
    pub gateway_url: Option<String>,
    /// Track length of a new station, seconds (`DEFAULT_DURATION`).
    pub default_duration_s: f32,
    /// The largest value `/radio maxlength` accepts, seconds (`MAX_LENGTH_MAX`).
    pub max_length_max_s: f32,
    /// Where the audio of playing and queued tracks is kept once taken out of Redis
    /// (`BOT_CACHE_DIR`).
    pub cache_dir: PathBuf,
    /// The most the track cache holds before the oldest tracks go (`BOT_CACHE_MAX_MB`).
    pub cache_max_bytes: u64,
    /// Song requests (`/radio generate`) one member may make per window (`USER_REQUEST_LIMIT` per
    /// `USER_REQUEST_WINDOW_SECS`; a limit of 0 turns it off).
    pub request_limit: RequestLimit,
}

/// Song requests per member per window unless `USER_REQUEST_LIMIT` says.
pub const DEFAULT_USER_REQUEST_LIMIT: u32 = 10;
/// The window of the per-member limit unless `USER_REQUEST_WINDOW_SECS` says.
pub const DEFAULT_USER_REQUEST_WINDOW: Duration = Duration::from_secs(3600);

/// `$XDG_CACHE_HOME/ace-radio/tracks`, else `~/.cache/ace-radio/tracks`, else under the temp folder.
pub fn default_cache_dir() -> PathBuf {
    let env = Env;
    env.raw("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env.raw("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("ace-radio")
        .join("tracks")
}

impl BotConfig {
    /// A configuration with defaults and the given token (tests, tools).
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: SecretString::from(token.into()),
            guild_id: None,
            dj_role: None,
            buffer_size: DEFAULT_BUFFER_SIZE,
            metrics_addr: DEFAULT_METRICS_ADDR
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 9401))),
            api_proxy: None,
            gateway_url: None,
            default_duration_s: DEFAULT_DURATION_S,
            max_length_max_s: DEFAULT_MAX_LENGTH_MAX_S,
            cache_dir: default_cache_dir(),
            cache_max_bytes: DEFAULT_CACHE_MAX_MB * 1024 * 1024,
            request_limit: RequestLimit {
                limit: DEFAULT_USER_REQUEST_LIMIT,
                window: DEFAULT_USER_REQUEST_WINDOW,
            },
        }
    }

    /// Reads every setting; see the README for the list.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let err = |name: &str, value: String, expected: &str| ConfigError {
            name: name.into(),
            value,
            expected: expected.into(),
        };
        let token = env.raw("DISCORD_TOKEN").ok_or_else(|| {
            err(
                "DISCORD_TOKEN",
                String::new(),
                "the bot token from https://discord.com/developers/applications (your app → Bot → Reset Token); \
                 put it in the environment or in .env",
            )
        })?;
        let mut config = Self::new(token.trim());
        config.guild_id = match env.raw("DISCORD_GUILD_ID") {
            None => None,
            Some(v) => Some(v.trim().parse::<u64>().ok().filter(|id| *id > 0).ok_or_else(|| {
                err(
                    "DISCORD_GUILD_ID",
                    v.clone(),
                    "a server id (right-click the server with Developer Mode on → Copy Server ID)",
                )
            })?),
        };
        config.dj_role = env.raw("DJ_ROLE").map(|r| r.trim().to_string());
        config.buffer_size = env.parse(
            "BUFFER_SIZE",
            DEFAULT_BUFFER_SIZE,
            "a whole number of tracks from 0 to 8",
        )?;
        if config.buffer_size > MAX_BUFFER_SIZE {
            return Err(err(
                "BUFFER_SIZE",
                config.buffer_size.to_string(),
                "a whole number of tracks from 0 to 8",
            ));
        }
        config.metrics_addr = env.parse(
            "BOT_METRICS_ADDR",
            config.metrics_addr,
            "an address like 0.0.0.0:9401",
        )?;
        config.api_proxy = env.raw("DISCORD_API_PROXY").map(|p| p.trim().to_string());
        if let Some(proxy) = &config.api_proxy
            && (proxy.contains("://") || !proxy.contains(':'))
        {
            return Err(err(
                "DISCORD_API_PROXY",
                proxy.clone(),
                "host:port of a plain-HTTP REST proxy, without a scheme (e.g. http-proxy:80)",
            ));
        }
        config.gateway_url = env.raw("DISCORD_GATEWAY_URL").map(|u| u.trim().to_string());
        if let Some(url) = &config.gateway_url
            && !(url.starts_with("ws://") || url.starts_with("wss://"))
        {
            return Err(err(
                "DISCORD_GATEWAY_URL",
                url.clone(),
                "a ws:// or wss:// URL",
            ));
        }
        let range = format!("a number of seconds from {MIN_DURATION_S} to {MAX_DURATION_S}");
        config.max_length_max_s = env.parse("MAX_LENGTH_MAX", DEFAULT_MAX_LENGTH_MAX_S, &range)?;
        if !(MIN_DURATION_S..=MAX_DURATION_S).contains(&config.max_length_max_s) {
            return Err(err(
                "MAX_LENGTH_MAX",
                config.max_length_max_s.to_string(),
                &range,
            ));
        }
        let default_range = format!(
            "a number of seconds from {MIN_DURATION_S} to MAX_LENGTH_MAX ({})",
            config.max_length_max_s
        );
        config.default_duration_s = env.parse(
            "DEFAULT_DURATION",
            DEFAULT_DURATION_S.min(config.max_length_max_s),
            &default_range,
        )?;
        if !(MIN_DURATION_S..=config.max_length_max_s).contains(&config.default_duration_s) {
            return Err(err(
                "DEFAULT_DURATION",
                config.default_duration_s.to_string(),
                &default_range,
            ));
        }
        config.request_limit.limit = env.parse(
            "USER_REQUEST_LIMIT",
            DEFAULT_USER_REQUEST_LIMIT,
            "a whole number of song requests per member per window (0: no limit)",
        )?;
        config.request_limit.window =
            env.seconds("USER_REQUEST_WINDOW_SECS", DEFAULT_USER_REQUEST_WINDOW)?;
        if config.request_limit.window.is_zero() {
            return Err(err(
                "USER_REQUEST_WINDOW_SECS",
                "0".into(),
                "a number of seconds above 0 (set USER_REQUEST_LIMIT=0 to turn the limit off)",
            ));
        }
        if let Some(dir) = env.raw("BOT_CACHE_DIR") {
            config.cache_dir = PathBuf::from(dir.trim());
        }
        let expected =
            "a size in MiB of at least 1 (room for the playing and queued tracks of every station)";
        let mb: u64 = env.parse("BOT_CACHE_MAX_MB", DEFAULT_CACHE_MAX_MB, expected)?;
        config.cache_max_bytes = mb
            .checked_mul(1024 * 1024)
            .filter(|bytes| *bytes > 0)
            .ok_or_else(|| err("BOT_CACHE_MAX_MB", mb.to_string(), expected))?;
        Ok(config)
    }
}
