//! Trace export (DESIGN §12): the OTLP/gRPC exporter behind the spans of
//! [`crate::observe::spans`], started from the `telemetry` config.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData,
};

use crate::core::model::TelemetryConfig;
use crate::observe::metrics::Metrics;
use crate::observe::spans::{self, Telemetry};

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
    let t = Arc::new(Telemetry::new(provider, tracer, cfg.sample));
    spans::install_current(t.clone());
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
        spans::uninstall(&self.0);
        let t = self.0;
        // The SDK blocks on its export thread; keep the runtime's workers free meanwhile.
        let flushed = tokio::task::spawn_blocking(move || {
            t.provider().shutdown_with_timeout(Duration::from_secs(10))
        })
        .await;
        match flushed {
            Ok(Ok(())) => tracing::info!("traces flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "traces not flushed"),
            Err(e) => tracing::warn!(error = %e, "traces not flushed"),
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
