//! The RPCs of the evaluation port, listed once: each path with the API and method it names.
//!
//! The Connect dispatch, the request metrics' `http_route` label and the deadline handling all
//! read this table. The gRPC side is tonic's routing, generated from the same `.proto` services;
//! the trait implementations in [`super::services`] are checked against them by the compiler.

use super::resolve::Api;

/// The methods of the evaluation services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Every selected flag at once (v1 and schema.v1 only).
    ResolveAll,
    /// One boolean flag.
    ResolveBoolean,
    /// One string flag.
    ResolveString,
    /// One float flag.
    ResolveFloat,
    /// One integer flag.
    ResolveInt,
    /// One object flag.
    ResolveObject,
    /// The server-streaming change events.
    EventStream,
}

impl Method {
    /// Whether the response is a stream of messages.
    pub const fn is_streaming(self) -> bool {
        matches!(self, Method::EventStream)
    }
}

/// One served RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rpc {
    /// The API (service) it belongs to.
    pub api: Api,
    /// The method.
    pub method: Method,
    /// `/<service>/<method>`, also the metric label.
    pub path: &'static str,
}

/// Builds [`RPCS`] and [`SERVICES`] from each service's name and methods.
macro_rules! rpc_table {
    ($($api:ident $service:literal [$($method:ident)*])*) => {
        /// Every RPC served on the evaluation port.
        pub const RPCS: &[Rpc] = &[$($(
            Rpc {
                api: Api::$api,
                method: Method::$method,
                path: concat!("/", $service, "/", stringify!($method)),
            },
        )*)*];

        /// Each service with the path prefix of its RPCs (`/<service>/`).
        pub const SERVICES: &[(Api, &str)] = &[$((Api::$api, concat!("/", $service, "/")),)*];
    };
}

rpc_table! {
    V1 "flagd.evaluation.v1.Service"
        [ResolveAll ResolveBoolean ResolveString ResolveFloat ResolveInt ResolveObject EventStream]
    V2 "flagd.evaluation.v2.Service"
        [ResolveBoolean ResolveString ResolveFloat ResolveInt ResolveObject EventStream]
    Schema "schema.v1.Service"
        [ResolveAll ResolveBoolean ResolveString ResolveFloat ResolveInt ResolveObject EventStream]
}

/// The RPC `path` names, if it is one of [`RPCS`].
pub fn lookup(path: &str) -> Option<&'static Rpc> {
    index(path).and_then(|i| RPCS.get(i))
}

/// The position in [`RPCS`] of the RPC `path` names.
pub fn index(path: &str) -> Option<usize> {
    RPCS.iter().position(|rpc| rpc.path == path)
}

/// The service whose methods `path` is under (`/<service>/<something>`), as gRPC routes a call
/// to a service before the service looks at the method.
pub fn service_of(path: &str) -> Option<Api> {
    SERVICES.iter().find_map(|&(api, prefix)| {
        path.strip_prefix(prefix)
            .is_some_and(|method| !method.is_empty())
            .then_some(api)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_rpcs() {
        assert_eq!(RPCS.len(), 20);
        let rpc = lookup("/flagd.evaluation.v1.Service/ResolveAll").unwrap();
        assert_eq!((rpc.api, rpc.method), (Api::V1, Method::ResolveAll));
        assert_eq!(lookup("/flagd.evaluation.v2.Service/ResolveAll"), None);
        let rpc = lookup("/schema.v1.Service/EventStream").unwrap();
        assert_eq!((rpc.api, rpc.method), (Api::Schema, Method::EventStream));
        assert!(rpc.method.is_streaming());
        assert_eq!(
            lookup("/flagd.evaluation.v2.Service/ResolveInt").map(|r| r.path),
            Some("/flagd.evaluation.v2.Service/ResolveInt")
        );
        assert_eq!(lookup("/flagd.evaluation.v1.Service/Nope"), None);
        assert_eq!(lookup("/"), None);
        assert_eq!(lookup(""), None);
        assert_eq!(index(RPCS[3].path), Some(3));
        assert_eq!(index("/schema.v1.Service/Nope"), None);
    }

    #[test]
    fn paths_name_their_services() {
        assert_eq!(SERVICES.len(), 3);
        assert_eq!(
            service_of("/flagd.evaluation.v2.Service/ResolveInt"),
            Some(Api::V2)
        );
        assert_eq!(service_of("/schema.v1.Service/Unknown"), Some(Api::Schema));
        assert_eq!(
            service_of("/flagd.evaluation.v1.Service/a/b"),
            Some(Api::V1)
        );
        assert_eq!(service_of("/flagd.evaluation.v1.Service/"), None);
        assert_eq!(service_of("/flagd.evaluation.v1.Service"), None);
        assert_eq!(service_of("/flagd.evaluation.v3.Service/ResolveInt"), None);
        assert_eq!(service_of("/"), None);
    }
}
