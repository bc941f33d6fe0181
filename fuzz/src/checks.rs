//! Fuzz target bodies and the invariants they assert. Shared, via `#[path]`, with the stable
//! corpus replay in `tests/fuzz_corpus.rs`: keep it free of fuzzing-only dependencies.
//!
//! Every function must never panic for any input except through a failed invariant `assert!`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oidc_authz::config;
use oidc_authz::core::binding::dpop::{self, DpopRequest, DpopSettings, MAX_PROOF_BYTES};
use oidc_authz::core::binding::{NonceKey, ReplayMemory};
use oidc_authz::core::policy;
use oidc_authz::core::token::{self, Headers, TokenSource};

/// Same cap as the default `token.max_bytes`.
const MAX_BYTES: usize = 16 * 1024;

/// `token::parse`: a parsed token re-encodes to exactly the input (canonical base64url, three
/// segments), and a rejected one is always `token_malformed`.
pub fn token_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match token::parse(text) {
        Ok(jwt) => {
            assert!(text.starts_with(jwt.signing_input));
            let again = format!(
                "{}.{}",
                jwt.signing_input,
                URL_SAFE_NO_PAD.encode(&jwt.signature)
            );
            assert_eq!(again, text, "a parsed token has exactly one encoding");
            assert_eq!(jwt.signing_input.matches('.').count(), 1);
            for name in ["iss", "aud", "exp", "realm_access.roles", "a.b.c"] {
                if let Some(v) = token::claim(&jwt.claims, name) {
                    let _ = token::claim_header_value(v);
                }
            }
        }
        Err(d) => assert_eq!(d.reason, oidc_authz::decision::Reason::TokenMalformed),
    }
}

/// `token::extract` over an Authorization header and a Cookie header. Input layout:
/// `<authorization value>\n<cookie value>[\n<second authorization value>]`.
pub fn auth_header(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let auth = parts.next().unwrap_or("");
    let cookie = parts.next();
    let second = parts.next();
    let mut headers = Headers::new();
    headers.push("authorization", auth);
    if let Some(c) = cookie {
        headers.push("cookie", c);
    }
    if let Some(s) = second {
        headers.push("authorization", s);
    }
    let sources = [
        TokenSource::Header("authorization".into()),
        TokenSource::Cookie("oidc-jwt".into()),
    ];
    match token::extract(&sources, &headers, MAX_BYTES) {
        Ok(Some(t)) => {
            assert!(
                second.is_none(),
                "two Authorization headers are never accepted"
            );
            assert!(!t.is_empty() && t.len() <= MAX_BYTES);
            // RFC 6750 b64token (opaque tokens for introspection use the whole set; a JWS is
            // checked for canonical base64url by token::parse)
            let body = t.trim_end_matches('=');
            assert!(
                !body.is_empty()
                    && body
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)),
                "only RFC 6750 b64token characters: {t:?}"
            );
            assert!(auth.contains(t) || cookie.is_some_and(|c| c.contains(t)));
            let _ = token::parse(t);
        }
        Ok(None) => {}
        Err(d) => assert_eq!(d.reason, oidc_authz::decision::Reason::TokenMalformed),
    }
}

/// `policy::normalize_path`: the result is an origin-form path with no dot-segments, no
/// repeated slashes, no query or fragment, no encoded `/` or `\`, never longer than the input,
/// and normalising it again changes nothing.
pub fn path_normalize(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = policy::normalize_path(raw) else {
        return;
    };
    let p: &str = &path;
    assert!(p.starts_with('/'), "{p:?}");
    for bad in ["//", "/./", "/../", "?", "#", "\\"] {
        assert!(!p.contains(bad), "{raw:?} -> {p:?} contains {bad:?}");
    }
    assert!(p != "/." && p != "/.." && !p.ends_with("/.") && !p.ends_with("/.."));
    let upper = p.to_ascii_uppercase();
    assert!(!upper.contains("%2F") && !upper.contains("%5C"), "{p:?}");
    assert!(p.bytes().all(|b| (0x21..0x7f).contains(&b)), "{p:?}");
    assert!(p.len() <= raw.len(), "{raw:?} -> {p:?}");
    match policy::normalize_path(p) {
        Ok(again) => assert_eq!(&*again, p, "normalisation is idempotent ({raw:?})"),
        Err(d) => panic!(
            "a normalised path is refused: {raw:?} -> {p:?}: {}",
            d.detail
        ),
    }
}

/// `config::parse_with_env` with an empty environment: any text gives a config or errors that
/// name a field, never a panic.
pub fn config_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse_with_env(text, &|_| None) {
        Ok(cfg) => {
            assert!(!cfg.clients.is_empty(), "a valid config has a client");
            assert!(cfg.token.max_bytes > 0);
        }
        Err(errors) => assert!(!errors.to_string().is_empty()),
    }
}

/// `binding::dpop::parse` and `verify` on one `DPoP` header value: a parsed proof is at most
/// 8 KiB and re-encodes to exactly the input; a refused one is `ProofMalformed` /
/// `ProofTooLarge` (too large exactly when over the cap); `verify` against a fixed request
/// only ever answers `invalid_dpop_proof` or `use_dpop_nonce`; the thumbprint of any header
/// `jwk` and the `htu` comparison never panic and are deterministic.
pub fn dpop_proof(data: &[u8]) {
    use oidc_authz::core::binding::BindingError;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match dpop::parse(text) {
        Ok(proof) => {
            assert!(text.len() <= MAX_PROOF_BYTES);
            let again = format!(
                "{}.{}",
                proof.signing_input,
                URL_SAFE_NO_PAD.encode(&proof.signature)
            );
            assert_eq!(again, text, "a parsed proof has exactly one encoding");
            if let Some(jwk) = proof.header.get("jwk").and_then(|v| v.as_object()) {
                let t = dpop::jwk_thumbprint(jwk);
                assert_eq!(t, dpop::jwk_thumbprint(jwk));
            }
            if let Some(htu) = proof.claims.get("htu").and_then(|v| v.as_str()) {
                let m = dpop::htu_matches(htu, "https", "server.example.com", "/token");
                assert_eq!(
                    m,
                    dpop::htu_matches(htu, "HTTPS", "SERVER.example.com:443", "/token?q")
                );
            }
        }
        Err(e) => {
            assert!(matches!(
                e,
                BindingError::ProofMalformed | BindingError::ProofTooLarge
            ));
            assert_eq!(
                e == BindingError::ProofTooLarge,
                text.len() > MAX_PROOF_BYTES
            );
        }
    }
    let settings = DpopSettings {
        nonce: NonceKey::new(&[7u8; 32], 60).ok(),
        ..DpopSettings::default()
    };
    let req = DpopRequest {
        proofs: &[text],
        access_token: "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU",
        jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
        method: "POST",
        scheme: "https",
        authority: "server.example.com",
        path: "/token",
        now: 1_562_262_616,
    };
    if let Err(e) = dpop::verify(&req, &settings, &ReplayMemory::new(4, 1)) {
        assert!(
            matches!(e.reason_code(), "invalid_dpop_proof" | "use_dpop_nonce"),
            "{e:?}"
        );
    }
}
