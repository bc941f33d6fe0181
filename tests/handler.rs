//! Handler tests: call the tonic `Authorization::check` method directly (no network), with
//! static keys from a `jwks_file`. Covers every algorithm, algorithm confusion, and interop
//! with tokens minted by the `jsonwebtoken` crate.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::Authorization;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use oidc_authz::doors::grpc::AuthzService;
use oidc_authz::keys::Alg;
use oidc_authz::ops::metrics::Metrics;
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
