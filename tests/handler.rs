//! Handler tests: call the tonic `Authorization::check` method, or `check::decide` with the clock
//! passed in, directly (no network), with static keys from a `jwks_file`. Covers every algorithm,
//! algorithm confusion, interop with tokens minted by the `jsonwebtoken` crate, azp / typ /
//! leeway through a whole decision, and the order of the decision (path, then auth mode, then
//! the token).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::Authorization;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use oidc_authz::core::check::{self, CheckInput};
use oidc_authz::core::token::Headers;
use oidc_authz::decision::{Decision, Reason};
use oidc_authz::doors::grpc::AuthzService;
use oidc_authz::keys::Alg;
use oidc_authz::observe::metrics::Metrics;
use oidc_authz::ops::state::ServerState;
use oidc_authz::testkit::{TestKey, claims, jwks};
use serde_json::json;

const ISS: &str = "https://issuer.example.org/realms/r";

struct H {
    svc: AuthzService,
    _dir: std::path::PathBuf,
}

fn setup(keys: &[&TestKey], extra_jwk: Option<serde_json::Value>) -> H {
    let dir = std::env::temp_dir().join(format!(
        "oidc-authz-handler-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&jwks(keys)).unwrap();
    if let Some(j) = extra_jwk {
        doc["keys"].as_array_mut().unwrap().push(j);
    }
    let file = dir.join("keys.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let yaml = format!(
        r#"
clients:
  - name: all-algs
    issuer: {ISS}
    jwks_file: {}
    audiences: [app]
    algorithms: [RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA]
    headers: {{ x-auth-subject: sub }}
  - name: rs-only
    issuer: {ISS}
    jwks_file: {}
    audiences: [rs-app]
rules:
  - {{ name: all, match: {{ prefix: / }} }}
"#,
        file.display(),
        file.display()
    );
    let cfg = oidc_authz::config::parse(&yaml).unwrap();
    let state = ServerState::new(cfg, Arc::new(Metrics::new())).unwrap();
    H {
        svc: AuthzService::new(state),
        _dir: dir,
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

impl H {
    /// Returns the deny reason, or None on allow.
    async fn check(&self, token: &str) -> Option<String> {
        let req = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: "GET".into(),
                        path: "/x".into(),
                        host: "h".into(),
                        headers: [("authorization".to_string(), format!("Bearer {token}"))].into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        let resp = self
            .svc
            .check(tonic::Request::new(req))
            .await
            .expect("never a transport error")
            .into_inner();
        match resp.http_response {
            Some(HttpResponse::OkResponse(_)) => None,
            Some(HttpResponse::DeniedResponse(d)) => Some(
                serde_json::from_str::<serde_json::Value>(&d.body).unwrap()["code"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn every_supported_algorithm_verifies_and_rejects_tampering() {
    for alg in Alg::ALL {
        let key = TestKey::generate(alg, &format!("k-{}", alg.name()));
        let h = setup(&[&key], None);
        let tok = key.token(&claims(ISS, json!("app"), json!({})));
        assert_eq!(h.check(&tok).await, None, "{alg}");
        // flip one bit of the signature
        let (head, sig) = tok.rsplit_once('.').unwrap();
        let mut bytes = base64_decode(sig);
        bytes[0] ^= 1;
        let bad = format!("{head}.{}", base64_encode(&bytes));
        assert_eq!(
            h.check(&bad).await.as_deref(),
            Some("invalid_signature"),
            "{alg}"
        );
        // the rs-only client (default algorithms [RS256]) refuses everything else
        let tok = key.token(&claims(ISS, json!("rs-app"), json!({})));
        let expected = if alg == Alg::RS256 {
            None
        } else {
            Some("unsupported_algorithm")
        };
        assert_eq!(h.check(&tok).await.as_deref(), expected, "{alg}");
    }
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let rsa = TestKey::generate(Alg::RS256, "rsa");
    let ec = TestKey::generate(Alg::ES256, "ec");
    let h = setup(&[&rsa, &ec], None);
    let c = claims(ISS, json!("app"), json!({}));
    // ES256 header naming the RSA key
    let tok = ec.sign(&json!({"alg": "ES256", "kid": "rsa"}), &c);
    assert_eq!(
        h.check(&tok).await.as_deref(),
        Some("unsupported_algorithm")
    );
    // the RSA key's JWK says RS256: a PS256 token with that kid is refused
    let tok = rsa.sign(&json!({"alg": "PS256", "kid": "rsa"}), &c);
    assert_eq!(
        h.check(&tok).await.as_deref(),
        Some("unsupported_algorithm")
    );
    // HS256 "signed" with the public key as the secret
    let tok = rsa.sign(&json!({"alg": "HS256", "kid": "rsa"}), &c);
    assert_eq!(
        h.check(&tok).await.as_deref(),
        Some("unsupported_algorithm")
    );
    for none in ["none", "None", "NONE", "nOnE"] {
        let header = base64_encode(json!({"alg": none}).to_string().as_bytes());
        let body = base64_encode(c.to_string().as_bytes());
        for sig in ["", "AAAA"] {
            let tok = format!("{header}.{body}.{sig}");
            assert_eq!(
                h.check(&tok).await.as_deref(),
                Some("unsupported_algorithm"),
                "{none} {sig:?}"
            );
        }
    }
    // no kid: the keys that fit the alg are tried
    let tok = ec.sign(&json!({"alg": "ES256"}), &c);
    assert_eq!(h.check(&tok).await, None);
    let other = TestKey::generate(Alg::ES256, "other");
    let tok = other.sign(&json!({"alg": "ES256"}), &c);
    assert_eq!(h.check(&tok).await.as_deref(), Some("invalid_signature"));
    let ed = TestKey::generate(Alg::EdDSA, "ed");
    let tok = ed.sign(&json!({"alg": "EdDSA"}), &c);
    assert_eq!(
        h.check(&tok).await.as_deref(),
        Some("unknown_key"),
        "no EdDSA key in the set"
    );
}

#[tokio::test]
async fn header_keys_are_never_trusted() {
    let rsa = TestKey::generate(Alg::RS256, "rsa");
    let attacker = TestKey::generate(Alg::RS256, "attacker");
    let h = setup(&[&rsa], None);
    let c = claims(ISS, json!("app"), json!({}));
    let header = json!({"alg": "RS256", "jwk": attacker.jwk(true), "jku": "http://127.0.0.1:9/jwks", "x5u": "http://127.0.0.1:9/x", "x5c": ["AAAA"]});
    assert_eq!(
        h.check(&attacker.sign(&header, &c)).await.as_deref(),
        Some("invalid_signature")
    );
    let mut with_kid = header.clone();
    with_kid["kid"] = json!("attacker");
    assert_eq!(
        h.check(&attacker.sign(&with_kid, &c)).await.as_deref(),
        Some("unknown_key")
    );
}

#[tokio::test]
async fn tokens_minted_by_the_jsonwebtoken_crate_verify() {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "jwt-crate", "x": base64_encode(pair.public_key().as_ref())});
    let filler = TestKey::generate(Alg::ES256, "filler");
    let h = setup(&[&filler], Some(jwk));
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("jwt-crate".into());
    let tok = jsonwebtoken::encode(
        &header,
        &claims(ISS, json!(["app"]), json!({})),
        &jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
    )
    .unwrap();
    assert_eq!(h.check(&tok).await, None);
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Whole decisions through `check::decide` (the function the service calls), with the clock passed
// in: azp, typ and leeway as a request sees them, and the order in which the checks answer.

/// A client with every optional claim check on, and rules for each auth mode.
struct D {
    state: Arc<ServerState>,
    key: TestKey,
    _dir: std::path::PathBuf,
}

const STRICT_AUD: &str = "strict-app";
const LEEWAY: i64 = 30;

fn strict() -> D {
    let key = TestKey::generate(Alg::ES256, "strict");
    let dir = std::env::temp_dir().join(format!(
        "oidc-authz-handler-d-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keys.json");
    std::fs::write(&file, jwks(&[&key])).unwrap();
    let yaml = format!(
        r#"
clients:
  - name: strict
    issuer: {ISS}
    jwks_file: {}
    audiences: [{STRICT_AUD}]
    algorithms: [ES256]
    authorized_parties: [frontend, mobile]
    require_typ: at+jwt
    leeway: {LEEWAY}s
    headers: {{ x-auth-subject: sub }}
rules:
  - {{ name: health, match: {{ path: /healthz }}, auth: none }}
  - {{ name: admin-audit, match: {{ prefix: /admin }}, roles: {{ any_of: [admin] }}, mode: audit }}
  - {{ name: maybe, match: {{ prefix: /maybe }}, auth: optional }}
  - {{ name: all, match: {{ prefix: / }} }}
"#,
        file.display()
    );
    let cfg = oidc_authz::config::parse(&yaml).unwrap();
    D {
        state: ServerState::new(cfg, Arc::new(Metrics::new())).unwrap(),
        key,
        _dir: dir,
    }
}

/// Fixed instants: the decision is given `now`, so no test waits.
const T: i64 = 1_900_000_000;

impl D {
    /// A token `jsonwebtoken` mints with `typ` (None: no typ) and these claims over the defaults.
    fn token(&self, typ: Option<&str>, extra: serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.key.kid.clone());
        header.typ = typ.map(str::to_owned);
        let mut c = json!({"iss": ISS, "aud": STRICT_AUD, "sub": "u", "azp": "frontend",
                           "iat": T, "exp": T + 600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        self.key.token_with(&header, &c)
    }

    fn good(&self) -> String {
        self.token(Some("at+jwt"), json!({}))
    }

    /// The decision for `GET path` with this Authorization value (if any), at `now`.
    async fn at(&self, path: &str, authorization: Option<&str>, now: i64) -> Decision {
        let mut headers = Headers::new();
        if let Some(a) = authorization {
            headers.push("authorization", a);
        }
        let input = CheckInput {
            method: "GET",
            host: "h",
            path,
            headers,
            ..Default::default()
        };
        check::decide(&self.state.snapshot(), &input, now).await
    }

    async fn bearer_at(&self, path: &str, token: &str, now: i64) -> Decision {
        self.at(path, Some(&format!("Bearer {token}")), now).await
    }
}

#[track_caller]
fn assert_reason(d: &Decision, want: Option<Reason>, case: &str) {
    assert_eq!(d.reason(), want, "{case}: {d:?}");
    assert_eq!(d.is_allow(), want.is_none(), "{case}: {d:?}");
}

#[tokio::test]
async fn azp_through_a_whole_decision() {
    let d = strict();
    for azp in ["frontend", "mobile"] {
        let tok = d.token(Some("at+jwt"), json!({ "azp": azp }));
        assert_reason(&d.bearer_at("/x", &tok, T).await, None, azp);
    }
    for (case, extra) in [
        ("another party", json!({"azp": "backend"})),
        ("case differs", json!({"azp": "Frontend"})),
        ("not a string", json!({"azp": ["frontend"]})),
        ("null", json!({"azp": null})),
    ] {
        let tok = d.token(Some("at+jwt"), extra);
        assert_reason(
            &d.bearer_at("/x", &tok, T).await,
            Some(Reason::InvalidClaims),
            case,
        );
    }
    // absent altogether
    let mut c = json!({"iss": ISS, "aud": STRICT_AUD, "sub": "u", "iat": T, "exp": T + 600});
    c.as_object_mut().unwrap().remove("azp");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("strict".into());
    header.typ = Some("at+jwt".into());
    let tok = d.key.token_with(&header, &c);
    assert_reason(
        &d.bearer_at("/x", &tok, T).await,
        Some(Reason::InvalidClaims),
        "no azp",
    );
}

#[tokio::test]
async fn require_typ_through_a_whole_decision() {
    let d = strict();
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+Jwt",
    ] {
        let tok = d.token(Some(typ), json!({}));
        assert_reason(&d.bearer_at("/x", &tok, T).await, None, typ);
    }
    for typ in [Some("JWT"), Some("at+jwt "), Some("application/"), None] {
        let tok = d.token(typ, json!({}));
        assert_reason(
            &d.bearer_at("/x", &tok, T).await,
            Some(Reason::InvalidClaims),
            &format!("typ {typ:?}"),
        );
    }
}

#[tokio::test]
async fn leeway_boundaries_through_a_whole_decision() {
    let d = strict();
    // exp: valid while exp + leeway > now
    let tok = d.token(Some("at+jwt"), json!({"iat": T - 600, "exp": T}));
    assert_reason(
        &d.bearer_at("/x", &tok, T + LEEWAY - 1).await,
        None,
        "exp, last second",
    );
    assert_reason(
        &d.bearer_at("/x", &tok, T + LEEWAY).await,
        Some(Reason::TokenExpired),
        "exp + leeway reached",
    );
    // nbf: valid once nbf <= now + leeway
    let tok = d.token(
        Some("at+jwt"),
        json!({"iat": T - 600, "nbf": T, "exp": T + 600}),
    );
    assert_reason(
        &d.bearer_at("/x", &tok, T - LEEWAY).await,
        None,
        "nbf, first second",
    );
    assert_reason(
        &d.bearer_at("/x", &tok, T - LEEWAY - 1).await,
        Some(Reason::TokenNotYetValid),
        "nbf beyond leeway",
    );
    // iat: the same bound
    let tok = d.token(Some("at+jwt"), json!({"iat": T, "exp": T + 600}));
    assert_reason(
        &d.bearer_at("/x", &tok, T - LEEWAY).await,
        None,
        "iat, first second",
    );
    assert_reason(
        &d.bearer_at("/x", &tok, T - LEEWAY - 1).await,
        Some(Reason::TokenNotYetValid),
        "iat beyond leeway",
    );
}

#[tokio::test]
async fn the_path_is_judged_before_the_token() {
    let d = strict();
    let good = d.good();
    let expired = d.token(Some("at+jwt"), json!({"exp": T - 3600, "iat": T - 7200}));
    for path in ["/a b", "x", "/a\\b", "/%2f", "/%zz"] {
        for (tok, what) in [
            (None, "no token"),
            (Some(format!("Bearer {good}")), "a good token"),
            (Some(format!("Bearer {expired}")), "an expired token"),
            (Some("Bearer not.a.jwt".to_owned()), "garbage"),
            (Some("Basic abc".to_owned()), "another scheme"),
        ] {
            assert_reason(
                &d.at(path, tok.as_deref(), T).await,
                Some(Reason::InvalidPath),
                &format!("{path:?} with {what}"),
            );
        }
    }
    // and with a valid path, the token decides
    assert_reason(
        &d.bearer_at("/x", &good, T).await,
        None,
        "valid path, good token",
    );
    assert_reason(
        &d.bearer_at("/x", &expired, T).await,
        Some(Reason::TokenExpired),
        "valid path, expired token",
    );
}

#[tokio::test]
async fn auth_none_ignores_even_a_bad_token() {
    let d = strict();
    let expired = d.token(Some("at+jwt"), json!({"exp": T - 3600, "iat": T - 7200}));
    let other = TestKey::generate(Alg::ES256, "strict"); // same kid, wrong key
    let forged = other.token(&json!({"iss": ISS, "aud": STRICT_AUD, "exp": T + 60}));
    for (auth, what) in [
        (None, "no token"),
        (Some(format!("Bearer {}", d.good())), "a good token"),
        (Some(format!("Bearer {expired}")), "an expired token"),
        (Some(format!("Bearer {forged}")), "a forged token"),
        (Some("Bearer not.a.jwt".to_owned()), "garbage"),
        (Some("Bearer".to_owned()), "an empty bearer"),
    ] {
        assert_reason(&d.at("/healthz", auth.as_deref(), T).await, None, what);
    }
}

#[tokio::test]
async fn optional_allows_no_token_but_denies_a_bad_one() {
    let d = strict();
    assert_reason(&d.at("/maybe/x", None, T).await, None, "no token");
    assert_reason(
        &d.bearer_at("/maybe/x", &d.good(), T).await,
        None,
        "a good token",
    );
    let expired = d.token(Some("at+jwt"), json!({"exp": T - 3600, "iat": T - 7200}));
    let other = TestKey::generate(Alg::ES256, "strict");
    let forged = other.token(&json!({"iss": ISS, "aud": STRICT_AUD, "exp": T + 60}));
    let wrong_typ = d.token(Some("JWT"), json!({}));
    for (tok, want, what) in [
        (expired, Reason::TokenExpired, "expired"),
        (forged, Reason::InvalidSignature, "forged"),
        (wrong_typ, Reason::InvalidClaims, "wrong typ"),
    ] {
        assert_reason(
            &d.bearer_at("/maybe/x", &tok, T).await,
            Some(want),
            &format!("optional with an {what} token"),
        );
    }
    let d2 = d.at("/maybe/x", Some("Bearer not.a.jwt"), T).await;
    assert!(!d2.is_allow(), "optional with a malformed token: {d2:?}");
}

/// `mode: audit` (DESIGN §11): the rule's real decision is kept beside an allow. A valid token
/// gets its claim headers as on an allow; anything else passes with every spoofable header
/// removed and none set.
#[tokio::test]
async fn audit_mode_allows_and_keeps_the_real_deny() {
    let d = strict();
    let audited = |dec: &Decision| match dec {
        Decision::Allow(a) => a.clone(),
        other => panic!("audit mode must allow: {other:?}"),
    };
    // a valid token without the role: allowed, with its claim headers
    let a = audited(&d.bearer_at("/admin/x", &d.good(), T).await);
    assert_eq!(a.rule, "admin-audit");
    assert_eq!(
        a.audit.as_ref().map(|x| x.reason),
        Some(Reason::MissingAValidRole)
    );
    assert!(
        a.set_headers
            .iter()
            .any(|(h, v)| h == "x-auth-subject" && v == "u"),
        "{a:?}"
    );
    assert!(
        a.set_headers
            .iter()
            .any(|(h, v)| h == "x-authz-client" && v == "strict")
    );
    // no token, an expired token: allowed with nothing set and every spoofable header removed
    let expired = d.token(Some("at+jwt"), json!({"exp": T - 3600, "iat": T - 7200}));
    for (dec, want) in [
        (
            d.at("/admin/x", None, T).await,
            Reason::AuthorizationHeaderMissing,
        ),
        (
            d.bearer_at("/admin/x", &expired, T).await,
            Reason::TokenExpired,
        ),
    ] {
        let a = audited(&dec);
        assert_eq!(a.audit.as_ref().map(|x| x.reason), Some(want), "{a:?}");
        assert!(a.set_headers.is_empty(), "{a:?}");
        for h in ["x-auth-subject", "x-authz-client"] {
            assert!(
                a.remove_headers.iter().any(|r| r == h),
                "{h} removed: {a:?}"
            );
        }
    }
    // enforce mode is untouched: the same request elsewhere is still denied
    assert_reason(
        &d.at("/other", None, T).await,
        Some(Reason::AuthorizationHeaderMissing),
        "an enforce rule",
    );
    // the metric and the trace say audit_deny with the real reason
    let m = Metrics::new();
    m.record_check(
        oidc_authz::observe::metrics::Api::Grpc,
        &d.bearer_at("/admin/x", &d.good(), T).await,
        0.001,
    );
    assert_eq!(
        m.checks_count(
            "audit_deny",
            "missing_a_valid_role",
            "strict",
            "admin-audit"
        ),
        1
    );
    let input = CheckInput {
        method: "GET",
        host: "h",
        path: "/admin/x",
        ..Default::default()
    };
    let ex = oidc_authz::core::explain::explain(&d.state.snapshot(), &input, T).await;
    assert!(ex.decision.is_allow());
    assert!(
        ex.steps
            .iter()
            .any(|(s, o)| s == "audit" && o.contains("would deny 401 authorization_header_missing")),
        "{:?}",
        ex.steps
    );
}

#[test]
fn a_rule_mode_is_enforce_or_audit() {
    let yaml = |mode: &str| {
        format!(
            "clients:\n  - {{ name: a, issuer: {ISS}, jwks_uri: https://idp.example.org/k, audiences: [a] }}\nrules:\n  - {{ name: r, match: {{ prefix: / }}, mode: {mode} }}\n"
        )
    };
    assert!(oidc_authz::config::parse(&yaml("audit")).is_ok());
    assert!(oidc_authz::config::parse(&yaml("enforce")).is_ok());
    let e = oidc_authz::config::parse(&yaml("shadow"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rules[0].mode") && e.contains("enforce or audit"),
        "{e}"
    );
}

/// `--shadow-config` (DESIGN §11): the candidate decides every Check too, the answer comes from
/// the live config only, and disagreements (decision or reason) are counted by rule.
#[tokio::test]
async fn a_shadow_config_is_decided_beside_the_live_one_and_never_answers() {
    let key = TestKey::generate(Alg::ES256, "k1");
    let dir = std::env::temp_dir().join(format!(
        "oidc-authz-handler-shadow-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keys.json");
    std::fs::write(&file, jwks(&[&key])).unwrap();
    let cfg = |rules: &str| {
        oidc_authz::config::parse(&format!(
            "clients:\n  - {{ name: app, issuer: {ISS}, jwks_file: {}, audiences: [app], algorithms: [ES256], roles: [realm_access.roles] }}\nrules:\n{rules}",
            file.display()
        ))
        .unwrap()
    };
    let live = cfg("  - { name: all, match: { prefix: / } }\n");
    let candidate = cfg("  - { name: admins, match: { prefix: / }, roles: { any_of: [admin] } }\n");
    let state = ServerState::new(live, Arc::new(Metrics::new())).unwrap();
    state.set_shadow(candidate).unwrap();
    let h = H {
        svc: AuthzService::new(state.clone()),
        _dir: dir,
    };
    let m = &state.metrics;
    // a valid token without the role: the live config allows (the answer), the candidate denies
    let user = key.token(&claims(ISS, json!("app"), json!({})));
    assert_eq!(h.check(&user).await, None, "the live config answers");
    assert_eq!(
        h.check(&user).await,
        None,
        "cached on both sides, same answer"
    );
    assert_eq!(m.shadow_disagreements_count("allow", "deny", "all"), 2);
    // both allow, or both deny with the same reason: no disagreement
    let admin = key.token(&claims(
        ISS,
        json!("app"),
        json!({"realm_access": {"roles": ["admin"]}}),
    ));
    assert_eq!(h.check(&admin).await, None);
    let expired = key.token(&claims(
        ISS,
        json!("app"),
        json!({"exp": 1_000_000_000, "iat": 999_999_000}),
    ));
    assert_eq!(h.check(&expired).await.as_deref(), Some("token_expired"));
    assert_eq!(m.shadow_disagreements_count("allow", "deny", "all"), 2);
    assert_eq!(m.shadow_disagreements_count("allow", "allow", "all"), 0);
    assert_eq!(m.shadow_disagreements_count("deny", "deny", ""), 0);
    assert!(
        m.render()
            .contains(r#"oidc_authz_shadow_disagreements_total{live_decision="allow",rule="all",shadow_decision="deny"} 2"#),
        "{}",
        m.render()
    );
    // an invalid candidate is refused; the previous one stays
    let bad = oidc_authz::config::parse(&format!(
        "clients:\n  - {{ name: app, issuer: {ISS}, jwks_file: /nonexistent/keys.json, audiences: [app] }}\nrules: []\n"
    ))
    .unwrap();
    assert!(state.set_shadow(bad).is_err());
    assert_eq!(h.check(&user).await, None);
    assert_eq!(m.shadow_disagreements_count("allow", "deny", "all"), 3);
}
