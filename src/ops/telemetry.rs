//! OpenTelemetry traces (DESIGN §12): the `telemetry` config, the OTLP/gRPC exporter, the
//! per-Check sampling decision and the spans (`oidc_authz.check`, `oidc_authz.jwks_fetch`,
//! `oidc_authz.introspect`).
//!
//! The cost model: with tracing off a Check pays one atomic load ([`current`]). With tracing on,
//! the sampling decision comes first and needs no span: `sample: parent` reads the flag of the
//! W3C `traceparent` (a header lookup and two hex digits), `sample: {ratio: R}` draws one number
//! from a counter hash. Only a sampled Check builds a span, formats attributes and wraps its
//! future in a context. Export is batched on the SDK's own thread through a bounded queue: a full
//! queue drops spans, it never blocks a Check; failed exports are counted
//! (`oidc_authz_trace_export_errors_total`) and logged at most once a minute.
//!
//! Where the parent comes from: Envoy sends the context of its ext_authz egress span as the
//! `traceparent` of the Check call's gRPC metadata (with an empty `tracestate`, accepted as none);
//! `attributes.request.http.headers` carries only the client's own `traceparent`, which is the
//! fallback when the metadata has none.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use opentelemetry::trace::{
    FutureExt as _, SamplingDecision, SamplingResult, Span as _, SpanContext, SpanId, SpanKind,
    Status, TraceContextExt as _, TraceFlags, TraceId, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
};
use serde::Deserialize;

use crate::decision::Decision;
use crate::ops::metrics::Metrics;

pub const DEFAULT_SERVICE_NAME: &str = "oidc-authz";
pub const CHECK_SPAN: &str = "oidc_authz.check";

/// The validated `telemetry` section.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// `http://host:port` of an OTLP/gRPC receiver (a collector).
    pub otlp_endpoint: String,
    pub service_name: String,
    pub sample: Sample,
}

/// Which Checks are traced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    /// When the Check's `traceparent` has the sampled flag.
    Parent,
    /// This fraction of Checks (0..=1), whatever the incoming flag.
    Ratio(f64),
}

/// `telemetry:` as written in YAML.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    pub(crate) otlp_endpoint: Option<String>,
    service_name: Option<String>,
    sample: Option<serde_yaml::Value>,
}

/// Validate `telemetry` (`otlp_endpoint` already `${VAR}`-expanded). `None`: tracing off (no
/// endpoint) or an error was reported through `err`.
pub(crate) fn validate(
    raw: RawTelemetry,
    endpoint: Option<String>,
    err: &mut dyn FnMut(&str, String),
) -> Option<TelemetryConfig> {
    let service_name = raw
        .service_name
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    let mut ok = true;
    if service_name.is_empty()
        || service_name.len() > 255
        || !service_name.bytes().all(|b| b.is_ascii_graphic())
    {
        err(
            "telemetry.service_name",
            "must be 1 to 255 printable ASCII characters without spaces".into(),
        );
        ok = false;
    }
    let sample = match &raw.sample {
        None => Sample::Parent,
        Some(serde_yaml::Value::String(s)) if s == "parent" => Sample::Parent,
        Some(serde_yaml::Value::Mapping(m)) if m.len() == 1 => {
            match m.get("ratio").and_then(serde_yaml::Value::as_f64) {
                Some(r) if (0.0..=1.0).contains(&r) => Sample::Ratio(r),
                _ => {
                    err(
                        "telemetry.sample.ratio",
                        "must be a number from 0 to 1 (e.g. {ratio: 0.01})".into(),
                    );
                    ok = false;
                    Sample::Parent
                }
            }
        }
        Some(_) => {
            err(
                "telemetry.sample",
                "must be `parent` or `{ratio: R}` with 0 <= R <= 1".into(),
            );
            ok = false;
            Sample::Parent
        }
    };
    let endpoint = endpoint?;
    match reqwest::Url::parse(&endpoint) {
        Ok(u)
            if u.scheme() == "http"
                && u.host_str().is_some_and(|h| !h.is_empty())
                && u.username().is_empty()
                && u.password().is_none()
                && u.query().is_none()
                && u.fragment().is_none() => {}
        Ok(u) if u.scheme() == "https" => {
            err(
                "telemetry.otlp_endpoint",
                "https is not supported yet: point it at a collector over http://host:4317 (a sidecar or node agent)".into(),
            );
            ok = false;
        }
        _ => {
            err(
                "telemetry.otlp_endpoint",
                format!(
                    "`{}` is not an OTLP/gRPC address like http://otel-collector:4317 (no userinfo, query or fragment)",
                    crate::outside::fetch::redact(&endpoint)
                ),
            );
            ok = false;
        }
    }
    ok.then_some(TelemetryConfig {
        otlp_endpoint: endpoint,
        service_name,
        sample,
    })
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

/// Keeps tracing on; [`Guard::shutdown`] flushes the queue and turns it off.
pub struct Guard(Arc<Telemetry>);

/// Start the exporter and install the tracer. Must run inside the tokio runtime (the gRPC
/// channel lives there). An exporter that cannot be built is logged, never fatal.
pub fn install(cfg: &TelemetryConfig, metrics: Arc<Metrics>) -> Option<Guard> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(cfg.otlp_endpoint.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the OTLP exporter: tracing off");
            return None;
        }
    };
    let exporter = Counting {
        inner: exporter,
        metrics,
        last_log_ms: AtomicU64::new(0),
        suppressed: AtomicU64::new(0),
        epoch: Instant::now(),
    };
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(4096)
                .with_max_export_batch_size(512)
                .with_scheduled_delay(Duration::from_secs(2))
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        // Check spans carry their own sampling result; this rules the fetch spans: children of
        // a traced Check are traced, and background fetches (roots) always.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(
            opentelemetry_sdk::Resource::builder_empty()
                .with_service_name(cfg.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("oidc-authz");
    let threshold = match cfg.sample {
        Sample::Ratio(r) if r >= 1.0 => u64::MAX,
        Sample::Ratio(r) => (r * u64::MAX as f64) as u64,
        Sample::Parent => 0,
    };
    let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8);
    let t = Arc::new(Telemetry {
        provider,
        tracer,
        sample: cfg.sample,
        threshold,
        draws: AtomicU64::new(seed),
    });
    CURRENT.store(Some(t.clone()));
    tracing::info!(
        endpoint = %cfg.otlp_endpoint,
        service_name = %cfg.service_name,
        "exporting traces over OTLP/gRPC"
    );
    Some(Guard(t))
}

impl Guard {
    /// Flush what is queued (bounded by the exporter timeout) and turn tracing off.
    pub async fn shutdown(self) {
        let _ = CURRENT.compare_and_swap(&Some(self.0.clone()), None::<Arc<Telemetry>>);
        let t = self.0;
        // The SDK blocks on its export thread; keep the runtime's workers free meanwhile.
        let flushed = tokio::task::spawn_blocking(move || {
            t.provider.shutdown_with_timeout(Duration::from_secs(10))
        })
        .await;
        match flushed {
            Ok(Ok(())) => tracing::info!("traces flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "traces not flushed"),
            Err(e) => tracing::warn!(error = %e, "traces not flushed"),
        }
    }
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
        crate::outside::fetch::redact(value)
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

/// The OTLP exporter, counting and (rate-limited) logging its failures.
struct Counting<E> {
    inner: E,
    metrics: Arc<Metrics>,
    last_log_ms: AtomicU64,
    suppressed: AtomicU64,
    epoch: Instant,
}

impl<E: std::fmt::Debug> std::fmt::Debug for Counting<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

const EXPORT_ERROR_LOG_EVERY_MS: u64 = 60_000;

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Counting<E>
{
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        if let Err(e) = &result {
            self.metrics.trace_export_error();
            let now = self.epoch.elapsed().as_millis() as u64 + EXPORT_ERROR_LOG_EVERY_MS;
            let last = self.last_log_ms.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= EXPORT_ERROR_LOG_EVERY_MS
                && self
                    .last_log_ms
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
                tracing::warn!(error = %e, spans, suppressed, "trace export failed; spans dropped");
            } else {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
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
