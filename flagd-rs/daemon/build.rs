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

    link_order(&manifest);
    Ok(())
}

/// Optimised builds on x86-64 Linux, which Rust links with LLD, place the functions that
/// start-up, an idle daemon and one request of each protocol run first and together
/// (`layout/<profile>.order`, written by `benches/layout/profile.sh`). The pages of code a
/// running daemon touches are then few and adjacent instead of spread over the whole text.
/// Symbol names carry a hash of the build's settings, so each profile has its own list; names
/// a build does not have are skipped. Other targets and linkers are left alone, and
/// `FLAGD_RS_LINK_ORDER=0` turns it off.
fn link_order(manifest: &std::path::Path) {
    let Some(profile) = profile_name() else {
        return;
    };
    let order = manifest.join(format!("layout/{profile}.order"));
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=FLAGD_RS_LINK_ORDER");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let optimised = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = std::env::var("TARGET").unwrap_or_default();
    let wanted = std::env::var("FLAGD_RS_LINK_ORDER").as_deref() != Ok("0");
    // A linker or linker flavour chosen by the builder may not be LLD.
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let default_linker = !flags.contains("linker")
        && !flags.contains("fuse-ld")
        && std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_none();
    if optimised
        && wanted
        && default_linker
        && target == "x86_64-unknown-linux-gnu"
        && order.is_file()
    {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// The cargo profile being built (`dist`, `release`, ...): the directory above `build/` in
/// `OUT_DIR` (`<target dir>[/<triple>]/<profile>/build/<package>-<hash>/out`).
fn profile_name() -> Option<String> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR")?);
    let profile = out.ancestors().nth(3)?.file_name()?.to_str()?;
    Some(profile.to_owned())
}
