//! The network servers: shared serving plumbing and one module per port.

pub mod body;
pub mod change_feed;
pub mod cors;
pub mod eval;
pub mod http;
pub mod management;
pub mod ofrep;
pub mod ofrep_sse;
pub mod stream_get;
pub mod sync;
