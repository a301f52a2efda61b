//! A fake Discord for the bot's tests: a gateway (WebSocket) and a REST API on local ports, reached
//! through the bot's `DISCORD_GATEWAY_URL` and `DISCORD_API_PROXY` settings (DESIGN §9).
//!
//! The gateway answers HELLO, heartbeats and IDENTIFY (READY, then GUILD_CREATE for every guild of
//! the [`World`]), and answers a voice state update (op 4) the way Discord does: VOICE_STATE_UPDATE
//! for the bot, plus VOICE_SERVER_UPDATE when it joins a channel. Tests push INTERACTION_CREATE with
//! [`FakeDiscord::command`]. The REST API records every request and answers what twilight expects.
//! The voice connection itself (WebSocket + UDP to the voice server) is not faked.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Discord permission bits the tests use.
pub mod perms {
    /// Administrator.
    pub const ADMINISTRATOR: u64 = 1 << 3;
    /// Manage Server.
    pub const MANAGE_GUILD: u64 = 1 << 5;
    /// View Channel.
    pub const VIEW_CHANNEL: u64 = 1 << 10;
    /// Send Messages.
    pub const SEND_MESSAGES: u64 = 1 << 11;
    /// Connect (voice).
    pub const CONNECT: u64 = 1 << 20;
    /// Speak (voice).
    pub const SPEAK: u64 = 1 << 21;
    /// Use Application Commands.
    pub const USE_APPLICATION_COMMANDS: u64 = 1 << 31;
    /// What `@everyone` has in the default world.
    pub const EVERYONE: u64 =
        VIEW_CHANNEL | SEND_MESSAGES | CONNECT | SPEAK | USE_APPLICATION_COMMANDS;
}

/// A role.
#[derive(Debug, Clone)]
pub struct FakeRole {
    /// Id (the `@everyone` role has the guild's id).
    pub id: u64,
    /// Name.
    pub name: String,
    /// Permission bits.
    pub permissions: u64,
}

/// A channel.
#[derive(Debug, Clone)]
pub struct FakeChannel {
    /// Id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// A voice channel (type 2) or a text channel (type 0).
    pub voice: bool,
    /// Permission overwrites: (role or member id, 0 = role / 1 = member, allow, deny).
    pub overwrites: Vec<(u64, u8, u64, u64)>,
}

/// A guild.
#[derive(Debug, Clone)]
pub struct FakeGuild {
    /// Id.
    pub id: u64,
    /// The owner (never one of the test users).
    pub owner: u64,
    /// Roles, `@everyone` first.
    pub roles: Vec<FakeRole>,
    /// Channels.
    pub channels: Vec<FakeChannel>,
    /// Users sitting in voice channels: (user, channel).
    pub voice_states: Vec<(u64, u64)>,
    /// The bot member's roles.
    pub bot_roles: Vec<u64>,
}

/// Everything the fake knows.
#[derive(Debug, Clone)]
pub struct World {
    /// The bot's user id.
    pub bot: u64,
    /// The application id.
    pub application: u64,
    /// Guilds the bot is in.
    pub guilds: Vec<FakeGuild>,
}

/// Ids of the default world, so tests read as sentences.
pub mod ids {
    /// The guild.
    pub const GUILD: u64 = 100_000_000_000_000_001;
    /// A text channel.
    pub const TEXT: u64 = 100_000_000_000_001_001;
    /// A voice channel everyone may use.
    pub const VOICE: u64 = 100_000_000_000_002_001;
    /// A voice channel where `@everyone` may not connect (so the bot may not either).
    pub const LOCKED_VOICE: u64 = 100_000_000_000_002_002;
    /// A voice channel where `@everyone` may connect but not speak.
    pub const MUTED_VOICE: u64 = 100_000_000_000_002_003;
    /// The DJ role.
    pub const DJ_ROLE: u64 = 100_000_000_000_003_001;
    /// A user sitting in [`VOICE`].
    pub const LISTENER: u64 = 100_000_000_000_004_001;
    /// A user sitting in [`LOCKED_VOICE`].
    pub const LOCKED_LISTENER: u64 = 100_000_000_000_004_002;
    /// A user sitting in [`MUTED_VOICE`].
    pub const MUTED_LISTENER: u64 = 100_000_000_000_004_004;
    /// A user in no voice channel.
    pub const NOT_IN_VOICE: u64 = 100_000_000_000_004_003;
    /// The bot.
    pub const BOT: u64 = 100_000_000_000_009_001;
    /// The application.
    pub const APPLICATION: u64 = 100_000_000_000_009_002;
    /// The guild's owner.
    pub const OWNER: u64 = 100_000_000_000_009_003;
}

impl World {
    /// One guild with a text channel, an open, a locked and a muted voice channel, a `DJ` role, a
    /// listener in each voice channel and a user in none.
    pub fn default_guild() -> Self {
        Self {
            bot: ids::BOT,
            application: ids::APPLICATION,
            guilds: vec![Self::guild(ids::GUILD)],
        }
    }

    /// `n` guilds shaped like the default one (ids `GUILD`, `GUILD + 1`, …; same channel ids).
    pub fn guilds(n: u64) -> Self {
        Self {
            bot: ids::BOT,
            application: ids::APPLICATION,
            guilds: (0..n).map(|i| Self::guild(ids::GUILD + i)).collect(),
        }
    }

    fn guild(id: u64) -> FakeGuild {
        FakeGuild {
            id,
            owner: ids::OWNER,
            roles: vec![
                FakeRole {
                    id,
                    name: "@everyone".into(),
                    permissions: perms::EVERYONE,
                },
                FakeRole {
                    id: ids::DJ_ROLE,
                    name: "DJ".into(),
                    permissions: 0,
                },
            ],
            channels: vec![
                FakeChannel {
                    id: ids::TEXT,
                    name: "general".into(),
                    voice: false,
                    overwrites: Vec::new(),
                },
                FakeChannel {
                    id: ids::VOICE,
                    name: "Radio".into(),
                    voice: true,
                    overwrites: Vec::new(),
                },
                FakeChannel {
                    id: ids::LOCKED_VOICE,
                    name: "Private".into(),
                    voice: true,
                    overwrites: vec![(id, 0, 0, perms::CONNECT)],
                },
                FakeChannel {
                    id: ids::MUTED_VOICE,
                    name: "Quiet".into(),
                    voice: true,
                    overwrites: vec![(id, 0, 0, perms::SPEAK)],
                },
            ],
            voice_states: vec![
                (ids::LISTENER, ids::VOICE),
                (ids::LOCKED_LISTENER, ids::LOCKED_VOICE),
                (ids::MUTED_LISTENER, ids::MUTED_VOICE),
            ],
            bot_roles: Vec::new(),
        }
    }
}

/// A member running a command.
#[derive(Debug, Clone)]
pub struct Member {
    /// User id.
    pub user: u64,
    /// Their permissions in the channel (what Discord puts in `member.permissions`).
    pub permissions: u64,
    /// Their roles.
    pub roles: Vec<u64>,
}

impl Member {
    /// A member with Manage Server.
    pub fn manager(user: u64) -> Self {
        Self {
            user,
            permissions: perms::EVERYONE | perms::MANAGE_GUILD,
            roles: Vec::new(),
        }
    }

    /// A member with the `DJ` role and no Manage Server.
    pub fn dj(user: u64) -> Self {
        Self {
            user,
            permissions: perms::EVERYONE,
            roles: vec![ids::DJ_ROLE],
        }
    }

    /// A member with neither.
    pub fn listener(user: u64) -> Self {
        Self {
            user,
            permissions: perms::EVERYONE,
            roles: Vec::new(),
        }
    }
}

/// A REST request the bot made.
#[derive(Debug, Clone)]
pub struct RestRequest {
    /// `GET`, `POST`, ….
    pub method: String,
    /// Path without the query, e.g. `/api/v10/interactions/1/t/callback`.
    pub path: String,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl RestRequest {
    /// The JSON payload: the body, or the `payload_json` part of a multipart body.
    pub fn json(&self) -> Option<Value> {
        if self.content_type.starts_with("multipart/") {
            let text = String::from_utf8_lossy(&self.body);
            let start = text.find("name=\"payload_json\"")?;
            let rest = &text[start..];
            let body_start = rest.find("\r\n\r\n")? + 4;
            let body = &rest[body_start..];
            let end = body.find("\r\n--").unwrap_or(body.len());
            serde_json::from_str(&body[..end]).ok()
        } else {
            serde_json::from_slice(&self.body).ok()
        }
    }

    /// Whether the multipart body carries a file called `name`.
    pub fn has_file(&self, name: &str) -> bool {
        String::from_utf8_lossy(&self.body).contains(&format!("filename=\"{name}\""))
    }
}

/// An interaction the test sent.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Its id.
    pub id: u64,
    /// Its token.
    pub token: String,
    /// When it was sent.
    pub at: Instant,
}

#[derive(Debug, Default)]
struct Shared {
    world: Mutex<Option<World>>,
    requests: Mutex<Vec<RestRequest>>,
    voice_updates: Mutex<Vec<Value>>,
    session: Mutex<Option<mpsc::UnboundedSender<String>>>,
    sessions_started: AtomicU64,
    identified: AtomicU64,
    changed: Notify,
    next_id: AtomicU64,
    /// Close code sent in answer to IDENTIFY instead of READY (e.g. 4004, authentication failed).
    reject_identify: Mutex<Option<u16>>,
}

impl Shared {
    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The fake: both servers run until it is dropped.
#[derive(Debug)]
pub struct FakeDiscord {
    gateway: SocketAddr,
    rest: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FakeDiscord {
    /// Starts both servers on free ports.
    pub async fn start(world: World) -> Self {
        let gateway_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind the fake gateway: {e}"));
        let rest_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind the fake REST API: {e}"));
        let gateway = gateway_listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"));
        let rest = rest_listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(500_000_000_000_000_000),
            ..Shared::default()
        });
        *Shared::lock(&shared.world) = Some(world);
        let tasks = vec![
            tokio::spawn(serve_gateway(gateway_listener, shared.clone(), gateway)),
            tokio::spawn(serve_rest(rest_listener, shared.clone())),
        ];
        Self {
            gateway,
            rest,
            shared,
            tasks,
        }
    }

    /// Answers the next IDENTIFY with a close frame carrying `code` (4004: authentication failed).
    pub fn reject_identify(&self, code: u16) {
        *Shared::lock(&self.shared.reject_identify) = Some(code);
    }

    /// The value for `DISCORD_GATEWAY_URL`.
    pub fn gateway_url(&self) -> String {
        format!("ws://{}", self.gateway)
    }

    /// The value for `DISCORD_API_PROXY`.
    pub fn api_proxy(&self) -> String {
        self.rest.to_string()
    }

    /// The world (with voice states as they are now).
    pub fn world(&self) -> World {
        Shared::lock(&self.shared.world)
            .clone()
            .unwrap_or_else(World::default_guild)
    }

    /// Waits until a bot identified on the gateway (the `n`-th time).
    pub async fn wait_identified(&self, n: u64, timeout: Duration) {
        self.wait(timeout, &format!("gateway IDENTIFY #{n}"), || {
            (self.shared.identified.load(Ordering::SeqCst) >= n).then_some(())
        })
        .await;
    }

    /// How many gateway connections were opened.
    pub fn connections(&self) -> u64 {
        self.shared.sessions_started.load(Ordering::SeqCst)
    }

    /// Sends a dispatch event to the connected bot.
    pub fn dispatch(&self, event: &str, data: Value) {
        let session = Shared::lock(&self.shared.session).clone();
        let session = session.unwrap_or_else(|| panic!("no bot is connected to the fake gateway"));
        // The sequence number is filled in by the session task.
        let _ = session.send(json!({"op": 0, "t": event, "d": data}).to_string());
    }

    fn next_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// Runs `/radio <sub>` with `options` (a JSON array of `{name, type, value}`) in `guild`'s text
    /// channel as `member`.
    pub fn command(&self, guild: u64, member: &Member, sub: &str, options: Value) -> Sent {
        self.interaction(2, guild, member, sub, options)
    }

    /// An autocomplete request for `/radio <sub>`; one option should carry `"focused": true`.
    pub fn autocomplete(&self, guild: u64, member: &Member, sub: &str, options: Value) -> Sent {
        self.interaction(4, guild, member, sub, options)
    }

    fn interaction(
        &self,
        kind: u8,
        guild: u64,
        member: &Member,
        sub: &str,
        options: Value,
    ) -> Sent {
        let id = self.next_id();
        let token = format!("token-{id}");
        let world = self.world();
        let data = json!({
            "id": id.to_string(),
            "application_id": world.application.to_string(),
            "type": kind,
            "token": token,
            "version": 1,
            "guild_id": guild.to_string(),
            "channel_id": ids::TEXT.to_string(),
            "channel": {"id": ids::TEXT.to_string(), "type": 0, "guild_id": guild.to_string(), "name": "general"},
            "member": {
                "user": user_json(member.user, false),
                "roles": member.roles.iter().map(u64::to_string).collect::<Vec<_>>(),
                "permissions": member.permissions.to_string(),
                "deaf": false,
                "mute": false,
                "flags": 0,
                "joined_at": "2024-01-01T00:00:00.000000+00:00",
            },
            "data": {
                "id": "200000000000000001",
                "name": "radio",
                "type": 1,
                "options": [{"name": sub, "type": 1, "options": options}],
            },
            "app_permissions": perms::EVERYONE.to_string(),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": guild.to_string()},
            "context": 0,
        });
        let at = Instant::now();
        self.dispatch("INTERACTION_CREATE", data);
        Sent { id, token, at }
    }

    /// Every REST request so far.
    pub fn requests(&self) -> Vec<RestRequest> {
        Shared::lock(&self.shared.requests).clone()
    }

    /// The requests about one interaction (its token is in the path).
    pub fn requests_for(&self, sent: &Sent) -> Vec<RestRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.contains(&format!("/{}", sent.token)))
            .collect()
    }

    /// The op-4 voice state updates the bot sent.
    pub fn voice_updates(&self) -> Vec<Value> {
        Shared::lock(&self.shared.voice_updates).clone()
    }

    /// Polls `check` until it returns something (woken by every request and gateway message).
    pub async fn wait<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if let Some(value) = check() {
                return value;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            let _ = tokio::time::timeout(
                Duration::from_millis(50).min(deadline - Instant::now()),
                notified,
            )
            .await;
        }
    }

    /// Waits for the interaction's initial response (the callback) and returns its JSON.
    pub async fn callback(&self, sent: &Sent, timeout: Duration) -> (RestRequest, Value) {
        self.wait(timeout, "the interaction callback", || {
            self.requests_for(sent)
                .into_iter()
                .find(|r| r.method == "POST" && r.path.ends_with("/callback"))
                .and_then(|r| r.json().map(|j| (r, j)))
        })
        .await
    }

    /// The edits of the interaction's original response so far, as JSON.
    pub fn edits(&self, sent: &Sent) -> Vec<(RestRequest, Value)> {
        self.requests_for(sent)
            .into_iter()
            .filter(|r| r.method == "PATCH" && r.path.ends_with("/messages/@original"))
            .filter_map(|r| r.json().map(|j| (r, j)))
            .collect()
    }

    /// Waits for the text the user alone sees: an ephemeral first response, an edit of an ephemeral
    /// deferral, or an ephemeral follow-up.
    pub async fn ephemeral_text(&self, sent: &Sent, timeout: Duration) -> String {
        self.wait(timeout, "an ephemeral answer", || {
            let requests = self.requests_for(sent);
            let mut deferred_ephemeral = false;
            for r in &requests {
                let Some(j) = r.json() else { continue };
                let flags = |v: &Value| v["flags"].as_u64().unwrap_or(0) & 64 == 64;
                if r.path.ends_with("/callback") {
                    if j["type"] == 4 && flags(&j["data"]) {
                        return j["data"]["content"].as_str().map(str::to_string);
                    }
                    if j["type"] == 5 && flags(&j["data"]) {
                        deferred_ephemeral = true;
                    }
                } else if (r.method == "PATCH" && deferred_ephemeral)
                    || (r.method == "POST" && flags(&j))
                {
                    // An edit of an ephemeral deferral, or an ephemeral follow-up.
                    return j["content"].as_str().map(str::to_string);
                }
            }
            None
        })
        .await
    }
}

fn user_json(id: u64, bot: bool) -> Value {
    json!({
        "id": id.to_string(),
        "username": format!("user{}", id % 10_000),
        "discriminator": "0",
        "global_name": null,
        "avatar": null,
        "bot": bot,
    })
}

fn guild_json(guild: &FakeGuild, bot: u64) -> Value {
    let roles: Vec<Value> = guild
        .roles
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({
                "id": r.id.to_string(), "name": r.name, "color": 0,
                "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
                "hoist": false, "managed": false, "mentionable": false,
                "permissions": r.permissions.to_string(), "position": i, "flags": 0,
            })
        })
        .collect();
    let channels: Vec<Value> = guild
        .channels
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "id": c.id.to_string(), "type": if c.voice { 2 } else { 0 },
                "guild_id": guild.id.to_string(), "name": c.name, "position": i,
                "permission_overwrites": c.overwrites.iter().map(|(id, kind, allow, deny)| json!({
                    "id": id.to_string(), "type": kind, "allow": allow.to_string(), "deny": deny.to_string(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let voice_states: Vec<Value> = guild
        .voice_states
        .iter()
        .map(|(user, channel)| voice_state_json(guild.id, *user, Some(*channel), "user-session"))
        .collect();
    let mut value = json!({
        "id": guild.id.to_string(), "name": "Test Server", "owner_id": guild.owner.to_string(),
        "afk_channel_id": null, "afk_timeout": 300, "application_id": null, "banner": null,
        "default_message_notifications": 0, "description": null, "discovery_splash": null,
        "emojis": [], "explicit_content_filter": 0, "features": [], "icon": null,
        "joined_at": "2024-01-01T00:00:00.000000+00:00", "large": false, "member_count": 4,
        "mfa_level": 0, "nsfw_level": 0, "preferred_locale": "en-US",
    });
    let more = json!({
        "premium_progress_bar_enabled": false, "premium_tier": 0,
        "public_updates_channel_id": null, "rules_channel_id": null,
        "splash": null, "stickers": [], "system_channel_flags": 0, "system_channel_id": null,
        "vanity_url_code": null, "verification_level": 0, "unavailable": false,
        "threads": [], "presences": [],
    });
    let member = json!({
        "user": user_json(bot, true),
        "roles": guild.bot_roles.iter().map(u64::to_string).collect::<Vec<_>>(),
        "deaf": false, "mute": false, "flags": 0, "joined_at": "2024-01-01T00:00:00.000000+00:00",
    });
    if let (Some(target), Value::Object(more)) = (value.as_object_mut(), more) {
        target.extend(more);
        target.insert("roles".into(), Value::Array(roles));
        target.insert("channels".into(), Value::Array(channels));
        target.insert("voice_states".into(), Value::Array(voice_states));
        target.insert("members".into(), Value::Array(vec![member]));
    }
    value
}

fn voice_state_json(guild: u64, user: u64, channel: Option<u64>, session: &str) -> Value {
    json!({
        "guild_id": guild.to_string(),
        "channel_id": channel.map(|c| c.to_string()),
        "user_id": user.to_string(),
        "session_id": session,
        "deaf": false, "mute": false, "self_deaf": false, "self_mute": false,
        "self_video": false, "self_stream": false, "suppress": false,
        "request_to_speak_timestamp": null,
    })
}

async fn serve_gateway(listener: TcpListener, shared: Arc<Shared>, addr: SocketAddr) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(gateway_session(stream, shared.clone(), addr));
    }
}

async fn gateway_session(stream: TcpStream, shared: Arc<Shared>, addr: SocketAddr) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    shared.sessions_started.fetch_add(1, Ordering::SeqCst);
    let (mut sink, mut incoming) = ws.split();
    let (tx, mut outgoing) = mpsc::unbounded_channel::<String>();
    let mut seq = 0u64;
    let hello = json!({"op": 10, "d": {"heartbeat_interval": 41250}}).to_string();
    if sink.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            out = outgoing.recv() => {
                let Some(out) = out else { break };
                let mut payload: Value = match serde_json::from_str(&out) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                if payload["op"] == 0 {
                    seq += 1;
                    payload["s"] = json!(seq);
                }
                if sink.send(Message::Text(payload.to_string().into())).await.is_err() {
                    break;
                }
                shared.changed.notify_waiters();
            }
            message = incoming.next() => {
                let Some(Ok(message)) = message else { break };
                let text = match message {
                    Message::Text(text) => text.to_string(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Ok(payload) = serde_json::from_str::<Value>(&text) else { continue };
                match payload["op"].as_u64() {
                    Some(1) => {
                        let _ = tx.send(json!({"op": 11}).to_string());
                    }
                    Some(2) => {
                        let reject = Shared::lock(&shared.reject_identify).take();
                        if let Some(code) = reject {
                            use tokio_tungstenite::tungstenite::protocol::CloseFrame;
                            let frame = CloseFrame {
                                code: code.into(),
                                reason: "Authentication failed.".into(),
                            };
                            let _ = sink.send(Message::Close(Some(frame))).await;
                            break;
                        }
                        *Shared::lock(&shared.session) = Some(tx.clone());
                        let world = Shared::lock(&shared.world).clone();
                        let Some(world) = world else { continue };
                        let ready = json!({
                            "v": 10,
                            "user": {
                                "id": world.bot.to_string(), "username": "Ace Radio",
                                "discriminator": "0", "avatar": null, "bot": true,
                                "mfa_enabled": false, "verified": true, "flags": 0,
                            },
                            "guilds": world.guilds.iter().map(|g| json!({"id": g.id.to_string(), "unavailable": true})).collect::<Vec<_>>(),
                            "session_id": format!("session-{}", shared.sessions_started.load(Ordering::SeqCst)),
                            "resume_gateway_url": format!("ws://{addr}"),
                            "shard": [0, 1],
                            "application": {"id": world.application.to_string(), "flags": 0},
                        });
                        let _ = tx.send(json!({"op": 0, "t": "READY", "d": ready}).to_string());
                        for guild in &world.guilds {
                            let _ = tx.send(json!({"op": 0, "t": "GUILD_CREATE", "d": guild_json(guild, world.bot)}).to_string());
                        }
                        shared.identified.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(4) => {
                        let d = payload["d"].clone();
                        Shared::lock(&shared.voice_updates).push(d.clone());
                        let guild: u64 = d["guild_id"].as_str().and_then(|g| g.parse().ok()).unwrap_or(0);
                        let channel: Option<u64> = d["channel_id"].as_str().and_then(|c| c.parse().ok());
                        let bot = {
                            let mut world = Shared::lock(&shared.world);
                            let Some(world) = world.as_mut() else { continue };
                            if let Some(g) = world.guilds.iter_mut().find(|g| g.id == guild) {
                                g.voice_states.retain(|(u, _)| *u != world.bot);
                                if let Some(c) = channel {
                                    g.voice_states.push((world.bot, c));
                                }
                            }
                            world.bot
                        };
                        let state = voice_state_json(guild, bot, channel, "bot-voice-session");
                        let _ = tx.send(json!({"op": 0, "t": "VOICE_STATE_UPDATE", "d": state}).to_string());
                        if channel.is_some() {
                            let server = json!({"token": "voice-token", "guild_id": guild.to_string(), "endpoint": "127.0.0.1:9"});
                            let _ = tx.send(json!({"op": 0, "t": "VOICE_SERVER_UPDATE", "d": server}).to_string());
                        }
                    }
                    _ => {}
                }
                shared.changed.notify_waiters();
            }
        }
    }
    let mut session = Shared::lock(&shared.session);
    if session.as_ref().is_some_and(|s| s.same_channel(&tx)) {
        *session = None;
    }
}

async fn serve_rest(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(rest_connection(stream, shared.clone()));
    }
}

async fn rest_connection(stream: TcpStream, shared: Arc<Shared>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let path = target.split('?').next().unwrap_or_default().to_string();
        let request = RestRequest {
            method: method.clone(),
            path: path.clone(),
            content_type: headers.get("content-type").cloned().unwrap_or_default(),
            body,
            at: Instant::now(),
        };
        Shared::lock(&shared.requests).push(request);
        shared.changed.notify_waiters();
        let (status, body) = route(&method, &path);
        let response = if status == 204 {
            "HTTP/1.1 204 No Content\r\n\r\n".to_string()
        } else {
            format!(
                "HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        if reader
            .get_mut()
            .write_all(response.as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

fn route(method: &str, path: &str) -> (u16, String) {
    let message = json!({
        "id": "300000000000000001", "channel_id": ids::TEXT.to_string(), "content": "",
        "timestamp": "2024-01-01T00:00:00.000000+00:00", "edited_timestamp": null, "tts": false,
        "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [],
        "embeds": [], "pinned": false, "type": 0, "flags": 0,
        "author": user_json(ids::BOT, true),
    })
    .to_string();
    match method {
        "POST" if path.ends_with("/callback") => (204, String::new()),
        "DELETE" => (204, String::new()),
        "PUT" if path.ends_with("/commands") => (200, "[]".into()),
        "PATCH" | "POST" => (200, message),
        _ => (
            404,
            json!({"message": "Unknown route", "code": 0}).to_string(),
        ),
    }
}
