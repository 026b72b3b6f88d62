//! flagd-rs: a flagd-compatible feature-flag daemon.

pub mod metrics;
pub mod selector;
pub mod state;
pub mod store;
