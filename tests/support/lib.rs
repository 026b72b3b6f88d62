//! Shared helpers for the integration tests.
pub mod testbed;
pub mod daemon;
pub mod eval;
pub mod launchpad;
