//! What the bot, the workers and `radioctl` share: the job model and its wire format, the Redis key
//! schema, the queue protocol, configuration and metric names.
//!
//! **Invariant:** only this crate knows the Redis key schema and the wire format. The bot and the
//! workers talk to each other exclusively through the [`queue::Queue`] API.

pub mod cli;
pub mod config;
pub mod job;
pub mod keys;
pub mod metrics;
pub mod queue;
pub mod station;
pub mod telemetry;
