//! flagd-rs: a flagd-compatible feature-flag daemon.

pub mod authority;
pub mod cli_admin;
pub mod config;
pub mod context;
pub mod fleet;
pub mod heap;
pub mod metrics;
pub mod otel;
pub mod proto;
pub mod run;
pub mod selector;
pub mod server;
pub mod sources;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod ui;
pub mod validate;

pub use run::{BoundPorts, Listeners, run};
