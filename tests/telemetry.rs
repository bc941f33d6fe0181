//! Telemetry (DESIGN §12): series from the start, and the `telemetry` config.
//! Traces end to end (Envoy + OTLP receiver) are e2e/test_traces.py.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use oidc_authz::observe::metrics::Metrics;
use oidc_authz::observe::spans::Sample;
use oidc_authz::ops::state::ServerState;
use oidc_authz::run::RunningServer;

/// A key set URL whose server accepts connections and never answers: no fetch finishes (no
/// event) while the test scrapes.
fn silent_idp() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/certs", l.local_addr().unwrap());
    (l, url)
}

fn config(clients: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "listen: {grpc: 127.0.0.1:0, admin: 127.0.0.1:0}\njwks: {timeout: 60s}\nclients:\n",
    );
    for (name, uri) in clients {
        s.push_str(&format!(
            "  - {{ name: {name}, issuer: https://{name}.example.org, jwks_uri: \"{uri}\", audiences: [{name}], algorithms: [ES256] }}\n"
        ));
    }
    s.push_str("rules:\n  - { name: all, match: { prefix: / } }\n");
    s
}

async fn scrape(server: &RunningServer) -> String {
    reqwest::get(format!("http://{}/metrics", server.admin_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn key_set_series(url: &str) -> Vec<String> {
    vec![
        format!(r#"oidc_authz_jwks_fetches_total{{key_set="{url}",result="ok"}} 0"#),
        format!(r#"oidc_authz_jwks_fetches_total{{key_set="{url}",result="error"}} 0"#),
        format!(r#"oidc_authz_jwks_unknown_kid_total{{key_set="{url}"}} 0"#),
        format!(r#"oidc_authz_jwks_keys{{key_set="{url}"}} 0"#),
        format!(r#"oidc_authz_jwks_last_success_timestamp_seconds{{key_set="{url}"}} 0"#),
        format!(r#"oidc_authz_kidless_refused_total{{key_set="{url}"}} 0"#),
    ]
}

fn assert_has(text: &str, series: &[String]) {
    for s in series {
        assert!(text.lines().any(|l| l == s), "missing `{s}` in:\n{text}");
    }
}

#[tokio::test]
async fn series_known_from_the_config_are_exported_at_zero_from_the_start_and_after_a_reload() {
    let (_a, url_a) = silent_idp();
    let (_b, url_b) = silent_idp();
    let dir = std::env::temp_dir().join(format!("oidc-authz-telemetry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(&path, config(&[("alpha", &url_a)])).unwrap();
    let state = ServerState::new(
        oidc_authz::config::load(&path).unwrap(),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(state.clone(), any, any).await.unwrap();

    let text = scrape(&server).await;
    let mut start = key_set_series(&url_a);
    start.extend([
        r#"oidc_authz_config_reloads_total{result="ok"} 1"#.to_owned(),
        r#"oidc_authz_config_reloads_total{result="error"} 0"#.to_owned(),
        r#"oidc_authz_token_cache_requests_total{result="hit"} 0"#.to_owned(),
        r#"oidc_authz_token_cache_requests_total{result="miss"} 0"#.to_owned(),
        "oidc_authz_trace_export_errors_total 0".to_owned(),
    ]);
    assert_has(&text, &start);
    assert!(!text.contains(&url_b), "{text}");

    // A reload adds a client with a new key set: its series appear at 0 too.
    std::fs::write(&path, config(&[("alpha", &url_a), ("beta", &url_b)])).unwrap();
    oidc_authz::ops::reload::reload_now(&state, &path).unwrap();
    let text = scrape(&server).await;
    let mut after = key_set_series(&url_a);
    after.extend(key_set_series(&url_b));
    after.push(r#"oidc_authz_config_reloads_total{result="ok"} 2"#.to_owned());
    assert_has(&text, &after);

    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn telemetry_config_is_validated_with_field_errors() {
    let base = "clients:\n  - { name: a, issuer: https://sso.example.org/realms/x, audiences: [a] }\nrules:\n  - { name: all, match: { prefix: / } }\n";
    let parse = |t: &str| oidc_authz::config::parse(&format!("{base}telemetry:\n{t}"));

    let c = parse("  otlp_endpoint: http://otel-collector:4317\n").unwrap();
    let t = c.telemetry.unwrap();
    assert_eq!(t.service_name, "oidc-authz");
    assert_eq!(t.sample, Sample::Parent);
    assert_eq!(t.otlp_endpoint, "http://otel-collector:4317");

    let c = parse(
        "  otlp_endpoint: http://127.0.0.1:4317\n  service_name: authz-eu\n  sample: {ratio: 0.25}\n",
    )
    .unwrap();
    let t = c.telemetry.unwrap();
    assert_eq!(
        (t.service_name.as_str(), t.sample),
        ("authz-eu", Sample::Ratio(0.25))
    );
    assert_eq!(
        parse("  otlp_endpoint: http://c:4317\n  sample: parent\n")
            .unwrap()
            .telemetry
            .unwrap()
            .sample,
        Sample::Parent
    );
    // No endpoint: tracing off.
    assert!(parse("  sample: parent\n").unwrap().telemetry.is_none());
    assert!(oidc_authz::config::parse(base).unwrap().telemetry.is_none());

    for (text, field) in [
        (
            "  otlp_endpoint: http://c:4317\n  sample: {ratio: 1.5}\n",
            "telemetry.sample.ratio",
        ),
        (
            "  otlp_endpoint: http://c:4317\n  sample: {ratio: -0.1}\n",
            "telemetry.sample.ratio",
        ),
        (
            "  otlp_endpoint: http://c:4317\n  sample: always\n",
            "telemetry.sample",
        ),
        (
            "  otlp_endpoint: http://c:4317\n  service_name: \"\"\n",
            "telemetry.service_name",
        ),
        (
            "  otlp_endpoint: otel-collector:4317\n",
            "telemetry.otlp_endpoint",
        ),
        (
            "  otlp_endpoint: https://c:4317\n",
            "telemetry.otlp_endpoint",
        ),
        (
            "  otlp_endpoint: http://user:pw@c:4317\n",
            "telemetry.otlp_endpoint",
        ),
    ] {
        let errs = parse(text).unwrap_err();
        assert!(errs.0.iter().any(|e| e.field == field), "{text}: {errs}");
        assert!(!errs.to_string().contains("pw@"), "{errs}");
    }
    let errs = parse("  otlp_endpoint: http://c:4317\n  exporter: zipkin\n").unwrap_err();
    assert!(errs.to_string().contains("exporter"), "{errs}");
}
