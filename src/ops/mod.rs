//! Operations (layer 5): the running process around the core.
//!
//! Owns: the metrics registry ([`metrics`]), the shared process state and the current snapshot
//! ([`state`]), config hot reload ([`reload`]), the startup crypto self-test ([`selftest`]) and trace
//! export ([`telemetry`]: OTLP, a span only for sampled Checks).
//!
//! Must not: decide a request (that is `core`), speak a wire protocol to clients (that is
//! `doors`) or import from `doors`, `tools`, `server` or `run`.
pub mod metrics;
pub mod reload;
pub mod selftest;
pub mod state;
pub mod telemetry;
