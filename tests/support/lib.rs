//! Shared helpers for the integration tests.
pub mod binary;
pub mod browser;
pub mod daemon;
pub mod etcd;
pub mod eval;
pub mod launchpad;
pub mod otlp;
pub mod ports;
pub mod replica;
pub mod require;
pub mod testbed;
pub mod tls;
