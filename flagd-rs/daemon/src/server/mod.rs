//! The network servers: shared serving plumbing and one module per port.

pub mod body;
pub mod change_feed;
pub mod compress;
pub mod cors;
pub mod deadline;
pub mod eval;
pub mod http;
pub mod keepalive;
pub mod listen;
pub mod management;
pub mod ofrep;
pub mod ofrep_sse;
pub mod record;
pub mod stream_get;
pub mod sync;
