//! Operator tools (layer 8): what the CLI offers besides `serve`.
//!
//! Owns: `explain` on the command line and its rendering ([`explain`]; the trace itself comes
//! from `core::explain`), `check-config` ([`check_config`]), the flask-jwt-oidc compatibility
//! mode ([`compat`]), the policy lint ([`lint`]) and the offline policy tests of `oidc-authz test`
//! ([`policy_test`]).
//!
//! Must not: decide a request its own way (the verdict is always `core::check`'s), and nothing
//! below this layer may import from here.
pub mod check_config;
pub mod compat;
pub mod explain;
pub mod lint;
pub mod policy_test;
