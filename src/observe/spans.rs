//! Trace spans (DESIGN §12): the per-Check sampling decision and the spans
//! (`oidc_authz.check`, `oidc_authz.jwks_fetch`, `oidc_authz.introspect`). The exporter that
//! ships them is started by `ops::telemetry`, which installs the tracer here.
//!
//! The cost model: with tracing off a Check pays one atomic load ([`current`]). With tracing on,
//! the sampling decision comes first and needs no span: `sample: parent` reads the flag of the
//! W3C `traceparent` (a header lookup and two hex digits), `sample: {ratio: R}` draws one number
//! from a counter hash. Only a sampled Check builds a span, formats attributes and wraps its
//! future in a context.
//!
//! Where the parent comes from: Envoy sends the context of its ext_authz egress span as the
//! `traceparent` of the Check call's gRPC metadata (with an empty `tracestate`, accepted as none);
//! `attributes.request.http.headers` carries only the client's own `traceparent`, which is the
//! fallback when the metadata has none.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use opentelemetry::trace::{
    FutureExt as _, SamplingDecision, SamplingResult, Span as _, SpanContext, SpanId, SpanKind,
    Status, TraceContextExt as _, TraceFlags, TraceId, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::decision::Decision;

pub const CHECK_SPAN: &str = "oidc_authz.check";

/// Which Checks are traced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    /// When the Check's `traceparent` has the sampled flag.
    Parent,
    /// This fraction of Checks (0..=1), whatever the incoming flag.
    Ratio(f64),
}

/// The tracer of the running server.
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    sample: Sample,
    /// `Sample::Ratio`: a draw below this is sampled (`u64::MAX` for 1).
    threshold: u64,
    draws: AtomicU64,
}

static CURRENT: ArcSwapOption<Telemetry> = ArcSwapOption::const_empty();

/// The installed tracer, if tracing is on (one atomic load).
pub fn current() -> Option<Arc<Telemetry>> {
    CURRENT.load_full()
}

impl Telemetry {
    /// The tracer to install: spans from `tracer`, Checks sampled by `sample`.
    pub fn new(provider: SdkTracerProvider, tracer: SdkTracer, sample: Sample) -> Self {
        let threshold = match sample {
            Sample::Ratio(r) if r >= 1.0 => u64::MAX,
            Sample::Ratio(r) => (r * u64::MAX as f64) as u64,
            Sample::Parent => 0,
        };
        let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8);
        Telemetry {
            provider,
            tracer,
            sample,
            threshold,
            draws: AtomicU64::new(seed),
        }
    }

    /// The provider (to flush and shut down).
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }
}

/// Install `t` as the running tracer.
pub fn install_current(t: Arc<Telemetry>) {
    CURRENT.store(Some(t));
}

/// Turn tracing off if `t` is still the running tracer.
pub fn uninstall(t: &Arc<Telemetry>) {
    let _ = CURRENT.compare_and_swap(&Some(t.clone()), None::<Arc<Telemetry>>);
}

/// A W3C `traceparent`: `00-<trace id>-<parent id>-<flags>`. `None` when malformed.
fn parse_traceparent(v: &str) -> Option<(TraceId, SpanId, bool)> {
    let v = v.trim();
    let mut parts = v.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    // Version 00 has exactly four fields; later versions may append more (W3C §3.2.4).
    if version.len() != 2
        || version == "ff"
        || (version == "00" && parts.next().is_some())
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
        || !v.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
    {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    (trace != TraceId::INVALID && span != SpanId::INVALID).then_some((trace, span, flags & 1 == 1))
}

/// The sampling decision for one Check: `Some` only when it is traced.
///
/// `metadata`: the Check call's gRPC metadata `traceparent` / `tracestate`; `http`: the
/// `traceparent` among the forwarded request headers (looked up only when the metadata has none).
pub fn sample_check<'a>(
    metadata: Option<&'a str>,
    tracestate: Option<&'a str>,
    http: impl FnOnce() -> Option<&'a str>,
) -> Option<SampledCheck> {
    let t = CURRENT.load();
    let t = t.as_ref()?;
    let (parent, tracestate) = match metadata {
        Some(m) => (parse_traceparent(m), tracestate),
        None => (http().and_then(parse_traceparent), None),
    };
    match t.sample {
        Sample::Parent => match parent {
            Some((_, _, true)) => {}
            _ => return None,
        },
        Sample::Ratio(_) => {
            let draw = splitmix(t.draws.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed));
            if t.threshold != u64::MAX && draw >= t.threshold {
                return None;
            }
        }
    }
    // Sampled: from here on, span work.
    let cx = match parent {
        Some((trace, span, _)) => {
            let state = tracestate
                .filter(|s| !s.trim().is_empty())
                .and_then(|s| s.parse::<TraceState>().ok())
                .unwrap_or_default();
            Context::new().with_remote_span_context(SpanContext::new(
                trace,
                span,
                TraceFlags::SAMPLED,
                true,
                state,
            ))
        }
        None => Context::new(),
    };
    let span = t
        .tracer
        .span_builder(CHECK_SPAN)
        .with_kind(SpanKind::Server)
        .with_sampling_result(SamplingResult {
            decision: SamplingDecision::RecordAndSample,
            attributes: Vec::new(),
            trace_state: cx.span().span_context().trace_state().clone(),
        })
        .start_with_context(&t.tracer, &cx);
    Some(SampledCheck {
        cx: cx.with_span(span),
    })
}

fn splitmix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

tokio::task_local! {
    /// Set by the decision path when the verified-token cache answered (traced Checks only).
    static CACHE_HIT: std::cell::Cell<bool>;
}

/// The decision path found the token in the verified-token cache. A no-op outside a traced
/// Check.
pub fn note_cache_hit() {
    let _ = CACHE_HIT.try_with(|c| c.set(true));
}

/// A traced Check: its span, open until [`SampledCheck::finish`].
pub struct SampledCheck {
    cx: Context,
}

impl SampledCheck {
    /// Run the decision with this span current (fetches it triggers become its children);
    /// returns the decision and whether the token cache answered.
    pub async fn run<T>(&self, fut: impl Future<Output = T>) -> (T, bool) {
        let fut = CACHE_HIT.scope(std::cell::Cell::new(false), async move {
            let out = fut.await;
            (out, CACHE_HIT.with(std::cell::Cell::get))
        });
        fut.with_context(self.cx.clone()).await
    }

    /// Record the outcome (config-bounded names and codes only, never request data) and end.
    pub fn finish(self, decision: &Decision, cache_hit: bool, api: &'static str) {
        let (d, reason, client, rule) = match decision {
            Decision::Allow(a) => ("allow", "", a.client.as_deref(), Some(a.rule.as_str())),
            Decision::Deny {
                deny, rule, client, ..
            } => (
                "deny",
                deny.reason.code(),
                client.as_deref(),
                rule.as_deref(),
            ),
        };
        let span = self.cx.span();
        span.set_attributes([
            KeyValue::new("client", client.unwrap_or("").to_owned()),
            KeyValue::new("rule", rule.unwrap_or("").to_owned()),
            KeyValue::new("decision", d),
            KeyValue::new("reason", reason),
            KeyValue::new("cache_hit", cache_hit),
            KeyValue::new("api", api),
        ]);
        if d == "deny" {
            span.set_status(Status::error(reason));
        }
        span.end();
    }
}

/// A span around one outbound call (JWKS fetch, introspection): a child of the traced Check
/// that triggered it, else a root. `None` when tracing is off.
pub struct CallSpan(Option<opentelemetry_sdk::trace::Span>);

/// Start a call span with one attribute naming what is called: `key_set` (the key set's id,
/// already redacted) or `issuer` (redacted here: no userinfo, no query values).
pub fn call_span(name: &'static str, key: &'static str, value: &str) -> CallSpan {
    let Some(t) = current() else {
        return CallSpan(None);
    };
    let value = if key == "issuer" {
        crate::observe::redact(value)
    } else {
        value.to_owned()
    };
    let attrs = vec![KeyValue::new(key, value)];
    let span = t
        .tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_attributes(attrs)
        .start_with_context(&t.tracer, &Context::current());
    CallSpan(Some(span))
}

impl CallSpan {
    /// End with the outcome; `error` must be fit to log (no secret, URLs redacted).
    pub fn end(self, error: Option<Cow<'static, str>>) {
        if let Some(mut span) = self.0 {
            span.set_attribute(KeyValue::new("ok", error.is_none()));
            if let Some(e) = error {
                span.set_status(Status::error(e));
            }
            span.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parsing() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let (t, s, sampled) = parse_traceparent(tp).unwrap();
        assert_eq!(t.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(s.to_string(), "b7ad6b7169203331");
        assert!(sampled);
        assert!(!parse_traceparent(&tp.replace("-01", "-00")).unwrap().2);
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        // a later version may append fields
        assert!(parse_traceparent(&format!("01{}-00", &tp[2..])).is_some());
    }

    #[test]
    fn off_means_no_decision_at_all() {
        // No tracer installed in unit tests: nothing is sampled and the http lookup never runs.
        let s = sample_check(
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            None,
            || panic!("no lookup when tracing is off"),
        );
        assert!(s.is_none());
    }

    #[test]
    fn splitmix_spreads() {
        let below = (0..10_000u64)
            .filter(|i| splitmix(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) < u64::MAX / 2)
            .count();
        assert!((4_500..5_500).contains(&below), "{below}");
    }
}
