//! The workspace's integration tests, one binary (see tests/src/lib.rs for the harness).

mod acl;
mod bot;
mod dashboards;
mod deploy;
mod faults;
mod images;
mod inspector;
mod queue;
mod queue_model;
mod radioctl;
mod up;
mod worker;
