//! Fleet mode: several replicas share one authority, one history and one rollout controller
//! through etcd.
//!
//! - [`etcd`] — a small client for the part of etcd's v3 gRPC API the fleet uses, over the
//!   daemon's own tonic.
//! - [`url`] — the `--store` URL (`etcd://HOST:PORT[,HOST:PORT...]/PREFIX`).
//! - [`config`] — the `--store*` options.
//! - [`journal`] — [`EtcdJournal`](journal::EtcdJournal), the revision journal kept in etcd
//!   under the URL's prefix; [`start`] opens it when the daemon starts.
//! - [`controller`] — the one rollout controller per fleet: leader election on a lease, the
//!   fence its rollout records are written under; [`verbs`] carries rollout verbs from any
//!   replica to it.
//! - [`replicas`] — each replica's report of the revision it serves, and waiting until all
//!   serve one; [`registry`] keeps this replica's entry in the store; [`api`] serves them as
//!   `GET /v1/replicas`.

pub mod api;
pub mod config;
pub mod controller;
pub mod etcd;
pub mod journal;
pub mod registry;
pub mod replicas;
pub mod start;
pub mod url;
pub mod verbs;
