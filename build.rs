//! Compiles the project's own admin gRPC API (proto/). Envoy's types come from `envoy-types`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/oidc_authz/admin/v1/admin.proto"], &["proto"])?;
    Ok(())
}
