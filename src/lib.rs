//! oidc-authz: an Envoy / Istio external-authorization (ext_authz gRPC) server for OIDC bearer
//! tokens. It routes each token to one configured client by exact `iss` + `aud`, verifies it
//! against cached, rotated JWKS, applies path-keyed rules and answers allow or deny.
//!
//! Map (layers, lowest first; a module imports only from its own layer or below — see
//! docs/architecture.md):
//! 1. [`decision`] `Decision`, `Reason` (stable codes) · [`keys`] pure JWK / key types
//! 2. [`core`]     the decision core, pure: token, policy, verify, cache, check, snapshot, binding
//! 3. [`config`]   YAML → validated, compiled configuration; errors name the field
//! 4. [`outside`]  the only I/O toward the world: fetch (the one HTTP client), files, jwks, introspect
//! 5. [`ops`]      metrics, process state, reload, startup self-test
//! 6. [`doors`]    front doors: gRPC Check, HTTP authorization API, admin HTTP, admin gRPC
//! 7. [`server`]   listeners, limits, drain · [`run`] the one startup path
//! 8. [`tools`]    CLI tools: explain, compat, lint
//!
//! [`testkit`] keys and tokens for tests, benches and the demo (never used by `serve`).
#![forbid(unsafe_code)]

pub mod config;
pub mod core;
pub mod decision;
pub mod doors;
pub mod keys;
pub mod ops;
pub mod outside;
pub mod run;
pub mod server;
pub mod testkit;
pub mod tools;

pub use run::{RunError, RunOptions, run};
