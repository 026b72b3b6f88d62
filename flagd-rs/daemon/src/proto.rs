//! Generated protobuf messages, gRPC services and proto3 JSON codecs (from `schemas/protobuf`).
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The `flagd.*` packages.
pub mod flagd {
    /// `flagd.evaluation.*`.
    pub mod evaluation {
        /// `flagd.evaluation.v1`: typed and bulk resolution plus the event stream.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/flagd.evaluation.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/flagd.evaluation.v1.serde.rs"));
        }
        /// `flagd.evaluation.v2`: like v1 with optional value and variant.
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/flagd.evaluation.v2.rs"));
            include!(concat!(env!("OUT_DIR"), "/flagd.evaluation.v2.serde.rs"));
        }
    }
    /// `flagd.sync.*`.
    pub mod sync {
        /// `flagd.sync.v1`: the flag synchronisation service.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/flagd.sync.v1.rs"));
        }
    }
}

/// The deprecated `schema.*` packages.
pub mod schema {
    /// `schema.v1`: the original evaluation service.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/schema.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/schema.v1.serde.rs"));
    }
}
