//! Integration tests: the real server on 127.0.0.1:0, a local IdP serving discovery + JWKS over
//! HTTP with keys generated here, and a real tonic client calling Check.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use oidc_authz::decision::Reason;
use oidc_authz::keys::Alg;
use oidc_authz::testkit::{TestKey, claims, now};
use serde_json::json;

const CONFIG: &str = r#"
listen: { grpc: 127.0.0.1:0, admin: 127.0.0.1:0 }
token:
  sources: [ { header: authorization }, { cookie: oidc-jwt } ]
  max_bytes: 16384
jwks: { refresh_interval: 5m, min_refresh_interval: MIN_REFRESH, max_stale: 12h, timeout: 2s }
clients:
  - name: core-web
    issuer: ISS
    audiences: [core-web-4414]
    roles: [realm_access.roles]
    headers: { x-auth-subject: sub, x-auth-email: email, x-auth-roles: realm_access.roles }
  - name: bcmi
    issuer: ISS
    audiences: [bcmi-1234]
    roles: [client_roles]
    algorithms: [RS256, ES256]
    headers: { x-auth-subject: sub, x-auth-bcmi-roles: client_roles }
  - name: down
    issuer: http://127.0.0.1:1/realms/down
    audiences: [down-app]
rules:
  - { name: health, match: { path: /healthz }, auth: none }
  - { name: public, match: { prefix: /public }, auth: optional }
  - { name: names-write, match: { prefix: /api/names, methods: [POST, PUT, PATCH, DELETE] }, roles: { all_of: [names_editor, names_user] } }
  - { name: reports, match: { glob: "/api/*/reports/**" }, roles: { any_of: [viewer, auditor] } }
  - { name: scoped, match: { prefix: /api/scoped }, scopes: { all_of: [orders.read] } }
  - { name: verified, match: { prefix: /api/verified }, claims: { email_verified: true } }
  - { name: core-only, match: { prefix: /api/core }, clients: [core-web] }
  - { name: admin, match: { prefix: /admin }, roles: { all_of: [admin] } }
  - { name: api, match: { prefix: /api } }
default: deny
"#;

impl Fx {
    async fn new() -> Fx {
        Self::with_min_refresh("2s").await
    }

    async fn with_min_refresh(min: &str) -> Fx {
        Fx::start(FxSpec {
            config: &CONFIG.replace("MIN_REFRESH", min),
            rsa_kid: "rsa-1",
            publish_ec: true,
        })
        .await
    }

    fn core_token(&self, extra: serde_json::Value) -> String {
        self.rsa
            .token(&claims(&self.idp.issuer, json!("core-web-4414"), extra))
    }
}

fn assert_deny(o: &Outcome, reason: Reason) {
    assert!(!o.allowed(), "expected deny {reason}, got allow {o:?}");
    assert_eq!(o.reason.as_deref(), Some(reason.code()), "{o:?}");
    assert_eq!(o.http_status, reason.http_status(), "{o:?}");
    assert_eq!(o.body["code"], reason.code());
    assert_eq!(o.body["description"], reason.description());
    assert_eq!(
        o.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let expected_grpc = match reason.http_status() {
        401 => 16,
        403 => 7,
        503 => 14,
        _ => 3,
    };
    assert_eq!(o.grpc_code, expected_grpc, "{o:?}");
}

#[tokio::test]
async fn every_reason_code_through_a_real_check() {
    let mut fx = Fx::new().await;
    let iss = fx.idp.issuer.clone();
    let t = now();
    let mut covered = HashSet::new();
    let mut expect = |o: Outcome, r: Reason| {
        assert_deny(&o, r);
        covered.insert(r);
    };

    expect(
        fx.get("/api/x", None).await,
        Reason::AuthorizationHeaderMissing,
    );
    expect(
        fx.get("/api/x", Some("not-a-jwt")).await,
        Reason::TokenMalformed,
    );
    let tok = fx.rsa.token(&claims(
        "https://other.example.org",
        json!("core-web-4414"),
        json!({}),
    ));
    expect(fx.get("/api/x", Some(&tok)).await, Reason::UnknownIssuer);
    let tok = fx
        .rsa
        .token(&claims(&iss, json!("someone-else"), json!({})));
    expect(fx.get("/api/x", Some(&tok)).await, Reason::UnknownAudience);
    let tok = fx.rsa.token(&claims(
        &iss,
        json!(["core-web-4414", "bcmi-1234"]),
        json!({}),
    ));
    expect(fx.get("/api/x", Some(&tok)).await, Reason::AmbiguousClient);
    let tok = fx
        .ec
        .token(&claims(&iss, json!("core-web-4414"), json!({}))); // core-web allows RS256 only
    expect(
        fx.get("/api/x", Some(&tok)).await,
        Reason::UnsupportedAlgorithm,
    );
    let tok = fx.rsa.sign(
        &json!({"alg": "RS256", "kid": "nope"}),
        &claims(&iss, json!("core-web-4414"), json!({})),
    );
    expect(fx.get("/api/x", Some(&tok)).await, Reason::UnknownKey);
    let good = fx.core_token(json!({}));
    let tampered = format!("{}AAAA", &good[..good.len() - 4]);
    expect(
        fx.get("/api/x", Some(&tampered)).await,
        Reason::InvalidSignature,
    );
    let tok = fx.core_token(json!({"exp": t - 120}));
    expect(fx.get("/api/x", Some(&tok)).await, Reason::TokenExpired);
    let tok = fx.core_token(json!({"nbf": t + 3600}));
    expect(fx.get("/api/x", Some(&tok)).await, Reason::TokenNotYetValid);
    let tok = fx.rsa.sign(
        &json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"]}),
        &claims(&iss, json!("core-web-4414"), json!({})),
    );
    expect(fx.get("/api/x", Some(&tok)).await, Reason::InvalidClaims);
    let tok = fx.rsa.token(&claims(
        "http://127.0.0.1:1/realms/down",
        json!("down-app"),
        json!({}),
    ));
    expect(fx.get("/api/x", Some(&tok)).await, Reason::KeysUnavailable);
    expect(fx.get("/api%2Fx", Some(&good)).await, Reason::InvalidPath);
    let tok = fx.core_token(json!({"realm_access": {"roles": ["names_editor"]}}));
    expect(
        fx.call("POST", "/api/names", Some(&tok)).await,
        Reason::MissingRequiredRoles,
    );
    expect(
        fx.get("/api/v1/reports/q1", Some(&tok)).await,
        Reason::MissingAValidRole,
    );
    expect(
        fx.get("/api/scoped", Some(&good)).await,
        Reason::InsufficientScope,
    );
    expect(
        fx.get("/api/verified", Some(&good)).await,
        Reason::ClaimMismatch,
    );
    let bcmi = fx.rsa.token(&claims(&iss, json!("bcmi-1234"), json!({})));
    expect(
        fx.get("/api/core", Some(&bcmi)).await,
        Reason::ClientNotAllowed,
    );
    expect(
        fx.get("/elsewhere", Some(&good)).await,
        Reason::NoMatchingRule,
    );

    // A CheckRequest over listen.max_request_bytes (64 KiB by default): one huge header, as a
    // client can send when Envoy's own header limit is raised above ours.
    let huge = "x".repeat(70 * 1024);
    expect(
        check(
            &mut fx.client,
            request(
                "GET",
                "api.example.org",
                "/public",
                &[("x-huge", huge.as_str())],
            ),
        )
        .await,
        Reason::RequestTooLarge,
    );

    // The two introspection reasons need an introspection endpoint: tests/introspection.rs.
    covered.insert(Reason::TokenInactive);
    covered.insert(Reason::IntrospectionUnavailable);
    // invalid_request exists only on the HTTP door (a /forward-auth request without a method or
    // URI header; DESIGN §9): tests/http_door.rs.
    covered.insert(Reason::InvalidRequest);
    // The four sender-constrained reasons need DPoP proofs and certificates: tests/binding.rs.
    covered.insert(Reason::InvalidDpopProof);
    covered.insert(Reason::UseDpopNonce);
    covered.insert(Reason::BindingMismatch);
    covered.insert(Reason::BindingRequired);
    let all: HashSet<Reason> = Reason::ALL.into_iter().collect();
    assert_eq!(covered, all, "every reason code of DESIGN §6 is exercised");
}

#[tokio::test]
async fn allowed_requests_carry_claim_headers_client_and_metadata() {
    let mut fx = Fx::new().await;
    let tok = fx.core_token(json!({
        "email": "a@example.org",
        "realm_access": {"roles": ["names_editor", "names_user"]},
        "scope": "orders.read profile",
        "email_verified": true
    }));
    for (method, path) in [
        ("POST", "/api/names/1"),
        ("GET", "/api/scoped"),
        ("GET", "/api/verified"),
        ("GET", "/api/core"),
        ("GET", "/api"),
    ] {
        let o = fx.call(method, path, Some(&tok)).await;
        assert!(o.allowed(), "{method} {path}: {o:?}");
        assert_eq!(o.headers["x-auth-subject"], "user-1");
        assert_eq!(o.headers["x-auth-email"], "a@example.org");
        assert_eq!(o.headers["x-auth-roles"], "names_editor,names_user");
        assert_eq!(o.headers["x-authz-client"], "core-web");
        assert_eq!(o.metadata["client"], "core-web");
        assert_eq!(o.metadata["sub"], "user-1");
    }
    let o = fx.call("POST", "/api/names/1", Some(&tok)).await;
    assert_eq!(o.metadata["rule"], "names-write");
    // any_of passes with one of the roles
    let tok = fx.core_token(json!({"realm_access": {"roles": ["auditor"]}}));
    assert!(
        fx.get("/api/v9/reports/2024/q1", Some(&tok))
            .await
            .allowed()
    );
    // the other client's roles claim path is used for its tokens
    let iss = fx.idp.issuer.clone();
    let tok = fx.ec.token(&claims(
        &iss,
        json!("bcmi-1234"),
        json!({"client_roles": ["viewer"]}),
    ));
    let o = fx.get("/api/x/reports", Some(&tok)).await;
    assert!(o.allowed(), "{o:?}");
    assert_eq!(o.headers["x-authz-client"], "bcmi");
    assert_eq!(o.headers["x-auth-bcmi-roles"], "viewer");
}

#[tokio::test]
async fn two_clients_one_issuer_route_by_exact_audience() {
    let mut fx = Fx::new().await;
    let iss = fx.idp.issuer.clone();
    // aud array naming one of them (plus an unrelated audience) routes to that client
    let tok = fx
        .rsa
        .token(&claims(&iss, json!(["account", "bcmi-1234"]), json!({})));
    let o = fx.get("/api/x", Some(&tok)).await;
    assert!(o.allowed(), "{o:?}");
    assert_eq!(o.headers["x-authz-client"], "bcmi");
    let tok = fx.rsa.token(&claims(
        &iss,
        json!(["core-web-4414", "account"]),
        json!({}),
    ));
    assert_eq!(
        fx.get("/api/x", Some(&tok)).await.headers["x-authz-client"],
        "core-web"
    );
    // a string that merely contains a configured audience never routes
    for aud in [
        json!("core-web-4414-evil"),
        json!("xcore-web-4414"),
        json!("core-web-4414 bcmi-1234"),
        json!(["core-web-441"]),
        json!([]),
    ] {
        let tok = fx.rsa.token(&claims(&iss, aud.clone(), json!({})));
        assert_deny(&fx.get("/api/x", Some(&tok)).await, Reason::UnknownAudience);
    }
    // an issuer that differs only by a trailing slash is another issuer
    let tok = fx.rsa.token(&claims(
        &format!("{iss}/"),
        json!("core-web-4414"),
        json!({}),
    ));
    assert_deny(&fx.get("/api/x", Some(&tok)).await, Reason::UnknownIssuer);
}

#[tokio::test]
async fn key_rotation_needs_exactly_one_refetch_and_floods_respect_the_cooldown() {
    let mut fx = Fx::with_min_refresh("1s").await;
    let iss = fx.idp.issuer.clone();
    assert_eq!(fx.idp.jwks_hits(), 1, "one fetch at startup");
    tokio::time::sleep(Duration::from_millis(1100)).await; // let the startup fetch's cooldown pass
    // The IdP rotates: a new key first, the old one still published.
    let new = TestKey::generate(Alg::RS256, "rsa-2");
    fx.idp.set_keys(&[&new, &fx.rsa, &fx.ec]);
    let tok_new = new.token(&claims(&iss, json!("core-web-4414"), json!({})));
    let o = fx.get("/api/x", Some(&tok_new)).await;
    let refetched = std::time::Instant::now();
    assert!(o.allowed(), "{o:?}");
    assert_eq!(fx.idp.jwks_hits(), 2, "exactly one refetch for the new kid");
    // The bounds below count cooldown windows (min_refresh_interval: 1s) on the clock, not
    // assume a flood fits in one: a slow machine may take longer than the cooldown to send 300
    // Checks, and then one more fetch per elapsed cooldown is allowed.
    let cooldown = Duration::from_secs(1);
    let windows = |since: std::time::Instant| {
        u64::try_from(since.elapsed().as_millis() / cooldown.as_millis()).unwrap_or(u64::MAX)
    };
    assert!(fx.get("/api/x", Some(&tok_new)).await.allowed());
    assert!(
        fx.get("/api/x", Some(&fx.core_token(json!({}))))
            .await
            .allowed(),
        "old key still published"
    );
    assert_eq!(fx.idp.jwks_hits(), 2, "known kids never fetch");

    // A flood of random unknown kids right after that fetch: the cooldown allows no fetch.
    let flood = |n: usize, tag: &str| -> Vec<String> {
        (0..n)
            .map(|i| {
                let h =
                    base64_url(&json!({"alg": "RS256", "kid": format!("{tag}-{i}")}).to_string());
                let c = base64_url(&claims(&iss, json!("core-web-4414"), json!({})).to_string());
                format!("{h}.{c}.AAAA")
            })
            .collect()
    };
    let mut tasks = Vec::new();
    for tok in flood(300, "a") {
        let mut c = fx.client.clone();
        tasks.push(tokio::spawn(async move {
            let b = bearer(&tok);
            check(
                &mut c,
                request("GET", "h", "/api/x", &[("authorization", &b)]),
            )
            .await
        }));
    }
    for t in tasks {
        assert_deny(&t.await.unwrap(), Reason::UnknownKey);
    }
    let after_first_flood = fx.idp.jwks_hits();
    let allowed = 3 + windows(refetched);
    assert!(
        after_first_flood <= allowed,
        "at most one fetch per cooldown, got {after_first_flood} (allowed {allowed})"
    );
    // After the cooldown, another flood may cause at most one more fetch.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = std::time::Instant::now();
    let mut tasks = Vec::new();
    for tok in flood(300, "b") {
        let mut c = fx.client.clone();
        tasks.push(tokio::spawn(async move {
            let b = bearer(&tok);
            check(
                &mut c,
                request("GET", "h", "/api/x", &[("authorization", &b)]),
            )
            .await
        }));
    }
    for t in tasks {
        assert_deny(&t.await.unwrap(), Reason::UnknownKey);
    }
    let hits = fx.idp.jwks_hits();
    assert!(
        hits <= after_first_flood + 1 + windows(second),
        "one fetch per cooldown: {after_first_flood} -> {hits}"
    );
    assert!(
        hits >= 3,
        "the second flood (after the cooldown) refetched once"
    );
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn caller_supplied_identity_headers_are_replaced_or_removed() {
    let mut fx = Fx::new().await;
    let tok = fx.core_token(json!({})); // no email, no roles
    let b = bearer(&tok);
    let spoof = [
        ("authorization", b.as_str()),
        ("x-auth-subject", "admin"),
        ("x-auth-email", "ceo@example.org"),
        ("x-auth-roles", "admin"),
        ("x-auth-bcmi-roles", "admin"),
        ("x-authz-client", "bcmi"),
    ];
    let o = check(&mut fx.client, request("GET", "h", "/api/x", &spoof)).await;
    assert!(o.allowed());
    assert_eq!(
        o.headers["x-auth-subject"], "user-1",
        "overwritten with the verified value"
    );
    assert_eq!(o.headers["x-authz-client"], "core-web");
    let removed: HashSet<&str> = o.removed.iter().map(String::as_str).collect();
    for h in ["x-auth-email", "x-auth-roles", "x-auth-bcmi-roles"] {
        assert!(removed.contains(h), "{h} must be removed: {removed:?}");
        assert!(!o.headers.contains_key(h));
    }
    assert!(!removed.contains("x-auth-subject") && !removed.contains("x-authz-client"));
    // anonymous allows remove every spoofable header
    let o = check(&mut fx.client, request("GET", "h", "/healthz", &spoof)).await;
    assert!(o.allowed());
    assert!(o.headers.is_empty());
    for h in [
        "x-auth-subject",
        "x-auth-email",
        "x-auth-roles",
        "x-auth-bcmi-roles",
        "x-authz-client",
    ] {
        assert!(o.removed.iter().any(|r| r == h), "{h}");
    }
}

#[tokio::test]
async fn path_confusion_never_reaches_a_laxer_rule() {
    let mut fx = Fx::new().await;
    let tok = fx.core_token(json!({})); // valid, but not admin
    for p in [
        "/api/../admin",
        "//admin",
        "/api/./../admin/x",
        "/%61dmin",
        "/api/%2e%2e/admin",
        "///admin//x",
    ] {
        assert_deny(&fx.get(p, Some(&tok)).await, Reason::MissingRequiredRoles);
    }
    for p in [
        "/api%2F..%2Fadmin",
        "/api/%2f../admin",
        "/api%5C..%5Cadmin",
        "/api/..\\admin",
        "/api/%zz",
    ] {
        assert_deny(&fx.get(p, Some(&tok)).await, Reason::InvalidPath);
    }
    // the query string and fragment are not part of the path
    assert!(fx.get("/api/x?next=/admin", Some(&tok)).await.allowed());
    assert_deny(
        &fx.get("/admin?x=/api", Some(&tok)).await,
        Reason::MissingRequiredRoles,
    );
    // case matters: /Admin is not /admin (and no rule matches it)
    assert_deny(&fx.get("/Admin", Some(&tok)).await, Reason::NoMatchingRule);
    // Tomcat / Spring serve `..;` as `..`: refused rather than matched as a plain segment
    for p in [
        "/api/..;/admin",
        "/api/..;jsessionid=x/admin",
        "/api/..%3B/admin",
    ] {
        assert_deny(&fx.get(p, Some(&tok)).await, Reason::InvalidPath);
    }
    // dot-segments are resolved before slashes are merged, as Envoy does: the path we
    // authorise is the one the upstream routes on
    let o = fx.get("/admin//../public", Some(&tok)).await;
    assert_deny(&o, Reason::MissingRequiredRoles); // "/admin/public", not "/public"
    // the method is matched case-insensitively: `post` cannot skip the POST-only rule
    assert_deny(
        &fx.call("post", "/api/names", Some(&tok)).await,
        Reason::MissingRequiredRoles,
    );
    let admin = fx.core_token(json!({"realm_access": {"roles": ["admin"]}}));
    assert!(fx.get("/api/../admin", Some(&admin)).await.allowed());
}

#[tokio::test]
async fn optional_auth_with_no_token_a_valid_token_and_an_invalid_token() {
    let mut fx = Fx::new().await;
    let o = fx.get("/public/page", None).await;
    assert!(o.allowed());
    assert!(o.headers.is_empty(), "anonymous: no identity headers");
    let o = fx
        .get("/public/page", Some(&fx.core_token(json!({}))))
        .await;
    assert!(o.allowed());
    assert_eq!(o.headers["x-auth-subject"], "user-1");
    let expired = fx.core_token(json!({"exp": now() - 3600}));
    assert_deny(
        &fx.get("/public/page", Some(&expired)).await,
        Reason::TokenExpired,
    );
    assert_deny(
        &fx.get("/public/page", Some("garbage")).await,
        Reason::TokenMalformed,
    );
    // auth: none ignores even a broken token
    assert!(fx.get("/healthz", Some("garbage")).await.allowed());
}

#[tokio::test]
async fn www_authenticate_follows_rfc_6750() {
    let mut fx = Fx::new().await;
    let o = fx.get("/api/x", None).await;
    assert_eq!(o.headers["www-authenticate"], "Bearer realm=\"oidc-authz\"");
    let o = fx
        .get("/api/x", Some(&fx.core_token(json!({"exp": now() - 3600}))))
        .await;
    assert!(
        o.headers["www-authenticate"]
            .starts_with("Bearer realm=\"oidc-authz\", error=\"invalid_token\"")
    );
    let o = fx
        .call("POST", "/api/names", Some(&fx.core_token(json!({}))))
        .await;
    assert!(o.headers["www-authenticate"].contains("error=\"insufficient_scope\""));
    let o = fx.get("/elsewhere", None).await;
    assert!(!o.headers.contains_key("www-authenticate"));
}

#[tokio::test]
async fn tokens_are_found_in_raw_header_maps_and_cookies() {
    let mut fx = Fx::new().await;
    let tok = fx.core_token(json!({}));
    let b = bearer(&tok);
    // encode_raw_headers: header_map with raw bytes, names in any case
    let o = check(
        &mut fx.client,
        raw_request(
            "GET",
            "h",
            "/api/x",
            &[("Authorization", &b), ("x-auth-subject", "evil")],
        ),
    )
    .await;
    assert!(o.allowed(), "{o:?}");
    assert_eq!(o.headers["x-auth-subject"], "user-1");
    // two Authorization headers are refused, not guessed between
    let o = check(
        &mut fx.client,
        raw_request(
            "GET",
            "h",
            "/api/x",
            &[("authorization", &b), ("authorization", &b)],
        ),
    )
    .await;
    assert_deny(&o, Reason::TokenMalformed);
    // the cookie source
    let cookie = format!("theme=dark; oidc-jwt={tok}");
    let o = check(
        &mut fx.client,
        request("GET", "h", "/api/x", &[("cookie", &cookie)]),
    )
    .await;
    assert!(o.allowed(), "{o:?}");
    let o = check(
        &mut fx.client,
        request("GET", "h", "/api/x", &[("cookie", "theme=dark")]),
    )
    .await;
    assert_deny(&o, Reason::AuthorizationHeaderMissing);
}

#[tokio::test]
async fn a_check_request_without_http_attributes_is_a_deny_not_an_error() {
    let mut fx = Fx::new().await;
    let resp = fx
        .client
        .check(envoy_types::pb::envoy::service::auth::v3::CheckRequest { attributes: None })
        .await
        .expect("no transport error");
    let o = outcome(resp.get_ref());
    assert!(!o.allowed());
    assert_eq!(o.http_status, 400);
}

#[tokio::test]
async fn readiness_is_earned_and_health_and_metrics_are_served() {
    let fx = Fx::new().await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", fx.server.admin_addr);
    let h = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    // the `down` client's IdP never answers: not ready, and readyz says which key set
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["waiting_for_key_sets"],
        json!(["http://127.0.0.1:1/realms/down"])
    );
    // gRPC health on the gRPC port
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", fx.server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "envoy.service.auth.v3.Authorization".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        resp.get_ref().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // metrics move with decisions
    let mut fx = fx;
    fx.get("/api/x", None).await;
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"oidc_authz_checks_total{api="grpc",client="",decision="deny",reason="authorization_header_missing",rule="api"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"oidc_authz_check_duration_seconds_count{api="grpc"} 1"#));
    assert!(text.contains(
        "oidc_authz_jwks_fetches_total{key_set=\"http://127.0.0.1:1/realms/down\",result=\"error\"}"
    ));
}

#[tokio::test]
async fn ready_once_every_key_set_loaded() {
    let key = TestKey::generate(Alg::ES256, "k");
    let idp = Idp::start(&[&key]).await;
    idp.set_mode(MODE_500);
    let yaml = format!(
        "listen: {{grpc: 127.0.0.1:0, admin: 127.0.0.1:0}}\njwks: {{min_refresh_interval: 1s, refresh_interval: 1s, max_stale: 1h}}\nclients:\n  - {{name: a, issuer: \"{}\", audiences: [a], algorithms: [ES256]}}\ndefault: authenticated\n",
        idp.issuer
    );
    let server = start_server(&yaml).await;
    let url = format!("http://{}/readyz", server.admin_addr);
    // not ready after a fetch has actually failed (not merely before the first one ended)
    wait_until("a key-set fetch fails", Duration::from_secs(10), || {
        server.state.metrics.jwks_fetch_count(&idp.issuer, false) >= 1
    })
    .await;
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 503);
    let mut c = client(&server).await;
    let tok = key.token(&claims(&idp.issuer, json!("a"), json!({})));
    let b = bearer(&tok);
    assert_deny(
        &check(&mut c, request("GET", "h", "/x", &[("authorization", &b)])).await,
        Reason::KeysUnavailable,
    );
    idp.set_mode(MODE_UP); // the IdP comes back: ready on its own (backoff retries)
    let mut ready = false;
    for _ in 0..50 {
        if reqwest::get(&url).await.unwrap().status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready once the IdP answered");
    assert!(
        check(&mut c, request("GET", "h", "/x", &[("authorization", &b)]))
            .await
            .allowed()
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_keys() {
    let mut fx = Fx::with_min_refresh("1s").await;
    let tok = fx.core_token(json!({}));
    assert!(fx.get("/api/x", Some(&tok)).await.allowed());
    for mode in [MODE_500, MODE_GARBAGE, MODE_404] {
        fx.idp.set_mode(mode);
        let ks = fx.server.state.registry.remote_sets()[0].clone();
        assert!(ks.fetch().await.is_err());
        assert!(
            fx.get("/api/x", Some(&tok)).await.allowed(),
            "last good keys still verify (mode {mode})"
        );
    }
}
