//! `/radio stats`: this server's and all servers' counters, generation times, queue and uptime.

use twilight_util::builder::command::SubCommandBuilder;

use super::Ctx;
use crate::interaction::Reply;
use crate::render::{self, StatsContext};
use crate::user_error::CommandError;

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("stats", "Show radio statistics")
}

/// Shows them.
pub async fn run(ctx: &Ctx) -> Result<(), CommandError> {
    let view = ctx.station().view().await?;
    let store = &ctx.state.store;
    let guild = store.stats(Some(&ctx.guild.to_string())).await?;
    let global = store.stats(None).await?;
    let status = ctx.state.queue.status().await.ok();
    let context = StatsContext {
        guild_queue: view.state.ready.len() + view.state.generating.len(),
        global_waiting: status
            .as_ref()
            .map(|s| s.streams.iter().map(|st| st.waiting + st.pending).sum()),
        workers: status.as_ref().map_or(0, |s| s.workers.len()),
        uptime: ctx.state.started.elapsed(),
    };
    ctx.responder
        .send(Reply::embed(None, render::stats(&guild, &global, &context)).ephemeral())
        .await;
    Ok(())
}
