//! RFC 7662 introspection through the real service against a local introspection endpoint:
//! revocation of verified JWTs (seen within cache_ttl), opaque tokens, fail-closed on errors,
//! the endpoint from discovery, client authentication, caching, and the secret never printed.

#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use common::*;
use oidc_authz::decision::Reason;
use oidc_authz::doors::grpc::AuthzService;
use oidc_authz::keys::Alg;
use oidc_authz::testkit::{TestKey, claims, now};
use serde_json::json;

const SECRET: &str = "s3cr3t-introspection-value";

fn config(issuer: &str, endpoint: Option<&str>) -> String {
    let ep = endpoint
        .map(|e| format!("endpoint: \"{e}\", "))
        .unwrap_or_default();
    format!(
        r#"
listen: {{grpc: 127.0.0.1:0, admin: 127.0.0.1:0}}
clients:
  - name: web
    issuer: "{issuer}"
    audiences: [web]
    algorithms: [ES256]
    roles: [realm_access.roles]
    headers: {{x-auth-subject: sub, x-auth-roles: realm_access.roles}}
    introspection: {{ {ep}client_id: web, client_secret: "{SECRET}", opaque: true, cache_ttl: 1s, timeout: 1s }}
rules:
  - {{name: admin, match: {{prefix: /admin}}, roles: {{all_of: [admin]}}}}
  - {{name: api, match: {{prefix: /api}}}}
"#
    )
}

async fn setup(
    endpoint_in_config: bool,
) -> (Idp, TestKey, oidc_authz::run::RunningServer, AuthzService) {
    let key = TestKey::generate(Alg::ES256, "k");
    let idp = Idp::start(&[&key]).await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("web:{SECRET}"));
    *idp.state.introspection_auth.lock().unwrap() = format!("Basic {basic}");
    let ep = format!("{}/introspect", idp.issuer);
    let server = start_server(&config(
        &idp.issuer,
        endpoint_in_config.then_some(ep.as_str()),
    ))
    .await;
    wait_loaded(&server, "/realms/test").await;
    let svc = AuthzService::new(server.state.clone());
    (idp, key, server, svc)
}

fn req(tok: &str, path: &str) -> envoy_types::pb::envoy::service::auth::v3::CheckRequest {
    let b = bearer(tok);
    request("GET", "h", path, &[("authorization", &b)])
}

#[tokio::test]
async fn a_revoked_jwt_is_denied_within_cache_ttl() {
    let (idp, key, server, _svc) = setup(true).await;
    let tok = key.token(&claims(&idp.issuer, json!("web"), json!({})));
    idp.set_introspection(&tok, json!({"active": true}));
    // The clock is the `now` the decision is given (no wall-clock wait): the service's own path,
    // with its token cache and metrics, at chosen instants.
    let b = bearer(&tok);
    let mut headers = oidc_authz::core::token::Headers::new();
    headers.push("authorization", &b);
    let input = oidc_authz::core::check::CheckInput {
        method: "GET",
        host: "h",
        path: "/api/x",
        headers,
        ..Default::default()
    };
    let state = &server.state;
    let at = |t: i64| {
        let snap = state.snapshot();
        let cache = state.cache();
        let input = input.clone();
        async move {
            oidc_authz::core::check::decide_with(
                &snap,
                Some(&cache),
                Some(&state.metrics),
                &input,
                t,
            )
            .await
        }
    };
    let t0 = now();
    assert!(at(t0).await.is_allow());
    assert!(at(t0).await.is_allow());
    assert_eq!(idp.introspection_hits(), 1, "the answer is cached");
    idp.set_introspection(&tok, json!({"active": false})); // revoked at the IdP
    // still inside cache_ttl (1 s): the cached answer stands, the IdP is not asked
    assert!(at(t0).await.is_allow());
    assert_eq!(
        idp.introspection_hits(),
        1,
        "within cache_ttl nothing is re-asked"
    );
    // one cache_ttl later the revocation is seen
    let d = at(t0 + 1).await;
    assert_eq!(d.reason(), Some(Reason::TokenInactive), "{d:?}");
    assert_eq!(
        idp.introspection_hits(),
        2,
        "after cache_ttl the IdP is asked again"
    );
    assert_eq!(Reason::TokenInactive.http_status(), 401);
}

#[tokio::test]
async fn opaque_tokens_are_validated_by_introspection() {
    let (idp, _key, _server, svc) = setup(false).await; // endpoint from discovery
    let opaque = "2YotnFZFEjr1zCsicMWpAA+/x=";
    idp.set_introspection(
        opaque,
        json!({"active": true, "sub": "svc-7", "aud": ["web", "other"], "iss": idp.issuer, "exp": now() + 60,
               "realm_access": {"roles": ["admin"]}, "client_id": "web"}),
    );
    let d = svc.decide(&req(opaque, "/admin/x")).await;
    let oidc_authz::decision::Decision::Allow(a) = &d else {
        panic!("{d:?}")
    };
    assert_eq!(a.client.as_deref(), Some("web"));
    assert!(
        a.set_headers
            .contains(&("x-auth-subject".into(), "svc-7".into()))
    );
    assert!(
        a.set_headers
            .contains(&("x-auth-roles".into(), "admin".into()))
    );
    // unknown to the IdP
    assert_eq!(
        svc.decide(&req("unknown-opaque-token", "/api/x"))
            .await
            .reason(),
        Some(Reason::TokenInactive)
    );
    // active, but for another audience / issuer / already expired
    idp.set_introspection("other-aud", json!({"active": true, "aud": "billing"}));
    assert_eq!(
        svc.decide(&req("other-aud", "/api/x")).await.reason(),
        Some(Reason::UnknownAudience)
    );
    idp.set_introspection(
        "other-iss",
        json!({"active": true, "iss": "https://evil.example.org"}),
    );
    assert_eq!(
        svc.decide(&req("other-iss", "/api/x")).await.reason(),
        Some(Reason::InvalidClaims)
    );
    idp.set_introspection("expired", json!({"active": true, "exp": 1000}));
    assert_eq!(
        svc.decide(&req("expired", "/api/x")).await.reason(),
        Some(Reason::TokenExpired)
    );
    // roles still apply to opaque tokens
    idp.set_introspection("no-roles", json!({"active": true, "sub": "x"}));
    assert_eq!(
        svc.decide(&req("no-roles", "/admin/x")).await.reason(),
        Some(Reason::MissingRequiredRoles)
    );
}

#[tokio::test]
async fn introspection_failures_fail_closed() {
    let (idp, key, _server, svc) = setup(true).await;
    let tok = key.token(&claims(&idp.issuer, json!("web"), json!({})));
    idp.state
        .introspection_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let d = svc.decide(&req(&tok, "/api/x")).await;
    assert_eq!(d.reason(), Some(Reason::IntrospectionUnavailable));
    assert_eq!(Reason::IntrospectionUnavailable.http_status(), 503);
    assert_eq!(
        svc.decide(&req("opaque-x", "/api/x")).await.reason(),
        Some(Reason::IntrospectionUnavailable)
    );
    // wrong client credentials are a failure too, never an allow
    idp.state
        .introspection_down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    *idp.state.introspection_auth.lock().unwrap() = "Basic d3Jvbmc6d3Jvbmc=".into();
    idp.set_introspection(&tok, json!({"active": true}));
    assert_eq!(
        svc.decide(&req(&tok, "/api/x")).await.reason(),
        Some(Reason::IntrospectionUnavailable)
    );
}

#[tokio::test]
async fn the_secret_is_never_printed() {
    let cfg = oidc_authz::config::parse(&config("https://idp.example.org", None)).unwrap();
    assert!(!format!("{cfg:?}").contains(SECRET));
    // two opaque clients, or no endpoint without discovery, are config errors
    let two = config("https://idp.example.org", None).replace(
        "rules:",
        "  - {name: b, issuer: \"https://idp2.example.org\", audiences: [b], introspection: {client_id: b, client_secret: x, opaque: true}}\nrules:",
    );
    let e = oidc_authz::config::parse(&two).unwrap_err().to_string();
    assert!(
        e.contains("at most one client may accept opaque tokens"),
        "{e}"
    );
    let no_ep = "clients:\n  - {name: a, issuer: i, jwks_file: /k.json, audiences: [a], introspection: {client_id: a, client_secret: x}}\n";
    let e = oidc_authz::config::parse(no_ep).unwrap_err().to_string();
    assert!(
        e.contains("clients[0].introspection.endpoint: required"),
        "{e}"
    );
}
