//! Route a parsed token to exactly one client, then verify it against that client's keys
//! (DESIGN §4 steps 2–6). Pure: takes the snapshot, the key state and `now`, returns a
//! verdict. The one thing it cannot do itself — refetch a key set for an unknown `kid` — it
//! reports as [`Failure::UnknownKid`] so the async caller can refetch once and call again.

use serde_json::{Map, Value};

use crate::config::ClientConfig;
use crate::decision::{Deny, Reason};
use crate::jwks::KeyState;
use crate::keys::Alg;
use crate::snapshot::Snapshot;
use crate::token::Jwt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Deny(Deny),
    /// The `kid` is not in the key set at `generation`: refetch (rate limited) and retry once.
    UnknownKid {
        generation: u64,
    },
}

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
            let mut candidates = state.keys.iter().filter(|k| k.supports(alg)).peekable();
            if candidates.peek().is_none() {
                return Err(deny(
                    Reason::UnknownKey,
                    "no key of the key set can verify this alg",
                ));
            }
            if candidates.any(|k| k.verify(alg, msg, &jwt.signature)) {
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
