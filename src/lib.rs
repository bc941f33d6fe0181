//! oidc-authz: an Envoy / Istio external-authorization (ext_authz gRPC) server for OIDC bearer
//! tokens. It routes each token to one configured client by exact `iss` + `aud`, verifies it
//! against cached, rotated JWKS, applies path-keyed rules and answers allow or deny.
//!
//! Map (layers, lowest first; a module imports only from its own layer or below — see
//! docs/architecture.md, "Module map"):
//! 1. [`decision`] `Decision`, `Reason` (stable codes) · [`keys`] pure JWK / key types ·
//!    [`json`] strict JSON
//! 2. [`observe`]  metrics registry, trace spans and sampling, URL redaction (no I/O)
//! 3. [`core`]     the decision core, pure: compiled config model, ports (traits the outside world
//!    implements), token, policy, verify, cache, check, explain, snapshot, binding
//! 4. [`outside`]  the only I/O toward the world: fetch (the one HTTP client), files, jwks,
//!    introspect
//! 5. [`config`]   YAML → validated → [`core::model`]; errors name the field
//! 6. [`ops`]      process state and snapshot building, reload, startup self-test, trace export
//! 7. [`doors`]    front doors: gRPC Check, HTTP authorization API, admin HTTP, admin gRPC
//! 8. [`server`]   listeners, limits, drain · [`tools`] CLI tools: explain, check-config, compat, lint,
//!    policy tests (`oidc-authz test`)
//! 9. [`run`]      the one startup path (and [`run::RunningServer`] for tests)
//!
//! [`testkit`] keys and tokens for tests, benches, the demo and `oidc-authz test` (never used by
//! `serve`).
#![forbid(unsafe_code)]

pub mod config;
pub mod core;
pub mod decision;
pub mod doors;
pub mod json;
pub mod keys;
pub mod observe;
pub mod ops;
pub mod outside;
pub mod run;
pub mod server;
pub mod testkit;
pub mod tools;

pub use run::{RunError, RunOptions, run};
