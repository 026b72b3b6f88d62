//! flagd-rs: a flagd-compatible feature-flag daemon.

pub mod authority;
pub mod cli_admin;
pub mod metrics;
pub mod selector;
pub mod state;
pub mod store;
pub mod context;
pub mod proto;
pub mod server;
pub mod sources;
pub mod config;
pub mod run;
pub mod telemetry;
pub mod validate;

pub use run::{BoundPorts, Listeners, run};
