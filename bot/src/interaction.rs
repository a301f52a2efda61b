//! Answering interactions: the first response within Discord's 3 seconds (a message, or a deferral
//! when work takes longer), later edits, ephemeral errors, and progress messages whose edits are
//! coalesced so a job's stream of events never floods Discord.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use twilight_http::Client;
use twilight_model::application::command::CommandOptionChoice;
use twilight_model::channel::message::{Embed, MessageFlags};
use twilight_model::http::attachment::Attachment;
use twilight_model::http::interaction::{InteractionResponse, InteractionResponseType};
use twilight_model::id::Id;
use twilight_model::id::marker::{ApplicationMarker, InteractionMarker};
use twilight_util::builder::InteractionResponseDataBuilder;

/// The bot defers an interaction by itself if the handler has not answered after this long.
pub const AUTO_DEFER_AFTER: Duration = Duration::from_millis(1500);
/// The shortest time between two edits of one progress message.
pub const EDIT_INTERVAL: Duration = Duration::from_millis(1500);
/// Interaction tokens are valid for 15 minutes; progress stops being edited a little before.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);

/// A message to show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    /// Text.
    pub content: Option<String>,
    /// Embeds.
    pub embeds: Vec<Embed>,
    /// Only the user who ran the command sees it.
    pub ephemeral: bool,
    /// A file (`/radio upload`).
    pub attachment: Option<(String, Vec<u8>)>,
}

impl Reply {
    /// A public text message.
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            content: Some(content.into()),
            ..Self::default()
        }
    }

    /// A text only the user sees.
    pub fn private(content: impl Into<String>) -> Self {
        Self {
            content: Some(content.into()),
            ephemeral: true,
            ..Self::default()
        }
    }

    /// A public embed, with an optional line of text above it.
    pub fn embed(content: Option<String>, embed: Embed) -> Self {
        Self {
            content,
            embeds: vec![embed],
            ..Self::default()
        }
    }

    /// The same message, visible only to the user.
    pub fn ephemeral(mut self) -> Self {
        self.ephemeral = true;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    /// Nothing sent yet.
    Fresh,
    /// Deferred (the user sees "thinking…"); later replies edit the original response.
    Deferred { ephemeral: bool },
    /// A message was sent or the original was edited.
    Answered { ephemeral: bool },
}

/// One interaction's response channel.
#[derive(Debug)]
pub struct Responder {
    http: Arc<Client>,
    application: Id<ApplicationMarker>,
    id: Id<InteractionMarker>,
    token: String,
    stage: Mutex<Stage>,
}

impl Responder {
    /// A responder for an interaction.
    pub fn new(
        http: Arc<Client>,
        application: Id<ApplicationMarker>,
        id: Id<InteractionMarker>,
        token: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            http,
            application,
            id,
            token,
            stage: Mutex::new(Stage::Fresh),
        })
    }

    /// Defers after [`AUTO_DEFER_AFTER`] unless the handler answered first, so no interaction
    /// outlives Discord's 3 seconds.
    pub fn defer_later(self: &Arc<Self>, ephemeral: bool) {
        let responder = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(AUTO_DEFER_AFTER).await;
            if let Some(responder) = responder.upgrade() {
                responder.defer(ephemeral).await;
            }
        });
    }

    /// Defers (type 5) if nothing was sent yet.
    pub async fn defer(&self, ephemeral: bool) {
        let mut stage = self.stage.lock().await;
        if *stage != Stage::Fresh {
            return;
        }
        let data = ephemeral.then(|| {
            InteractionResponseDataBuilder::new()
                .flags(MessageFlags::EPHEMERAL)
                .build()
        });
        let response = InteractionResponse {
            kind: InteractionResponseType::DeferredChannelMessageWithSource,
            data,
        };
        match self
            .http
            .interaction(self.application)
            .create_response(self.id, &self.token, &response)
            .await
        {
            Ok(_) => *stage = Stage::Deferred { ephemeral },
            Err(e) => {
                tracing::warn!(interaction_id = %self.id, error = %e, "deferring an interaction failed")
            }
        }
    }

    /// Shows `reply`: as the first response, as an edit of the deferred or earlier response, or — for
    /// an ephemeral reply after a public deferral — by deleting the public response and sending an
    /// ephemeral follow-up.
    pub async fn send(&self, reply: Reply) {
        let mut stage = self.stage.lock().await;
        let result = match *stage {
            Stage::Fresh => self.respond(&reply).await,
            Stage::Deferred { ephemeral } | Stage::Answered { ephemeral } => {
                if reply.ephemeral && !ephemeral {
                    self.replace_with_ephemeral(&reply).await
                } else {
                    self.edit(&reply).await
                }
            }
        };
        match result {
            Ok(()) => {
                let ephemeral = match *stage {
                    Stage::Fresh => reply.ephemeral,
                    Stage::Deferred { ephemeral } | Stage::Answered { ephemeral } => {
                        ephemeral || reply.ephemeral
                    }
                };
                *stage = Stage::Answered { ephemeral };
            }
            Err(e) => {
                tracing::warn!(interaction_id = %self.id, error = %e, "answering an interaction failed");
            }
        }
    }

    /// Answers an autocomplete interaction.
    pub async fn autocomplete(&self, choices: Vec<CommandOptionChoice>) {
        let response = InteractionResponse {
            kind: InteractionResponseType::ApplicationCommandAutocompleteResult,
            data: Some(
                InteractionResponseDataBuilder::new()
                    .choices(choices)
                    .build(),
            ),
        };
        if let Err(e) = self
            .http
            .interaction(self.application)
            .create_response(self.id, &self.token, &response)
            .await
        {
            tracing::warn!(interaction_id = %self.id, error = %e, "answering an autocomplete failed");
        }
    }

    async fn respond(&self, reply: &Reply) -> Result<(), twilight_http::Error> {
        let mut data = InteractionResponseDataBuilder::new().embeds(reply.embeds.clone());
        if let Some(content) = &reply.content {
            data = data.content(content.clone());
        }
        if reply.ephemeral {
            data = data.flags(MessageFlags::EPHEMERAL);
        }
        if let Some((name, bytes)) = &reply.attachment {
            data = data.attachments([Attachment::from_bytes(name.clone(), bytes.clone(), 0)]);
        }
        let response = InteractionResponse {
            kind: InteractionResponseType::ChannelMessageWithSource,
            data: Some(data.build()),
        };
        self.http
            .interaction(self.application)
            .create_response(self.id, &self.token, &response)
            .await
            .map(|_| ())
    }

    async fn edit(&self, reply: &Reply) -> Result<(), twilight_http::Error> {
        let attachments: Vec<Attachment> = reply
            .attachment
            .iter()
            .map(|(name, bytes)| Attachment::from_bytes(name.clone(), bytes.clone(), 0))
            .collect();
        let client = self.http.interaction(self.application);
        let mut request = client
            .update_response(&self.token)
            .content(Some(reply.content.as_deref().unwrap_or("")))
            .embeds(Some(&reply.embeds));
        if !attachments.is_empty() {
            request = request.attachments(&attachments);
        }
        request.await.map(|_| ())
    }

    async fn replace_with_ephemeral(&self, reply: &Reply) -> Result<(), twilight_http::Error> {
        let client = self.http.interaction(self.application);
        if let Err(e) = client.delete_response(&self.token).await {
            tracing::debug!(interaction_id = %self.id, error = %e, "deleting the public response");
        }
        client
            .create_followup(&self.token)
            .content(reply.content.as_deref().unwrap_or(""))
            .embeds(&reply.embeds)
            .flags(MessageFlags::EPHEMERAL)
            .await
            .map(|_| ())
    }
}

/// A response that follows a job: every update replaces the previous one, edits are at least
/// [`EDIT_INTERVAL`] apart, and the latest state is always the one sent.
#[derive(Debug, Clone)]
pub struct ProgressMessage {
    latest: Arc<watch::Sender<Option<(Reply, bool)>>>,
}

impl ProgressMessage {
    /// Starts editing `responder`'s response.
    pub fn start(responder: Arc<Responder>) -> Self {
        let (tx, mut rx) = watch::channel::<Option<(Reply, bool)>>(None);
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + TOKEN_LIFETIME;
            loop {
                let changed = tokio::time::timeout_at(deadline, rx.changed()).await;
                if !matches!(changed, Ok(Ok(()))) {
                    break;
                }
                let next = rx.borrow_and_update().clone();
                let Some((reply, last)) = next else { continue };
                responder.send(reply).await;
                if last {
                    break;
                }
                tokio::time::sleep(EDIT_INTERVAL).await;
            }
        });
        Self {
            latest: Arc::new(tx),
        }
    }

    /// Shows a new state (coalesced with others within [`EDIT_INTERVAL`]).
    pub fn update(&self, reply: Reply) {
        self.latest.send_replace(Some((reply, false)));
    }

    /// Shows the final state; no edits follow.
    pub fn finish(&self, reply: Reply) {
        self.latest.send_replace(Some((reply, true)));
    }
}
