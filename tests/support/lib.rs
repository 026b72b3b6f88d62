//! Shared helpers for the integration tests.
pub mod daemon;
pub mod eval;
pub mod launchpad;
pub mod testbed;
