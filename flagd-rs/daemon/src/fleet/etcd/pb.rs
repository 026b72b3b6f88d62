//! Messages and clients generated from `schemas/protobuf/etcd` (etcd's v3 wire format).
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `etcdserverpb`: the KV, Watch, Lease, Maintenance and Auth services.
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

/// `mvccpb`: keys as stored, and watch events.
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}
