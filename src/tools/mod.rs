//! Operator tools (layer 8): what the CLI offers besides `serve`.
//!
//! Owns: the decision trace of one request ([`explain`]), the flask-jwt-oidc compatibility
//! mode ([`compat`]) and the check-config policy lint ([`lint`]).
//!
//! Must not: decide a request its own way (the verdict is always `core::check`'s), and nothing
//! below this layer may import from here.
pub mod compat;
pub mod explain;
pub mod lint;
