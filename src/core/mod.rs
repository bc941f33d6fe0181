//! The decision core (layer 2): everything that decides one Check, as plain functions over values.
//!
//! Owns: finding and parsing the token ([`token`]), path rules and conditions ([`policy`]),
//! routing and verification ([`verify`]), the verified-token cache ([`cache`]), the decision
//! path of one Check ([`check`]), one config generation ready to serve ([`snapshot`]) and the
//! pure sender-constraint checks ([`binding`]).
//!
//! Must not: import from `outside`, `ops`, `doors`, `tools`, `server` or `run`; open a socket or
//! a file; read the clock except where `now` is taken once per Check. It may import only
//! [`crate::decision`] and [`crate::keys`]. Still to break (docs/architecture.md, "Upward
//! imports still to break"): the compiled config types it reads from `config`, the key sets and
//! introspector it calls in `outside`, and the cache / kid-less counters in `ops::metrics`.
pub mod binding;
pub mod cache;
pub mod check;
pub mod policy;
pub mod snapshot;
pub mod token;
pub mod verify;
