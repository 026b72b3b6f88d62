//! All integration tests, built into one binary.
mod conformance;
mod evaluator_testbed;
mod reload;
mod ofrep;
mod sync;
mod cli;
mod management;
mod eval_grpc;
mod eval_connect;
mod authority;
mod remote;
mod chain;
mod rollout;
mod provider_testbed;
