//! A small async client for the part of etcd's v3 gRPC API the fleet uses: key-value reads,
//! writes and transactions, MVCC compaction, watches, leases, authentication and member status.
//!
//! Our own code over the daemon's tonic, with the messages compiled from
//! `schemas/protobuf/etcd` (no system `protoc`). Results are typed ([`KeyValue`],
//! [`RangeResult`], [`TxnResult`], [`WatchResponse`], ...); the generated messages stay in
//! [`pb`].
//!
//! - Several endpoints: a call starts at the member that answered last and moves on when one
//!   cannot serve (see [`client`]).
//! - Every unary call ends by its deadline ([`EtcdConfig::timeout`], 2 s by default):
//!   nothing waits on an unreachable cluster.
//! - With a user and password, the client authenticates and sends etcd's `token` metadata,
//!   authenticating again when etcd refuses the token.
//! - Watches and lease keep-alives ask for require-leader (`hasleader: true`): a member that
//!   loses its raft leader ends them instead of going quiet.

pub mod client;
pub mod config;
pub mod error;
pub mod kv;
pub mod lease;
pub mod pb;
pub mod watch;

pub use client::{EtcdClient, Lease, LeaseInfo, MemberStatus};
pub use config::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, EtcdConfig, EtcdTls};
pub use error::EtcdError;
pub use kv::{
    Cmp, Compare, DeleteResult, Get, KeyRange, KeyValue, Op, OpResult, Put, PutResult, RangeResult,
    Txn, TxnResult, prefix_end,
};
pub use lease::{LeaseKeeper, LeaseState};
pub use watch::{Event, EventKind, WatchOptions, WatchResponse, Watcher};
