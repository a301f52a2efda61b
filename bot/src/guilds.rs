//! The little the bot remembers about its guilds from the gateway: roles, channels with their
//! permission overwrites, who sits in which voice channel, and the bot's own roles. Enough to tell a
//! user they are not in a voice channel, or that the bot may not speak in theirs, without a REST call.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use twilight_model::channel::ChannelType;
use twilight_model::channel::permission_overwrite::PermissionOverwrite;
use twilight_model::gateway::event::Event;
use twilight_model::gateway::payload::incoming::GuildCreate;
use twilight_model::guild::Permissions;
use twilight_model::id::Id;
use twilight_model::id::marker::{GuildMarker, UserMarker};
use twilight_util::permission_calculator::PermissionCalculator;

/// What the bot knows about one guild.
#[derive(Debug, Default, Clone)]
struct CachedGuild {
    owner: u64,
    /// Role id → (name, permissions). The `@everyone` role has the guild's id.
    roles: HashMap<u64, (String, Permissions)>,
    channels: HashMap<u64, CachedChannel>,
    /// User id → voice channel id.
    voice: HashMap<u64, u64>,
    /// The bot's roles, once seen.
    bot_roles: Option<Vec<u64>>,
}

#[derive(Debug, Clone)]
struct CachedChannel {
    kind: ChannelType,
    overwrites: Vec<PermissionOverwrite>,
}

/// The cache. Updated by the gateway task, read by command handlers.
#[derive(Debug, Default)]
pub struct GuildCache {
    guilds: RwLock<HashMap<u64, CachedGuild>>,
}

impl GuildCache {
    /// Applies a gateway event. `bot` is the bot's user id (known after READY).
    pub fn update(&self, event: &Event, bot: Option<Id<UserMarker>>) {
        let mut guilds = self.guilds.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::GuildCreate(create) => {
                if let GuildCreate::Available(guild) = create.as_ref() {
                    let mut cached = CachedGuild {
                        owner: guild.owner_id.get(),
                        ..CachedGuild::default()
                    };
                    for role in &guild.roles {
                        cached
                            .roles
                            .insert(role.id.get(), (role.name.clone(), role.permissions));
                    }
                    for channel in &guild.channels {
                        cached.channels.insert(
                            channel.id.get(),
                            CachedChannel {
                                kind: channel.kind,
                                overwrites: channel
                                    .permission_overwrites
                                    .clone()
                                    .unwrap_or_default(),
                            },
                        );
                    }
                    for state in &guild.voice_states {
                        if let Some(channel) = state.channel_id {
                            cached.voice.insert(state.user_id.get(), channel.get());
                        }
                    }
                    if let Some(bot) = bot {
                        cached.bot_roles = guild
                            .members
                            .iter()
                            .find(|m| m.user.id == bot)
                            .map(|m| m.roles.iter().map(|r| r.get()).collect());
                    }
                    guilds.insert(guild.id.get(), cached);
                }
            }
            Event::GuildUpdate(update) => {
                let guild = guilds.entry(update.0.id.get()).or_default();
                guild.owner = update.0.owner_id.get();
                guild.roles = update
                    .0
                    .roles
                    .iter()
                    .map(|r| (r.id.get(), (r.name.clone(), r.permissions)))
                    .collect();
            }
            Event::GuildDelete(delete) => {
                guilds.remove(&delete.id.get());
            }
            Event::ChannelCreate(c) => upsert_channel(&mut guilds, &c.0),
            Event::ChannelUpdate(c) => upsert_channel(&mut guilds, &c.0),
            Event::ChannelDelete(c) => {
                if let Some(guild) = c.0.guild_id.and_then(|g| guilds.get_mut(&g.get())) {
                    guild.channels.remove(&c.0.id.get());
                }
            }
            Event::RoleCreate(r) => {
                guilds
                    .entry(r.guild_id.get())
                    .or_default()
                    .roles
                    .insert(r.role.id.get(), (r.role.name.clone(), r.role.permissions));
            }
            Event::RoleUpdate(r) => {
                guilds
                    .entry(r.guild_id.get())
                    .or_default()
                    .roles
                    .insert(r.role.id.get(), (r.role.name.clone(), r.role.permissions));
            }
            Event::RoleDelete(r) => {
                if let Some(guild) = guilds.get_mut(&r.guild_id.get()) {
                    guild.roles.remove(&r.role_id.get());
                }
            }
            Event::MemberUpdate(m) if Some(m.user.id) == bot => {
                guilds.entry(m.guild_id.get()).or_default().bot_roles =
                    Some(m.roles.iter().map(|r| r.get()).collect());
            }
            Event::VoiceStateUpdate(v) => {
                if let Some(guild_id) = v.0.guild_id {
                    let guild = guilds.entry(guild_id.get()).or_default();
                    match v.0.channel_id {
                        Some(channel) => guild.voice.insert(v.0.user_id.get(), channel.get()),
                        None => guild.voice.remove(&v.0.user_id.get()),
                    };
                }
            }
            _ => {}
        }
    }

    /// The voice channel `user` sits in.
    pub fn voice_channel_of(&self, guild: u64, user: u64) -> Option<u64> {
        let guilds = self.guilds.read().unwrap_or_else(PoisonError::into_inner);
        guilds.get(&guild)?.voice.get(&user).copied()
    }

    /// The id of the guild's role called `name` (case-insensitive).
    pub fn role_named(&self, guild: u64, name: &str) -> Option<u64> {
        let guilds = self.guilds.read().unwrap_or_else(PoisonError::into_inner);
        guilds
            .get(&guild)?
            .roles
            .iter()
            .find(|(_, (n, _))| n.eq_ignore_ascii_case(name))
            .map(|(id, _)| *id)
    }

    /// The bot's permissions in a channel, `None` when the cache lacks what it takes to compute them.
    pub fn bot_permissions_in(&self, guild: u64, channel: u64, bot: u64) -> Option<Permissions> {
        let guilds = self.guilds.read().unwrap_or_else(PoisonError::into_inner);
        let cached = guilds.get(&guild)?;
        let channel = cached.channels.get(&channel)?;
        let everyone = cached.roles.get(&guild)?.1;
        let roles: Vec<_> = cached
            .bot_roles
            .as_ref()?
            .iter()
            .filter_map(|r| {
                let (_, perms) = cached.roles.get(r)?;
                Some((Id::new_checked(*r)?, *perms))
            })
            .collect();
        let guild_id: Id<GuildMarker> = Id::new_checked(guild)?;
        let calculator =
            PermissionCalculator::new(guild_id, Id::new_checked(bot)?, everyone, &roles)
                .owner_id(Id::new_checked(cached.owner)?);
        Some(calculator.in_channel(channel.kind, &channel.overwrites))
    }
}

fn upsert_channel(
    guilds: &mut HashMap<u64, CachedGuild>,
    channel: &twilight_model::channel::Channel,
) {
    if let Some(guild) = channel.guild_id {
        guilds.entry(guild.get()).or_default().channels.insert(
            channel.id.get(),
            CachedChannel {
                kind: channel.kind,
                overwrites: channel.permission_overwrites.clone().unwrap_or_default(),
            },
        );
    }
}
