//! Sender-constrained tokens through a full Check (DESIGN §10): the attack catalogue of issue 14
//! against the tonic `Authorization::check` method (no network), with static keys from a
//! `jwks_file`. Each test names the attack and the reason code (and challenge) it must produce.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use envoy_types::ext_authz::v3::pb::Authorization;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use oidc_authz::core::binding::dpop::{ath, jwk_thumbprint};
use oidc_authz::core::binding::mtls::der_thumbprint;
use oidc_authz::doors::grpc::AuthzService;
use oidc_authz::keys::Alg;
use oidc_authz::observe::metrics::Metrics;
use oidc_authz::ops::state::ServerState;
use oidc_authz::testkit::{TestKey, claims, jwks, now};
use serde_json::{Value, json};

const ISS: &str = "https://issuer.example.org/realms/r";
const HOST: &str = "api.example.org";
const SECRET: &str = "binding-test-nonce-secret-0123456789abcdef";

/// Two certificates (any DER-shaped bytes: only the PEM framing and the digest matter).
const CERT: &[u8] = b"\x30\x82\x01\x0a the client certificate of this test";
const OTHER_CERT: &[u8] = b"\x30\x82\x01\x0a another certificate of the same CA";

struct Fx {
    svc: AuthzService,
    issuer: TestKey,
    _dir: std::path::PathBuf,
}

/// What a Check answered: the deny reason (None: allow), `WWW-Authenticate`, `DPoP-Nonce`, and
/// on allow the headers set upstream.
#[derive(Debug, Default)]
struct Out {
    reason: Option<String>,
    www: String,
    nonce: Option<String>,
    set: Vec<(String, String)>,
}

fn service(yaml: &str) -> AuthzService {
    let cfg = oidc_authz::config::parse_with_env(yaml, &|v| {
        (v == "NONCE_SECRET").then(|| SECRET.to_owned())
    })
    .unwrap();
    AuthzService::new(ServerState::new(cfg, Arc::new(Metrics::new())).unwrap())
}

fn config(file: &std::path::Path) -> String {
    let f = file.display();
    format!(
        r#"
clients:
  - name: dpop                 # DPoP configured
    issuer: {ISS}
    jwks_file: {f}
    audiences: [dpop-api]
    headers: {{ x-auth-subject: sub }}
    binding:
      dpop: {{ algorithms: [ES256, EdDSA, RS256], max_age: 60s }}
  - name: plain                # no binding block: a token's cnf is honoured with the defaults
    issuer: {ISS}
    jwks_file: {f}
    audiences: [plain-api]
  - name: nonce                # only sender-constrained tokens, DPoP with server nonces
    issuer: {ISS}
    jwks_file: {f}
    audiences: [nonce-api]
    binding:
      require: true
      dpop: {{ algorithms: [ES256], nonce: true, nonce_secret: "${{NONCE_SECRET}}" }}
  - name: xfcc                 # certificate from x-forwarded-client-cert
    issuer: {ISS}
    jwks_file: {f}
    audiences: [xfcc-api]
    binding: {{ mtls: {{ certificate: xfcc }} }}
  - name: strict               # binding.require without DPoP settings
    issuer: {ISS}
    jwks_file: {f}
    audiences: [strict-api]
    binding: {{ require: true }}
rules:
  - {{ name: all, match: {{ prefix: / }} }}
"#
    )
}

impl Fx {
    fn new() -> Fx {
        let dir = std::env::temp_dir().join(format!(
            "oidc-authz-binding-{}-{}",
            std::process::id(),
            suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let issuer = TestKey::rsa("issuer-1");
        let file = dir.join("keys.json");
        std::fs::write(&file, jwks(&[&issuer])).unwrap();
        let svc = service(&config(&file));
        Fx {
            svc,
            issuer,
            _dir: dir,
        }
    }

    /// A second replica with the same config (its own replay memory, the same nonce secret).
    fn replica(&self) -> AuthzService {
        service(&config(&self._dir.join("keys.json")))
    }

    fn token(&self, aud: &str, cnf: Option<Value>) -> String {
        let extra = match cnf {
            Some(c) => json!({ "cnf": c }),
            None => json!({}),
        };
        self.issuer.token(&claims(ISS, json!(aud), extra))
    }

    async fn check(&self, req: CheckRequest) -> Out {
        run(&self.svc, req).await
    }
}

async fn run(svc: &AuthzService, req: CheckRequest) -> Out {
    let resp = svc
        .check(tonic::Request::new(req))
        .await
        .expect("never a transport error")
        .into_inner();
    match resp.http_response {
        Some(HttpResponse::OkResponse(ok)) => Out {
            set: ok
                .headers
                .into_iter()
                .filter_map(|h| h.header)
                .map(|h| (h.key, h.value))
                .collect(),
            ..Out::default()
        },
        Some(HttpResponse::DeniedResponse(d)) => {
            let header = |name: &str| {
                d.headers
                    .iter()
                    .filter_map(|h| h.header.as_ref())
                    .find(|h| h.key == name)
                    .map(|h| h.value.clone())
            };
            let body: Value = serde_json::from_str(&d.body).unwrap();
            let code = body["code"].as_str().unwrap().to_owned();
            assert_eq!(header("x-authz-reason").as_deref(), Some(code.as_str()));
            Out {
                reason: Some(code),
                www: header("www-authenticate").unwrap_or_default(),
                nonce: header("dpop-nonce"),
                set: Vec::new(),
            }
        }
        other => panic!("{other:?}"),
    }
}

fn suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// A request as Envoy describes it. Headers go in `header_map` (one entry each, so a repeated
/// header stays repeated).
struct Req<'a> {
    method: &'a str,
    scheme: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, String)>,
    cert: Option<&'a [u8]>,
}

impl<'a> Req<'a> {
    fn get(path: &'a str) -> Self {
        Req {
            method: "GET",
            scheme: "https",
            path,
            headers: Vec::new(),
            cert: None,
        }
    }

    fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn build(self) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                source: self.cert.map(|c| Peer {
                    certificate: url_encode(&pem(c)),
                    ..Default::default()
                }),
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: self.method.into(),
                        scheme: self.scheme.into(),
                        host: HOST.into(),
                        path: self.path.into(),
                        header_map: Some(HeaderMap {
                            headers: self
                                .headers
                                .into_iter()
                                .map(|(k, v)| HeaderValue {
                                    key: k.into(),
                                    raw_value: v.into_bytes(),
                                    ..Default::default()
                                })
                                .collect(),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
}

fn pem(der: &[u8]) -> String {
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        STANDARD.encode(der)
    )
}

fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn x5t(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(der_thumbprint(der))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A client's DPoP key and the proofs it makes.
struct Holder {
    key: TestKey,
}

impl Holder {
    fn new(alg: Alg) -> Self {
        Holder {
            key: TestKey::generate(alg, "unused"),
        }
    }

    fn public_jwk(&self) -> Value {
        let mut jwk = self.key.jwk(false);
        let m = jwk.as_object_mut().unwrap();
        m.remove("kid");
        m.remove("use");
        jwk
    }

    fn jkt(&self) -> String {
        let jwk = self.public_jwk();
        URL_SAFE_NO_PAD.encode(jwk_thumbprint(jwk.as_object().unwrap()).unwrap())
    }

    fn cnf(&self) -> Value {
        json!({ "jkt": self.jkt() })
    }

    /// A valid proof for `method url` and `token`, then `header` / `claims` merged over it
    /// (a `null` member is removed).
    fn proof_with(
        &self,
        method: &str,
        url: &str,
        token: &str,
        header: Value,
        claims: Value,
    ) -> String {
        let mut h =
            json!({"typ": "dpop+jwt", "alg": self.key.alg.name(), "jwk": self.public_jwk()});
        let ath = String::from_utf8(ath(token).to_vec()).unwrap();
        let mut c = json!({"jti": format!("jti-{}", suffix()), "htm": method, "htu": url,
                           "iat": now(), "ath": ath});
        merge(&mut h, header);
        merge(&mut c, claims);
        self.key.sign(&h, &c)
    }

    fn proof(&self, method: &str, url: &str, token: &str) -> String {
        self.proof_with(method, url, token, json!({}), json!({}))
    }
}

fn merge(into: &mut Value, over: Value) {
    let m = into.as_object_mut().unwrap();
    for (k, v) in over.as_object().unwrap() {
        if v.is_null() {
            m.remove(k);
        } else {
            m.insert(k.clone(), v.clone());
        }
    }
}

fn url(path: &str) -> String {
    format!("https://{HOST}{path}")
}

fn dpop_req<'a>(token: &str, proof: impl Into<String>) -> Req<'a> {
    Req::get("/orders")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
}

fn assert_deny(out: &Out, reason: &str) {
    assert_eq!(out.reason.as_deref(), Some(reason), "{out:?}");
}

/// `invalid_dpop_proof` with `DPoP error="invalid_dpop_proof"` and the client's algs.
fn assert_bad_proof(out: &Out, algs: &str) {
    assert_deny(out, "invalid_dpop_proof");
    assert!(
        out.www.starts_with(
            "Bearer realm=\"oidc-authz\", DPoP realm=\"oidc-authz\", error=\"invalid_dpop_proof\""
        ),
        "{out:?}"
    );
    assert!(out.www.ends_with(&format!("algs=\"{algs}\"")), "{out:?}");
    assert!(out.nonce.is_none(), "{out:?}");
}

const DPOP_ALGS: &str = "ES256 EdDSA RS256";

// ---------------------------------------------------------------------------------------------
// DPoP: the valid path, and the cache never skips the proof

#[tokio::test]
async fn valid_proofs_are_allowed_each_request_with_its_own_proof() {
    let fx = Fx::new();
    for alg in [Alg::ES256, Alg::EdDSA, Alg::RS256] {
        let h = Holder::new(alg);
        let tok = fx.token("dpop-api", Some(h.cnf()));
        let out = fx
            .check(dpop_req(&tok, h.proof("GET", &url("/orders"), &tok)).build())
            .await;
        assert_eq!(out.reason, None, "{alg:?}: {out:?}");
        assert!(
            out.set
                .contains(&("x-auth-subject".into(), "user-1".into()))
        );
        // the same (now cached) token with a fresh proof, another method, a query (not in htu),
        // and scheme and host in another case
        let mut r = dpop_req(
            &tok,
            h.proof("POST", "HTTPS://API.example.org:443/orders", &tok),
        );
        r.method = "POST";
        r.path = "/orders?page=2";
        assert_eq!(fx.check(r.build()).await.reason, None, "{alg:?}");
    }
}

#[tokio::test]
async fn a_cached_token_with_a_bad_or_missing_proof_is_refused() {
    let fx = Fx::new();
    let h = Holder::new(Alg::ES256);
    let tok = fx.token("dpop-api", Some(h.cnf()));
    let ok = fx
        .check(dpop_req(&tok, h.proof("GET", &url("/orders"), &tok)).build())
        .await;
    assert_eq!(ok.reason, None);
    // cached now: the proof is still checked on every request
    let bad = h.proof("GET", &url("/elsewhere"), &tok);
    assert_bad_proof(&fx.check(dpop_req(&tok, bad).build()).await, DPOP_ALGS);
    let none = Req::get("/orders").header("authorization", format!("DPoP {tok}"));
    assert_bad_proof(&fx.check(none.build()).await, DPOP_ALGS);
    let other = Holder::new(Alg::ES256).proof("GET", &url("/orders"), &tok);
    assert_bad_proof(&fx.check(dpop_req(&tok, other).build()).await, DPOP_ALGS);
}

// ---------------------------------------------------------------------------------------------
// DPoP: the attack catalogue, each → 401 invalid_dpop_proof with the DPoP error challenge

#[tokio::test]
async fn a_replayed_proof_is_refused() {
    let fx = Fx::new();
    let h = Holder::new(Alg::ES256);
    let tok = fx.token("dpop-api", Some(h.cnf()));
    let proof = h.proof("GET", &url("/orders"), &tok);
    assert_eq!(
        fx.check(dpop_req(&tok, proof.clone()).build()).await.reason,
        None
    );
    assert_bad_proof(
        &fx.check(dpop_req(&tok, proof.clone()).build()).await,
        DPOP_ALGS,
    );
    // replay memory is per replica (DESIGN §10): another replica has not seen it
    assert_eq!(
        run(&fx.replica(), dpop_req(&tok, proof).build())
            .await
            .reason,
        None
    );
}

#[tokio::test]
async fn proofs_failing_one_rfc9449_check_are_refused() {
    let fx = Fx::new();
    let h = Holder::new(Alg::ES256);
    let tok = fx.token("dpop-api", Some(h.cnf()));
    let u = url("/orders");
    let t = now();
    let private_d = json!({"jwk": {"d": "AAAA"}});
    let mut private_jwk = h.public_jwk();
    private_jwk["d"] = json!("870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE");
    let cases: Vec<(&str, String)> = vec![
        ("htm mismatch", h.proof("POST", &u, &tok)),
        ("htu other path", h.proof("GET", &url("/admin"), &tok)),
        (
            "htu other host",
            h.proof("GET", "https://evil.example.org/orders", &tok),
        ),
        (
            "htu other scheme",
            h.proof("GET", &format!("http://{HOST}/orders"), &tok),
        ),
        (
            "htu other port",
            h.proof("GET", &format!("https://{HOST}:8443/orders"), &tok),
        ),
        ("ath mismatch", h.proof("GET", &u, "another.access.token")),
        (
            "ath missing",
            h.proof_with("GET", &u, &tok, json!({}), json!({"ath": null})),
        ),
        (
            "iat too old",
            h.proof_with("GET", &u, &tok, json!({}), json!({"iat": t - 60 - 30 - 5})),
        ),
        (
            "iat in the future",
            h.proof_with("GET", &u, &tok, json!({}), json!({"iat": t + 30 + 5})),
        ),
        (
            "iat a string",
            h.proof_with("GET", &u, &tok, json!({}), json!({"iat": t.to_string()})),
        ),
        (
            "jti missing",
            h.proof_with("GET", &u, &tok, json!({}), json!({"jti": null})),
        ),
        (
            "jti empty",
            h.proof_with("GET", &u, &tok, json!({}), json!({"jti": ""})),
        ),
        (
            "typ JWT",
            h.proof_with("GET", &u, &tok, json!({"typ": "JWT"}), json!({})),
        ),
        (
            "typ missing",
            h.proof_with("GET", &u, &tok, json!({"typ": null}), json!({})),
        ),
        (
            "private key in jwk",
            h.proof_with("GET", &u, &tok, json!({"jwk": private_jwk}), json!({})),
        ),
        (
            "jwk only a private member",
            h.proof_with("GET", &u, &tok, private_d, json!({})),
        ),
        (
            "no jwk",
            h.proof_with("GET", &u, &tok, json!({"jwk": null}), json!({})),
        ),
        (
            // signed by a PS256 key (the alg check comes before the key binding)
            "alg not in the client's list",
            Holder::new(Alg::PS256).proof("GET", &u, &tok),
        ),
        (
            "crit header",
            h.proof_with("GET", &u, &tok, json!({"crit": ["exp"]}), json!({})),
        ),
        ("signature by another key", {
            let p = h.proof("GET", &u, &tok);
            let other = Holder::new(Alg::ES256).proof("GET", &u, &tok);
            let (input, _) = p.rsplit_once('.').unwrap();
            let (_, sig) = other.rsplit_once('.').unwrap();
            format!("{input}.{sig}")
        }),
        (
            "proof by another key (jkt mismatch)",
            Holder::new(Alg::ES256).proof("GET", &u, &tok),
        ),
        ("alg none, unsigned", {
            let hdr = URL_SAFE_NO_PAD.encode(
                json!({"typ": "dpop+jwt", "alg": "none", "jwk": h.public_jwk()}).to_string(),
            );
            let body = URL_SAFE_NO_PAD.encode(
                json!({"jti": "x1", "htm": "GET", "htu": u, "iat": t,
                       "ath": String::from_utf8(ath(&tok).to_vec()).unwrap()})
                .to_string(),
            );
            format!("{hdr}.{body}.")
        }),
        ("alg HS256 keyed with the public key", {
            let p = h.proof_with("GET", &u, &tok, json!({"alg": "HS256"}), json!({}));
            let (input, _) = p.rsplit_once('.').unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode([7u8; 32]))
        }),
        (
            "oversized proof",
            h.proof_with("GET", &u, &tok, json!({}), json!({"pad": "x".repeat(9000)})),
        ),
        ("not a JWS", "not-a-proof".to_owned()),
        (
            "two proofs joined with a comma",
            format!("{},{}", h.proof("GET", &u, &tok), h.proof("GET", &u, &tok)),
        ),
        ("empty", String::new()),
    ];
    for (attack, proof) in cases {
        let out = fx.check(dpop_req(&tok, proof).build()).await;
        assert_eq!(
            out.reason.as_deref(),
            Some("invalid_dpop_proof"),
            "{attack}: {out:?}"
        );
        assert_bad_proof(&out, DPOP_ALGS);
    }
    // the valid proof still passes after all that (nothing above was remembered as seen)
    assert_eq!(
        fx.check(dpop_req(&tok, h.proof("GET", &u, &tok)).build())
            .await
            .reason,
        None
    );
}

#[tokio::test]
async fn two_dpop_headers_are_refused() {
    let fx = Fx::new();
    let h = Holder::new(Alg::ES256);
    let tok = fx.token("dpop-api", Some(h.cnf()));
    let u = url("/orders");
    let r = dpop_req(&tok, h.proof("GET", &u, &tok)).header("dpop", h.proof("GET", &u, &tok));
    assert_bad_proof(&fx.check(r.build()).await, DPOP_ALGS);
}

// ---------------------------------------------------------------------------------------------
// Scheme rules → binding_mismatch

#[tokio::test]
async fn a_dpop_bound_token_sent_as_bearer_is_a_downgrade() {
    let fx = Fx::new();
    let h = Holder::new(Alg::ES256);
    for aud in ["dpop-api", "plain-api"] {
        let tok = fx.token(aud, Some(h.cnf()));
        let proof = h.proof("GET", &url("/orders"), &tok);
        for r in [
            Req::get("/orders").header("authorization", format!("Bearer {tok}")),
            Req::get("/orders")
                .header("authorization", format!("Bearer {tok}"))
                .header("dpop", proof),
        ] {
            let out = fx.check(r.build()).await;
            assert_deny(&out, "binding_mismatch");
            // the client learns it must use DPoP
            assert!(out.www.contains("DPoP realm=\"oidc-authz\""), "{out:?}");
            assert!(!out.www.contains("invalid_dpop_proof"), "{out:?}");
        }
    }
}

#[tokio::test]
async fn the_dpop_scheme_with_an_unbound_token_is_a_mismatch() {
    let fx = Fx::new();
    let h = Holder::new(Alg::ES256);
    for cnf in [None, Some(json!({"x5t#S256": x5t(CERT)}))] {
        let tok = fx.token("dpop-api", cnf);
        let mut r = dpop_req(&tok, h.proof("GET", &url("/orders"), &tok));
        r.cert = Some(CERT);
        assert_deny(&fx.check(r.build()).await, "binding_mismatch");
    }
}

#[tokio::test]
async fn unbound_bearer_tokens_still_work_and_carry_the_dpop_challenge_on_401() {
    let fx = Fx::new();
    let tok = fx.token("dpop-api", None);
    let bearer = |t: &str| Req::get("/orders").header("authorization", format!("Bearer {t}"));
    assert_eq!(fx.check(bearer(&tok).build()).await.reason, None);
    // a DPoP header next to an unbound Bearer token is ignored (RFC 9449 §7.2)
    assert_eq!(
        fx.check(bearer(&tok).header("dpop", "whatever").build())
            .await
            .reason,
        None
    );
    // any 401 of a client with DPoP configured advertises its proof algorithms
    let expired = fx
        .issuer
        .token(&json!({"iss": ISS, "aud": "dpop-api", "sub": "u",
                                           "exp": now() - 3600}));
    let out = fx.check(bearer(&expired).build()).await;
    assert_deny(&out, "token_expired");
    assert!(
        out.www
            .starts_with("Bearer realm=\"oidc-authz\", error=\"invalid_token\""),
        "{out:?}"
    );
    assert!(
        out.www.ends_with(&format!(
            ", DPoP realm=\"oidc-authz\", algs=\"{DPOP_ALGS}\""
        )),
        "{out:?}"
    );
    // a client without binding.dpop keeps its plain Bearer challenge
    let expired = fx
        .issuer
        .token(&json!({"iss": ISS, "aud": "plain-api", "sub": "u",
                                           "exp": now() - 3600}));
    let out = fx.check(bearer(&expired).build()).await;
    assert_deny(&out, "token_expired");
    assert!(!out.www.contains("DPoP realm"), "{out:?}");
}

#[tokio::test]
async fn a_client_without_a_binding_block_honours_cnf_with_the_defaults() {
    let fx = Fx::new();
    let h = Holder::new(Alg::ES256);
    let tok = fx.token("plain-api", Some(h.cnf()));
    let u = url("/orders");
    assert_eq!(
        fx.check(dpop_req(&tok, h.proof("GET", &u, &tok)).build())
            .await
            .reason,
        None
    );
    let out = fx
        .check(dpop_req(&tok, h.proof("POST", &u, &tok)).build())
        .await;
    assert_bad_proof(&out, "ES256 EdDSA PS256 RS256");
    // mTLS-bound, peer mode by default
    let tok = fx.token("plain-api", Some(json!({"x5t#S256": x5t(CERT)})));
    let mut r = Req::get("/orders").header("authorization", format!("Bearer {tok}"));
    r.cert = Some(CERT);
    assert_eq!(fx.check(r.build()).await.reason, None);
}

#[tokio::test]
async fn a_malformed_cnf_is_invalid_claims() {
    let fx = Fx::new();
    for cnf in [
        json!("jkt"),
        json!({"jkt": "short"}),
        json!({"jwk": {"kty": "EC"}}),
    ] {
        let tok = fx.token("dpop-api", Some(cnf.clone()));
        let r = Req::get("/orders").header("authorization", format!("Bearer {tok}"));
        assert_deny(&fx.check(r.build()).await, "invalid_claims");
    }
}

// ---------------------------------------------------------------------------------------------
// Nonces and binding.require

#[tokio::test]
async fn nonces_are_demanded_issued_and_accepted_by_every_replica() {
    let fx = Fx::new();
    let h = Holder::new(Alg::ES256);
    let tok = fx.token("nonce-api", Some(h.cnf()));
    let u = url("/orders");
    let out = fx
        .check(dpop_req(&tok, h.proof("GET", &u, &tok)).build())
        .await;
    assert_deny(&out, "use_dpop_nonce");
    assert!(
        out.www
            .contains("DPoP realm=\"oidc-authz\", error=\"use_dpop_nonce\""),
        "{out:?}"
    );
    assert!(out.www.ends_with("algs=\"ES256\""), "{out:?}");
    let nonce = out.nonce.clone().expect("DPoP-Nonce on use_dpop_nonce");
    let with = |n: &str| h.proof_with("GET", &u, &tok, json!({}), json!({"nonce": n}));
    assert_eq!(
        fx.check(dpop_req(&tok, with(&nonce)).build()).await.reason,
        None
    );
    // another replica sharing nonce_secret accepts the nonce this one issued
    assert_eq!(
        run(&fx.replica(), dpop_req(&tok, with(&nonce)).build())
            .await
            .reason,
        None
    );
    // a nonce this server did not issue
    let out = fx
        .check(dpop_req(&tok, with("not-a-nonce-we-issued")).build())
        .await;
    assert_deny(&out, "use_dpop_nonce");
    assert!(out.nonce.is_some());
    // a proof failing another check is invalid_dpop_proof even without a nonce
    let out = fx
        .check(dpop_req(&tok, h.proof("POST", &u, &tok)).build())
        .await;
    assert_deny(&out, "invalid_dpop_proof");
}

#[tokio::test]
async fn binding_required_refuses_tokens_without_cnf() {
    let fx = Fx::new();
    for aud in ["nonce-api", "strict-api"] {
        let tok = fx.token(aud, None);
        let out = fx
            .check(
                Req::get("/orders")
                    .header("authorization", format!("Bearer {tok}"))
                    .build(),
            )
            .await;
        assert_deny(&out, "binding_required");
        assert_eq!(
            out.www.contains("DPoP realm"),
            aud == "nonce-api",
            "{out:?}"
        );
    }
    // strict-api takes any binding: an mTLS-bound token with its certificate
    let tok = fx.token("strict-api", Some(json!({"x5t#S256": x5t(CERT)})));
    let mut r = Req::get("/orders").header("authorization", format!("Bearer {tok}"));
    r.cert = Some(CERT);
    assert_eq!(fx.check(r.build()).await.reason, None);
}

// ---------------------------------------------------------------------------------------------
// mTLS-bound tokens

#[tokio::test]
async fn mtls_peer_mode_right_wrong_missing_certificate_and_forged_xfcc() {
    let fx = Fx::new();
    let tok = fx.token("dpop-api", Some(json!({"x5t#S256": x5t(CERT)})));
    let bearer = || Req::get("/orders").header("authorization", format!("Bearer {tok}"));
    let mut r = bearer();
    r.cert = Some(CERT);
    assert_eq!(fx.check(r.build()).await.reason, None);
    let mut r = bearer();
    r.cert = Some(OTHER_CERT);
    assert_deny(&fx.check(r.build()).await, "binding_mismatch");
    assert_deny(&fx.check(bearer().build()).await, "binding_mismatch");
    // in peer mode a caller's x-forwarded-client-cert is never read
    let forged = format!(
        "Hash={};Cert=\"{}\"",
        hex(&der_thumbprint(CERT)),
        url_encode(&pem(CERT))
    );
    assert_deny(
        &fx.check(
            bearer()
                .header("x-forwarded-client-cert", forged.clone())
                .build(),
        )
        .await,
        "binding_mismatch",
    );
    let mut r = bearer().header("x-forwarded-client-cert", forged);
    r.cert = Some(OTHER_CERT);
    assert_deny(&fx.check(r.build()).await, "binding_mismatch");
}

#[tokio::test]
async fn mtls_xfcc_mode_reads_the_last_element_only() {
    let fx = Fx::new();
    let tok = fx.token("xfcc-api", Some(json!({"x5t#S256": x5t(CERT)})));
    let bearer = || Req::get("/orders").header("authorization", format!("Bearer {tok}"));
    let hash = |d: &[u8]| format!("By=spiffe://envoy;Hash={}", hex(&der_thumbprint(d)));
    assert_eq!(
        fx.check(
            bearer()
                .header("x-forwarded-client-cert", hash(CERT))
                .build()
        )
        .await
        .reason,
        None
    );
    let cert = format!("Cert=\"{}\"", url_encode(&pem(CERT)));
    assert_eq!(
        fx.check(bearer().header("x-forwarded-client-cert", cert).build())
            .await
            .reason,
        None
    );
    for xfcc in [
        hash(OTHER_CERT),
        format!("{},{}", hash(CERT), hash(OTHER_CERT)), // the caller's element first, Envoy's last
        "By=spiffe://envoy".to_owned(),
    ] {
        assert_deny(
            &fx.check(bearer().header("x-forwarded-client-cert", xfcc).build())
                .await,
            "binding_mismatch",
        );
    }
    // no header: the peer certificate does not stand in for it in xfcc mode
    let mut r = bearer();
    r.cert = Some(CERT);
    assert_deny(&fx.check(r.build()).await, "binding_mismatch");
    // two headers: refused
    let r = bearer()
        .header("x-forwarded-client-cert", hash(CERT))
        .header("x-forwarded-client-cert", hash(CERT));
    assert_deny(&fx.check(r.build()).await, "binding_mismatch");
}

#[tokio::test]
async fn a_token_bound_both_ways_needs_both_the_proof_and_the_certificate() {
    let fx = Fx::new();
    let h = Holder::new(Alg::ES256);
    let tok = fx.token(
        "dpop-api",
        Some(json!({"jkt": h.jkt(), "x5t#S256": x5t(CERT)})),
    );
    let u = url("/orders");
    let mut r = dpop_req(&tok, h.proof("GET", &u, &tok));
    r.cert = Some(CERT);
    assert_eq!(fx.check(r.build()).await.reason, None);
    let mut r = dpop_req(&tok, h.proof("GET", &u, &tok));
    r.cert = Some(OTHER_CERT);
    assert_deny(&fx.check(r.build()).await, "binding_mismatch");
    let r = Req::get("/orders").header("authorization", format!("Bearer {tok}"));
    assert_deny(&fx.check(r.build()).await, "binding_mismatch");
}
