//! Front doors (layer 7): the protocols clients speak to us, converted to and from the core's
//! types at the edge.
//!
//! Owns: the Envoy ext_authz gRPC `Check` service ([`grpc`]), the HTTP authorization API
//! ([`http`]: `/forward-auth`, `/ext-authz/…`, DESIGN §9), the admin HTTP port
//! ([`admin`]: `/healthz` `/readyz` `/metrics`) and the loopback admin gRPC API
//! ([`admin_grpc`]: Explain, KeySets).
//!
//! Must not: decide anything itself (every verdict comes from `core::check`), do outbound I/O
//! or bind listeners (that is `server`), or import from `server` or `run`.
pub mod admin;
pub mod admin_grpc;
pub mod grpc;
pub mod http;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::check::{self, CheckInput};
use crate::decision::Decision;
use crate::observe::metrics::Api;
use crate::observe::spans::SampledCheck;
use crate::ops::state::ServerState;

/// Every door's decision: the current snapshot, the token cache, this replica's DPoP replay
/// memory and `now` taken once, through [`check::decide_bound`]; then the same request against
/// the `--shadow-config` candidate, if one is set (`ops::shadow`, never the answer).
pub(crate) async fn decide(state: &ServerState, input: &CheckInput<'_>) -> Decision {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let snap = state.snapshot();
    let cache = state.cache();
    let decision = check::decide_bound(
        &snap,
        Some(&cache),
        Some(&state.metrics),
        Some(&state.replay),
        input,
        now,
    )
    .await;
    crate::ops::shadow::observe(state, input, now, &decision).await;
    decision
}

/// Every door: run the decision, inside the Check's span when it is sampled (the span gets
/// `api` and the outcome; an unsampled Check does no span work at all, telemetry.rs).
pub(crate) async fn run_sampled(
    sampled: Option<SampledCheck>,
    decide: impl Future<Output = Decision>,
    api: Api,
) -> Decision {
    match sampled {
        None => decide.await,
        Some(t) => {
            let (decision, cache_hit) = t.run(decide).await;
            t.finish(&decision, cache_hit, api.label());
            decision
        }
    }
}

/// Every door, once its Check is decided: count it (`api` label) and write its log line.
/// No `tracing` span per Check: with the JSON formatter a span formats its fields on creation
/// and on every record, which cost ~12% of a warm Check's CPU (perf, docs/performance.md). The
/// events below carry every field themselves.
pub(crate) fn finish(
    state: &ServerState,
    api: Api,
    decision: &Decision,
    elapsed: Duration,
    request_id: &str,
) {
    state
        .metrics
        .record_check(api, decision, elapsed.as_secs_f64());
    match decision {
        Decision::Allow(a) if a.audit.is_some() => {
            let (reason, detail) = a
                .audit
                .as_ref()
                .map(|d| (d.reason.code(), d.detail))
                .unwrap_or_default();
            // `mode: audit`: logged like a deny, answered as an allow.
            tracing::info!(
                request_id,
                api = api.label(),
                decision = "audit_deny",
                client = a.client.as_deref().unwrap_or(""),
                rule = %a.rule,
                reason,
                detail,
                latency_us = elapsed.as_micros() as u64,
                "audit_deny"
            );
        }
        Decision::Allow(a) => {
            tracing::debug!(
                request_id,
                api = api.label(),
                decision = "allow",
                client = a.client.as_deref().unwrap_or(""),
                rule = %a.rule,
                latency_us = elapsed.as_micros() as u64,
                "allow"
            );
        }
        Decision::Deny {
            deny, rule, client, ..
        } => {
            // One line per deny. Never the token or a header value: only config-bounded names.
            tracing::info!(
                request_id,
                api = api.label(),
                decision = "deny",
                client = client.as_deref().unwrap_or(""),
                rule = rule.as_deref().unwrap_or(""),
                reason = deny.reason.code(),
                detail = deny.detail,
                latency_us = elapsed.as_micros() as u64,
                "deny"
            );
        }
    }
}

/// A request id fit for a log line: printable ASCII up to 128 bytes, else `invalid`.
pub(crate) fn clean_request_id(id: &str) -> &str {
    if id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) {
        id
    } else {
        "invalid"
    }
}
