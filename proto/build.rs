//! Compiles `shoal/v1/*.proto` with protox (a pure-Rust protobuf compiler, so no
//! system `protoc` is needed) and generates prost messages and tonic services.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "shoal/v1/common.proto",
    "shoal/v1/cache.proto",
    "shoal/v1/admin.proto",
    "shoal/v1/collection.proto",
    "shoal/v1/batch.proto",
    "shoal/v1/watch.proto",
    "shoal/v1/cluster.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    println!("cargo:rerun-if-changed=google/rpc/status.proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::compile(PROTOS, ["."])?;
    std::fs::write(
        out_dir.join("shoal_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        // Values stay `bytes::Bytes` end to end: a GET hands the stored buffer
        // to the response without copying.
        .bytes(".")
        // The standard error model comes from tonic-types, which also knows
        // its details (BadRequest, ErrorInfo).
        .extern_path(".google.rpc.Status", "::tonic_types::Status")
        // Encodes each message into a buffer sized for it once.
        .codec_path("crate::codec::PresizedCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
