//! Compiles the protobuf schemas in `schemas/protobuf` into Rust: prost messages, tonic
//! services and, for the evaluation APIs, proto3 JSON (serde) implementations for Connect; and,
//! for the fleet store, the client side of the subset of etcd's v3 API in `schemas/protobuf/etcd`.

use std::path::PathBuf;

use protox::prost::Message;

const PROTOS: &[&str] = &[
    "flagd/evaluation/v1/evaluation.proto",
    "flagd/evaluation/v2/evaluation.proto",
    "flagd/sync/v1/sync.proto",
    "schema/v1/schema.proto",
];

/// etcd's v3 API as far as the fleet store uses it: clients only, no JSON.
const ETCD_PROTOS: &[&str] = &["etcd/etcdserverpb/rpc.proto", "etcd/mvccpb/kv.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.join("../../schemas/protobuf");
    println!("cargo:rerun-if-changed={}", root.display());
    for p in PROTOS.iter().chain(ETCD_PROTOS) {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);

    // protox bundles the well-known types, so no system `protoc` is needed.
    let fds = protox::compile(PROTOS, [&root])?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Struct and friends come from pbjson-types, which also gives them proto3 JSON; telling
        // prost to "compile" the well-known types drops its default mapping to prost-types.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .out_dir(&out)
        .compile_fds(fds.clone())?;

    // Connect's JSON codec is protojson with every field emitted and unknown fields ignored.
    pbjson_build::Builder::new()
        .register_descriptors(&fds.encode_to_vec())?
        .out_dir(&out)
        .emit_fields()
        .ignore_unknown_fields()
        .build(&[".flagd.evaluation", ".schema.v1"])?;

    let etcd = protox::compile(ETCD_PROTOS, [&root])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .out_dir(&out)
        .compile_fds(etcd)?;
    Ok(())
}
