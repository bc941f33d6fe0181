//! oidc-authz: an Envoy / Istio external-authorization (ext_authz gRPC) server for OIDC bearer
//! tokens. It routes each token to one configured client by exact `iss` + `aud`, verifies it
//! against cached, rotated JWKS, applies path-keyed rules and answers allow or deny.
//!
//! Layout (pure core, I/O shell):
//! - [`config`]   YAML schema → validated, compiled [`config::Config`]; errors name the field
//! - [`compat`]   flask-jwt-oidc compatibility: `JWT_OIDC_*` environment → equivalent config YAML
//! - [`token`]    find the token in the request; split / base64url / strict JSON
//! - [`keys`]     pure key material: `Alg`, JWK / JWKS parsing, a parsed `Key` that verifies
//! - [`fetch`]    the only outbound HTTP client: URL rules, redaction, shared discovery cache
//! - [`files`]    every config / key file read: regular files only, off the runtime, bounded
//! - [`jwks`]     key sets: fetch, refresh, unknown-kid refetch (single-flight)
//! - [`snapshot`] one config generation with its shared key sets, swapped atomically
//! - [`verify`]   route token → client; header, signature and claim checks
//! - [`binding`]  sender-constrained tokens (pure): DPoP proofs, nonces, jti replay memory, mTLS `cnf`
//! - [`introspect`] RFC 7662 introspection: revocation checks, opaque tokens (fail closed)
//! - [`policy`]   path normalisation, rule matching, role / scope / claim conditions
//! - [`lint`]     check-config warnings: shadowed rules, anonymous writes, unreachable clients
//! - [`check`]    the decision path of one Check, composing the above
//! - [`cache`]    the verified-token cache (sharded, bounded by entries and bytes)
//! - [`decision`] `Decision`, `Reason` (stable codes, HTTP status, description)
//! - [`service`]  tonic `Authorization` impl: CheckRequest → decision → CheckResponse
//! - [`http_door`] the HTTP authorization API (`/forward-auth`, `/ext-authz/…`): HTTP → decision → HTTP
//! - [`state`]    the current snapshot, metrics, key registry, draining flag
//! - [`admin`]    HTTP `/healthz` `/readyz` `/metrics`
//! - [`admin_grpc`] loopback-only admin gRPC API (proto/): Explain, KeySets
//! - [`explain`]  the decision trace for one request (why allowed / denied)
//! - [`server`]   the listeners: accept limits, HTTP/2 and HTTP/1 limits, drain
//! - [`run`]      the one startup path: self-test, state, bind, reload, signals, drain
//! - [`metrics`]  the `Metrics` struct owning its Prometheus registry
//! - [`reload`]   config file watch + SIGHUP: validate, then swap atomically
//! - [`selftest`] startup check that exactly one crypto backend is active
//! - [`testkit`]  keys and tokens for tests, benches and the demo (never used by `serve`)
#![forbid(unsafe_code)]

pub mod admin;
pub mod admin_grpc;
pub mod binding;
pub mod cache;
pub mod check;
pub mod compat;
pub mod config;
pub mod decision;
pub mod explain;
pub mod fetch;
pub mod files;
pub mod http_door;
pub mod introspect;
pub mod jwks;
pub mod keys;
pub mod lint;
pub mod metrics;
pub mod policy;
pub mod reload;
pub mod run;
pub mod selftest;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod state;
pub mod testkit;
pub mod token;
pub mod verify;

pub use run::{RunError, RunOptions, run};
