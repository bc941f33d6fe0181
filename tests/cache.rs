//! The verified-token cache through the real service: hits are counted, and a config reload, a
//! key removal, expiry and max_stale all take effect at once despite the cache.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use oidc_authz::decision::Reason;
use oidc_authz::keys::Alg;
use oidc_authz::service::AuthzService;
use oidc_authz::testkit::{TestKey, claims, now};
use serde_json::json;

fn cfg(issuer: &str, audience: &str) -> String {
    format!(
        "listen: {{grpc: 127.0.0.1:0, admin: 127.0.0.1:0}}\njwks: {{min_refresh_interval: 1s, refresh_interval: 1m}}\nclients:\n  - {{name: web, issuer: \"{issuer}\", audiences: [{audience}], algorithms: [ES256], leeway: 0s, headers: {{x-auth-subject: sub}}}}\ndefault: authenticated\n"
    )
}

#[tokio::test]
async fn a_token_seen_again_is_a_hit_with_the_same_answer() {
    let key = TestKey::generate(Alg::ES256, "k");
    let idp = Idp::start(&[&key]).await;
    let server = start_server(&cfg(&idp.issuer, "web")).await;
    wait_loaded(&server, "/realms/test").await;
    let svc = AuthzService::new(server.state.clone());
    let b = bearer(&key.token(&claims(&idp.issuer, json!("web"), json!({}))));
    let req = request("GET", "h", "/x", &[("authorization", &b)]);
    let first = svc.decide(&req).await;
    let second = svc.decide(&req).await;
    assert!(first.is_allow());
    assert_eq!(
        first, second,
        "a hit answers exactly like a fresh verification"
    );
    let m = &server.state.metrics;
    assert_eq!(m.token_cache_miss.get(), 1);
    assert_eq!(m.token_cache_hit.get(), 1);
    assert_eq!(server.state.cache().len(), 1);
    // a different token (same claims, new signature) is a miss
    let b2 = bearer(&key.token(&claims(&idp.issuer, json!("web"), json!({"jti": "2"}))));
    assert!(
        svc.decide(&request("GET", "h", "/x", &[("authorization", &b2)]))
            .await
            .is_allow()
    );
    assert_eq!(m.token_cache_miss.get(), 2);
    // failures are never cached
    let bad = bearer(&key.token(&claims(&idp.issuer, json!("web"), json!({"exp": 1000}))));
    for _ in 0..3 {
        let d = svc
            .decide(&request("GET", "h", "/x", &[("authorization", &bad)]))
            .await;
        assert_eq!(d.reason(), Some(Reason::TokenExpired));
    }
    assert_eq!(server.state.cache().len(), 2);
}

#[tokio::test]
async fn a_reload_a_removed_key_and_expiry_take_effect_despite_the_cache() {
    let key = TestKey::generate(Alg::ES256, "k");
    let idp = Idp::start(&[&key]).await;
    let server = start_server(&cfg(&idp.issuer, "web")).await;
    wait_loaded(&server, "/realms/test").await;
    let svc = AuthzService::new(server.state.clone());
    let b = bearer(&key.token(&claims(&idp.issuer, json!("web"), json!({}))));
    let req = request("GET", "h", "/x", &[("authorization", &b)]);
    assert!(svc.decide(&req).await.is_allow());
    assert!(svc.decide(&req).await.is_allow());
    // reload: the client now wants another audience → the cached token no longer routes
    server
        .state
        .reload(oidc_authz::config::parse(&cfg(&idp.issuer, "other")).unwrap())
        .unwrap();
    assert_eq!(
        svc.decide(&req).await.reason(),
        Some(Reason::UnknownAudience)
    );
    server
        .state
        .reload(oidc_authz::config::parse(&cfg(&idp.issuer, "web")).unwrap())
        .unwrap();
    assert!(svc.decide(&req).await.is_allow());
    // the IdP removes the key: after the next fetch the cached token is verified again → unknown_key
    let other = TestKey::generate(Alg::ES256, "other");
    idp.set_keys(&[&other]);
    server.state.snapshot().clients[0]
        .key_set
        .fetch()
        .await
        .unwrap();
    assert_eq!(svc.decide(&req).await.reason(), Some(Reason::UnknownKey));
    // expiry: a cached token stops at its exp (leeway 0)
    idp.set_keys(&[&key]);
    server.state.snapshot().clients[0]
        .key_set
        .fetch()
        .await
        .unwrap();
    let short = bearer(&key.token(&claims(
        &idp.issuer,
        json!("web"),
        json!({"exp": now() + 2}),
    )));
    let short_req = request("GET", "h", "/x", &[("authorization", &short)]);
    assert!(svc.decide(&short_req).await.is_allow());
    assert!(svc.decide(&short_req).await.is_allow());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        svc.decide(&short_req).await.reason(),
        Some(Reason::TokenExpired)
    );
}
