//! Operations (layer 6): the running process around the core.
//!
//! Owns: the shared process state, the current snapshot and how one is built from a config
//! ([`state`]), config hot reload ([`reload`]), the startup crypto self-test ([`selftest`]) and
//! trace export ([`telemetry`]: the OTLP exporter behind `observe::spans`).
//!
//! Must not: decide a request (that is `core`), speak a wire protocol to clients (that is
//! `doors`) or import from `doors`, `tools`, `server` or `run`.
pub mod reload;
pub mod selftest;
pub mod state;
pub mod telemetry;
