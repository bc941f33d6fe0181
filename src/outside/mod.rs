//! The outside world (layer 4): the only I/O toward the network and the filesystem.
//!
//! Owns: the one HTTP client with its URL rules and shared discovery cache ([`fetch`]), every
//! config / key file read ([`files`]), key-set fetch / refresh / unknown-kid refetch ([`jwks`])
//! and RFC 7662 introspection ([`introspect`]).
//!
//! Must not: decide a request (that is `core`), own a listener (that is `doors` / `server`) or
//! import from `ops`, `doors`, `tools`, `server` or `run`.
pub mod fetch;
pub mod files;
pub mod introspect;
pub mod jwks;
