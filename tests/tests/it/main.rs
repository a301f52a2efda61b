//! The workspace's integration tests, one binary (see tests/src/lib.rs for the harness).

mod bot;
mod queue;
