//! Stands in for the suites that need the published Rust flagd provider when the `providers`
//! feature is off: it says what was left out and how to run it (or fails in CI, see
//! `support/require.rs`).

#[test]
fn published_rust_provider_suites() {
    flagd_rs_tests::require::missing(
        "the published Rust provider suites (provider testbed RPC and in-process, \
         in-process sync, OFREP through the provider)",
        "the `providers` feature is off",
        "install protoc (Debian: protobuf-compiler) and run \
         `cargo test --workspace --features flagd-rs-tests/providers`",
    );
}
