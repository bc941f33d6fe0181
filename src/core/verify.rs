//! Route a parsed token to exactly one client, then verify it against that client's keys
//! (DESIGN §4 steps 2–6). Pure: takes the snapshot, the key state and `now`, returns a
//! verdict. The one thing it cannot do itself — refetch a key set for an unknown `kid` — it
//! reports as [`Failure::UnknownKid`] so the async caller can refetch once and call again.

use serde_json::{Map, Value};

use crate::core::model::ClientConfig;
use crate::core::ports::KeyState;
use crate::core::snapshot::Snapshot;
use crate::core::token::Jwt;
use crate::decision::{Deny, Reason};
use crate::keys::{Alg, Key};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Deny(Deny),
    /// The `kid` is not in the key set at `generation`: refetch (rate limited) and retry once.
    UnknownKid {
        generation: u64,
    },
    /// The token has no `kid` and the key set has more than [`MAX_KIDLESS_KEYS`] keys for its
    /// alg: refused (`unknown_key`, detail [`KID_REQUIRED`]) without trying any key.
    KidRequired,
}

/// A token without `kid` is tried against at most this many keys (those that fit its alg). With
/// more, it is refused unverified: one junk token must not cost a signature check per published
/// key (issue 11 finding 6: 2,400 RSA keys, 33 ms of CPU per kid-less token).
pub const MAX_KIDLESS_KEYS: usize = 4;

/// The deny detail for [`Failure::KidRequired`] (names [`MAX_KIDLESS_KEYS`]).
pub const KID_REQUIRED: &str = "kid required: the key set has more than 4 keys for this alg";

impl From<Deny> for Failure {
    fn from(d: Deny) -> Self {
        Failure::Deny(d)
    }
}

fn deny(reason: Reason, detail: &'static str) -> Failure {
    Failure::Deny(Deny::new(reason, detail))
}

/// Choose the client from the *unverified* `iss` and `aud` (exact string equality; never
/// substring). Returns the client's index in the snapshot.
pub fn route(snap: &Snapshot, claims: &Map<String, Value>) -> Result<usize, Deny> {
    let iss = match claims.get("iss") {
        Some(Value::String(s)) => s.as_str(),
        None => return Err(Deny::new(Reason::UnknownIssuer, "the token has no iss")),
        Some(_) => return Err(Deny::new(Reason::InvalidClaims, "iss is not a string")),
    };
    let candidates = snap.clients_for_issuer(iss);
    if candidates.is_empty() {
        return Err(Deny::new(
            Reason::UnknownIssuer,
            "no client has this issuer",
        ));
    }
    let aud = audiences(claims)?;
    let mut chosen = None;
    for &i in candidates {
        if snap.clients[i]
            .cfg
            .audiences
            .iter()
            .any(|a| aud.iter().any(|t| t == a))
        {
            if chosen.is_some() {
                return Err(Deny::new(
                    Reason::AmbiguousClient,
                    "the token matches more than one client",
                ));
            }
            chosen = Some(i);
        }
    }
    chosen.ok_or(Deny::new(
        Reason::UnknownAudience,
        "no client of this issuer has one of the token's audiences",
    ))
}

/// `aud` as a list of strings: a string, or an array of strings (RFC 7519 §4.1.3).
fn audiences(claims: &Map<String, Value>) -> Result<Vec<&str>, Deny> {
    match claims.get("aud") {
        None => Err(Deny::new(Reason::UnknownAudience, "the token has no aud")),
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().ok_or(Deny::new(
                    Reason::InvalidClaims,
                    "aud has a non-string member",
                ))
            })
            .collect(),
        Some(_) => Err(Deny::new(
            Reason::InvalidClaims,
            "aud is neither a string nor an array",
        )),
    }
}

/// Header checks that need no key: algorithm allow-list, `crit`, `b64`, nested JWTs.
pub fn check_header(client: &ClientConfig, jwt: &Jwt<'_>) -> Result<Alg, Failure> {
    let h = &jwt.header;
    if h.cty
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("JWT"))
    {
        return Err(deny(
            Reason::TokenMalformed,
            "nested JWTs (cty: JWT) are not accepted",
        ));
    }
    let Some(alg) = Alg::parse(&h.alg) else {
        return Err(deny(
            Reason::UnsupportedAlgorithm,
            "alg is not a supported signature algorithm",
        ));
    };
    if !client.algorithms.contains(&alg) {
        return Err(deny(
            Reason::UnsupportedAlgorithm,
            "alg is not in the client's algorithms",
        ));
    }
    if h.has_crit {
        return Err(deny(
            Reason::InvalidClaims,
            "crit is present and no extension is understood",
        ));
    }
    if h.has_b64 {
        return Err(deny(
            Reason::InvalidClaims,
            "the b64 header (unencoded payload) is not accepted",
        ));
    }
    Ok(alg)
}

/// Signature check with the key set's keys. `available` is false when the key set never loaded
/// or its last good fetch is older than `max_stale` (fail closed: 503).
pub fn check_signature(
    alg: Alg,
    state: &KeyState,
    available: bool,
    jwt: &Jwt<'_>,
) -> Result<(), Failure> {
    if !available {
        return Err(deny(
            Reason::KeysUnavailable,
            "the key set is not loaded or is older than max_stale",
        ));
    }
    let msg = jwt.signing_input.as_bytes();
    match jwt.header.kid.as_deref() {
        Some(kid) => {
            let Some(key) = state.find(kid) else {
                return Err(Failure::UnknownKid {
                    generation: state.generation,
                });
            };
            if !key.supports(alg) {
                return Err(deny(
                    Reason::UnsupportedAlgorithm,
                    "the key named by kid cannot be used with this alg",
                ));
            }
            if key.verify(alg, msg, &jwt.signature) {
                Ok(())
            } else {
                Err(deny(
                    Reason::InvalidSignature,
                    "the signature does not verify",
                ))
            }
        }
        None => {
            // Bounded work: collect at most MAX_KIDLESS_KEYS candidates (no allocation) and
            // refuse, before any signature check, when there are more.
            let mut candidates: [Option<&Key>; MAX_KIDLESS_KEYS] = [None; MAX_KIDLESS_KEYS];
            let mut n = 0;
            for key in state.keys.iter().filter(|k| k.supports(alg)) {
                let Some(slot) = candidates.get_mut(n) else {
                    return Err(Failure::KidRequired);
                };
                *slot = Some(key);
                n += 1;
            }
            if n == 0 {
                return Err(deny(
                    Reason::UnknownKey,
                    "no key of the key set can verify this alg",
                ));
            }
            if candidates
                .iter()
                .flatten()
                .any(|k| k.verify(alg, msg, &jwt.signature))
            {
                Ok(())
            } else {
                Err(deny(
                    Reason::InvalidSignature,
                    "the signature does not verify with any key",
                ))
            }
        }
    }
}

/// A NumericDate claim: absent, or an integer. Anything else is a type error.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
    bad: &'static str,
) -> Result<Option<i64>, Failure> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(deny(Reason::InvalidClaims, bad)),
        Some(_) => Err(deny(Reason::InvalidClaims, bad)),
    }
}

/// Claim checks after the signature (DESIGN §4.5), with the client's leeway.
pub fn check_claims(client: &ClientConfig, jwt: &Jwt<'_>, now: i64) -> Result<(), Failure> {
    let c = &jwt.claims;
    let leeway = i64::try_from(client.leeway.as_secs()).unwrap_or(0);
    let exp = numeric_date(c, "exp", "exp is not an integer NumericDate")?
        .ok_or(deny(Reason::InvalidClaims, "exp is required"))?;
    if exp.saturating_add(leeway) <= now {
        return Err(deny(Reason::TokenExpired, "exp is in the past"));
    }
    if let Some(nbf) = numeric_date(c, "nbf", "nbf is not an integer NumericDate")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(deny(Reason::TokenNotYetValid, "nbf is in the future"));
    }
    if let Some(iat) = numeric_date(c, "iat", "iat is not an integer NumericDate")?
        && iat > now.saturating_add(leeway)
    {
        return Err(deny(Reason::TokenNotYetValid, "iat is in the future"));
    }
    if c.get("iss").and_then(Value::as_str) != Some(client.issuer.as_str()) {
        return Err(deny(
            Reason::InvalidClaims,
            "iss does not equal the client's issuer",
        ));
    }
    let aud = audiences(c).map_err(Failure::Deny)?;
    if !client.audiences.iter().any(|a| aud.contains(&a.as_str())) {
        return Err(deny(
            Reason::InvalidClaims,
            "aud does not contain the client's audience",
        ));
    }
    if let Some(parties) = &client.authorized_parties {
        match c.get("azp") {
            Some(Value::String(azp)) if parties.iter().any(|p| p == azp) => {}
            _ => {
                return Err(deny(
                    Reason::InvalidClaims,
                    "azp is missing or not an authorized party",
                ));
            }
        }
    }
    if let Some(want) = &client.require_typ {
        let ok = jwt.header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(want)
                || t.get(..12)
                    .is_some_and(|p| p.eq_ignore_ascii_case("application/"))
                    && t[12..].eq_ignore_ascii_case(want)
        });
        if !ok {
            return Err(deny(
                Reason::InvalidClaims,
                "typ does not equal require_typ",
            ));
        }
    }
    Ok(())
}

/// Header, signature and claims for a token already routed to `client` (no refetch).
pub fn verify(
    client: &ClientConfig,
    state: &KeyState,
    available: bool,
    jwt: &Jwt<'_>,
    now: i64,
) -> Result<(), Failure> {
    let alg = check_header(client, jwt)?;
    check_signature(alg, state, available, jwt)?;
    check_claims(client, jwt, now)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::core::model::KeySource;
    use crate::testkit::{TestKey, key_state};

    const ISS: &str = "https://idp.example.org/realms/test";
    const NOW: i64 = 1_800_000_000;
    const LEEWAY: i64 = 30;

    fn client() -> ClientConfig {
        ClientConfig {
            name: "web".into(),
            issuer: ISS.into(),
            keys: KeySource::File("unused".into()),
            audiences: vec!["web-app".into()],
            authorized_parties: None,
            algorithms: vec![Alg::ES256, Alg::EdDSA],
            leeway: Duration::from_secs(LEEWAY as u64),
            require_typ: None,
            roles: vec![],
            headers: vec![],
            introspection: None,
            binding: crate::core::binding::BindingConfig::defaults(Duration::from_secs(
                LEEWAY as u64,
            )),
        }
    }

    /// Valid claims at `NOW`, with `extra` merged in (a `null` removes the member).
    fn claims(extra: Value) -> Value {
        let mut c =
            json!({"iss": ISS, "aud": "web-app", "sub": "u", "iat": NOW, "exp": NOW + 3600});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    /// The verdict for a token signed by `key` with `header` and `claims`, verified at `now`
    /// against a key set holding only `key`: `None` when it is accepted, else the deny reason.
    fn verdict(
        c: &ClientConfig,
        key: &TestKey,
        header: Value,
        claims: Value,
        now: i64,
    ) -> Option<Reason> {
        let token = key.sign(&header, &claims);
        let jwt = crate::core::token::parse(&token).unwrap();
        match verify(c, &key_state(&[key]), true, &jwt, now) {
            Ok(()) => None,
            Err(Failure::Deny(d)) => Some(d.reason),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    fn es256() -> TestKey {
        TestKey::generate(Alg::ES256, "k")
    }

    fn header() -> Value {
        json!({"alg": "ES256", "kid": "k", "typ": "JWT"})
    }

    #[test]
    fn the_baseline_token_is_accepted() {
        let key = es256();
        assert_eq!(
            verdict(&client(), &key, header(), claims(json!({})), NOW),
            None
        );
    }

    #[test]
    fn azp_must_be_an_authorized_party_when_they_are_configured() {
        let key = es256();
        let mut c = client();
        // not configured: azp is not looked at
        for azp in [json!("anyone"), json!(7), Value::Null] {
            let cl = claims(json!({ "azp": azp }));
            assert_eq!(verdict(&c, &key, header(), cl, NOW), None, "{azp}");
        }
        c.authorized_parties = Some(vec!["frontend".into(), "mobile".into()]);
        for azp in ["frontend", "mobile"] {
            let cl = claims(json!({ "azp": azp }));
            assert_eq!(verdict(&c, &key, header(), cl, NOW), None, "{azp}");
        }
        for azp in [
            json!("other"),
            json!("Frontend"),
            json!("frontend "),
            json!("front"),
            json!(["frontend"]),
            json!(1),
            Value::Null, // missing
        ] {
            let cl = claims(json!({ "azp": azp }));
            assert_eq!(
                verdict(&c, &key, header(), cl, NOW),
                Some(Reason::InvalidClaims),
                "azp {azp}"
            );
        }
    }

    #[test]
    fn require_typ_matches_case_insensitively_with_or_without_the_application_prefix() {
        let key = es256();
        let with_typ = |typ: Value| {
            let mut h = header();
            if typ.is_null() {
                h.as_object_mut().unwrap().remove("typ");
            } else {
                h["typ"] = typ;
            }
            h
        };
        let mut c = client();
        // not required: any typ, or none
        for typ in [json!("JWT"), json!("whatever"), Value::Null] {
            let v = verdict(&c, &key, with_typ(typ.clone()), claims(json!({})), NOW);
            assert_eq!(v, None, "{typ}");
        }
        c.require_typ = Some("at+jwt".into());
        for ok in [
            "at+jwt",
            "AT+JWT",
            "at+JWT",
            "application/at+jwt",
            "Application/AT+JWT",
        ] {
            let v = verdict(&c, &key, with_typ(json!(ok)), claims(json!({})), NOW);
            assert_eq!(v, None, "{ok}");
        }
        for bad in [
            json!("JWT"),
            json!("jwt"),
            json!("at+jwt "),
            json!("application/"),
            json!("application/JWT"),
            json!("xapplication/at+jwt"),
            json!("application/at+jwtx"),
            json!("xéééééé/at+jwt"), // byte 12 is inside a char: no panic
            Value::Null,             // missing
        ] {
            let v = verdict(&c, &key, with_typ(bad.clone()), claims(json!({})), NOW);
            assert_eq!(v, Some(Reason::InvalidClaims), "typ {bad}");
        }
    }

    #[test]
    fn exp_nbf_and_iat_leeway_boundaries() {
        let key = es256();
        let c = client();
        let at = |extra: Value| verdict(&c, &key, header(), claims(extra), NOW);
        // exp: usable while now < exp + leeway
        assert_eq!(at(json!({"exp": NOW - LEEWAY + 1})), None);
        assert_eq!(at(json!({"exp": NOW - LEEWAY})), Some(Reason::TokenExpired));
        assert_eq!(
            at(json!({"exp": NOW - LEEWAY - 1})),
            Some(Reason::TokenExpired)
        );
        // nbf and iat: not after now + leeway
        for claim in ["nbf", "iat"] {
            assert_eq!(at(json!({ claim: NOW + LEEWAY })), None, "{claim}");
            assert_eq!(at(json!({ claim: NOW + LEEWAY - 1 })), None, "{claim}");
            assert_eq!(
                at(json!({ claim: NOW + LEEWAY + 1 })),
                Some(Reason::TokenNotYetValid),
                "{claim}"
            );
            // absent is fine; a type error is not
            assert_eq!(at(json!({ claim: null })), None, "{claim}");
            for bad in [json!("1"), json!(1.5), json!(true)] {
                assert_eq!(
                    at(json!({ claim: bad })),
                    Some(Reason::InvalidClaims),
                    "{claim} {bad}"
                );
            }
        }
        // exp is required and must be an integer NumericDate
        assert_eq!(at(json!({"exp": null})), Some(Reason::InvalidClaims));
        for bad in [
            json!("1900000000"),
            json!(1.9e9),
            json!(null),
            json!([NOW + 60]),
        ] {
            let mut cl = claims(json!({}));
            cl["exp"] = bad.clone();
            assert_eq!(
                verdict(&c, &key, header(), cl, NOW),
                Some(Reason::InvalidClaims),
                "exp {bad}"
            );
        }
        // leeway 0: the second of exp is already expired, the one before is not
        let mut strict = client();
        strict.leeway = Duration::ZERO;
        let at0 = |extra: Value| verdict(&strict, &key, header(), claims(extra), NOW);
        assert_eq!(at0(json!({"exp": NOW})), Some(Reason::TokenExpired));
        assert_eq!(at0(json!({"exp": NOW + 1})), None);
        assert_eq!(at0(json!({"nbf": NOW})), None);
        assert_eq!(at0(json!({"nbf": NOW + 1})), Some(Reason::TokenNotYetValid));
    }

    #[test]
    fn a_crit_header_is_refused_whatever_it_lists() {
        let key = es256();
        let c = client();
        for crit in [
            json!(["exp"]),
            json!([]),
            json!(["b64"]),
            json!("exp"),
            json!(null),
        ] {
            let mut h = header();
            h["crit"] = crit.clone();
            assert_eq!(
                verdict(&c, &key, h, claims(json!({})), NOW),
                Some(Reason::InvalidClaims),
                "crit {crit}"
            );
        }
    }

    /// Issue 11 finding 6: a token without `kid` costs at most MAX_KIDLESS_KEYS signature checks.
    #[test]
    fn a_token_without_kid_is_tried_against_at_most_max_kidless_keys() {
        let keys: Vec<TestKey> = (0..=MAX_KIDLESS_KEYS)
            .map(|i| TestKey::generate(Alg::EdDSA, &format!("ed-{i}")))
            .collect();
        let all: Vec<&TestKey> = keys.iter().collect();
        let few = &all[..MAX_KIDLESS_KEYS];
        let signer = &keys[MAX_KIDLESS_KEYS - 1];
        let c = client();
        let cl = claims(json!({}));
        let kidless = signer.sign(&json!({"alg": "EdDSA"}), &cl);
        let jwt = crate::core::token::parse(&kidless).unwrap();
        let junk = {
            let other = TestKey::generate(Alg::EdDSA, "other");
            other.sign(&json!({"alg": "EdDSA"}), &cl)
        };
        let junk = crate::core::token::parse(&junk).unwrap();
        // up to MAX_KIDLESS_KEYS keys for the alg: tried
        assert_eq!(verify(&c, &key_state(few), true, &jwt, NOW), Ok(()));
        assert_eq!(
            verify(&c, &key_state(few), true, &junk, NOW),
            Err(deny(
                Reason::InvalidSignature,
                "the signature does not verify with any key"
            ))
        );
        // one more: refused before any signature check, a valid signature included
        assert_eq!(
            verify(&c, &key_state(&all), true, &jwt, NOW),
            Err(Failure::KidRequired)
        );
        assert_eq!(
            verify(&c, &key_state(&all), true, &junk, NOW),
            Err(Failure::KidRequired)
        );
        // keys for other algs do not count
        let ec: Vec<TestKey> = (0..8)
            .map(|i| TestKey::generate(Alg::ES256, &format!("ec-{i}")))
            .collect();
        let mut mixed: Vec<&TestKey> = ec.iter().collect();
        mixed.extend_from_slice(few);
        assert_eq!(verify(&c, &key_state(&mixed), true, &jwt, NOW), Ok(()));
        // with its kid the same token verifies in the large set
        let with_kid = signer.token(&cl);
        let with_kid = crate::core::token::parse(&with_kid).unwrap();
        assert_eq!(verify(&c, &key_state(&all), true, &with_kid, NOW), Ok(()));
        assert!(KID_REQUIRED.contains(&format!("more than {MAX_KIDLESS_KEYS} keys")));
    }
}
