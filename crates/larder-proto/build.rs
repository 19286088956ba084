//! Generates the gRPC types from `proto/` with protox (no system `protoc`), and writes the
//! encoded file descriptor set that server reflection serves.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "larder/cache/v1/cache.proto",
        "larder/cache/v1/cluster.proto",
        "larder/cache/v1/origin.proto",
    ]
    .map(|f| root.join(f));
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("larder_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .bytes(".larder")
        .compile_fds(fds)?;
    Ok(())
}
