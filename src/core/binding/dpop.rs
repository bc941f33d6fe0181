//! DPoP proofs (RFC 9449 §4): parse one proof and verify it against the request and the
//! access token it accompanies, exactly as DESIGN §10 lists (RFC 9449 §4.3 checks 1–12).
//!
//! Parsing is strict like [`crate::core::token`]: the size cap ([`MAX_PROOF_BYTES`]) comes before
//! anything else; then exactly three segments, canonical unpadded base64url, header and claims
//! one JSON object each with no duplicate member names at any depth ([`token::strict_object`]).
//! `token::parse` itself does not fit: it deliberately never reads the `jwk` header, which is
//! the whole point of a proof.
//!
//! Checks, in order (the first failure is the answer):
//! 1. exactly one `DPoP` header value — none, two, or one holding a comma (Envoy joins repeated
//!    headers with `,`, and a compact JWS never contains one) is `invalid_dpop_proof`;
//! 2. at most 8 KiB, then a strict compact JWS;
//! 3. header: `typ` is `dpop+jwt` (ASCII case-insensitive, as media types are), `alg` in the
//!    configured list (`none` and `HS*` are not algorithms here at all), no `crit` / `b64`,
//!    `jwk` a public key — any private member (`d p q dp dq qi oth k`) is refused — that
//!    [`keys::parse_jwk`] accepts and that supports `alg`;
//! 4. the signature verifies with that `jwk`;
//! 5. claims: `htm` = the request method (exact, methods are case-sensitive); `htu` = the
//!    request's scheme + authority + path, compared by component (see [`htu_matches`]); `iat`
//!    an integer within `[now − max_age − leeway, now + leeway]`; `jti` a non-empty string of
//!    at most [`MAX_JTI_BYTES`]; `ath` = base64url(SHA-256(access token));
//! 6. the RFC 7638 thumbprint of `jwk` = the token's `cnf.jkt`;
//! 7. when nonces are required: the `nonce` claim is one this replica set issued, still fresh
//!    (`use_dpop_nonce` otherwise, so the caller answers with a fresh `DPoP-Nonce`);
//! 8. last, the `jti` is remembered in the replay memory (refused if already there): only
//!    proofs that passed everything else take a slot.

use std::fmt;
use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::BindingError;
use super::cnf::{THUMBPRINT_B64_LEN, encode_sha256_b64};
use super::nonce::NonceKey;
pub use super::replay::MAX_JTI_BYTES;
use super::replay::ReplayMemory;
use crate::core::token;
use crate::keys::{self, Alg, Key};

/// Proofs longer than this are refused before any parsing (DESIGN §10).
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// JWK members that only a private (or symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A client's DPoP settings (`binding.dpop`, built by the config layer).
#[derive(Debug, Clone)]
pub struct DpopSettings {
    /// Proof algorithms accepted. [`Alg`] has no `none` and no HMAC, so neither can be listed.
    pub algorithms: Vec<Alg>,
    /// How old a proof's `iat` may be (plus `leeway`).
    pub max_age: Duration,
    /// The client's clock leeway, on both sides of the window.
    pub leeway: Duration,
    /// `Some` when server nonces are required (`binding.dpop.nonce: true`).
    pub nonce: Option<NonceKey>,
}

impl Default for DpopSettings {
    /// DESIGN §10's defaults (the leeway is the client's own; 30 s is the config default).
    fn default() -> Self {
        DpopSettings {
            algorithms: vec![Alg::ES256, Alg::EdDSA, Alg::PS256, Alg::RS256],
            max_age: Duration::from_secs(60),
            leeway: Duration::from_secs(30),
            nonce: None,
        }
    }
}

/// What one Check hands to [`verify`]. `Debug` shows only the method, the proof count and
/// `now`: the proof, the token, the URI and the thumbprint stay out of logs.
#[derive(Clone, Copy)]
pub struct DpopRequest<'a> {
    /// Every `DPoP` header value of the request (exactly one is required).
    pub proofs: &'a [&'a str],
    /// The access token exactly as sent after `Authorization: DPoP `.
    pub access_token: &'a str,
    /// The verified token's `cnf.jkt`.
    pub jkt: &'a str,
    /// The request method (`:method`).
    pub method: &'a str,
    /// The request scheme (`http` / `https`).
    pub scheme: &'a str,
    /// The request authority (`:authority` / `host`), `host[:port]`.
    pub authority: &'a str,
    /// The request path (`:path`); a query or fragment in it is ignored.
    pub path: &'a str,
    /// Unix seconds.
    pub now: i64,
}

impl fmt::Debug for DpopRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopRequest")
            .field("proofs", &self.proofs.len())
            .field("method", &self.method)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// A proof split and decoded, not yet trusted. `Debug` shows no content.
pub struct Proof<'a> {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// `base64url(header) . base64url(claims)`: the bytes the signature covers.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

impl fmt::Debug for Proof<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proof").finish_non_exhaustive()
    }
}

/// Verify the request's DPoP proof (module docs list the checks and their order).
pub fn verify(
    req: &DpopRequest<'_>,
    settings: &DpopSettings,
    replay: &ReplayMemory,
) -> Result<(), BindingError> {
    let raw = single_proof(req.proofs)?;
    let proof = parse(raw)?;
    let (alg, key, thumbprint) = check_header(&proof.header, settings)?;
    if !key.verify(alg, proof.signing_input.as_bytes(), &proof.signature) {
        return Err(BindingError::ProofSignature);
    }
    let claims = &proof.claims;
    let text = |name: &str| match claims.get(name) {
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        None => Ok(None),
        Some(_) => Err(BindingError::ProofClaims),
    };
    let htm = text("htm")?.ok_or(BindingError::ProofClaims)?;
    if htm != req.method {
        return Err(BindingError::ProofMethod);
    }
    let htu = text("htu")?.ok_or(BindingError::ProofClaims)?;
    if !htu_matches(htu, req.scheme, req.authority, req.path) {
        return Err(BindingError::ProofUri);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(BindingError::ProofClaims)?;
    let max_age = secs(settings.max_age);
    let leeway = secs(settings.leeway);
    if iat < req.now.saturating_sub(max_age).saturating_sub(leeway) {
        return Err(BindingError::ProofTooOld);
    }
    if iat > req.now.saturating_add(leeway) {
        return Err(BindingError::ProofFromFuture);
    }
    let jti = text("jti")?.ok_or(BindingError::ProofJtiMissing)?;
    if jti.is_empty() {
        return Err(BindingError::ProofJtiMissing);
    }
    if jti.len() > MAX_JTI_BYTES {
        return Err(BindingError::ProofJtiTooLong);
    }
    let ath_claim = text("ath")?.ok_or(BindingError::ProofClaims)?;
    if ath_claim.as_bytes() != ath(req.access_token) {
        return Err(BindingError::ProofAth);
    }
    if req.jkt.as_bytes() != encode_sha256_b64(&thumbprint) {
        return Err(BindingError::ProofKeyMismatch);
    }
    if let Some(nonces) = &settings.nonce {
        let nonce = text("nonce")?.ok_or(BindingError::NonceMissing)?;
        nonces.check(nonce, req.now)?;
    }
    let expires_at = iat.saturating_add(max_age).saturating_add(leeway);
    replay.check_and_remember(req.jkt, jti, expires_at, req.now)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Exactly one `DPoP` header value, with the size cap applied first.
fn single_proof<'a>(proofs: &[&'a str]) -> Result<&'a str, BindingError> {
    let raw = match proofs {
        [] => return Err(BindingError::ProofMissing),
        [one] => *one,
        _ => return Err(BindingError::ProofDuplicated),
    };
    if raw.len() > MAX_PROOF_BYTES {
        return Err(BindingError::ProofTooLarge);
    }
    let raw = raw.trim_matches(|c| c == ' ' || c == '\t');
    if raw.is_empty() {
        return Err(BindingError::ProofMissing);
    }
    if raw.contains(',') {
        return Err(BindingError::ProofDuplicated);
    }
    Ok(raw)
}

/// Split and decode a compact JWS strictly (size cap first). Every failure is
/// [`BindingError::ProofMalformed`] or [`BindingError::ProofTooLarge`].
pub fn parse(proof: &str) -> Result<Proof<'_>, BindingError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(BindingError::ProofTooLarge);
    }
    let mut parts = proof.splitn(4, '.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BindingError::ProofMalformed);
    };
    if h.is_empty() || c.is_empty() || s.is_empty() {
        return Err(BindingError::ProofMalformed);
    }
    let b64 = |seg: &str| {
        URL_SAFE_NO_PAD
            .decode(seg)
            .map_err(|_| BindingError::ProofMalformed)
    };
    let header = token::strict_object(&b64(h)?).map_err(|_| BindingError::ProofMalformed)?;
    let claims = token::strict_object(&b64(c)?).map_err(|_| BindingError::ProofMalformed)?;
    let signature = b64(s)?;
    Ok(Proof {
        header,
        claims,
        signing_input: &proof[..h.len() + 1 + c.len()],
        signature,
    })
}

/// `typ`, `alg`, `crit`/`b64` and the `jwk`: the algorithm, the parsed key and its thumbprint.
fn check_header(
    header: &Map<String, Value>,
    settings: &DpopSettings,
) -> Result<(Alg, Key, [u8; 32]), BindingError> {
    let typ = header.get("typ").and_then(Value::as_str);
    if !typ.is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
        return Err(BindingError::ProofType);
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Alg::parse)
        .filter(|a| settings.algorithms.contains(a))
        .ok_or(BindingError::ProofAlgorithm)?;
    if header.contains_key("crit") || header.contains_key("b64") {
        return Err(BindingError::ProofCritical);
    }
    let jwk_value = header.get("jwk").ok_or(BindingError::ProofKeyMissing)?;
    let jwk = jwk_value
        .as_object()
        .ok_or(BindingError::ProofKeyUnusable)?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(BindingError::ProofKeyPrivate);
    }
    let key = keys::parse_jwk(jwk_value).map_err(|_| BindingError::ProofKeyUnusable)?;
    if !key.supports(alg) {
        return Err(BindingError::ProofKeyAlgMismatch);
    }
    let thumbprint = jwk_thumbprint(jwk).ok_or(BindingError::ProofKeyUnusable)?;
    Ok((alg, key, thumbprint))
}

/// RFC 7638 JWK thumbprint with SHA-256: the required members of the key type (RSA: `e kty n`;
/// EC: `crv kty x y`; OKP, RFC 8037 §2: `crv kty x`) as a JSON object in lexicographic member
/// order with no whitespace, hashed as UTF-8. Streamed into the digest, no allocation. Member
/// values that JSON would have to escape (`"`, `\`, control characters) never occur in a valid
/// key and are refused (`None`) rather than canonicalised.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Option<[u8; 32]> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"{");
    for (i, name) in members.iter().enumerate() {
        let value = jwk.get(*name)?.as_str()?;
        if value.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
            return None;
        }
        if i > 0 {
            ctx.update(b",");
        }
        ctx.update(b"\"");
        ctx.update(name.as_bytes());
        ctx.update(b"\":\"");
        ctx.update(value.as_bytes());
        ctx.update(b"\"");
    }
    ctx.update(b"}");
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Some(out)
}

/// The `ath` an access token must have: base64url(SHA-256(token)), in a stack buffer.
pub fn ath(access_token: &str) -> [u8; THUMBPRINT_B64_LEN] {
    encode_sha256_b64(digest::digest(&digest::SHA256, access_token.as_bytes()).as_ref())
}

/// `htu` against the request (RFC 9449 §4.3 check 9, DESIGN §10): compared by component, never
/// as strings. Scheme ASCII case-insensitive; host ASCII case-insensitive; port numerically
/// with the scheme's default (`http` 80, `https` 443) for an absent or empty port; path after
/// percent-encoding normalisation (RFC 3986 §6.2.2.2: `%xx` of an unreserved character equals
/// the character, hex digits in either case) with an empty path equal to `/` (§6.2.3); query
/// and fragment ignored on both sides. An `htu` with userinfo, without `//authority`, with a
/// bad port or a malformed `%` never matches. Dot-segments are not removed (on either side):
/// a client must sign the path it sends.
pub fn htu_matches(htu: &str, scheme: &str, authority: &str, path: &str) -> bool {
    let Some((htu_scheme, rest)) = htu.split_once("://") else {
        return false;
    };
    if !htu_scheme.eq_ignore_ascii_case(scheme) {
        return false;
    }
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (htu_authority, htu_path) = rest.split_at(auth_end);
    let default = default_port(scheme);
    let (Some((h1, p1)), Some((h2, p2))) = (host_port(htu_authority), host_port(authority)) else {
        return false;
    };
    if !h1.eq_ignore_ascii_case(h2) || p1.or(default) != p2.or(default) {
        return false;
    }
    paths_equal(strip_query(htu_path), strip_query(path))
}

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else {
        None
    }
}

/// `host[:port]` or `[v6][:port]` → (host, port). Userinfo, an empty host or a bad port → `None`.
fn host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        match rest {
            "" => (host, ""),
            _ => (host, rest.strip_prefix(':')?),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, p),
            None => (authority, ""),
        }
    };
    if host.is_empty() {
        return None;
    }
    if port.is_empty() {
        return Some((host, None));
    }
    if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((host, Some(port.parse().ok()?)))
}

fn strip_query(path: &str) -> &str {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    match &path[..end] {
        "" => "/",
        p => p,
    }
}

/// One path character after percent-encoding normalisation: `(byte, still_encoded)`;
/// `None` for a malformed `%`.
fn path_units(path: &str) -> impl Iterator<Item = Option<(u8, bool)>> + '_ {
    let bytes = path.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *bytes.get(i)?;
        if b != b'%' {
            i += 1;
            return Some(Some((b, false)));
        }
        let hex = |c: u8| (c as char).to_digit(16);
        let decoded = match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(&a), Some(&b)) => hex(a).zip(hex(b)).map(|(a, b)| (a * 16 + b) as u8),
            _ => None,
        };
        i += 3;
        Some(decoded.map(|d| {
            let unreserved = d.is_ascii_alphanumeric() || matches!(d, b'-' | b'.' | b'_' | b'~');
            (d, !unreserved)
        }))
    })
}

fn paths_equal(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (path_units(a), path_units(b));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(Some(x)), Some(Some(y))) if x == y => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::TestKey;
    use serde_json::json;

    const T: i64 = 1_800_000_000;
    const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln";
    const HTU: &str = "https://api.example.com/orders";

    struct Fixture {
        key: TestKey,
        jkt: String,
        settings: DpopSettings,
    }

    fn b64(d: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(d)
    }

    impl Fixture {
        fn new(alg: Alg) -> Fixture {
            let key = TestKey::generate(alg, "client");
            let jwk = key.jwk(false);
            let jkt = b64(&jwk_thumbprint(jwk.as_object().unwrap()).unwrap());
            Fixture {
                key,
                jkt,
                settings: DpopSettings::default(),
            }
        }

        fn header(&self) -> Value {
            json!({"typ": "dpop+jwt", "alg": self.key.alg.name(), "jwk": self.key.jwk(false)})
        }

        fn claims(&self) -> Value {
            json!({"jti": "proof-1", "htm": "GET", "htu": HTU, "iat": T,
                   "ath": std::str::from_utf8(&ath(TOKEN)).unwrap()})
        }

        fn proof_with(&self, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
            let (mut h, mut c) = (self.header(), self.claims());
            edit(&mut h, &mut c);
            self.key.sign(&h, &c)
        }

        fn check_with<'a>(
            &'a self,
            proofs: &'a [&'a str],
            edit: impl FnOnce(&mut DpopRequest<'a>),
        ) -> Result<(), BindingError> {
            let mut req = DpopRequest {
                proofs,
                access_token: TOKEN,
                jkt: &self.jkt,
                method: "GET",
                scheme: "https",
                authority: "api.example.com",
                path: "/orders?page=2",
                now: T,
            };
            edit(&mut req);
            verify(&req, &self.settings, &ReplayMemory::new(64, 2))
        }

        fn check(&self, proof: &str) -> Result<(), BindingError> {
            self.check_with(&[proof], |_| {})
        }

        fn check_edit(
            &self,
            edit: impl FnOnce(&mut Value, &mut Value),
        ) -> Result<(), BindingError> {
            self.check(&self.proof_with(edit))
        }
    }

    fn es256() -> Fixture {
        Fixture::new(Alg::ES256)
    }

    #[test]
    fn valid_proofs_are_accepted() {
        for alg in [Alg::ES256, Alg::EdDSA, Alg::PS256] {
            let f = Fixture::new(alg);
            assert_eq!(f.check_edit(|_, _| {}), Ok(()), "{alg}");
        }
    }

    #[test]
    fn typ_must_be_dpop_jwt() {
        let f = es256();
        assert_eq!(
            f.check_edit(|h, _| h["typ"] = json!("JWT")),
            Err(BindingError::ProofType)
        );
        assert_eq!(
            f.check_edit(|h, _| {
                h.as_object_mut().unwrap().remove("typ");
            }),
            Err(BindingError::ProofType)
        );
        assert_eq!(f.check_edit(|h, _| h["typ"] = json!("DPoP+JWT")), Ok(()));
    }

    #[test]
    fn alg_none_hmac_and_unlisted_are_refused() {
        let f = es256();
        for alg in ["none", "HS256", "ES384", "es256"] {
            assert_eq!(
                f.check_edit(|h, _| h["alg"] = json!(alg)),
                Err(BindingError::ProofAlgorithm),
                "{alg}"
            );
        }
        // an unsigned proof (alg none, empty signature) is not even a proof
        let unsigned = format!(
            "{}.{}.",
            b64(
                json!({"typ": "dpop+jwt", "alg": "none", "jwk": f.key.jwk(false)})
                    .to_string()
                    .as_bytes()
            ),
            b64(f.claims().to_string().as_bytes())
        );
        assert_eq!(f.check(&unsigned), Err(BindingError::ProofMalformed));
        // an algorithm the settings do not list
        let mut f = es256();
        f.settings.algorithms = vec![Alg::EdDSA];
        assert_eq!(f.check_edit(|_, _| {}), Err(BindingError::ProofAlgorithm));
    }

    #[test]
    fn private_or_unusable_jwk_is_refused() {
        let f = es256();
        for member in PRIVATE_MEMBERS {
            assert_eq!(
                f.check_edit(|h, _| h["jwk"][member] = json!("AAAA")),
                Err(BindingError::ProofKeyPrivate),
                "{member}"
            );
        }
        assert_eq!(
            f.check_edit(|h, _| {
                h.as_object_mut().unwrap().remove("jwk");
            }),
            Err(BindingError::ProofKeyMissing)
        );
        assert_eq!(
            f.check_edit(|h, _| h["jwk"] = json!("key")),
            Err(BindingError::ProofKeyUnusable)
        );
        assert_eq!(
            f.check_edit(|h, _| h["jwk"] = json!({"kty": "oct", "x": "AAAA"})),
            Err(BindingError::ProofKeyUnusable)
        );
        assert_eq!(
            f.check_edit(|h, _| h["jwk"]["use"] = json!("enc")),
            Err(BindingError::ProofKeyUnusable)
        );
        // a jwk whose own alg contradicts its curve
        assert_eq!(
            f.check_edit(|h, _| h["jwk"]["alg"] = json!("ES384")),
            Err(BindingError::ProofKeyUnusable)
        );
        // an accepted alg that the (P-256) jwk cannot be used with
        assert_eq!(
            f.check_edit(|h, _| h["alg"] = json!("EdDSA")),
            Err(BindingError::ProofKeyAlgMismatch)
        );
    }

    #[test]
    fn crit_and_b64_headers_are_refused() {
        let f = es256();
        assert_eq!(
            f.check_edit(|h, _| h["crit"] = json!(["exp"])),
            Err(BindingError::ProofCritical)
        );
        assert_eq!(
            f.check_edit(|h, _| h["b64"] = json!(false)),
            Err(BindingError::ProofCritical)
        );
    }

    #[test]
    fn signature_by_another_key_is_refused() {
        let f = es256();
        let other = TestKey::generate(Alg::ES256, "attacker");
        // the attacker presents the victim's public jwk but can only sign with their own key
        let forged = other.sign(&f.header(), &f.claims());
        assert_eq!(f.check(&forged), Err(BindingError::ProofSignature));
        // a signature bit flipped
        let good = f.proof_with(|_, _| {});
        let (input, sig) = good.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        sig[0] ^= 1;
        assert_eq!(
            f.check(&format!("{input}.{}", b64(&sig))),
            Err(BindingError::ProofSignature)
        );
    }

    #[test]
    fn htm_must_be_the_request_method() {
        let f = es256();
        assert_eq!(
            f.check_edit(|_, c| c["htm"] = json!("POST")),
            Err(BindingError::ProofMethod)
        );
        assert_eq!(
            f.check_edit(|_, c| c["htm"] = json!("get")),
            Err(BindingError::ProofMethod)
        );
        assert_eq!(
            f.check_edit(|_, c| {
                c.as_object_mut().unwrap().remove("htm");
            }),
            Err(BindingError::ProofClaims)
        );
    }

    #[test]
    fn htu_must_be_the_request_uri() {
        let f = es256();
        for htu in [
            "https://api.example.com/other",
            "https://api.example.com/orders/",
            "https://evil.example.com/orders",
            "http://api.example.com/orders",
            "https://api.example.com:8443/orders",
            "https://user@api.example.com/orders",
            "https://api.example.com:x/orders",
            "api.example.com/orders",
            "https://api.example.com/%6Frders%", // malformed %
            "https://api.example.com/ORDERS",
        ] {
            assert_eq!(
                f.check_edit(|_, c| c["htu"] = json!(htu)),
                Err(BindingError::ProofUri),
                "{htu}"
            );
        }
        // query and fragment ignored, default port elided, scheme and host case, %-encoding
        for htu in [
            "https://api.example.com/orders?page=3",
            "https://api.example.com/orders#top",
            "https://api.example.com:443/orders",
            "https://api.example.com:/orders",
            "HTTPS://API.Example.COM/orders",
            "https://api.example.com/%6Frders",
            "https://api.example.com/%6frders",
        ] {
            assert_eq!(f.check_edit(|_, c| c["htu"] = json!(htu)), Ok(()), "{htu}");
        }
        // the request side is normalised the same way
        let p = f.proof_with(|_, _| {});
        assert_eq!(
            f.check_with(&[&p], |r| r.authority = "API.example.com:443"),
            Ok(())
        );
        assert_eq!(f.check_with(&[&p], |r| r.scheme = "HTTPS"), Ok(()));
        assert_eq!(f.check_with(&[&p], |r| r.path = "/orders"), Ok(()));
        assert_eq!(
            f.check_with(&[&p], |r| r.authority = "api.example.com:444"),
            Err(BindingError::ProofUri)
        );
    }

    #[test]
    fn htu_component_comparison() {
        assert!(htu_matches("http://h", "http", "h:80", "/"));
        assert!(htu_matches(
            "http://[::1]:8080/a",
            "http",
            "[::1]:8080",
            "/a?b"
        ));
        assert!(!htu_matches("http://[::1]:8080/a", "http", "[::1]", "/a"));
        assert!(htu_matches("https://h/a%2Fb", "https", "h", "/a%2fb"));
        assert!(!htu_matches("https://h/a%2Fb", "https", "h", "/a/b"));
        assert!(!htu_matches("https://h/a", "https", "h:99999", "/a"));
    }

    #[test]
    fn iat_window_boundaries_are_exact() {
        let f = es256(); // max_age 60 s, leeway 30 s
        let at = |iat: i64| f.check_edit(|_, c| c["iat"] = json!(iat));
        assert_eq!(at(T - 90), Ok(()));
        assert_eq!(at(T - 91), Err(BindingError::ProofTooOld));
        assert_eq!(at(T + 30), Ok(()));
        assert_eq!(at(T + 31), Err(BindingError::ProofFromFuture));
        assert_eq!(
            f.check_edit(|_, c| c["iat"] = json!("1800000000")),
            Err(BindingError::ProofClaims)
        );
        assert_eq!(
            f.check_edit(|_, c| c["iat"] = json!(1.8e9)),
            Err(BindingError::ProofClaims)
        );
    }

    #[test]
    fn jti_is_required_and_capped() {
        let f = es256();
        assert_eq!(
            f.check_edit(|_, c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            Err(BindingError::ProofJtiMissing)
        );
        assert_eq!(
            f.check_edit(|_, c| c["jti"] = json!("")),
            Err(BindingError::ProofJtiMissing)
        );
        assert_eq!(
            f.check_edit(|_, c| c["jti"] = json!("j".repeat(MAX_JTI_BYTES + 1))),
            Err(BindingError::ProofJtiTooLong)
        );
    }

    #[test]
    fn a_replayed_proof_is_refused() {
        let f = es256();
        let p = f.proof_with(|_, _| {});
        let memory = ReplayMemory::new(64, 2);
        let req = DpopRequest {
            proofs: &[&p],
            access_token: TOKEN,
            jkt: &f.jkt,
            method: "GET",
            scheme: "https",
            authority: "api.example.com",
            path: "/orders",
            now: T,
        };
        assert_eq!(verify(&req, &f.settings, &memory), Ok(()));
        assert_eq!(
            verify(&req, &f.settings, &memory),
            Err(BindingError::ProofReplayed)
        );
        // a fresh proof (new jti) from the same key is fine
        let p2 = f.proof_with(|_, c| c["jti"] = json!("proof-2"));
        let req2 = DpopRequest {
            proofs: &[&p2],
            ..req
        };
        assert_eq!(verify(&req2, &f.settings, &memory), Ok(()));
    }

    #[test]
    fn ath_must_hash_the_access_token() {
        let f = es256();
        assert_eq!(
            f.check_edit(|_, c| c["ath"] = json!(b64(&[0u8; 32]))),
            Err(BindingError::ProofAth)
        );
        assert_eq!(
            f.check_edit(|_, c| {
                c.as_object_mut().unwrap().remove("ath");
            }),
            Err(BindingError::ProofClaims)
        );
        let p = f.proof_with(|_, _| {});
        assert_eq!(
            f.check_with(&[&p], |r| r.access_token = "another.token.x"),
            Err(BindingError::ProofAth)
        );
    }

    #[test]
    fn the_key_must_be_the_one_the_token_is_bound_to() {
        let f = es256();
        let p = f.proof_with(|_, _| {});
        let other = TestKey::generate(Alg::ES256, "other").jwk(false);
        let other_jkt = b64(&jwk_thumbprint(other.as_object().unwrap()).unwrap());
        assert_eq!(
            f.check_with(&[&p], |r| r.jkt = &other_jkt),
            Err(BindingError::ProofKeyMismatch)
        );
    }

    #[test]
    fn exactly_one_proof_header() {
        let f = es256();
        let p = f.proof_with(|_, _| {});
        assert_eq!(f.check_with(&[], |_| {}), Err(BindingError::ProofMissing));
        assert_eq!(f.check_with(&[""], |_| {}), Err(BindingError::ProofMissing));
        assert_eq!(
            f.check_with(&[&p, &p], |_| {}),
            Err(BindingError::ProofDuplicated)
        );
        let joined = format!("{p},{p}");
        assert_eq!(f.check(&joined), Err(BindingError::ProofDuplicated));
        assert_eq!(f.check(&format!(" {p} ")), Ok(()));
    }

    #[test]
    fn oversized_proof_is_refused_before_parsing() {
        let f = es256();
        let big = f.proof_with(|_, c| c["pad"] = json!("x".repeat(MAX_PROOF_BYTES)));
        assert!(big.len() > MAX_PROOF_BYTES);
        assert_eq!(f.check(&big), Err(BindingError::ProofTooLarge));
        // garbage over the cap is "too large", not "malformed": the cap comes first
        assert_eq!(
            f.check(&"!".repeat(MAX_PROOF_BYTES + 1)),
            Err(BindingError::ProofTooLarge)
        );
        // the cap comes before the header checks too (a comma-joined pair over the cap)
        let joined = format!(
            "{},{}",
            "a".repeat(MAX_PROOF_BYTES / 2),
            "a".repeat(MAX_PROOF_BYTES / 2)
        );
        assert_eq!(f.check(&joined), Err(BindingError::ProofTooLarge));
        // and parse() caps on its own (the fuzz target calls it directly)
        assert_eq!(
            parse(&"a".repeat(MAX_PROOF_BYTES + 1)).unwrap_err(),
            BindingError::ProofTooLarge
        );
        assert_eq!(
            f.check(&"!".repeat(MAX_PROOF_BYTES)),
            Err(BindingError::ProofMalformed)
        );
    }

    #[test]
    fn malformed_proofs() {
        let f = es256();
        let p = f.proof_with(|_, _| {});
        let (h, rest) = p.split_once('.').unwrap();
        for bad in [
            "a.b",
            "a.b.c.d",
            &format!("{p}.x"),
            &format!("{h}=.{rest}"),
            &format!("{}.{rest}", b64(br#"{"typ":"dpop+jwt","typ":"dpop+jwt"}"#)),
            &format!("{}.{rest}", b64(b"[1]")),
        ] {
            assert_eq!(f.check(bad), Err(BindingError::ProofMalformed), "{bad}");
        }
    }

    #[test]
    fn nonces_when_required() {
        let secret = b"a shared secret of at least 32 bytes";
        let replica_a = NonceKey::new(secret, 60).unwrap();
        let replica_b = NonceKey::new(secret, 60).unwrap();
        let mut f = es256();
        f.settings.nonce = Some(replica_b);
        assert_eq!(f.check_edit(|_, _| {}), Err(BindingError::NonceMissing));
        assert_eq!(
            f.check_edit(|_, _| {}).unwrap_err().reason_code(),
            "use_dpop_nonce"
        );
        let fresh = replica_a.issue(T);
        assert_eq!(f.check_edit(|_, c| c["nonce"] = json!(fresh)), Ok(()));
        let stale = replica_a.issue(T - 180);
        assert_eq!(
            f.check_edit(|_, c| c["nonce"] = json!(stale)),
            Err(BindingError::NonceStale)
        );
        let forged = NonceKey::new(b"not the shared secret, 32+ bytes!", 60)
            .unwrap()
            .issue(T);
        assert_eq!(
            f.check_edit(|_, c| c["nonce"] = json!(forged)),
            Err(BindingError::NonceInvalid)
        );
        assert_eq!(
            f.check_edit(|_, c| c["nonce"] = json!(7)),
            Err(BindingError::ProofClaims)
        );
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1 (the RSA key of RFC 7517 Appendix A.1), with optional members added.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let t = jwk_thumbprint(jwk.as_object().unwrap()).unwrap();
        assert_eq!(b64(&t), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        // a value JSON would have to escape is refused, not hashed
        let mut bad = jwk.clone();
        bad["e"] = json!("AQ\"AB");
        assert_eq!(jwk_thumbprint(bad.as_object().unwrap()), None);
    }

    #[test]
    fn rfc9449_example_ath() {
        // RFC 9449 §7.1: the example access token and its ath.
        let a = ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU");
        assert_eq!(
            std::str::from_utf8(&a).unwrap(),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    /// RFC 9449 §4.1 Figure 2: a token-request proof (no `ath`), checkable up to the thumbprint
    /// (Figure 9's `jkt`), the signature with its own `jwk`, and `htm` / `htu` / `iat`.
    #[test]
    fn rfc9449_example_proof() {
        let proof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
        let p = parse(proof).unwrap();
        let (alg, key, thumbprint) = check_header(&p.header, &DpopSettings::default()).unwrap();
        assert_eq!(alg, Alg::ES256);
        assert_eq!(
            b64(&thumbprint),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
        assert!(key.verify(alg, p.signing_input.as_bytes(), &p.signature));
        assert_eq!(p.claims["htm"], "POST");
        assert!(htu_matches(
            p.claims["htu"].as_str().unwrap(),
            "https",
            "server.example.com",
            "/token"
        ));
        assert_eq!(p.claims["iat"], 1_562_262_616);
        // through verify it stops at the missing ath: it was made for a token request
        let mut f = es256();
        f.jkt = b64(&thumbprint);
        let r = f.check_with(&[proof], |r| {
            r.method = "POST";
            r.authority = "server.example.com";
            r.path = "/token";
            r.now = 1_562_262_616;
        });
        assert_eq!(r, Err(BindingError::ProofClaims));
    }

    #[test]
    fn debug_output_carries_no_proof_or_token() {
        let f = es256();
        let p = f.proof_with(|_, _| {});
        let req = DpopRequest {
            proofs: &[&p],
            access_token: TOKEN,
            jkt: &f.jkt,
            method: "GET",
            scheme: "https",
            authority: "api.example.com",
            path: "/orders",
            now: T,
        };
        let d = format!("{req:?} {:?} {:?}", parse(&p).unwrap(), f.settings);
        for secret in [p.as_str(), TOKEN, f.jkt.as_str(), "api.example.com"] {
            assert!(!d.contains(secret), "{d}");
        }
    }
}
