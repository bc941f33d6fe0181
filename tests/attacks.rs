//! The attack catalogue, each attack through a full Check: the real server on 127.0.0.1:0, a
//! local IdP serving discovery + JWKS, and a real tonic client. Every attack must be denied with
//! the reason code DESIGN §4 / §6 assign to it (code, HTTP status, gRPC status, JSON body), and
//! the attacks that name a key location must not cause a single outbound connection.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use oidc_authz::core::token::{self, Headers, TokenSource};
use oidc_authz::decision::Reason;
use oidc_authz::keys::Alg;
use oidc_authz::testkit::{TestKey, claims, now};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

// max_request_bytes raised: these tests push 1 MiB tokens and paths through a full Check to
// test the core's own caps (the transport's default 64 KiB would refuse them first).
const CONFIG: &str = r#"
listen: { grpc: 127.0.0.1:0, admin: 127.0.0.1:0, max_request_bytes: 2MiB }
token:
  sources: [ { header: authorization }, { cookie: oidc-jwt } ]
  max_bytes: 16384
jwks: { refresh_interval: 5m, min_refresh_interval: MIN_REFRESH, max_stale: 12h, timeout: 2s }
clients:
  - name: web
    issuer: ISS
    audiences: [web-app]
    algorithms: [RS256, ES256]
    roles: [realm_access.roles]
    headers: { x-auth-subject: sub }
rules:
  - { name: health, match: { path: /healthz }, auth: none }
  - { name: admin, match: { prefix: /admin }, roles: { all_of: [admin] } }
  - { name: names-write, match: { prefix: /api/names, methods: [POST, PUT, PATCH, DELETE] }, roles: { all_of: [names_editor] } }
  - { name: public, match: { prefix: /public }, auth: optional }
  - { name: api, match: { prefix: /api } }
default: deny
"#;

const AUD: &str = "web-app";

/// The P-256 group order n.
const P256_N: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";

impl Fx {
    /// Default: a 30 s cooldown, so no refetch can happen during a test unless it waits.
    async fn new() -> Fx {
        Self::with_min_refresh("30s").await
    }

    async fn with_min_refresh(min: &str) -> Fx {
        Fx::start(FxSpec {
            config: &CONFIG.replace("MIN_REFRESH", min),
            rsa_kid: "rsa-1",
            publish_ec: true,
        })
        .await
    }

    fn iss(&self) -> String {
        self.idp.issuer.clone()
    }

    /// Valid claims for the `web` client, plus `extra`.
    fn claims(&self, extra: Value) -> Value {
        claims(&self.idp.issuer, json!(AUD), extra)
    }

    /// A token the server accepts (the baseline every attack is a variation of).
    fn good(&self) -> String {
        self.rsa.token(&self.claims(json!({})))
    }
}

fn assert_deny(o: &Outcome, reason: Reason, what: &str) {
    assert!(
        !o.allowed(),
        "{what}: expected deny {reason}, got allow {o:?}"
    );
    assert_eq!(o.reason.as_deref(), Some(reason.code()), "{what}: {o:?}");
    assert_eq!(o.http_status, reason.http_status(), "{what}: {o:?}");
    assert_eq!(o.body["code"], reason.code(), "{what}");
    let grpc = match reason.http_status() {
        401 => 16,
        403 => 7,
        503 => 14,
        _ => 3,
    };
    assert_eq!(o.grpc_code, grpc, "{what}: {o:?}");
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS from raw header / claims bytes and a raw signature (no signing).
fn forge(header: &[u8], claims: &[u8], sig: &[u8]) -> String {
    format!("{}.{}.{}", b64(header), b64(claims), b64(sig))
}

fn signing_input(token: &str) -> &str {
    &token[..token.rfind('.').unwrap()]
}

fn signature_of(token: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(&token[token.rfind('.').unwrap() + 1..])
        .unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// ---- DER helpers for the HS256-with-the-RSA-public-key attack and DER ECDSA signatures -------

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

fn der_uint(v: &[u8]) -> Vec<u8> {
    let skip = v.iter().take_while(|&&b| b == 0).count();
    let mut body = Vec::new();
    if v.get(skip).is_none_or(|b| b & 0x80 != 0) {
        body.push(0);
    }
    body.extend_from_slice(&v[skip..]);
    der(0x02, &body)
}

/// The RSA public key of `key` as PKCS#1 DER, SPKI DER, and the two PEM forms.
fn rsa_public_forms(key: &TestKey) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let jwk = key.jwk(false);
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap();
    let pkcs1 = der(0x30, &[der_uint(&n), der_uint(&e)].concat());
    // AlgorithmIdentifier { rsaEncryption, NULL }
    let alg_id = der(
        0x30,
        &[der(0x06, &hex("2a864886f70d010101")), der(0x05, &[])].concat(),
    );
    let spki = der(
        0x30,
        &[alg_id, der(0x03, &[&[0u8][..], &pkcs1].concat())].concat(),
    );
    (n, pkcs1, spki)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn hmac_sha256(secret: &[u8], msg: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    aws_lc_rs::hmac::sign(&key, msg).as_ref().to_vec()
}

/// A TCP listener that counts every connection it accepts and answers any request with
/// `body` (the attacker's JWKS: if the server ever fetched it, the attack would also succeed).
async fn counting_listener(body: String) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 16 * 1024];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    (format!("http://{addr}"), hits)
}

// =============================================================================================
// Algorithm attacks

#[tokio::test]
async fn alg_none_in_every_casing_with_and_without_a_signature_is_unsupported_algorithm() {
    let mut fx = Fx::new().await;
    let c = fx.claims(json!({})).to_string();
    for alg in ["none", "None", "NONE", "nOnE", "NoNe", "none "] {
        let h = json!({"alg": alg, "kid": "rsa-1", "typ": "JWT"}).to_string();
        // unsigned: empty third segment
        let unsigned = forge(h.as_bytes(), c.as_bytes(), b"");
        assert!(unsigned.ends_with('.'));
        assert_deny(
            &fx.get("/api/x", Some(&unsigned)).await,
            Reason::UnsupportedAlgorithm,
            &format!("alg {alg:?} unsigned"),
        );
        // with a real RS256 signature over the same input, and with garbage
        let signed = fx.rsa.sign_bytes(h.as_bytes(), c.as_bytes());
        assert_deny(
            &fx.get("/api/x", Some(&signed)).await,
            Reason::UnsupportedAlgorithm,
            &format!("alg {alg:?} RSA-signed"),
        );
        let junk = forge(h.as_bytes(), c.as_bytes(), b"signature");
        assert_deny(
            &fx.get("/api/x", Some(&junk)).await,
            Reason::UnsupportedAlgorithm,
            &format!("alg {alg:?} junk signature"),
        );
    }
    // near-misses of real algorithm names are not algorithms either
    for alg in ["rs256", "RS256 ", " RS256", "Rs256", "RS-256", ""] {
        let tok = fx
            .rsa
            .sign(&json!({"alg": alg, "kid": "rsa-1"}), &fx.claims(json!({})));
        assert_deny(
            &fx.get("/api/x", Some(&tok)).await,
            Reason::UnsupportedAlgorithm,
            &format!("alg {alg:?}"),
        );
    }
    // the baseline passes, so the denials above are about the alg and nothing else
    assert!(fx.get("/api/x", Some(&fx.good())).await.allowed());
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_as_secret_is_unsupported_algorithm() {
    let mut fx = Fx::new().await;
    let (n, pkcs1, spki) = rsa_public_forms(&fx.rsa);
    let published_jwk = fx.rsa.jwk(true).to_string();
    let idp_jwks = oidc_authz::testkit::jwks(&[&fx.rsa, &fx.ec]);
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("SPKI PEM", pem("PUBLIC KEY", &spki).into_bytes()),
        ("PKCS#1 PEM", pem("RSA PUBLIC KEY", &pkcs1).into_bytes()),
        ("SPKI DER", spki.clone()),
        ("PKCS#1 DER", pkcs1.clone()),
        ("JWK JSON", published_jwk.into_bytes()),
        ("JWKS JSON", idp_jwks.into_bytes()),
        ("raw modulus", n.clone()),
        ("modulus base64url", b64(&n).into_bytes()),
    ];
    let c = fx.claims(json!({"realm_access": {"roles": ["admin"]}}));
    for alg in ["HS256", "HS384", "HS512"] {
        for kid in [Some("rsa-1"), None] {
            for (what, secret) in &secrets {
                let mut h = json!({"alg": alg, "typ": "JWT"});
                if let Some(k) = kid {
                    h["kid"] = json!(k);
                }
                let unsigned = format!(
                    "{}.{}",
                    b64(h.to_string().as_bytes()),
                    b64(c.to_string().as_bytes())
                );
                let mac = hmac_sha256(secret, unsigned.as_bytes());
                let tok = format!("{unsigned}.{}", b64(&mac));
                assert_deny(
                    &fx.get("/admin/panel", Some(&tok)).await,
                    Reason::UnsupportedAlgorithm,
                    &format!("{alg} kid {kid:?} secret = {what}"),
                );
            }
        }
    }
}

#[tokio::test]
async fn psychic_and_der_encoded_es256_signatures_are_invalid_signature() {
    let mut fx = Fx::new().await;
    let header = json!({"alg": "ES256", "kid": "ec-1", "typ": "JWT"}).to_string();
    let c = fx.claims(json!({})).to_string();
    let n = hex(P256_N);
    let one = {
        let mut v = vec![0u8; 32];
        v[31] = 1;
        v
    };
    let psychic: Vec<(&str, Vec<u8>)> = vec![
        ("r = s = 0", vec![0u8; 64]),
        ("r = s = n", [n.clone(), n.clone()].concat()),
        ("r = 0, s = n", [vec![0u8; 32], n.clone()].concat()),
        ("r = n, s = 1", [n.clone(), one.clone()].concat()),
        ("r = s = 1", [one.clone(), one.clone()].concat()),
        ("r = s = 0xff..ff", vec![0xffu8; 64]),
        ("empty", Vec::new()),
        ("one zero byte", vec![0u8]),
        (
            "r = s = 0, DER",
            der(0x30, &[der_uint(&[0]), der_uint(&[0])].concat()),
        ),
    ];
    for (what, sig) in &psychic {
        let tok = forge(header.as_bytes(), c.as_bytes(), sig);
        assert_deny(
            &fx.get("/api/x", Some(&tok)).await,
            Reason::InvalidSignature,
            what,
        );
    }
    // A genuine signature re-encoded as ASN.1 DER (what a non-JOSE ECDSA library emits):
    // JWS requires the fixed 64-byte r || s form (RFC 7518 §3.4).
    let good = fx.ec.sign_bytes(header.as_bytes(), c.as_bytes());
    assert!(
        fx.get("/api/x", Some(&good)).await.allowed(),
        "the fixed-form signature verifies"
    );
    let sig = signature_of(&good);
    assert_eq!(sig.len(), 64);
    let der_sig = der(0x30, &[der_uint(&sig[..32]), der_uint(&sig[32..])].concat());
    let tok = format!("{}.{}", signing_input(&good), b64(&der_sig));
    assert_deny(
        &fx.get("/api/x", Some(&tok)).await,
        Reason::InvalidSignature,
        "DER-encoded ES256",
    );
    // Algorithm / key-type confusion: a signature presented under a key of the other type.
    let tok = forge(
        json!({"alg": "ES256", "kid": "rsa-1"})
            .to_string()
            .as_bytes(),
        c.as_bytes(),
        &sig,
    );
    assert_deny(
        &fx.get("/api/x", Some(&tok)).await,
        Reason::UnsupportedAlgorithm,
        "ES256 signature presented with an RSA kid",
    );
    let tok = fx.rsa.sign(
        &json!({"alg": "RS256", "kid": "ec-1"}),
        &fx.claims(json!({})),
    );
    assert_deny(
        &fx.get("/api/x", Some(&tok)).await,
        Reason::UnsupportedAlgorithm,
        "RS256 presented with an EC kid",
    );
}

// =============================================================================================
// Key-location headers: never trusted, never fetched

#[tokio::test]
async fn embedded_jwk_jku_x5u_x5c_are_never_trusted_and_never_fetched() {
    let mut fx = Fx::new().await;
    let attacker = TestKey::generate(Alg::RS256, "attacker-1");
    let attacker_jwks = oidc_authz::testkit::jwks(&[&attacker]);
    let (base, hits) = counting_listener(attacker_jwks).await;
    let jwks_before = fx.idp.jwks_hits();
    let discovery_before = fx.idp.discovery_hits();
    let c = fx.claims(json!({"realm_access": {"roles": ["admin"]}}));
    let cert = STANDARD.encode(rsa_public_forms(&attacker).2);

    let cases: Vec<(&str, Value, Reason)> = vec![
        (
            "embedded jwk, attacker kid",
            json!({"alg": "RS256", "kid": "attacker-1", "jwk": attacker.jwk(true)}),
            Reason::UnknownKey,
        ),
        (
            "embedded jwk, the IdP's kid",
            json!({"alg": "RS256", "kid": "rsa-1", "jwk": attacker.jwk(true)}),
            Reason::InvalidSignature,
        ),
        (
            "embedded jwk, no kid",
            json!({"alg": "RS256", "jwk": attacker.jwk(false)}),
            Reason::InvalidSignature,
        ),
        (
            "jku to an attacker host",
            json!({"alg": "RS256", "kid": "attacker-1", "jku": format!("{base}/jwks.json")}),
            Reason::UnknownKey,
        ),
        (
            "jku, no kid",
            json!({"alg": "RS256", "jku": format!("{base}/jwks.json")}),
            Reason::InvalidSignature,
        ),
        (
            "x5u to an attacker host",
            json!({"alg": "RS256", "kid": "attacker-1", "x5u": format!("{base}/cert.pem")}),
            Reason::UnknownKey,
        ),
        (
            "x5u, cloud metadata address",
            json!({"alg": "RS256", "kid": "attacker-1", "x5u": "http://169.254.169.254/latest/meta-data/"}),
            Reason::UnknownKey,
        ),
        (
            "x5c with the attacker's key",
            json!({"alg": "RS256", "x5c": [cert]}),
            Reason::InvalidSignature,
        ),
        (
            "all of them at once, the IdP's kid",
            json!({"alg": "RS256", "kid": "rsa-1", "jwk": attacker.jwk(true),
                   "jku": format!("{base}/jwks.json"), "x5u": format!("{base}/x"), "x5c": [cert]}),
            Reason::InvalidSignature,
        ),
    ];
    for (what, header, reason) in &cases {
        let tok = attacker.sign(header, &c);
        assert_deny(&fx.get("/admin/panel", Some(&tok)).await, *reason, what);
    }
    // No waiting for a stray fetch to land: each count is read after a point that any earlier
    // fetch must have passed.
    //
    // The attacker's listener accepts in order, so once our own probe has been answered, every
    // connection made before it has been counted: exactly one (ours) means none came from the
    // server — and shows the listener does count, so the zero it implies means something.
    reqwest::get(format!("{base}/probe")).await.unwrap();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "no connection to a URL named in a token (only the probe)"
    );
    // Key-set fetches are single-flight: ours starts only after any fetch the server had in
    // flight for these tokens has finished. Exactly our own fetches' hits afterwards means the
    // attacks cost the IdP nothing.
    let sets: Vec<_> = fx
        .server
        .state
        .registry
        .remote_sets()
        .into_iter()
        .filter(|ks| ks.id.contains("/realms/test"))
        .collect();
    assert!(!sets.is_empty());
    for ks in &sets {
        ks.fetch().await.unwrap();
    }
    let (jwks_mid, discovery_mid) = (fx.idp.jwks_hits(), fx.idp.discovery_hits());
    for ks in &sets {
        ks.fetch().await.unwrap();
    }
    // what one round of our own fetches costs the IdP (discovery may be cached)
    let per_round = (
        fx.idp.jwks_hits() - jwks_mid,
        fx.idp.discovery_hits() - discovery_mid,
    );
    assert_eq!(per_round.0, sets.len() as u64);
    assert_eq!(
        (jwks_mid - jwks_before, discovery_mid - discovery_before),
        per_round,
        "inside the cooldown an attacker kid costs the IdP nothing (only our own fetch)"
    );
}

#[tokio::test]
async fn kid_injection_strings_are_unknown_key_with_at_most_one_refetch() {
    let mut fx = Fx::with_min_refresh("2s").await;
    assert_eq!(fx.idp.jwks_hits(), 1, "one fetch at startup");
    tokio::time::sleep(Duration::from_millis(2100)).await; // the startup fetch's cooldown passes
    let before = fx.idp.jwks_hits();
    let long = "k".repeat(10 * 1024);
    let kids = [
        "../../../../../../etc/passwd",
        "..\\..\\..\\windows\\win.ini",
        "/dev/zero",
        "file:///etc/passwd",
        "' OR '1'='1",
        "x'; DROP TABLE keys; --",
        "\" OR \"\"=\"",
        "; rm -rf / #",
        "$(id)",
        "`id`",
        "| cat /etc/passwd",
        "k\u{0}nul",
        "k\r\nx-injected: 1",
        "http://169.254.169.254/",
        "rsa-1 ",
        "RSA-1",
        "",
        &long,
    ];
    for kid in kids {
        let tok = fx
            .rsa
            .sign(&json!({"alg": "RS256", "kid": kid}), &fx.claims(json!({})));
        assert!(tok.len() < 16384, "stays under max_bytes: {}", tok.len());
        let o = fx.get("/api/x", Some(&tok)).await;
        let shown: String = kid.chars().take(40).collect();
        assert_deny(&o, Reason::UnknownKey, &format!("kid {shown:?}"));
    }
    let after = fx.idp.jwks_hits();
    assert_eq!(
        after,
        before + 1,
        "the first unknown kid after the cooldown refetches once; the others are inside the cooldown"
    );
    // The real key still works: nothing was poisoned.
    assert!(fx.get("/api/x", Some(&fx.good())).await.allowed());
}

// =============================================================================================
// Header members the project does not understand

#[tokio::test]
async fn crit_and_b64_headers_are_invalid_claims() {
    let mut fx = Fx::new().await;
    let c = fx.claims(json!({}));
    let cases = [
        (
            "crit [exp]",
            json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1}),
        ),
        (
            "crit []",
            json!({"alg": "RS256", "kid": "rsa-1", "crit": []}),
        ),
        (
            "crit null",
            json!({"alg": "RS256", "kid": "rsa-1", "crit": null}),
        ),
        (
            "crit unknown ext",
            json!({"alg": "RS256", "kid": "rsa-1", "crit": ["urn:x"], "urn:x": 1}),
        ),
        (
            "crit [b64] + b64 false",
            json!({"alg": "RS256", "kid": "rsa-1", "crit": ["b64"], "b64": false}),
        ),
        (
            "b64 false without crit",
            json!({"alg": "RS256", "kid": "rsa-1", "b64": false}),
        ),
        (
            "b64 true",
            json!({"alg": "RS256", "kid": "rsa-1", "b64": true}),
        ),
    ];
    for (what, h) in cases {
        let tok = fx.rsa.sign(&h, &c);
        assert_deny(
            &fx.get("/api/x", Some(&tok)).await,
            Reason::InvalidClaims,
            what,
        );
    }
    // An RFC 7797 unencoded payload: the "claims" segment is raw JSON, not base64url.
    let h = b64(
        json!({"alg": "RS256", "kid": "rsa-1", "b64": false, "crit": ["b64"]})
            .to_string()
            .as_bytes(),
    );
    let raw = format!("{h}.{}", c);
    let sig = fx.rsa.sign_raw(Alg::RS256, raw.as_bytes());
    let tok = format!("{raw}.{}", b64(&sig));
    assert_deny(
        &fx.get("/api/x", Some(&tok)).await,
        Reason::TokenMalformed,
        "unencoded JSON payload",
    );
}

#[tokio::test]
async fn nested_jwt_and_jwe_are_token_malformed() {
    let mut fx = Fx::new().await;
    let inner = fx.good();
    for cty in ["JWT", "jwt", "Jwt"] {
        let tok = fx.rsa.sign(
            &json!({"alg": "RS256", "kid": "rsa-1", "cty": cty}),
            &fx.claims(json!({"inner": inner})),
        );
        assert_deny(
            &fx.get("/api/x", Some(&tok)).await,
            Reason::TokenMalformed,
            &format!("cty {cty}"),
        );
    }
    // JWE compact serialization: five segments.
    let jwe = format!(
        "{}.{}.{}.{}.{}",
        b64(
            json!({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "rsa-1"})
                .to_string()
                .as_bytes()
        ),
        b64(&[7u8; 256]),
        b64(&[1u8; 12]),
        b64(inner.as_bytes()),
        b64(&[2u8; 16])
    );
    assert_deny(
        &fx.get("/api/x", Some(&jwe)).await,
        Reason::TokenMalformed,
        "JWE",
    );
    // and "dir" JWE with an empty encrypted key
    let jwe = format!(
        "{}..{}.{}.{}",
        b64(br#"{"alg":"dir","enc":"A128GCM"}"#),
        b64(&[1u8; 12]),
        b64(b"ciphertext"),
        b64(&[2u8; 16])
    );
    assert_deny(
        &fx.get("/api/x", Some(&jwe)).await,
        Reason::TokenMalformed,
        "dir JWE",
    );
    // a valid token with a fourth segment appended
    let tok = format!("{}.{}", fx.good(), b64(b"extra"));
    assert_deny(
        &fx.get("/api/x", Some(&tok)).await,
        Reason::TokenMalformed,
        "4 segments",
    );
}

// =============================================================================================
// JSON strictness

#[tokio::test]
async fn duplicate_members_bom_and_trailing_bytes_are_token_malformed() {
    let mut fx = Fx::new().await;
    let iss = fx.iss();
    let t = now();
    let good_h = r#"{"alg":"RS256","kid":"rsa-1","typ":"JWT"}"#;
    let good_c = format!(
        r#"{{"iss":"{iss}","aud":"{AUD}","sub":"u","exp":{}}}"#,
        t + 3600
    );
    // the hand-written baseline verifies
    let tok = fx.rsa.sign_bytes(good_h.as_bytes(), good_c.as_bytes());
    assert!(fx.get("/api/x", Some(&tok)).await.allowed());

    let headers: Vec<(&str, String)> = vec![
        (
            "dup alg",
            r#"{"alg":"RS256","kid":"rsa-1","alg":"none"}"#.into(),
        ),
        (
            "dup kid",
            r#"{"alg":"RS256","kid":"rsa-1","kid":"other"}"#.into(),
        ),
        (
            "dup alg via escape",
            r#"{"alg":"RS256","kid":"rsa-1","\u0061lg":"none"}"#.into(),
        ),
        ("BOM", format!("\u{feff}{good_h}")),
        ("trailing garbage", format!("{good_h}x")),
        ("two objects", format!("{good_h}{{}}")),
        ("trailing null", format!("{good_h} null")),
        ("trailing NUL byte", format!("{good_h}\u{0}")),
        ("array", format!("[{good_h}]")),
        ("not JSON", "alg=RS256".into()),
        ("single quotes", "{'alg':'RS256','kid':'rsa-1'}".into()),
        ("comment", format!("/*x*/{good_h}")),
        ("unterminated", r#"{"alg":"RS256","kid":"rsa-1""#.into()),
        ("lone surrogate", r#"{"alg":"RS256","kid":"\ud800"}"#.into()),
        (
            "alg not a string",
            r#"{"alg":["RS256"],"kid":"rsa-1"}"#.into(),
        ),
        ("no alg", r#"{"kid":"rsa-1"}"#.into()),
        ("kid not a string", r#"{"alg":"RS256","kid":1}"#.into()),
    ];
    for (what, h) in &headers {
        let tok = fx.rsa.sign_bytes(h.as_bytes(), good_c.as_bytes());
        assert_deny(
            &fx.get("/api/x", Some(&tok)).await,
            Reason::TokenMalformed,
            &format!("header: {what}"),
        );
    }
    let claims: Vec<(&str, String)> = vec![
        (
            "dup sub",
            good_c.replacen("\"sub\":\"u\"", "\"sub\":\"u\",\"sub\":\"admin\"", 1),
        ),
        (
            "dup iss",
            good_c.replacen("{", "{\"iss\":\"https://evil.example\",", 1),
        ),
        (
            "dup nested roles",
            good_c.replacen(
                "{",
                r#"{"realm_access":{"roles":["user"],"roles":["admin"]},"#,
                1,
            ),
        ),
        (
            "dup exp via escape",
            good_c.replacen("{", r#"{"\u0065xp":1,"#, 1),
        ),
        ("BOM", format!("\u{feff}{good_c}")),
        ("trailing garbage", format!("{good_c}garbage")),
        ("two objects", format!("{good_c}{good_c}")),
        ("trailing comma", good_c.replacen('}', ",}", 1)),
        ("NaN", good_c.replacen('}', ",\"x\":NaN}", 1)),
        ("number overflow", good_c.replacen('}', ",\"x\":1e400}", 1)),
        ("array", format!("[{good_c}]")),
        ("string", "\"claims\"".into()),
        (
            "nesting deeper than the JSON parser's recursion limit",
            good_c.replacen(
                '}',
                &format!(",\"x\":{}1{}}}", "[".repeat(4000), "]".repeat(4000)),
                1,
            ),
        ),
        ("empty", String::new()),
    ];
    for (what, c) in &claims {
        let tok = fx.rsa.sign_bytes(good_h.as_bytes(), c.as_bytes());
        assert_deny(
            &fx.get("/api/x", Some(&tok)).await,
            Reason::TokenMalformed,
            &format!("claims: {what}"),
        );
    }
    // Non-canonical base64url: padding, standard alphabet, non-zero trailing bits.
    let tok = fx.good();
    let (h, rest) = tok.split_once('.').unwrap();
    let padded = format!("{h}==.{rest}");
    let std_alphabet = format!(
        "{}.{rest}",
        STANDARD.encode(URL_SAFE_NO_PAD.decode(h).unwrap())
    );
    for (what, t) in [("padding", padded), ("standard alphabet", std_alphabet)] {
        if t != tok {
            assert_deny(
                &fx.get("/api/x", Some(&t)).await,
                Reason::TokenMalformed,
                what,
            );
        }
    }
    // "{}" is "e30"; "e31" decodes to the same bytes with non-zero trailing bits
    let sig = fx.rsa.sign_raw(
        Alg::RS256,
        format!("{}.e31", b64(good_h.as_bytes())).as_bytes(),
    );
    let t = format!("{}.e31.{}", b64(good_h.as_bytes()), b64(&sig));
    assert_deny(
        &fx.get("/api/x", Some(&t)).await,
        Reason::TokenMalformed,
        "non-zero trailing bits",
    );
}

// =============================================================================================
// Claims

#[tokio::test]
async fn exp_nbf_iat_types_and_ranges() {
    let mut fx = Fx::new().await;
    let t = now();
    let cases: Vec<(&str, Value, Reason)> = vec![
        (
            "exp string",
            json!({"exp": (t + 3600).to_string()}),
            Reason::InvalidClaims,
        ),
        (
            "exp float",
            json!({"exp": (t + 3600) as f64 + 0.5}),
            Reason::InvalidClaims,
        ),
        (
            "exp float, integral",
            json!({"exp": (t + 3600) as f64}),
            Reason::InvalidClaims,
        ),
        ("exp bool", json!({"exp": true}), Reason::InvalidClaims),
        ("exp null", json!({"exp": null}), Reason::InvalidClaims),
        (
            "exp array",
            json!({"exp": [t + 3600]}),
            Reason::InvalidClaims,
        ),
        ("exp 2^64", json!({"exp": u64::MAX}), Reason::InvalidClaims),
        ("exp 1e300", json!({"exp": 1e300}), Reason::InvalidClaims),
        ("exp negative", json!({"exp": -1}), Reason::TokenExpired),
        (
            "exp i64::MIN",
            json!({"exp": i64::MIN}),
            Reason::TokenExpired,
        ),
        ("exp zero", json!({"exp": 0}), Reason::TokenExpired),
        (
            "exp past leeway",
            json!({"exp": t - 31}),
            Reason::TokenExpired,
        ),
        (
            "nbf future",
            json!({"nbf": t + 3600}),
            Reason::TokenNotYetValid,
        ),
        (
            "nbf past leeway",
            json!({"nbf": t + 60}),
            Reason::TokenNotYetValid,
        ),
        (
            "nbf i64::MAX",
            json!({"nbf": i64::MAX}),
            Reason::TokenNotYetValid,
        ),
        (
            "iat future",
            json!({"iat": t + 3600}),
            Reason::TokenNotYetValid,
        ),
        ("nbf string", json!({"nbf": "0"}), Reason::InvalidClaims),
        (
            "iat float",
            json!({"iat": t as f64 + 0.25}),
            Reason::InvalidClaims,
        ),
    ];
    for (what, extra, reason) in &cases {
        let tok = fx.rsa.token(&fx.claims(extra.clone()));
        assert_deny(&fx.get("/api/x", Some(&tok)).await, *reason, what);
    }
    // exp missing entirely
    let mut c = fx.claims(json!({}));
    c.as_object_mut().unwrap().remove("exp");
    let tok = fx.rsa.token(&c);
    assert_deny(
        &fx.get("/api/x", Some(&tok)).await,
        Reason::InvalidClaims,
        "exp missing",
    );
    // Within the 30 s leeway, and a huge but integral exp: no overflow turns the future into
    // the past (saturating arithmetic), so these are allowed.
    for (what, extra) in [
        ("exp inside leeway", json!({"exp": t - 10})),
        ("nbf inside leeway", json!({"nbf": t + 10})),
        ("exp i64::MAX", json!({"exp": i64::MAX})),
    ] {
        let tok = fx.rsa.token(&fx.claims(extra));
        assert!(fx.get("/api/x", Some(&tok)).await.allowed(), "{what}");
    }
}

#[tokio::test]
async fn iss_and_aud_variations_never_route_or_verify() {
    let mut fx = Fx::new().await;
    let iss = fx.iss();
    let cases: Vec<(&str, Value, Reason)> = vec![
        (
            "iss trailing slash",
            json!({"iss": format!("{iss}/")}),
            Reason::UnknownIssuer,
        ),
        (
            "iss upper-cased",
            json!({"iss": iss.to_uppercase()}),
            Reason::UnknownIssuer,
        ),
        (
            "iss prefix",
            json!({"iss": &iss[..iss.len() - 1]}),
            Reason::UnknownIssuer,
        ),
        (
            "iss with whitespace",
            json!({"iss": format!(" {iss}")}),
            Reason::UnknownIssuer,
        ),
        (
            "iss array",
            json!({"iss": [iss.clone()]}),
            Reason::InvalidClaims,
        ),
        ("iss number", json!({"iss": 1}), Reason::InvalidClaims),
        ("iss null", json!({"iss": null}), Reason::InvalidClaims),
        (
            "aud empty array",
            json!({"aud": []}),
            Reason::UnknownAudience,
        ),
        (
            "aud superstring",
            json!({"aud": "web-app-evil"}),
            Reason::UnknownAudience,
        ),
        (
            "aud prefix",
            json!({"aud": "web-ap"}),
            Reason::UnknownAudience,
        ),
        (
            "aud case",
            json!({"aud": "Web-App"}),
            Reason::UnknownAudience,
        ),
        (
            "aud space-joined",
            json!({"aud": "other web-app"}),
            Reason::UnknownAudience,
        ),
        (
            "aud empty string",
            json!({"aud": ""}),
            Reason::UnknownAudience,
        ),
        (
            "aud nested array",
            json!({"aud": [[AUD]]}),
            Reason::InvalidClaims,
        ),
        ("aud number", json!({"aud": 1}), Reason::InvalidClaims),
        (
            "aud object",
            json!({"aud": {"web-app": true}}),
            Reason::InvalidClaims,
        ),
    ];
    for (what, extra, reason) in &cases {
        let tok = fx.rsa.token(&fx.claims(extra.clone()));
        assert_deny(&fx.get("/api/x", Some(&tok)).await, *reason, what);
    }
    for (what, member, reason) in [
        ("iss missing", "iss", Reason::UnknownIssuer),
        ("aud missing", "aud", Reason::UnknownAudience),
    ] {
        let mut c = fx.claims(json!({}));
        c.as_object_mut().unwrap().remove(member);
        let tok = fx.rsa.token(&c);
        assert_deny(&fx.get("/api/x", Some(&tok)).await, reason, what);
    }
    // an array that contains the audience among others still routes (RFC 7519 §4.1.3)
    let tok = fx.rsa.token(&fx.claims(json!({"aud": ["other", AUD]})));
    assert!(fx.get("/api/x", Some(&tok)).await.allowed());
}

// =============================================================================================
// Size, characters and header shapes

#[tokio::test]
async fn a_one_mebibyte_token_is_refused_before_parsing_in_bounded_time() {
    let mut fx = Fx::new().await;
    const MIB: usize = 1024 * 1024;
    // valid-looking: a real signature over a real header and a 1 MiB claims set
    let padding = "a".repeat(MIB);
    let looks_valid = fx.rsa.token(&fx.claims(json!({"padding": padding})));
    assert!(looks_valid.len() > MIB);
    // garbage: bytes no token may contain, and a plausible-alphabet blob without dots
    let garbage: String = "!#$%&*()<>{}@~".chars().cycle().take(MIB + 7).collect();
    let blob = "A".repeat(MIB + 3);
    // The core refuses it on length alone (the detail names the size cap).
    for t in [&looks_valid, &garbage, &blob] {
        let value = bearer(t);
        let mut h = Headers::new();
        h.push("authorization", &value);
        let d =
            token::extract(&[TokenSource::Header("authorization".into())], &h, 16384).unwrap_err();
        assert_eq!(d.reason, Reason::TokenMalformed);
        assert_eq!(d.detail, "the token is longer than token.max_bytes");
    }
    // The decision itself (CheckRequest → Decision, no transport) takes the same short time
    // whatever the 1 MiB contain: the length is checked before a single byte is looked at.
    // Best of five, so that a busy machine's scheduling noise does not decide; no ratio asserted.
    let service = oidc_authz::doors::grpc::AuthzService::new(fx.server.state.clone());
    for (what, t) in [
        ("valid-looking", &looks_valid),
        ("garbage", &garbage),
        ("blob", &blob),
    ] {
        let b = bearer(t);
        let req = request("GET", "h", "/api/x", &[("authorization", &b)]);
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            let d = service.decide(&req).await;
            best = best.min(started.elapsed());
            assert_eq!(d.reason(), Some(Reason::TokenMalformed), "{what}");
        }
        println!("1 MiB {what}: decided in {best:?}");
        assert!(
            best < Duration::from_millis(50),
            "{what}: deciding on a 1 MiB token took {best:?}"
        );
        // Through a full Check (1 MiB over gRPC, debug build): denied, in bounded time.
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            let o = fx.get("/api/x", Some(t)).await;
            best = best.min(started.elapsed());
            assert_deny(&o, Reason::TokenMalformed, what);
        }
        println!("1 MiB {what}: Check round trip {best:?}");
        assert!(
            best < Duration::from_secs(1),
            "{what}: a 1 MiB token took {best:?} to refuse"
        );
    }
    // At the cap a genuine token is accepted; one byte over, the same kind of token is refused.
    let cap = 16384;
    let sized = |len: usize| {
        fx.rsa
            .token(&fx.claims(json!({"padding": "p".repeat(len)})))
    };
    let mut len = (cap - fx.good().len()) * 3 / 4 - 16;
    let mut at_cap = sized(len);
    while at_cap.len() < cap - 1 {
        len += 1;
        at_cap = sized(len);
    }
    assert!(at_cap.len() <= cap, "{}", at_cap.len());
    let mut over = at_cap.clone();
    while over.len() <= cap {
        len += 1;
        over = sized(len);
    }
    assert!(
        fx.get("/api/x", Some(&at_cap)).await.allowed(),
        "{} bytes",
        at_cap.len()
    );
    assert_deny(
        &fx.get("/api/x", Some(&over)).await,
        Reason::TokenMalformed,
        &format!("{} bytes", over.len()),
    );
}

#[tokio::test]
async fn whitespace_empty_and_odd_characters_are_token_malformed() {
    let mut fx = Fx::new().await;
    let good = fx.good();
    let (a, b) = good.split_at(good.len() / 2);
    let values: Vec<(&str, String)> = vec![
        ("space inside", format!("Bearer {a} {b}")),
        ("tab inside", format!("Bearer {a}\t{b}")),
        ("newline inside", format!("Bearer {a}\n{b}")),
        ("CRLF inside", format!("Bearer {a}\r\n{b}")),
        ("NUL inside", format!("Bearer {a}\u{0}{b}")),
        ("DEL inside", format!("Bearer {a}\u{7f}{b}")),
        ("vertical tab", format!("Bearer {a}\u{b}{b}")),
        ("non-ASCII inside", format!("Bearer {a}é{b}")),
        (
            "fullwidth dot",
            format!("Bearer {}", good.replacen('.', "\u{ff0e}", 1)),
        ),
        ("zero-width space", format!("Bearer {a}\u{200b}{b}")),
        (
            "non-breaking space separator",
            format!("Bearer\u{a0}{good}"),
        ),
        ("tab separator", format!("Bearer\t{good}")),
        ("empty", String::new()),
        ("only spaces", "   ".into()),
        ("scheme only", "Bearer".into()),
        ("scheme and space", "Bearer ".into()),
        ("scheme and spaces", "Bearer    ".into()),
        ("no scheme", good.clone()),
        ("Basic", format!("Basic {good}")),
        ("Bearer twice", format!("Bearer Bearer {good}")),
        ("quoted", format!("Bearer \"{good}\"")),
        (
            "percent-encoded dot",
            format!("Bearer {}", good.replacen('.', "%2E", 1)),
        ),
        ("joined headers", format!("Bearer {good}, Bearer {good}")),
        ("joined header and garbage", format!("Bearer {good}, x")),
    ];
    for (what, v) in &values {
        assert_deny(
            &fx.with_authorization(v).await,
            Reason::TokenMalformed,
            what,
        );
    }
    // Scheme case and surrounding spaces are tolerated (RFC 6750 §2.1): the baseline for the above.
    for v in [format!("Bearer {good}"), format!("bEARER   {good}  ")] {
        assert!(fx.with_authorization(&v).await.allowed(), "{v:?}");
    }
    // An empty cookie value is a presented-but-empty token.
    let o = fx
        .send(request("GET", "h", "/api/x", &[("cookie", "oidc-jwt=")]))
        .await;
    assert_deny(&o, Reason::TokenMalformed, "empty cookie");
}

#[tokio::test]
async fn raw_header_bytes_and_repeated_authorization_headers_are_token_malformed() {
    let mut fx = Fx::new().await;
    let good = fx.good();
    let b = bearer(&good);
    // encode_raw_headers: two Authorization headers, in any name casing
    for (n1, n2) in [
        ("authorization", "authorization"),
        ("Authorization", "authorization"),
        ("AUTHORIZATION", "Authorization"),
    ] {
        let o = fx
            .send(raw_request("GET", "h", "/api/x", &[(n1, &b), (n2, &b)]))
            .await;
        assert_deny(&o, Reason::TokenMalformed, &format!("{n1} + {n2}"));
    }
    let o = fx
        .send(raw_request(
            "GET",
            "h",
            "/api/x",
            &[("authorization", &b), ("authorization", "Bearer x.y.z")],
        ))
        .await;
    assert_deny(&o, Reason::TokenMalformed, "valid + forged");
    // two token cookies: which one the app reads is undefined, so neither is used
    let forged = format!("oidc-jwt={good}; oidc-jwt=x.y.z");
    let o = fx
        .send(request("GET", "h", "/api/x", &[("cookie", &forged)]))
        .await;
    assert_deny(&o, Reason::TokenMalformed, "two token cookies");
    // raw header values that are not UTF-8
    for bytes in [
        [b"Bearer ".as_slice(), &[0xff, 0xfe], good.as_bytes()].concat(),
        [b"Bearer ".as_slice(), good.as_bytes(), &[0xc3]].concat(),
        [b"Bearer ".as_slice(), &[0xc3, 0xa9], good.as_bytes()].concat(), // é, valid UTF-8
    ] {
        let mut req = raw_request("GET", "h", "/api/x", &[("authorization", "placeholder")]);
        let http = req
            .attributes
            .as_mut()
            .unwrap()
            .request
            .as_mut()
            .unwrap()
            .http
            .as_mut()
            .unwrap();
        http.header_map.as_mut().unwrap().headers[0].raw_value = bytes.clone();
        let o = fx.send(req).await;
        assert_deny(
            &o,
            Reason::TokenMalformed,
            &format!("raw bytes {:?}", &bytes[..9]),
        );
    }
    // the raw form with one header works (the baseline)
    let o = fx
        .send(raw_request("GET", "h", "/api/x", &[("Authorization", &b)]))
        .await;
    assert!(o.allowed(), "{o:?}");
}

// =============================================================================================
// Path attacks against the rules

#[tokio::test]
async fn path_attacks_never_reach_a_laxer_rule() {
    let mut fx = Fx::new().await;
    let user = fx.good(); // valid, but without the admin role
    let admin = fx
        .rsa
        .token(&fx.claims(json!({"realm_access": {"roles": ["admin"]}})));

    // dot-segments and repeated slashes resolve to /admin: the admin rule applies
    let to_admin = [
        "/api/../admin",
        "/api/./../admin/x",
        "/public/../admin",
        "/public/./../admin/",
        "/api/%2e%2e/admin",
        "/api/%2E%2E/admin",
        "/api/.%2e/admin",
        "/api/%2e./admin",
        "/%2e/admin",
        "//admin",
        "///admin//x",
        "/admin/",
        "/admin/.",
        "/admin/x/..",
        "/./admin",
        "/../admin",
        "/../../../../admin",
        "/%61dmin",
        "/%61%64%6d%69%6e",
        "/admin?x=/api",
        "/admin#/api",
        "/admin?",
    ];
    for p in to_admin {
        assert_deny(
            &fx.get(p, Some(&user)).await,
            Reason::MissingRequiredRoles,
            &format!("user {p}"),
        );
        assert_deny(
            &fx.get(p, None).await,
            Reason::AuthorizationHeaderMissing,
            &format!("anonymous {p}"),
        );
        assert!(fx.get(p, Some(&admin)).await.allowed(), "admin {p}");
    }
    // encoded slashes / backslashes, raw backslashes, bad escapes and non-origin forms
    let invalid = [
        "/api%2F..%2Fadmin",
        "/api%2f..%2fadmin",
        "/public/..%2Fadmin",
        "/public%2F..%2Fadmin",
        "/api/%2f../admin",
        "/api%5C..%5Cadmin",
        "/api%5c..%5cadmin",
        "/api/..\\admin",
        "/api\\..\\admin",
        "/api/%zz",
        "/api/%",
        "/api/%2",
        "/api/% 2e",
        "/api /x",
        "/api/\u{0}",
        "/api/\t",
        "/api/é",
        "admin",
        "",
        "*",
        "http://evil.example/admin",
        "?/admin",
    ];
    for p in invalid {
        assert_deny(
            &fx.get(p, Some(&admin)).await,
            Reason::InvalidPath,
            &format!("{p:?}"),
        );
        assert_deny(
            &fx.get(p, None).await,
            Reason::InvalidPath,
            &format!("anonymous {p:?}"),
        );
    }
    // case: /ADMIN is not /admin, and no rule matches it (default: deny) — never a laxer rule
    for p in [
        "/ADMIN",
        "/Admin",
        "/%41dmin",
        "/API/x",
        "/Public/x",
        "/aDmIn/x",
    ] {
        assert_deny(&fx.get(p, Some(&admin)).await, Reason::NoMatchingRule, p);
    }
    // prefixes are segment-aware: /adminx and /admin.json are not /admin — and not /api either
    for p in [
        "/adminx",
        "/admin.json",
        "/admin;jsessionid=1",
        "/admin%3Bx",
        "/apix/../admin/",
    ] {
        let o = fx.get(p, Some(&user)).await;
        assert!(!o.allowed(), "{p}: {o:?}");
    }
    // the query string and fragment are never part of the path
    for p in [
        "/api/x?next=/admin",
        "/api/x?../../admin",
        "/api/x#/../../admin",
        "/api?/admin",
    ] {
        assert!(fx.get(p, Some(&user)).await.allowed(), "{p}");
        assert_deny(
            &fx.get(p, None).await,
            Reason::AuthorizationHeaderMissing,
            &format!("anonymous {p}"),
        );
    }
    // the anonymous /public rule cannot be stretched over /admin
    for p in ["/public/../admin", "/public/%2e%2e/admin"] {
        assert!(!fx.get(p, None).await.allowed(), "{p}");
    }
    // `//..` removes the empty segment (RFC 3986 order, as Envoy's normalize_path then
    // merge_slashes): `/public//..//admin` IS `/public/admin` — what the upstream serves — so it
    // stays under /public and never reaches /admin
    let o = fx.get("/public//..//admin", None).await;
    assert!(o.allowed(), "{o:?}");
    assert_eq!(o.metadata["rule"], "public");
    // overlong paths: 8192 bytes are matched, one more is refused; deep dot-segment towers
    // collapse without blowing up
    let long_ok = format!("/api/{}", "a".repeat(8192 - 5));
    assert_eq!(long_ok.len(), 8192);
    assert!(fx.get(&long_ok, Some(&user)).await.allowed());
    let long_bad = format!("/api/{}", "a".repeat(8192 - 4));
    assert_deny(
        &fx.get(&long_bad, Some(&admin)).await,
        Reason::InvalidPath,
        "8193 bytes",
    );
    let huge = format!("/api/{}", "a/".repeat(512 * 1024));
    assert_deny(
        &fx.get(&huge, Some(&admin)).await,
        Reason::InvalidPath,
        "1 MiB path",
    );
    let tower = format!("/api/{}admin", "../".repeat(2000));
    assert_deny(
        &fx.get(&tower, Some(&user)).await,
        Reason::MissingRequiredRoles,
        "../ x 2000",
    );
    let slashes = format!("/{}admin", "/".repeat(8000));
    assert_deny(
        &fx.get(&slashes, Some(&user)).await,
        Reason::MissingRequiredRoles,
        "8000 slashes",
    );
    // a long query string does not count against the path
    let long_query = format!("/api/x?{}", "q".repeat(64 * 1024));
    assert!(fx.get(&long_query, Some(&user)).await.allowed());
    // method rules: the write rule applies to every spelling of the path
    for p in [
        "/api/names",
        "/api/./names/1",
        "//api//names",
        "/api/x/../names",
    ] {
        assert_deny(
            &fx.call("POST", p, Some(&user)).await,
            Reason::MissingRequiredRoles,
            &format!("POST {p}"),
        );
    }
}

// =============================================================================================
// Denial of service and leakage through the response

#[tokio::test]
async fn stalled_connections_do_not_block_other_checks() {
    let mut fx = Fx::new().await;
    let addr = fx.server.grpc_addr;
    // 200 slowloris connections: silent, half an HTTP/2 preface, or a preface and then nothing.
    let mut stalled = Vec::new();
    for i in 0..200 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        match i % 3 {
            0 => {}
            1 => s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap(),
            _ => s
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00")
                .await
                .unwrap(),
        }
        stalled.push(s);
    }
    let good = fx.good();
    let started = Instant::now();
    for _ in 0..20 {
        assert!(fx.get("/api/x", Some(&good)).await.allowed());
    }
    // a fresh client connects and is served too
    let mut other = client(&fx.server).await;
    let b = bearer(&good);
    assert!(
        check(
            &mut other,
            request("GET", "h", "/api/x", &[("authorization", &b)])
        )
        .await
        .allowed()
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "21 Checks beside 200 stalled connections took {took:?}"
    );
    drop(stalled);
}

#[tokio::test]
async fn deny_responses_never_echo_the_token_or_its_contents() {
    let mut fx = Fx::new().await;
    let marker = "zqxj-echo-marker";
    let t = now();
    let tokens = [
        fx.rsa
            .token(&fx.claims(json!({"sub": marker, "exp": t - 3600}))),
        fx.rsa.sign(
            &json!({"alg": "RS256", "kid": marker}),
            &fx.claims(json!({"sub": marker})),
        ),
        fx.rsa.sign(
            &json!({"alg": marker, "kid": "rsa-1"}),
            &fx.claims(json!({"sub": marker})),
        ),
        fx.rsa.token(&claims(marker, json!(AUD), json!({}))),
        fx.rsa.token(&fx.claims(json!({"aud": marker}))),
        format!("{marker}.{marker}.{marker}"),
        format!("{}.{marker}", fx.good()),
    ];
    for tok in &tokens {
        for path in ["/api/x", "/admin/x", &format!("/{marker}")] {
            let o = fx.get(path, Some(tok)).await;
            assert!(!o.allowed(), "{path}");
            let dump = format!("{o:?}");
            assert!(
                !dump.contains(marker),
                "the response echoes request data: {dump}"
            );
            assert!(
                !dump.contains(&tok[..24]),
                "the response echoes the token: {dump}"
            );
        }
    }
}

// =============================================================================================
// Header spoofing through claim values

#[tokio::test]
async fn claim_values_cannot_smuggle_headers_upstream() {
    let mut fx = Fx::new().await;
    for (what, sub) in [
        ("CRLF", json!("user\r\nx-auth-roles: admin")),
        ("LF", json!("user\nx-authz-client: other")),
        ("NUL", json!("user\u{0}admin")),
        ("DEL", json!("user\u{7f}")),
        ("over 8 KiB", json!("u".repeat(8193))),
    ] {
        let tok = fx.rsa.token(&fx.claims(json!({ "sub": sub })));
        let spoofed = [
            ("authorization", bearer(&tok)),
            ("x-auth-subject", "admin".to_owned()),
        ];
        let h: Vec<(&str, &str)> = spoofed.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let o = fx.send(request("GET", "h", "/api/x", &h)).await;
        assert!(o.allowed(), "{what}: the token itself is valid: {o:?}");
        assert!(
            !o.headers.contains_key("x-auth-subject"),
            "{what}: an unsafe claim value is never copied into a header: {o:?}"
        );
        assert!(
            o.removed.iter().any(|r| r == "x-auth-subject"),
            "{what}: and the caller's own x-auth-subject is removed: {o:?}"
        );
        assert_eq!(o.headers["x-authz-client"], "web");
        for v in o.headers.values() {
            assert!(!v.contains('\r') && !v.contains('\n'), "{what}: {v:?}");
        }
    }
}

/// Issue 11 finding 7: an IdP (or whoever controls its JWKS) publishes an Ed25519 key whose `x`
/// is a small-order point. For such a key `R = identity, S = 0` — no private key — verifies for
/// many messages (for the identity key, for all of them). The key must never load, so a forged
/// token naming it is `unknown_key`, one without a `kid` is `invalid_signature` (only the real
/// key is tried), and a real Ed25519 key published next to them keeps working.
#[tokio::test]
async fn ed25519_small_order_published_keys_never_load_so_forged_tokens_are_refused() {
    let rsa = TestKey::generate(Alg::RS256, "rsa-1");
    let ec = TestKey::generate(Alg::ES256, "ec-1");
    let ed = TestKey::generate(Alg::EdDSA, "ed-1");
    let idp = Idp::start(&[&rsa, &ec, &ed]).await;
    let weak = [
        (
            "weak-identity",
            "0100000000000000000000000000000000000000000000000000000000000000",
        ),
        (
            "weak-zero",
            "0000000000000000000000000000000000000000000000000000000000000000",
        ),
        (
            "weak-order2",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ),
        (
            "weak-order8",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        ),
        (
            "weak-noncanonical-identity",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ),
    ];
    let mut doc: Value =
        serde_json::from_str(&oidc_authz::testkit::jwks(&[&rsa, &ec, &ed])).unwrap();
    for (kid, x) in weak {
        doc["keys"].as_array_mut().unwrap().push(
            json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": kid, "x": b64(&hex(x))}),
        );
    }
    *idp.state.jwks.lock().unwrap() = doc.to_string();
    let yaml = CONFIG
        .replace("ISS", &idp.issuer)
        .replace("MIN_REFRESH", "30s")
        .replace(
            "algorithms: [RS256, ES256]",
            "algorithms: [RS256, ES256, EdDSA]",
        );
    let server = start_server(&yaml).await;
    wait_loaded(&server, "/realms/test").await;
    let mut client = client(&server).await;
    let call = |token: String| {
        let b = bearer(&token);
        request("GET", "api.example.org", "/api/x", &[("authorization", &b)])
    };
    let iss = idp.issuer.clone();
    // The control: EdDSA is enabled and the real Ed25519 key verifies.
    let good = ed.token(&claims(&iss, json!(AUD), json!({})));
    let o = check(&mut client, call(good)).await;
    assert!(o.allowed(), "a real EdDSA token: {o:?}");
    // R = identity (0x01 00…00), S = 0.
    let mut forged_sig = vec![0u8; 64];
    forged_sig[0] = 1;
    for (kid, _) in weak {
        for i in 0..16 {
            let body = claims(&iss, json!(AUD), json!({"jti": format!("{kid}-{i}")}));
            let header = json!({"alg": "EdDSA", "kid": kid});
            let token = forge(
                header.to_string().as_bytes(),
                body.to_string().as_bytes(),
                &forged_sig,
            );
            let o = check(&mut client, call(token)).await;
            assert_deny(&o, Reason::UnknownKey, &format!("forged with {kid} #{i}"));
        }
    }
    // Without a kid the forged token is tried against the set's Ed25519 keys: only ed-1.
    for i in 0..16 {
        let body = claims(&iss, json!(AUD), json!({"jti": format!("kidless-{i}")}));
        let token = forge(
            json!({"alg": "EdDSA"}).to_string().as_bytes(),
            body.to_string().as_bytes(),
            &forged_sig,
        );
        let o = check(&mut client, call(token)).await;
        assert_deny(
            &o,
            Reason::InvalidSignature,
            &format!("kid-less forged #{i}"),
        );
    }
    // And the reason: they never loaded.
    {
        let snap = server.state.snapshot();
        let state = snap.clients[0].key_set.state();
        assert_eq!(state.keys.len(), 3, "only rsa-1, ec-1 and ed-1 load");
        for (kid, _) in weak {
            assert!(state.find(kid).is_none(), "{kid} was loaded");
        }
    }
}

/// Issue 11 finding 6: a JWKS of thousands of keys (here 1,500 RSA JWKs, ~640 KiB) must not make
/// one kid-less junk token cost a signature check per key. At most `MAX_KEYS_PER_SET` keys load;
/// a token without `kid` is refused unverified (`unknown_key`, counted in
/// `oidc_authz_kidless_refused_total`) when more than `verify::MAX_KIDLESS_KEYS` keys fit its
/// alg, while tokens naming their kid are unaffected.
#[tokio::test]
async fn a_kidless_token_against_a_huge_key_set_is_refused_unverified_and_counted() {
    use oidc_authz::keys::MAX_KEYS_PER_SET;
    let rsa = TestKey::generate(Alg::RS256, "rsa-1");
    let ec = TestKey::generate(Alg::ES256, "ec-1");
    let idp = Idp::start(&[&rsa, &ec]).await;
    let mut doc: Value = serde_json::from_str(&oidc_authz::testkit::jwks(&[&rsa, &ec])).unwrap();
    // the same public key under 1,500 kids: cheap to make, the same verification cost each
    let mut bulk = rsa.jwk(true);
    for i in 0..1_500 {
        bulk["kid"] = json!(format!("bulk-{i}"));
        doc["keys"].as_array_mut().unwrap().push(bulk.clone());
    }
    *idp.state.jwks.lock().unwrap() = doc.to_string();
    let yaml = CONFIG
        .replace("ISS", &idp.issuer)
        .replace("MIN_REFRESH", "30s");
    let server = start_server(&yaml).await;
    wait_loaded(&server, "/realms/test").await;
    let mut client = client(&server).await;
    let iss = idp.issuer.clone();
    let call = |token: String| {
        let b = bearer(&token);
        request("GET", "api.example.org", "/api/x", &[("authorization", &b)])
    };
    let loaded = server.state.snapshot().clients[0]
        .key_set
        .state()
        .keys
        .len();
    assert_eq!(loaded, MAX_KEYS_PER_SET, "the per-set cap");
    let metrics = server.state.metrics.clone();
    assert_eq!(metrics.kidless_refused_count(&iss), 0);
    // junk signatures without kid: refused unverified
    for i in 0..8u8 {
        let body = claims(&iss, json!(AUD), json!({"jti": format!("junk-{i}")}));
        let token = forge(
            json!({"alg": "RS256"}).to_string().as_bytes(),
            body.to_string().as_bytes(),
            &[i; 256],
        );
        let o = check(&mut client, call(token)).await;
        assert_deny(&o, Reason::UnknownKey, &format!("kid-less junk #{i}"));
    }
    assert_eq!(metrics.kidless_refused_count(&iss), 8);
    // a genuine RS256 token without kid too: the key set has too many RSA keys to guess
    let genuine = rsa.sign(
        &json!({"alg": "RS256"}),
        &claims(&iss, json!(AUD), json!({})),
    );
    assert_deny(
        &check(&mut client, call(genuine)).await,
        Reason::UnknownKey,
        "kid-less genuine RS256",
    );
    assert_eq!(metrics.kidless_refused_count(&iss), 9);
    // the set has one EC key: a kid-less ES256 token is still tried (and verifies)
    let es = ec.sign(
        &json!({"alg": "ES256"}),
        &claims(&iss, json!(AUD), json!({})),
    );
    assert!(
        check(&mut client, call(es)).await.allowed(),
        "kid-less ES256"
    );
    // naming the kid works as before, for the first key and a bulk one
    let named = rsa.token(&claims(&iss, json!(AUD), json!({})));
    assert!(check(&mut client, call(named)).await.allowed(), "rsa-1");
    let bulk_named = rsa.sign(
        &json!({"alg": "RS256", "kid": "bulk-7"}),
        &claims(&iss, json!(AUD), json!({})),
    );
    assert!(
        check(&mut client, call(bulk_named)).await.allowed(),
        "bulk-7"
    );
    assert_eq!(metrics.kidless_refused_count(&iss), 9);
}
