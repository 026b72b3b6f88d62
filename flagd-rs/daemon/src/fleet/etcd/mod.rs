//! A small async client for etcd's v3 gRPC API: the subset the fleet store uses.

pub mod pb;
