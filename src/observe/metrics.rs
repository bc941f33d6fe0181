//! Prometheus metrics (DESIGN §7). A [`Metrics`] value owns its own registry and is passed to
//! whoever records; there is no process-global recorder, so tests never share counters.
//! Label values are bounded by the config (client, rule, key set names and reason codes),
//! never request data.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use std::hash::BuildHasher;
use std::sync::Arc;

use crate::decision::Decision;

/// The front door a Check came through: the `api` label of `checks_total` and
/// `check_duration_seconds`, and a field of every Check log line (DESIGN §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// The ext_authz gRPC Check.
    Grpc,
    /// The HTTP door's `/ext-authz/…` (Envoy `http_service`).
    EnvoyHttp,
    /// The HTTP door's `/forward-auth` (nginx, Traefik, Caddy).
    ForwardAuth,
}

impl Api {
    pub const ALL: [Api; 3] = [Api::Grpc, Api::EnvoyHttp, Api::ForwardAuth];

    pub const fn label(self) -> &'static str {
        match self {
            Api::Grpc => "grpc",
            Api::EnvoyHttp => "envoy_http",
            Api::ForwardAuth => "forward_auth",
        }
    }

    const fn index(self) -> usize {
        match self {
            Api::Grpc => 0,
            Api::EnvoyHttp => 1,
            Api::ForwardAuth => 2,
        }
    }
}

struct CheckHandle {
    labels: [String; 5],
    counter: IntCounter,
}

pub struct Metrics {
    registry: Registry,
    checks: IntCounterVec,
    /// `checks_total` handles, resolved once per label set and then read lock-free.
    check_handles: papaya::HashMap<u64, Arc<CheckHandle>>,
    handle_keys: foldhash::fast::RandomState,
    /// `check_duration_seconds` per [`Api`] (by [`Api::index`]), resolved at start.
    check_duration: [Histogram; 3],
    jwks_fetches: IntCounterVec,
    jwks_keys: IntGaugeVec,
    jwks_last_success: IntGaugeVec,
    jwks_unknown_kid: IntCounterVec,
    kidless_refused: IntCounterVec,
    jwks_age: GaugeVec,
    pub token_cache_hit: IntCounter,
    pub token_cache_miss: IntCounter,
    config_reloads: IntCounterVec,
    shadow_disagreements: IntCounterVec,
    config_last_reload_success: IntGauge,
    trace_export_errors: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("oidc_authz")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // Every name and label set below is a static, valid definition: registration cannot fail
        // except on a programming error caught by the unit test.
        Self::try_new().expect("static metric definitions are valid")
    }

    fn try_new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let checks = IntCounterVec::new(
            opts(
                "checks_total",
                "Check decisions by front door, outcome, reason, client and rule.",
            ),
            &["api", "decision", "reason", "client", "rule"],
        )?;
        let check_duration = HistogramVec::new(
            HistogramOpts::new(
                "check_duration_seconds",
                "Time to decide one Check, by front door.",
            )
            .namespace("oidc_authz")
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0,
                5.0,
            ]),
            &["api"],
        )?;
        let jwks_fetches = IntCounterVec::new(
            opts("jwks_fetches_total", "Key set fetches by result."),
            &["key_set", "result"],
        )?;
        let jwks_keys = IntGaugeVec::new(
            opts("jwks_keys", "Usable keys in the key set."),
            &["key_set"],
        )?;
        let jwks_last_success = IntGaugeVec::new(
            opts(
                "jwks_last_success_timestamp_seconds",
                "Unix time of the last successful fetch.",
            ),
            &["key_set"],
        )?;
        let jwks_unknown_kid = IntCounterVec::new(
            opts(
                "jwks_unknown_kid_total",
                "Tokens whose kid was not in the key set.",
            ),
            &["key_set"],
        )?;
        let kidless_refused = IntCounterVec::new(
            opts(
                "kidless_refused_total",
                "Tokens without kid refused unverified: the key set has too many keys for their alg.",
            ),
            &["key_set"],
        )?;
        let jwks_age = GaugeVec::new(
            opts(
                "jwks_age_seconds",
                "Seconds since the key set's last successful fetch (+Inf: never loaded).",
            ),
            &["key_set"],
        )?;
        let cache = IntCounterVec::new(
            opts(
                "token_cache_requests_total",
                "Verified-token cache lookups.",
            ),
            &["result"],
        )?;
        let config_reloads = IntCounterVec::new(
            opts("config_reloads_total", "Config reloads by result."),
            &["result"],
        )?;
        let shadow_disagreements = IntCounterVec::new(
            opts(
                "shadow_disagreements_total",
                "Checks the --shadow-config candidate decided otherwise than the live config.",
            ),
            &["live_decision", "shadow_decision", "rule"],
        )?;
        let config_last_reload_success = IntGauge::with_opts(opts(
            "config_last_reload_success",
            "1 if the last config (re)load succeeded, else 0.",
        ))?;
        let trace_export_errors = IntCounter::with_opts(opts(
            "trace_export_errors_total",
            "Batches of spans the OTLP exporter failed to send (the spans are dropped).",
        ))?;
        let build_info = IntGaugeVec::new(opts("build_info", "Build information."), &["version"])?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(checks.clone()))?;
        registry.register(Box::new(check_duration.clone()))?;
        registry.register(Box::new(jwks_fetches.clone()))?;
        registry.register(Box::new(jwks_keys.clone()))?;
        registry.register(Box::new(jwks_last_success.clone()))?;
        registry.register(Box::new(jwks_unknown_kid.clone()))?;
        registry.register(Box::new(kidless_refused.clone()))?;
        registry.register(Box::new(jwks_age.clone()))?;
        registry.register(Box::new(cache.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(shadow_disagreements.clone()))?;
        registry.register(Box::new(config_last_reload_success.clone()))?;
        registry.register(Box::new(trace_export_errors.clone()))?;
        registry.register(Box::new(build_info))?;
        for r in ["ok", "error"] {
            config_reloads.with_label_values(&[r]);
        }
        Ok(Metrics {
            registry,
            checks,
            check_handles: papaya::HashMap::new(),
            handle_keys: foldhash::fast::RandomState::default(),
            check_duration: Api::ALL.map(|a| check_duration.with_label_values(&[a.label()])),
            jwks_fetches,
            jwks_keys,
            jwks_last_success,
            jwks_unknown_kid,
            kidless_refused,
            jwks_age,
            token_cache_hit: cache.with_label_values(&["hit"]),
            token_cache_miss: cache.with_label_values(&["miss"]),
            config_reloads,
            shadow_disagreements,
            config_last_reload_success,
            trace_export_errors,
        })
    }

    /// Count one Check of the front door `api` and observe its duration. Lock-free once the
    /// label set has been seen (no per-Check label lookup in the registry).
    pub fn record_check(&self, api: Api, decision: &Decision, seconds: f64) {
        let (d, reason, client, rule) = match decision {
            Decision::Allow(a) => (
                if a.audit.is_some() {
                    "audit_deny"
                } else {
                    "allow"
                },
                a.audit.as_ref().map_or("", |d| d.reason.code()),
                a.client.as_deref().unwrap_or(""),
                a.rule.as_str(),
            ),
            Decision::Deny {
                deny, rule, client, ..
            } => (
                "deny",
                deny.reason.code(),
                client.as_deref().unwrap_or(""),
                rule.as_deref().unwrap_or(""),
            ),
        };
        let labels = [api.label(), d, reason, client, rule];
        let key = self.handle_keys.hash_one(labels);
        let guard = self.check_handles.guard();
        match self.check_handles.get(&key, &guard) {
            Some(handle) if handle.labels.iter().map(String::as_str).eq(labels) => {
                handle.counter.inc()
            }
            _ => {
                let counter = self.checks.with_label_values(&labels);
                counter.inc();
                // Bounded by config: label values are reason codes and client / rule names.
                let handle = CheckHandle {
                    labels: labels.map(str::to_owned),
                    counter,
                };
                self.check_handles.insert(key, Arc::new(handle), &guard);
            }
        }
        self.check_duration[api.index()].observe(seconds);
    }

    /// A key set is in the config: its series exist from now on, at 0 until events move them
    /// (`jwks_last_success_timestamp_seconds` 0 until the first success), so alerts and
    /// `rate()` work before the first fetch. Never lowers a value already there.
    pub fn key_set_known(&self, key_set: &str) {
        for r in ["ok", "error"] {
            self.jwks_fetches.with_label_values(&[key_set, r]);
        }
        self.jwks_keys.with_label_values(&[key_set]);
        self.jwks_last_success.with_label_values(&[key_set]);
        self.jwks_unknown_kid.with_label_values(&[key_set]);
        self.kidless_refused.with_label_values(&[key_set]);
    }

    /// The OTLP exporter failed to send a batch.
    pub fn trace_export_error(&self) {
        self.trace_export_errors.inc();
    }

    pub fn jwks_fetch(&self, key_set: &str, ok: bool) {
        self.jwks_fetches
            .with_label_values(&[key_set, if ok { "ok" } else { "error" }])
            .inc();
    }

    pub fn jwks_loaded(&self, key_set: &str, keys: usize) {
        self.jwks_keys
            .with_label_values(&[key_set])
            .set(i64::try_from(keys).unwrap_or(i64::MAX));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.jwks_last_success
            .with_label_values(&[key_set])
            .set(i64::try_from(now).unwrap_or(i64::MAX));
    }

    /// Set at scrape time from the key set's state.
    pub fn set_jwks_age(&self, key_set: &str, seconds: f64) {
        self.jwks_age.with_label_values(&[key_set]).set(seconds);
    }

    pub fn jwks_unknown_kid(&self, key_set: &str) {
        self.jwks_unknown_kid.with_label_values(&[key_set]).inc();
    }

    /// A token without `kid` was refused unverified (too many keys for its alg).
    pub fn kidless_refused(&self, key_set: &str) {
        self.kidless_refused.with_label_values(&[key_set]).inc();
    }

    pub fn kidless_refused_count(&self, key_set: &str) -> u64 {
        self.kidless_refused.with_label_values(&[key_set]).get()
    }

    pub fn config_reload(&self, ok: bool) {
        self.config_reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
        self.config_last_reload_success.set(i64::from(ok));
    }

    /// The shadow config decided otherwise (`rule`: the live decision's rule, bounded by config).
    pub fn shadow_disagreement(&self, live: &str, shadow: &str, rule: &str) {
        self.shadow_disagreements
            .with_label_values(&[live, shadow, rule])
            .inc();
    }

    pub fn shadow_disagreements_count(&self, live: &str, shadow: &str, rule: &str) -> u64 {
        self.shadow_disagreements
            .with_label_values(&[live, shadow, rule])
            .get()
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The value of `oidc_authz_checks_total` for one label set, summed over the front doors
    /// (tests, explain). Creates no series.
    pub fn checks_count(&self, decision: &str, reason: &str, client: &str, rule: &str) -> u64 {
        let want = [decision, reason, client, rule];
        let guard = self.check_handles.guard();
        self.check_handles
            .values(&guard)
            .filter(|h| h.labels[1..].iter().map(String::as_str).eq(want))
            .map(|h| h.counter.get())
            .sum()
    }

    pub fn jwks_fetch_count(&self, key_set: &str, ok: bool) -> u64 {
        self.jwks_fetches
            .with_label_values(&[key_set, if ok { "ok" } else { "error" }])
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_renders() {
        let m = Metrics::new();
        m.jwks_fetch("k", true);
        m.kidless_refused("k");
        assert_eq!(m.kidless_refused_count("k"), 1);
        let text = m.render();
        assert!(text.contains("oidc_authz_kidless_refused_total{key_set=\"k\"} 1"));
        assert!(text.contains("oidc_authz_build_info{version="));
        assert!(text.contains("oidc_authz_jwks_fetches_total{key_set=\"k\",result=\"ok\"} 1"));
        assert!(text.contains("# TYPE oidc_authz_check_duration_seconds histogram"));
        assert!(text.contains("oidc_authz_trace_export_errors_total 0"));
        let deny = Decision::Deny {
            deny: crate::decision::Deny::new(crate::decision::Reason::InvalidRequest, "test"),
            rule: None,
            client: None,
            token_presented: false,
        };
        m.record_check(Api::ForwardAuth, &deny, 0.001);
        m.record_check(Api::Grpc, &deny, 0.001);
        assert_eq!(m.checks_count("deny", "invalid_request", "", ""), 2);
        let text = m.render();
        assert!(text.contains(r#"oidc_authz_checks_total{api="forward_auth",client="",decision="deny",reason="invalid_request",rule=""} 1"#), "{text}");
        assert!(
            text.contains(r#"oidc_authz_check_duration_seconds_count{api="grpc"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn known_key_sets_start_at_zero() {
        let m = Metrics::new();
        m.key_set_known("https://idp.example/keys");
        let text = m.render();
        for series in [
            r#"oidc_authz_jwks_fetches_total{key_set="https://idp.example/keys",result="ok"} 0"#,
            r#"oidc_authz_jwks_fetches_total{key_set="https://idp.example/keys",result="error"} 0"#,
            r#"oidc_authz_jwks_keys{key_set="https://idp.example/keys"} 0"#,
            r#"oidc_authz_jwks_last_success_timestamp_seconds{key_set="https://idp.example/keys"} 0"#,
            r#"oidc_authz_jwks_unknown_kid_total{key_set="https://idp.example/keys"} 0"#,
            r#"oidc_authz_kidless_refused_total{key_set="https://idp.example/keys"} 0"#,
            r#"oidc_authz_token_cache_requests_total{result="hit"} 0"#,
            r#"oidc_authz_token_cache_requests_total{result="miss"} 0"#,
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
        m.jwks_fetch("https://idp.example/keys", true);
        m.key_set_known("https://idp.example/keys");
        assert_eq!(m.jwks_fetch_count("https://idp.example/keys", true), 1);
    }
}
