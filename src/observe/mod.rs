//! What the process reports about itself (layer 1, beside `decision` and `keys`): the metrics
//! registry ([`metrics`]), the trace spans and the per-Check sampling decision ([`spans`]), and
//! the one redaction of URLs for labels, logs and spans ([`redact()`]).
//!
//! Owns no I/O: `/metrics` is served by `doors::admin`, the OTLP exporter is started by
//! `ops::telemetry`. Must not import from anything but `decision`.
pub mod metrics;
mod redact;
pub mod spans;

pub use redact::redact;
