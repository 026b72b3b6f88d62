//! Fleet mode: several replicas share one authority, one history and one rollout controller
//! through etcd.
//!
//! - [`etcd`] — a small client for the part of etcd's v3 gRPC API the fleet uses, over the
//!   daemon's own tonic.
//! - [`url`] — the `--store` URL (`etcd://HOST:PORT[,HOST:PORT...]/PREFIX`).
//! - [`config`] — the `--store*` options.

pub mod config;
pub mod etcd;
pub mod url;
