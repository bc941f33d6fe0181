//! Front doors (layer 7): the protocols clients speak to us, converted to and from the core's
//! types at the edge.
//!
//! Owns: the Envoy ext_authz gRPC `Check` service ([`grpc`]), the admin HTTP port
//! ([`admin`]: `/healthz` `/readyz` `/metrics`) and the loopback admin gRPC API
//! ([`admin_grpc`]: Explain, KeySets). A new door (the HTTP authorization API) goes here as
//! `http.rs`.
//!
//! Must not: decide anything itself (every verdict comes from `core::check`), do outbound I/O
//! or bind listeners (that is `server`), or import from `server` or `run`.
pub mod admin;
pub mod admin_grpc;
pub mod grpc;
