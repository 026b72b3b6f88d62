//! All integration tests, built into one binary.
mod admin_guard;
mod authority;
mod chain;
mod cli;
mod conformance;
mod dashboard;
mod dashboard_browser;
mod eval_connect;
mod eval_grpc;
mod evaluation_budget;
mod evaluator_testbed;
mod fleet;
mod fleet_controller;
mod journal;
mod management;
mod ofrep;
mod ofrep_sse;
mod otel;
mod overrides;
#[cfg(feature = "providers")]
mod provider_testbed;
#[cfg(not(feature = "providers"))]
mod providers_off;
mod reload;
mod remote;
mod rollout;
mod serving;
mod store_suite;
mod sync;
