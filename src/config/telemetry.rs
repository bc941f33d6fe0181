//! The `telemetry` section (DESIGN §12): parsed and validated here, compiled into
//! [`crate::core::model::TelemetryConfig`].

use serde::Deserialize;

use crate::core::model::TelemetryConfig;
use crate::observe::spans::Sample;

pub const DEFAULT_SERVICE_NAME: &str = "oidc-authz";

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
                    crate::observe::redact(&endpoint)
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
