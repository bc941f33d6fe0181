//! The decision core (layer 3): everything that decides one Check, as plain functions over values.
//!
//! Owns: the compiled configuration ([`model`], plain data), what it asks of the outside world
//! ([`ports`]: `KeyProvider`, `Introspect` — traits `outside` implements), finding and parsing
//! the token ([`token`]), path rules and conditions ([`policy`]), routing and verification
//! ([`verify`]), the verified-token cache ([`cache`]), the decision path of one Check
//! ([`check`], with its [`check::Trace`]), the decision trace for `explain` ([`explain`]), one
//! config generation ready to serve ([`snapshot`]) and the pure sender-constraint checks
//! ([`binding`]).
//!
//! Must not: import from `outside`, `config`, `ops`, `doors`, `tools`, `server` or `run`; open a
//! socket or a file; read the clock except where `now` is taken once per Check. It may import
//! only [`crate::decision`], [`crate::keys`], [`crate::json`] and [`crate::observe`].
pub mod binding;
pub mod cache;
pub mod check;
pub mod explain;
pub mod model;
pub mod policy;
pub mod ports;
pub mod snapshot;
pub mod token;
pub mod verify;
