//! Project Wycheproof vectors through the project's own verification functions.
//!
//! Raw signature files (RSA PKCS#1 v1.5, RSA-PSS, ECDSA P-256/P-384 in P1363 form, Ed25519): a JWK
//! is built from each test group's public key, parsed with `keys::parse_jwk`, and every vector is
//! checked with `Key::verify(alg, msg, sig)` — exactly what the Check path calls.
//!
//! JWS / JWK / JWE files: every compact token goes through `token::extract` (Authorization header,
//! size cap, alphabet), the JOSE header and signature through `token::parse` (three segments,
//! canonical unpadded base64url, strict JSON header), then `verify::check_header` and
//! `verify::check_signature` against the group's key set parsed with `keys::parse_jwks`. The
//! payloads of these vectors are bytes such as "foo", not JWT claims (see the vectors' NOTICE),
//! so the payload segment is only decoded with the same canonical base64url rule and the claim
//! checks are not run: this is the signature-verification layer.
//!
//! `valid` must be accepted, `invalid` rejected, `acceptable` either; nothing may panic. Valid
//! vectors the project rejects on purpose are listed in [`deliberately_rejected`] with the reason,
//! and those must stay rejected. The vectors are found in `$WYCHEPROOF_DIR`, else in
//! `../shared/vectors/wycheproof` beside the checkout (for a git worktree, also beside the main
//! checkout the worktree belongs to). When they are missing the tests fail, saying where to put
//! them: a green run never means "not tested".

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oidc_authz::config::{ClientConfig, DEFAULT_MAX_BYTES};
use oidc_authz::core::ports::KeyState;
use oidc_authz::core::token::{self, Headers, Jwt, TokenSource};
use oidc_authz::core::verify::{self, Failure};
use oidc_authz::keys::{self, Alg};
use serde_json::{Value, json};

// ------------------------------------------------------------------------------------------
// Finding the vectors

/// Where the vectors are looked for, in order: `$WYCHEPROOF_DIR`, then
/// `$CARGO_MANIFEST_DIR/../shared/vectors/wycheproof`, then (in a git worktree, whose `.git` is a
/// file naming `<main>/.git/worktrees/<name>`) `<main>/../shared/vectors/wycheproof`.
fn candidate_dirs() -> Vec<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("WYCHEPROOF_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(manifest.join("../shared/vectors/wycheproof"));
    if let Ok(dot_git) = std::fs::read_to_string(manifest.join(".git"))
        && let Some(gitdir) = dot_git.trim().strip_prefix("gitdir:")
        && let Some(main) = PathBuf::from(gitdir.trim())
            .ancestors()
            .find(|p| p.file_name().is_some_and(|n| n == ".git"))
            .and_then(|p| p.parent())
    {
        dirs.push(main.join("../shared/vectors/wycheproof"));
    }
    dirs
}

/// The vectors' directory; panics, saying where to get them, when none of the candidates has them.
fn vectors_dir() -> PathBuf {
    let dirs = candidate_dirs();
    if let Some(dir) = dirs
        .iter()
        .find(|d| d.join("json_web_signature_test.json").is_file())
    {
        return dir.clone();
    }
    let tried: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    panic!(
        "wycheproof: vectors not found (looked in: {}). Put the Wycheproof JSON files \
         (json_web_signature_test.json, ecdsa_*_test.json, …) in ../shared/vectors/wycheproof \
         beside the checkout, or set WYCHEPROOF_DIR=/path/to/wycheproof/testvectors_v1 \
         (from https://github.com/C2SP/wycheproof).",
        tried.join(", ")
    );
}

/// Print to the real stderr, past libtest's output capture, so the counts show in every run.
fn say(line: &str) {
    println!("{line}");
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn load(dir: &std::path::Path, file: &str) -> Value {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("wycheproof: cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

// ------------------------------------------------------------------------------------------
// Valid vectors the project rejects on purpose

/// A vector as the allow-list sees it.
struct Case<'a> {
    /// The group's key (raw files: the JWK we built; JOSE files: the key or key set).
    key: &'a Value,
    /// The compact token (JOSE files only).
    token: &'a str,
}

/// Why a `valid` vector is rejected on purpose, or `None` when it must be accepted.
fn deliberately_rejected(c: &Case<'_>) -> Option<&'static str> {
    let keys: Vec<&Value> = match c.key.get("keys").and_then(Value::as_array) {
        Some(ks) => ks.iter().collect(),
        None => vec![c.key],
    };
    let all = |f: &dyn Fn(&Value) -> bool| !keys.is_empty() && keys.iter().all(|k| f(k));
    let header_alg = c
        .token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned));
    if c.token.split('.').count() == 5 {
        return Some("JWE (5-part compact serialization) is never accepted (DESIGN §4.1)");
    }
    if all(&|k| k["kty"] == "oct") || header_alg.as_deref().is_some_and(|a| a.starts_with("HS")) {
        return Some(
            "HMAC (HS256/384/512, kty oct) is never accepted: only public keys verify (DESIGN §4.3, §5)",
        );
    }
    if all(&|k| k["crv"] == "P-521") || header_alg.as_deref() == Some("ES512") {
        return Some("ES512 / P-521 is not a supported algorithm (DESIGN §3 algorithms)");
    }
    if let Some(alg) = header_alg.as_deref()
        && all(&|k| k["alg"].as_str().is_some_and(|ka| ka != alg))
    {
        // RFC 7520 Figure 20 is signed with PS384, but Wycheproof's key for it says `alg: PS256`.
        return Some(
            "the JWK's own `alg` differs from the token's: a key is bound to the algorithm it names (DESIGN §4.3, RFC 7517 §4.4)",
        );
    }
    None
}

/// Invalid vectors the project currently accepts, each with what would close the gap. Either
/// outcome passes for these (like `acceptable`), and every run prints them. Keyed by file + tcId
/// so nothing else can slip in.
// Invalid vectors the project still accepts, by exact file + tcId, with the reason. Empty: the
// ROCA keys (json_web_key tcId 7, json_web_crypto tcId 46) are rejected by keys::parse_jwk since
// it checks the ROCA fingerprint.
const KNOWN_GAPS: &[(&str, u64, &str)] = &[];

fn known_gap(file: &str, tc_id: u64) -> Option<&'static str> {
    KNOWN_GAPS
        .iter()
        .find(|(f, id, _)| *f == file && *id == tc_id)
        .map(|(_, _, why)| *why)
}

// ------------------------------------------------------------------------------------------
// Counting

#[derive(Default)]
struct Counts {
    total: usize,
    valid_accepted: usize,
    valid_rejected_deliberately: usize,
    invalid_rejected: usize,
    acceptable_accepted: usize,
    acceptable_rejected: usize,
    failures: Vec<String>,
    known_gaps: Vec<String>,
    deliberate: BTreeMap<&'static str, Vec<u64>>,
}

impl Counts {
    fn record(&mut self, file: &str, tc: &Value, why_rejected: Option<&'static str>, got: Verdict) {
        self.total += 1;
        let id = tc["tcId"].as_u64().unwrap_or(0);
        let comment = tc["comment"].as_str().unwrap_or("");
        let result = tc["result"].as_str().unwrap_or("?");
        let accepted = match got {
            Verdict::Panicked(msg) => {
                self.failures
                    .push(format!("{file} tcId {id} ({comment}): PANIC {msg}"));
                return;
            }
            Verdict::Accepted => true,
            Verdict::Rejected(ref why) => {
                if result == "valid" && why_rejected.is_none() {
                    self.failures.push(format!(
                        "{file} tcId {id} ({comment}): valid but rejected: {why}"
                    ));
                    return;
                }
                false
            }
        };
        match (result, accepted, why_rejected) {
            ("valid", false, Some(why)) => {
                self.valid_rejected_deliberately += 1;
                self.deliberate.entry(why).or_default().push(id);
            }
            ("valid", true, Some(why)) => self.failures.push(format!(
                "{file} tcId {id} ({comment}): valid and accepted, but the project promises to reject it: {why}"
            )),
            ("valid", true, None) => self.valid_accepted += 1,
            ("valid", false, None) => unreachable!("recorded above"),
            ("invalid", false, _) => self.invalid_rejected += 1,
            ("invalid", true, _) => match known_gap(file, id) {
                Some(why) => self.known_gaps.push(format!("{file} tcId {id}: {why}")),
                None => self
                    .failures
                    .push(format!("{file} tcId {id} ({comment}): INVALID BUT ACCEPTED")),
            },
            ("acceptable", true, _) => self.acceptable_accepted += 1,
            ("acceptable", false, _) => self.acceptable_rejected += 1,
            (other, _, _) => self
                .failures
                .push(format!("{file} tcId {id}: unknown result {other:?}")),
        }
    }

    fn report(&self, file: &str) {
        say(&format!(
            "wycheproof {file}: {} vectors — valid accepted {}, valid rejected on purpose {}, invalid rejected {}, acceptable accepted {} / rejected {}, known gaps {}, failures {}",
            self.total,
            self.valid_accepted,
            self.valid_rejected_deliberately,
            self.invalid_rejected,
            self.acceptable_accepted,
            self.acceptable_rejected,
            self.known_gaps.len(),
            self.failures.len()
        ));
        for (why, ids) in &self.deliberate {
            say(&format!("    rejected on purpose ({why}): tcId {ids:?}"));
        }
        for g in &self.known_gaps {
            say(&format!("    KNOWN GAP (invalid, accepted) {g}"));
        }
        for f in &self.failures {
            say(&format!("    FAIL {f}"));
        }
    }
}

#[derive(Debug)]
enum Verdict {
    Accepted,
    Rejected(String),
    Panicked(String),
}

fn guarded(f: impl FnOnce() -> Result<(), String>) -> Verdict {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => Verdict::Accepted,
        Ok(Err(why)) => Verdict::Rejected(why),
        Err(p) => Verdict::Panicked(
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default(),
        ),
    }
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Big-endian integer bytes without leading zeros, left-padded to `width` (0: no padding).
fn unsigned(bytes: &[u8], width: usize) -> Vec<u8> {
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    let v = &bytes[skip..];
    let mut out = vec![0u8; width.saturating_sub(v.len())];
    out.extend_from_slice(v);
    out
}

// ------------------------------------------------------------------------------------------
// Raw signature files: parse_jwk + Key::verify

/// The group's public key as a JWK: the one Wycheproof ships when present, otherwise built from
/// the raw public key (some ECDSA groups ship none).
fn group_jwk(group: &Value) -> Value {
    if let Some(j) = group
        .get("publicKeyJwk")
        .or_else(|| group.get("keyJwk"))
        .filter(|j| j.is_object())
    {
        return j.clone();
    }
    let pk = &group["publicKey"];
    if let (Some(n), Some(e)) = (pk["modulus"].as_str(), pk["publicExponent"].as_str()) {
        return json!({"kty": "RSA", "n": b64(&unsigned(&hex(n), 0)), "e": b64(&unsigned(&hex(e), 0))});
    }
    if let (Some(x), Some(y), Some(curve)) =
        (pk["wx"].as_str(), pk["wy"].as_str(), pk["curve"].as_str())
    {
        let (crv, w) = match curve {
            "secp256r1" => ("P-256", 32),
            "secp384r1" => ("P-384", 48),
            other => panic!("unexpected curve {other}"),
        };
        return json!({"kty": "EC", "crv": crv, "x": b64(&unsigned(&hex(x), w)), "y": b64(&unsigned(&hex(y), w))});
    }
    if let Some(x) = pk["pk"].as_str() {
        return json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&hex(x))});
    }
    panic!("no usable public key in group {group}")
}

fn raw_alg(file: &str, group: &Value) -> Alg {
    let sha = group["sha"].as_str().unwrap_or("");
    match (file, sha) {
        (f, "SHA-256") if f.starts_with("rsa_signature_") => Alg::RS256,
        (f, "SHA-384") if f.starts_with("rsa_signature_") => Alg::RS384,
        (f, "SHA-512") if f.starts_with("rsa_signature_") => Alg::RS512,
        (f, "SHA-256") if f.starts_with("rsa_pss_") => {
            // JWS PS256 is MGF1-SHA256 with a 32-byte salt; this file is exactly that.
            assert_eq!(group["mgfSha"], "SHA-256");
            assert_eq!(group["sLen"], 32);
            Alg::PS256
        }
        (f, "SHA-256") if f.starts_with("ecdsa_secp256r1") => Alg::ES256,
        (f, "SHA-384") if f.starts_with("ecdsa_secp384r1") => Alg::ES384,
        (f, _) if f.starts_with("ed25519") => Alg::EdDSA,
        other => panic!("no JWS algorithm for {other:?}"),
    }
}

const RAW_FILES: [&str; 9] = [
    "rsa_signature_2048_sha256_test.json",
    "rsa_signature_2048_sha384_test.json",
    "rsa_signature_2048_sha512_test.json",
    "rsa_signature_3072_sha256_test.json",
    "rsa_signature_4096_sha256_test.json",
    "rsa_pss_2048_sha256_mgf1_32_test.json",
    "ecdsa_secp256r1_sha256_p1363_test.json",
    "ecdsa_secp384r1_sha384_p1363_test.json",
    "ed25519_test.json",
];

fn run_raw_file(dir: &std::path::Path, file: &str) -> Counts {
    let doc = load(dir, file);
    let mut counts = Counts::default();
    for group in doc["testGroups"].as_array().unwrap() {
        let alg = raw_alg(file, group);
        let jwk = group_jwk(group);
        let key = catch_unwind(AssertUnwindSafe(|| keys::parse_jwk(&jwk)));
        for tc in group["tests"].as_array().unwrap() {
            let case = Case {
                key: &jwk,
                token: "",
            };
            let verdict = match &key {
                Err(_) => Verdict::Panicked("parse_jwk panicked".into()),
                Ok(Err(why)) => Verdict::Rejected(format!("parse_jwk: {why}")),
                Ok(Ok(k)) => {
                    let msg = hex(tc["msg"].as_str().unwrap());
                    let sig = hex(tc["sig"].as_str().unwrap());
                    guarded(|| {
                        if !k.supports(alg) {
                            return Err(format!("key does not support {alg}"));
                        }
                        if k.verify(alg, &msg, &sig) {
                            Ok(())
                        } else {
                            Err("Key::verify: false".into())
                        }
                    })
                }
            };
            counts.record(file, tc, deliberately_rejected(&case), verdict);
        }
    }
    counts
}

#[test]
fn raw_signature_vectors_through_parse_jwk_and_key_verify() {
    let dir = vectors_dir();
    let mut failures = Vec::new();
    let mut total = 0;
    for file in RAW_FILES {
        let c = run_raw_file(&dir, file);
        c.report(file);
        total += c.total;
        assert!(c.total > 0, "{file}: no vectors");
        assert!(c.valid_accepted > 0, "{file}: no valid vector accepted");
        assert!(c.invalid_rejected > 0, "{file}: no invalid vector rejected");
        failures.extend(c.failures);
    }
    say(&format!(
        "wycheproof raw signatures: {total} vectors, {} failures",
        failures.len()
    ));
    assert!(failures.is_empty(), "{failures:#?}");
}

// ------------------------------------------------------------------------------------------
// JOSE files: extract → parse → check_header → check_signature

/// A client that allows every algorithm the project supports (the vectors pick the algorithm),
/// built through the config parser so it is exactly what a config file would produce.
fn client() -> ClientConfig {
    let yaml = r#"
clients:
  - name: wycheproof
    issuer: https://wycheproof.invalid
    audiences: [wycheproof]
    jwks_file: /nonexistent/wycheproof-jwks.json
    algorithms: [RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA]
"#;
    let cfg = oidc_authz::config::parse_with_env(yaml, &|_| None)
        .unwrap_or_else(|e| panic!("wycheproof client config: {e}"));
    let client = cfg.clients.into_iter().next().unwrap();
    assert_eq!(client.algorithms.len(), Alg::ALL.len());
    client
}

/// The group's verification keys as a JWKS document: `public` when given, else `private` (only
/// symmetric groups lack a public key, and `oct` keys are never used).
fn group_keys(group: &Value) -> Value {
    let k = group
        .get("public")
        .or_else(|| group.get("private"))
        .cloned()
        .unwrap_or(Value::Null);
    if k.get("keys").is_some() {
        k
    } else {
        json!({ "keys": [k] })
    }
}

/// Would the project accept this compact JWS with these keys (signature layer)?
fn jose_verdict(token_text: &str, keys: &Value) -> Result<(), String> {
    // 1. The token as it arrives: `Authorization: Bearer <token>`.
    let value = format!("Bearer {token_text}");
    let mut headers = Headers::new();
    headers.push("authorization", &value);
    let sources = [TokenSource::Header("authorization".into())];
    let raw = match token::extract(&sources, &headers, DEFAULT_MAX_BYTES) {
        Ok(Some(t)) => t,
        Ok(None) => return Err("extract: no token".into()),
        Err(d) => return Err(format!("extract: {} ({})", d.reason, d.detail)),
    };
    // 2. Structure, header and signature exactly as token::parse does it. The payload of these
    //    vectors is not a claims set, so it is checked for canonical base64url on its own and a
    //    `{}` claims segment stands in for it while parsing; the signature still covers the
    //    original bytes.
    let parts: Vec<&str> = raw.split('.').collect();
    let (header_seg, payload_seg) = if parts.len() == 3 {
        (parts[0], parts[1])
    } else {
        // Not three segments: token::parse must refuse it as it is.
        return match token::parse(raw) {
            Ok(_) => Err("UNEXPECTED: token::parse accepted a token without three segments".into()),
            Err(d) => Err(format!("parse: {} ({})", d.reason, d.detail)),
        };
    };
    URL_SAFE_NO_PAD
        .decode(payload_seg)
        .map_err(|_| "payload is not canonical base64url".to_owned())?;
    let stand_in = format!("{header_seg}.e30.{}", parts[2]);
    let parsed =
        token::parse(&stand_in).map_err(|d| format!("parse: {} ({})", d.reason, d.detail))?;
    let jwt = Jwt {
        header: parsed.header,
        claims: serde_json::Map::new(),
        signing_input: &raw[..header_seg.len() + 1 + payload_seg.len()],
        signature: parsed.signature,
    };
    // 3. Keys as the project loads them.
    let keys = keys::parse_jwks(keys.to_string().as_bytes(), "wycheproof")
        .map_err(|e| format!("parse_jwks: {e}"))?;
    let state = KeyState {
        keys: Arc::from(keys),
        generation: 1,
        ..KeyState::default()
    };
    // 4. Header checks and signature, as verify::verify runs them.
    let client = client();
    let fail = |f: Failure| match f {
        Failure::Deny(d) => format!("verify: {} ({})", d.reason, d.detail),
        Failure::UnknownKid { .. } => "verify: unknown kid".to_owned(),
        Failure::KidRequired => "verify: kid required".to_owned(),
    };
    let alg = verify::check_header(&client, &jwt).map_err(fail)?;
    verify::check_signature(alg, &state, true, &jwt).map_err(fail)
}

fn run_jose_file(dir: &std::path::Path, file: &str) -> Counts {
    let doc = load(dir, file);
    let mut counts = Counts::default();
    for group in doc["testGroups"].as_array().unwrap() {
        let keys = group_keys(group);
        for tc in group["tests"].as_array().unwrap() {
            // Compact strings as they are; JSON serializations (objects) as their JSON text,
            // which is what a client sending one would put in the header.
            let text = match tc.get("jws").or_else(|| tc.get("jwe")) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => panic!("{file} tcId {}: no jws/jwe", tc["tcId"]),
            };
            let case = Case {
                key: &keys,
                token: &text,
            };
            let verdict = guarded(|| jose_verdict(&text, &keys));
            counts.record(file, tc, deliberately_rejected(&case), verdict);
        }
    }
    counts
}

fn jose_file(file: &str) {
    let dir = vectors_dir();
    let c = run_jose_file(&dir, file);
    c.report(file);
    assert!(c.total > 0, "{file}: no vectors");
    assert!(c.valid_accepted > 0, "{file}: no valid vector accepted");
    assert!(c.invalid_rejected > 0, "{file}: no invalid vector rejected");
    assert!(c.failures.is_empty(), "{:#?}", c.failures);
}

#[test]
fn json_web_signature_vectors_through_token_parse_and_verify() {
    jose_file("json_web_signature_test.json");
}

#[test]
fn json_web_key_vectors_through_parse_jwks_and_verify() {
    jose_file("json_web_key_test.json");
}

#[test]
fn json_web_crypto_vectors_through_token_parse_and_verify() {
    jose_file("json_web_crypto_test.json");
}

/// The harness itself: a vector with a wrong expectation would show up as a failure, so the
/// verdict function must accept a real token and reject its tampered twin.
#[test]
fn the_jose_harness_accepts_a_good_token_and_rejects_a_tampered_one() {
    let key = oidc_authz::testkit::TestKey::generate(Alg::ES256, "k1");
    let keys = json!({ "keys": [key.jwk(true)] });
    let good = key.sign(&json!({"alg": "ES256", "kid": "k1"}), &json!({"a": 1}));
    assert!(jose_verdict(&good, &keys).is_ok());
    let mut bad = good.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'Q' } else { 'A' });
    assert!(jose_verdict(&bad, &keys).is_err());
    assert!(jose_verdict(&good, &json!({"keys": []})).is_err());
}

// ------------------------------------------------------------------------------------------
// Ed25519 public keys that must never load (issue 11 finding 7)

/// Wycheproof-style vectors for Ed25519 *public keys* (the published files test signatures, not
/// keys): every encoding of the eight small-order points — canonical, with the sign bit set on
/// x = 0, and y + p — and other y ≥ p encodings. `(tcId, comment, pk)`, pk in hex as Wycheproof
/// writes it; every one is `invalid`. With such a key, `R = identity, S = 0` verifies for many
/// messages: a token could be forged with no private key.
const ED25519_WEAK_KEYS: [(u32, &str, &str); 18] = [
    (
        1,
        "small order 4: y = 0 (x = +sqrt(-1))",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ),
    (
        2,
        "small order 4: y = 0 (x = -sqrt(-1))",
        "0000000000000000000000000000000000000000000000000000000000000080",
    ),
    (
        3,
        "order 1: the identity (0, 1)",
        "0100000000000000000000000000000000000000000000000000000000000000",
    ),
    (
        4,
        "order 2: (0, -1)",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ),
    (
        5,
        "small order 8, x positive",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    ),
    (
        6,
        "small order 8, x negative",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    ),
    (
        7,
        "small order 8 (y = p - y8), x positive",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    ),
    (
        8,
        "small order 8 (y = p - y8), x negative",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    ),
    (
        9,
        "non-canonical identity: x = 0 with the sign bit set",
        "0100000000000000000000000000000000000000000000000000000000000080",
    ),
    (
        10,
        "non-canonical order 2: x = 0 with the sign bit set",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ),
    (
        11,
        "non-canonical order 4: y = p (= 0)",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ),
    (
        12,
        "non-canonical order 4: y = p (= 0), sign bit set",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ),
    (
        13,
        "non-canonical identity: y = p + 1 (= 1)",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ),
    (
        14,
        "non-canonical identity: y = p + 1 (= 1), sign bit set",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ),
    (
        15,
        "non-canonical: y = p + 2",
        "efffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ),
    (
        16,
        "non-canonical: y = p + 18",
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ),
    (
        17,
        "non-canonical: y = p + 18, sign bit set",
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ),
    (
        18,
        "non-canonical: y = p + 9",
        "f6ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ),
];

fn ed25519_jwk(pk: &[u8]) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "x": URL_SAFE_NO_PAD.encode(pk)})
}

#[test]
fn ed25519_small_order_and_non_canonical_public_keys_are_refused_by_parse_jwk() {
    // The harness: a real key still parses (so a refusal below is about the key, not the JWK).
    let real = oidc_authz::testkit::TestKey::generate(Alg::EdDSA, "real");
    assert!(
        keys::parse_jwk(&real.jwk(false)).is_ok(),
        "a generated key loads"
    );
    let mut ids = std::collections::HashSet::new();
    for (tc_id, comment, pk) in ED25519_WEAK_KEYS {
        assert!(ids.insert(tc_id), "tcId {tc_id} twice");
        let pk = hex(pk);
        assert_eq!(pk.len(), 32, "tcId {tc_id}");
        match keys::parse_jwk(&ed25519_jwk(&pk)) {
            Ok(_) => panic!("tcId {tc_id} ({comment}): a weak Ed25519 key was loaded"),
            Err(e) => assert!(
                matches!(
                    e,
                    keys::KeyError::Ed25519SmallOrder | keys::KeyError::Ed25519NonCanonical
                ),
                "tcId {tc_id} ({comment}): refused for the wrong reason: {e}"
            ),
        }
        // The same key naming its own `alg`.
        let mut jwk = ed25519_jwk(&pk);
        jwk["alg"] = json!("EdDSA");
        assert!(keys::parse_jwk(&jwk).is_err(), "tcId {tc_id} with alg");
    }
    // A key set made only of them has no usable key; next to a real key only the real one loads.
    let only_weak: Vec<Value> = ED25519_WEAK_KEYS
        .iter()
        .map(|(_, _, pk)| ed25519_jwk(&hex(pk)))
        .collect();
    assert_eq!(
        keys::parse_jwks(json!({ "keys": only_weak }).to_string().as_bytes(), "t").err(),
        Some(keys::JwksError::NoUsableKey)
    );
    let mut mixed = only_weak;
    mixed.push(real.jwk(false));
    let loaded = keys::parse_jwks(json!({ "keys": mixed }).to_string().as_bytes(), "t").unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].kid.as_deref(), Some("real"));
}
