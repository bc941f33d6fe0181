//! Compiles the project's own admin gRPC API (proto/). Envoy's types come from `envoy-types`.
//!
//! The .proto files are parsed by `protox` (a protobuf compiler written in Rust), so building needs
//! no `protoc` on the machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["oidc_authz/admin/v1/admin.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
