//! The `/radio` command: its definition, the closed set of subcommands (one module each), permission
//! checks, and the dispatch of interactions to them.
//!
//! Station-changing subcommands need Manage Server (or Administrator) or the `DJ_ROLE` role; the
//! others are open to everyone. Every mistake a user can make ends in an ephemeral message.

mod auto;
mod choices;
mod generate;
mod genre;
mod help;
mod join;
mod language;
mod leave;
mod maxlength;
mod nowplaying;
mod pause;
mod play;
mod preset;
mod queue;
mod resume;
mod settings;
mod skip;
mod stats;
mod stop;
mod style;
mod theme;
mod upload;

use std::sync::Arc;

use radio_shared::job::{MAX_DURATION_S, MIN_DURATION_S};
use radio_shared::station::StationSettings;
use tracing::{Instrument, error, info_span, warn};
use twilight_model::application::command::{
    Command, CommandOptionChoice, CommandOptionChoiceValue, CommandType,
};
use twilight_model::application::interaction::InteractionContextType;
use twilight_model::application::interaction::application_command::{
    CommandData, CommandDataOption, CommandOptionValue,
};
use twilight_model::application::interaction::{Interaction, InteractionData, InteractionType};
use twilight_model::guild::PartialMember;
use twilight_model::guild::Permissions;
use twilight_util::builder::command::CommandBuilder;

use crate::interaction::{Reply, Responder};
use crate::state::State;
use crate::station::{StationHandle, StationView};
use crate::user_error::{CommandError, UserError};

/// The name of the one slash command.
pub const COMMAND_NAME: &str = "radio";

/// The `/radio` command with all its subcommands, as registered with Discord.
pub fn definition() -> Command {
    builder().build()
}

fn builder() -> CommandBuilder {
    CommandBuilder::new(
        COMMAND_NAME,
        "AI radio: freshly generated music, non-stop, in your voice channel",
        CommandType::ChatInput,
    )
    .contexts([InteractionContextType::Guild])
    .option(play::definition())
    .option(join::definition())
    .option(skip::definition())
    .option(pause::definition())
    .option(resume::definition())
    .option(stop::definition())
    .option(leave::definition())
    .option(generate::definition())
    .option(nowplaying::definition())
    .option(queue::definition())
    .option(upload::definition())
    .option(genre::definition())
    .option(theme::definition())
    .option(style::definition())
    .option(language::definition())
    .option(maxlength::definition())
    .option(auto::definition())
    .option(preset::definition())
    .option(settings::definition())
    .option(stats::definition())
    .option(help::definition())
}

/// Every subcommand, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum RadioCommand {
    /// `/radio play`.
    Play(play::Play),
    /// `/radio join`.
    Join,
    /// `/radio skip`.
    Skip,
    /// `/radio pause`.
    Pause,
    /// `/radio resume`.
    Resume,
    /// `/radio stop`.
    Stop,
    /// `/radio leave`.
    Leave,
    /// `/radio generate`.
    Generate(generate::Generate),
    /// `/radio nowplaying`.
    NowPlaying,
    /// `/radio queue`.
    Queue,
    /// `/radio upload`.
    Upload,
    /// `/radio genre`.
    Genre(String),
    /// `/radio theme`.
    Theme(String),
    /// `/radio style`.
    Style(String),
    /// `/radio language`.
    Language(String),
    /// `/radio maxlength`.
    MaxLength(i64),
    /// `/radio auto`.
    Auto(bool),
    /// `/radio preset`.
    Preset(String),
    /// `/radio settings`.
    Settings,
    /// `/radio stats`.
    Stats,
    /// `/radio help`.
    Help,
}

impl RadioCommand {
    /// Parses a subcommand and its options.
    pub fn parse(name: &str, options: &Options) -> Result<Self, UserError> {
        Ok(match name {
            "play" => RadioCommand::Play(play::Play::parse(options)?),
            "join" => RadioCommand::Join,
            "skip" => RadioCommand::Skip,
            "pause" => RadioCommand::Pause,
            "resume" => RadioCommand::Resume,
            "stop" => RadioCommand::Stop,
            "leave" => RadioCommand::Leave,
            "generate" => RadioCommand::Generate(generate::Generate::parse(options)?),
            "nowplaying" => RadioCommand::NowPlaying,
            "queue" => RadioCommand::Queue,
            "upload" => RadioCommand::Upload,
            "genre" => RadioCommand::Genre(options.required_text("name")?),
            "theme" => RadioCommand::Theme(options.required_text("text")?),
            "style" => RadioCommand::Style(options.required_text("text")?),
            "language" => RadioCommand::Language(options.required_text("language")?),
            "maxlength" => {
                RadioCommand::MaxLength(options.integer("seconds").ok_or_else(|| {
                    UserError::InvalidOption("Give the longest track length in seconds.".into())
                })?)
            }
            "auto" => RadioCommand::Auto(auto::parse(options)?),
            "preset" => RadioCommand::Preset(options.required_text("name")?),
            "settings" => RadioCommand::Settings,
            "stats" => RadioCommand::Stats,
            "help" => RadioCommand::Help,
            other => {
                return Err(UserError::InvalidOption(format!(
                    "I don't know `/radio {other}`; see `/radio help`."
                )));
            }
        })
    }

    /// The subcommand's name (the metrics label).
    pub fn name(&self) -> &'static str {
        match self {
            RadioCommand::Play(_) => "play",
            RadioCommand::Join => "join",
            RadioCommand::Skip => "skip",
            RadioCommand::Pause => "pause",
            RadioCommand::Resume => "resume",
            RadioCommand::Stop => "stop",
            RadioCommand::Leave => "leave",
            RadioCommand::Generate(_) => "generate",
            RadioCommand::NowPlaying => "nowplaying",
            RadioCommand::Queue => "queue",
            RadioCommand::Upload => "upload",
            RadioCommand::Genre(_) => "genre",
            RadioCommand::Theme(_) => "theme",
            RadioCommand::Style(_) => "style",
            RadioCommand::Language(_) => "language",
            RadioCommand::MaxLength(_) => "maxlength",
            RadioCommand::Auto(_) => "auto",
            RadioCommand::Preset(_) => "preset",
            RadioCommand::Settings => "settings",
            RadioCommand::Stats => "stats",
            RadioCommand::Help => "help",
        }
    }

    /// Whether it changes the station (and so needs Manage Server or the DJ role).
    pub fn changes_station(&self) -> bool {
        changes_station(self.name())
    }

    /// Whether its answer is for the user only.
    pub fn answers_privately(&self) -> bool {
        matches!(
            self,
            RadioCommand::Queue | RadioCommand::Settings | RadioCommand::Stats | RadioCommand::Help
        )
    }

    async fn run(self, ctx: &Ctx) -> Result<(), CommandError> {
        match self {
            RadioCommand::Play(play) => play.run(ctx).await,
            RadioCommand::Join => join::run(ctx).await,
            RadioCommand::Skip => skip::run(ctx).await,
            RadioCommand::Pause => pause::run(ctx).await,
            RadioCommand::Resume => resume::run(ctx).await,
            RadioCommand::Stop => stop::run(ctx).await,
            RadioCommand::Leave => leave::run(ctx).await,
            RadioCommand::Generate(generate) => generate.run(ctx).await,
            RadioCommand::NowPlaying => nowplaying::run(ctx).await,
            RadioCommand::Queue => queue::run(ctx).await,
            RadioCommand::Upload => upload::run(ctx).await,
            RadioCommand::Genre(name) => genre::run(ctx, name).await,
            RadioCommand::Theme(text) => theme::run(ctx, text).await,
            RadioCommand::Style(text) => style::run(ctx, text).await,
            RadioCommand::Language(code) => language::run(ctx, code).await,
            RadioCommand::MaxLength(seconds) => maxlength::run(ctx, seconds).await,
            RadioCommand::Auto(on) => auto::run(ctx, on).await,
            RadioCommand::Preset(name) => preset::run(ctx, name).await,
            RadioCommand::Settings => settings::run(ctx).await,
            RadioCommand::Stats => stats::run(ctx).await,
            RadioCommand::Help => help::run(ctx).await,
        }
    }
}

/// Subcommands everyone may use; all others change the station.
pub const OPEN_TO_EVERYONE: [&str; 7] = [
    "generate",
    "nowplaying",
    "queue",
    "upload",
    "settings",
    "stats",
    "help",
];

/// Whether the subcommand `name` changes the station (and so needs Manage Server or the DJ role).
pub fn changes_station(name: &str) -> bool {
    !OPEN_TO_EVERYONE.contains(&name)
}

/// A subcommand's options by name.
#[derive(Debug, Clone, Default)]
pub struct Options(Vec<CommandDataOption>);

impl Options {
    /// Wraps the options of a subcommand.
    pub fn new(options: Vec<CommandDataOption>) -> Self {
        Self(options)
    }

    fn value(&self, name: &str) -> Option<&CommandOptionValue> {
        self.0.iter().find(|o| o.name == name).map(|o| &o.value)
    }

    /// A string option, trimmed; `None` when absent or blank.
    pub fn text(&self, name: &str) -> Option<String> {
        match self.value(name)? {
            CommandOptionValue::String(s) | CommandOptionValue::Focused(s, _) => {
                Some(s.trim().to_string()).filter(|s| !s.is_empty())
            }
            _ => None,
        }
    }

    /// A required string option.
    pub fn required_text(&self, name: &str) -> Result<String, UserError> {
        self.text(name)
            .ok_or_else(|| UserError::InvalidOption(format!("The `{name}` option can't be empty.")))
    }

    /// An integer option.
    pub fn integer(&self, name: &str) -> Option<i64> {
        match self.value(name)? {
            CommandOptionValue::Integer(i) => Some(*i),
            CommandOptionValue::Number(n) => Some(n.round() as i64),
            CommandOptionValue::Focused(s, _) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The option the user is typing in (autocomplete), with its text so far.
    pub fn focused(&self) -> Option<(&str, &str)> {
        self.0.iter().find_map(|o| match &o.value {
            CommandOptionValue::Focused(text, _) => Some((o.name.as_str(), text.as_str())),
            _ => None,
        })
    }
}

/// Limits text options to what a job spec accepts.
pub(crate) fn limited(text: String, max_chars: usize, what: &str) -> Result<String, UserError> {
    if text.chars().count() > max_chars {
        Err(UserError::InvalidOption(format!(
            "The {what} is too long: at most {max_chars} characters."
        )))
    } else {
        Ok(text)
    }
}

/// The accepted range of track lengths for one guild now.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationLimits {
    /// Shortest, seconds.
    pub min: f32,
    /// Longest, seconds.
    pub max: f32,
    /// What sets `max`, in words.
    pub limited_by: String,
}

impl DurationLimits {
    /// From the largest `max_duration_s` among live workers and the guild's maxlength.
    pub fn new(worker_max: f32, guild_max: Option<f32>) -> Self {
        let worker_max = worker_max.min(MAX_DURATION_S);
        match guild_max {
            Some(guild) if guild < worker_max => Self {
                min: MIN_DURATION_S,
                max: guild,
                limited_by: format!(
                    "this server's maxlength is {guild:.0} s; change it with /radio maxlength"
                ),
            },
            _ => Self {
                min: MIN_DURATION_S,
                max: worker_max,
                limited_by: format!("the online workers accept up to {worker_max:.0} s"),
            },
        }
    }

    /// `requested` if it is in range.
    pub fn check(&self, requested: f32) -> Result<f32, UserError> {
        if requested.is_finite() && (self.min..=self.max).contains(&requested) {
            Ok(requested)
        } else {
            Err(UserError::DurationOutOfRange {
                requested,
                min: self.min,
                max: self.max,
                limited_by: self.limited_by.clone(),
            })
        }
    }

    /// `value` moved into range.
    pub fn clamp(&self, value: f32) -> f32 {
        value.clamp(self.min, self.max.max(self.min))
    }
}

/// What a subcommand needs to run.
#[derive(Debug)]
pub struct Ctx {
    /// The bot.
    pub state: Arc<State>,
    /// The guild it was run in.
    pub guild: u64,
    /// Who ran it.
    pub user: u64,
    /// The text channel it was run in.
    pub channel: Option<u64>,
    /// The interaction id (the idempotency key of the jobs it enqueues).
    pub interaction_id: u64,
    /// Where the answer goes.
    pub responder: Arc<Responder>,
}

impl Ctx {
    /// The guild's station (started if it is not running).
    pub fn station(&self) -> StationHandle {
        self.state.stations.get_or_start(&self.state, self.guild)
    }

    /// The user's voice channel, checked for the bot's Connect and Speak permissions.
    pub fn user_voice_channel(&self) -> Result<u64, UserError> {
        let channel = self
            .state
            .guilds
            .voice_channel_of(self.guild, self.user)
            .ok_or(UserError::NotInVoice)?;
        let Some(bot) = self.state.bot_user.get() else {
            return Ok(channel);
        };
        if let Some(perms) = self
            .state
            .guilds
            .bot_permissions_in(self.guild, channel, bot.get())
        {
            let mut missing = Vec::new();
            if !perms.contains(Permissions::VIEW_CHANNEL) {
                missing.push("View Channel");
            }
            if !perms.contains(Permissions::CONNECT) {
                missing.push("Connect");
            }
            if !perms.contains(Permissions::SPEAK) {
                missing.push("Speak");
            }
            if !missing.is_empty() {
                return Err(UserError::BotLacksVoicePermissions {
                    channel,
                    missing: missing.join(" and "),
                });
            }
        }
        Ok(channel)
    }

    /// The channel the station should play in: the user's, or the one the bot is in already when
    /// `may_stay` and the user is in none.
    pub fn target_voice_channel(
        &self,
        view: &StationView,
        may_stay: bool,
    ) -> Result<u64, UserError> {
        match self.user_voice_channel() {
            Ok(channel) => Ok(channel),
            Err(UserError::NotInVoice) if may_stay && view.attached => view
                .state
                .voice_channel
                .as_ref()
                .and_then(|c| c.parse().ok())
                .ok_or(UserError::NotInVoice),
            Err(e) => Err(e),
        }
    }

    /// The track lengths the guild may ask for now; an error when no worker is online.
    pub async fn duration_limits(
        &self,
        settings: &StationSettings,
    ) -> Result<DurationLimits, CommandError> {
        let workers = self.state.queue.live_workers().await?;
        let worker_max = workers
            .iter()
            .map(|w| w.max_duration_s)
            .fold(None, |acc: Option<f32>, m| {
                Some(acc.map_or(m, |a| a.max(m)))
            })
            .ok_or(UserError::NoWorkerOnline)?;
        let guild_max = settings
            .max_length_s
            .unwrap_or(self.state.config.max_length_max_s);
        Ok(DurationLimits::new(worker_max, Some(guild_max)))
    }
}

/// Whether a member may change the station.
pub fn may_change_station(
    state: &State,
    guild: u64,
    member: Option<&PartialMember>,
) -> Result<(), UserError> {
    let refused = || UserError::NotPermitted {
        dj_role: state.config.dj_role.clone(),
    };
    let member = member.ok_or_else(refused)?;
    let perms = member.permissions.unwrap_or_else(Permissions::empty);
    if perms.intersects(Permissions::MANAGE_GUILD | Permissions::ADMINISTRATOR) {
        return Ok(());
    }
    if let Some(role) = &state.config.dj_role {
        let role_id = role
            .parse::<u64>()
            .ok()
            .or_else(|| state.guilds.role_named(guild, role));
        if let Some(id) = role_id
            && member.roles.iter().any(|r| r.get() == id)
        {
            return Ok(());
        }
    }
    Err(refused())
}

/// Handles one interaction (spawned per interaction by the gateway loop).
pub(crate) async fn handle(state: Arc<State>, interaction: Interaction) {
    let responder = Responder::new(
        state.http.clone(),
        interaction.application_id,
        interaction.id,
        interaction.token.clone(),
    );
    let span = info_span!(
        "interaction",
        interaction_id = %interaction.id,
        guild_id = interaction.guild_id.map(|g| g.get()),
        user_id = interaction.author_id().map(|u| u.get()),
    );
    match interaction.kind {
        InteractionType::ApplicationCommand => {
            command(state, interaction, responder)
                .instrument(span)
                .await;
        }
        InteractionType::ApplicationCommandAutocomplete => {
            autocomplete(state, interaction, responder)
                .instrument(span)
                .await;
        }
        _ => {}
    }
}

fn subcommand(data: &CommandData) -> Option<(String, Options)> {
    data.options.iter().find_map(|o| match &o.value {
        CommandOptionValue::SubCommand(options) => {
            Some((o.name.clone(), Options::new(options.clone())))
        }
        _ => None,
    })
}

async fn command(state: Arc<State>, interaction: Interaction, responder: Arc<Responder>) {
    let Some(InteractionData::ApplicationCommand(data)) = &interaction.data else {
        return;
    };
    if data.name != COMMAND_NAME {
        return;
    }
    let sub = subcommand(data);
    let parsed = sub
        .as_ref()
        .ok_or_else(|| {
            UserError::InvalidOption("Pick a /radio subcommand; see `/radio help`.".into())
        })
        .and_then(|(name, options)| RadioCommand::parse(name, options));
    let name = parsed.as_ref().map_or("unknown", RadioCommand::name);
    responder.defer_later(parsed.as_ref().is_ok_and(RadioCommand::answers_privately));
    let result = async {
        let guild = interaction.guild_id.ok_or(UserError::NotInGuild)?.get();
        // Permission first: a refused member learns that before any mistake in the options.
        if sub.as_ref().is_some_and(|(name, _)| changes_station(name)) {
            may_change_station(&state, guild, interaction.member.as_ref())?;
        }
        let command = parsed?;
        let ctx = Ctx {
            state: state.clone(),
            guild,
            user: interaction.author_id().map_or(0, |u| u.get()),
            channel: interaction.channel.as_ref().map(|c| c.id.get()),
            interaction_id: interaction.id.get(),
            responder: responder.clone(),
        };
        command.run(&ctx).await
    }
    .await;
    let outcome = match result {
        Ok(()) => "ok",
        Err(CommandError::User(e)) => {
            responder.send(Reply::private(e.to_string())).await;
            "user_error"
        }
        Err(CommandError::Internal(e)) => {
            error!(command = name, error = %e, "a command failed");
            responder
                .send(Reply::private(format!(
                    "Something went wrong on my side ({}). Please try again in a moment.",
                    short(&e)
                )))
                .await;
            "error"
        }
    };
    state
        .metrics
        .commands
        .with_label_values(&[name, outcome])
        .inc();
}

fn short(text: &str) -> String {
    let mut out: String = text.chars().take(180).collect();
    if text.chars().count() > 180 {
        out.push('…');
    }
    out
}

async fn autocomplete(state: Arc<State>, interaction: Interaction, responder: Arc<Responder>) {
    let Some(InteractionData::ApplicationCommand(data)) = &interaction.data else {
        return;
    };
    let Some((sub, options)) = subcommand(data) else {
        return;
    };
    let Some((option, typed)) = options.focused() else {
        return;
    };
    let choices: Vec<CommandOptionChoice> = match (sub.as_str(), option) {
        ("play", "genre") | ("genre", "name") => text_choices(choices::GENRES, typed),
        ("play", "theme") | ("theme", "text") => text_choices(choices::THEMES, typed),
        ("style", "text") => text_choices(choices::STYLES, typed),
        (_, "duration") => {
            let guild = interaction.guild_id.map(|g| g.get());
            duration_choices(&state, guild, typed).await
        }
        _ => Vec::new(),
    };
    responder.autocomplete(choices).await;
}

/// Suggestions containing what the user typed (all of them when nothing is typed yet), what they
/// typed first so free text stays possible.
fn text_choices(list: &[&str], typed: &str) -> Vec<CommandOptionChoice> {
    let typed_lower = typed.trim().to_lowercase();
    let mut names: Vec<String> = Vec::new();
    if !typed_lower.is_empty() {
        names.push(typed.trim().chars().take(100).collect());
    }
    names.extend(
        list.iter()
            .filter(|g| g.to_lowercase().contains(&typed_lower))
            .filter(|g| g.to_lowercase() != typed_lower)
            .map(|g| (*g).to_string()),
    );
    names
        .into_iter()
        .take(25)
        .map(|name| CommandOptionChoice {
            value: CommandOptionChoiceValue::String(name.clone()),
            name,
            name_localizations: None,
        })
        .collect()
}

async fn duration_choices(
    state: &Arc<State>,
    guild: Option<u64>,
    typed: &str,
) -> Vec<CommandOptionChoice> {
    let settings = match guild.and_then(|g| state.stations.get(g)) {
        Some(station) => station.view().await.ok().map(|v| v.settings),
        None => None,
    };
    let guild_max = settings
        .and_then(|s| s.max_length_s)
        .unwrap_or(state.config.max_length_max_s);
    let worker_max = match state.queue.live_workers().await {
        Ok(workers) => workers.iter().map(|w| w.max_duration_s).fold(0.0, f32::max),
        Err(e) => {
            warn!(error = %e, "listing workers for autocomplete failed");
            0.0
        }
    };
    if worker_max <= 0.0 {
        return Vec::new();
    }
    let limits = DurationLimits::new(worker_max, Some(guild_max));
    let mut values: Vec<i64> = [15, 30, 45, 60, 90, 120, 180, 240, 300, 420, 600]
        .into_iter()
        .filter(|v| limits.check(*v as f32).is_ok())
        .collect();
    if let Ok(n) = typed.trim().parse::<i64>()
        && limits.check(n as f32).is_ok()
        && !values.contains(&n)
    {
        values.insert(0, n);
    }
    let max = limits.max.floor() as i64;
    if !values.contains(&max) {
        values.push(max);
    }
    values
        .into_iter()
        .take(25)
        .map(|v| CommandOptionChoice {
            name: format!("{v} s ({}:{:02})", v / 60, v % 60),
            name_localizations: None,
            value: CommandOptionChoiceValue::Integer(v),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_definition_passes_discord_validation() {
        let command = builder().validate().expect("valid /radio").build();
        assert_eq!(command.options.len(), 21);
    }

    #[test]
    fn duration_limits_name_what_limits_them() {
        let workers = DurationLimits::new(120.0, Some(300.0));
        assert_eq!(workers.max, 120.0);
        assert!(workers.limited_by.contains("workers"));
        let guild = DurationLimits::new(600.0, Some(90.0));
        assert_eq!(guild.max, 90.0);
        assert!(guild.limited_by.contains("maxlength"));
        assert!(guild.check(91.0).is_err());
        assert_eq!(guild.check(60.0), Ok(60.0));
        assert!(guild.check(2.0).is_err());
        assert_eq!(guild.clamp(500.0), 90.0);
    }

    #[test]
    fn station_commands_are_guarded_and_reading_ones_are_open() {
        let guarded = ["play", "join", "skip", "pause", "resume", "stop", "leave"];
        for name in guarded {
            let options = Options::default();
            let command = RadioCommand::parse(name, &options).expect(name);
            assert!(command.changes_station(), "{name}");
        }
        for name in ["nowplaying", "queue", "upload", "settings", "stats", "help"] {
            let command = RadioCommand::parse(name, &Options::default()).expect(name);
            assert!(!command.changes_station(), "{name}");
        }
    }

    #[test]
    fn free_text_stays_possible_in_autocomplete() {
        let choices = text_choices(choices::GENRES, "doom jazz");
        assert_eq!(choices[0].name, "doom jazz");
        let lofi = text_choices(choices::GENRES, "lofi");
        assert!(lofi.iter().any(|c| c.name == "lofi hip hop"));
        assert!(text_choices(choices::GENRES, "").len() <= 25);
    }
}
