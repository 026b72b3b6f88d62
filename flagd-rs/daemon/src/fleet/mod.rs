//! Fleet mode: many replicas share one authority (overrides, history, rollout controller)
//! through etcd.

pub mod api;
pub mod config;
pub mod replicas;
