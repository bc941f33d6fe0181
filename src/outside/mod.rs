//! The outside world (layer 4): the only I/O toward the network and the filesystem.
//!
//! Owns: the one HTTP client with its URL rules and shared discovery cache ([`fetch`]), every
//! config / key file read ([`files`]) and whether one is still being written ([`writers`]),
//! key-set fetch / refresh / unknown-kid refetch ([`jwks`], implementing
//! `core::ports::KeyProvider`) and RFC 7662 introspection ([`introspect`], implementing
//! `core::ports::Introspect`).
//!
//! Must not: decide a request (that is `core`), own a listener (that is `doors` / `server`) or
//! import from `config`, `ops`, `doors`, `tools`, `server` or `run` (it reads the compiled
//! `core::model` types).
pub mod fetch;
pub mod files;
pub mod introspect;
pub mod jwks;
pub mod writers;
