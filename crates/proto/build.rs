//! Compiles `proto/sensegate.proto` into Rust with prost, using protox (a
//! protobuf compiler in Rust) so that no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/sensegate.proto");
    let fds = protox::compile(["proto/sensegate.proto"], ["proto"])?;
    let mut config = prost_build::Config::new();
    // `bytes::Bytes` would share the frame buffer; sensegate has no `bytes`
    // fields, so this only documents the intent for any added later.
    config.bytes(["."]);
    config.compile_fds(fds)?;
    Ok(())
}
