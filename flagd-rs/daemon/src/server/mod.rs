//! The network servers: shared serving plumbing and one module per port.

pub mod body;
pub mod compress;
pub mod cors;
pub mod deadline;
pub mod eval;
pub mod http;
pub mod keepalive;
pub mod listen;
pub mod management;
pub mod ofrep;
pub mod record;
pub mod sync;
