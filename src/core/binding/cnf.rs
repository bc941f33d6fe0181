//! The token's `cnf` (confirmation) claim (RFC 7800 §3.1): which binding a verified token asks
//! for, and whether the request's `Authorization` scheme fits it (DESIGN §10).
//!
//! Supported confirmation methods: `jkt` (RFC 9449 §6.1, DPoP) and `x5t#S256` (RFC 8705 §3.1,
//! mTLS). Both may be present; then both must hold. Each must be a string of exactly 43
//! canonical base64url characters (a SHA-256 digest). Anything else — `cnf` not an object, a
//! member of the wrong type or length, or a `cnf` naming only methods we do not enforce (`jwk`,
//! `kid`, `jwe`, `jku`, …) — is refused as `invalid_claims` ([`BindingError::CnfMalformed`] /
//! [`BindingError::CnfUnsupported`]): a token asking to be sender-constrained in a way we
//! cannot check is never treated as a bearer token.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::BindingError;

/// The length of an unpadded base64url SHA-256 digest.
pub const THUMBPRINT_B64_LEN: usize = 43;

/// What a token's `cnf` asks for. At least one member is `Some`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Confirmation<'a> {
    /// `cnf.jkt`: the RFC 7638 thumbprint of the DPoP key (base64url, 43 characters).
    pub jkt: Option<&'a str>,
    /// `cnf["x5t#S256"]`: the client certificate's SHA-256 thumbprint (base64url, 43 characters).
    pub x5t_s256: Option<&'a str>,
}

// Presence only: thumbprints are public, but keep request-derived values out of Debug output.
impl fmt::Debug for Confirmation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Confirmation")
            .field("jkt", &self.jkt.is_some())
            .field("x5t_s256", &self.x5t_s256.is_some())
            .finish()
    }
}

/// The binding a verified token asks for: `Ok(None)` for no `cnf` (a bearer token).
pub fn confirmation(claims: &Map<String, Value>) -> Result<Option<Confirmation<'_>>, BindingError> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(None);
    };
    let cnf = cnf.as_object().ok_or(BindingError::CnfMalformed)?;
    let member = |name: &str| -> Result<Option<&str>, BindingError> {
        match cnf.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if is_sha256_b64(s) => Ok(Some(s.as_str())),
            Some(_) => Err(BindingError::CnfMalformed),
        }
    };
    let found = Confirmation {
        jkt: member("jkt")?,
        x5t_s256: member("x5t#S256")?,
    };
    if found.jkt.is_none() && found.x5t_s256.is_none() {
        return Err(BindingError::CnfUnsupported);
    }
    Ok(Some(found))
}

/// Exactly 43 base64url characters that decode canonically to 32 bytes.
pub(crate) fn is_sha256_b64(s: &str) -> bool {
    decode_sha256_b64(s).is_some()
}

/// Decode a 43-character base64url SHA-256 digest without allocating.
pub(crate) fn decode_sha256_b64(s: &str) -> Option<[u8; 32]> {
    if s.len() != THUMBPRINT_B64_LEN {
        return None;
    }
    let mut out = [0u8; 33]; // decode_slice wants room for a whole last quantum
    match URL_SAFE_NO_PAD.decode_slice(s, &mut out) {
        Ok(32) => {
            let mut digest = [0u8; 32];
            digest.copy_from_slice(&out[..32]);
            Some(digest)
        }
        _ => None,
    }
}

/// Encode a SHA-256 digest as unpadded base64url into a stack buffer.
pub(crate) fn encode_sha256_b64(digest: &[u8]) -> [u8; THUMBPRINT_B64_LEN] {
    let mut out = [0u8; THUMBPRINT_B64_LEN];
    // 32 bytes always encode to exactly 43 characters; other lengths never reach here.
    let _ = URL_SAFE_NO_PAD.encode_slice(digest, &mut out);
    out
}

/// The `Authorization` scheme the token arrived with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    Bearer,
    Dpop,
}

/// DESIGN §10 scheme rules, before any proof or certificate is looked at:
/// `binding.require` and no `cnf` → `binding_required`; a DPoP-bound token sent as `Bearer`
/// (a downgrade) → `binding_mismatch`; the `DPoP` scheme with a token that has no `cnf.jkt`
/// → `binding_mismatch`.
pub fn check_scheme(
    cnf: Option<&Confirmation<'_>>,
    scheme: AuthScheme,
    require: bool,
) -> Result<(), BindingError> {
    let jkt = cnf.is_some_and(|c| c.jkt.is_some());
    if cnf.is_none() && require {
        return Err(BindingError::BindingRequired);
    }
    match scheme {
        AuthScheme::Bearer if jkt => Err(BindingError::BearerWithBoundToken),
        AuthScheme::Dpop if !jkt => Err(BindingError::DpopWithoutJkt),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn no_cnf_is_a_bearer_token() {
        assert_eq!(confirmation(&claims(json!({"sub": "a"}))), Ok(None));
    }

    #[test]
    fn jkt_x5t_and_both() {
        let c = claims(json!({"cnf": {"jkt": JKT}}));
        let got = confirmation(&c).unwrap().unwrap();
        assert_eq!((got.jkt, got.x5t_s256), (Some(JKT), None));
        let c = claims(json!({"cnf": {"x5t#S256": JKT}}));
        let got = confirmation(&c).unwrap().unwrap();
        assert_eq!((got.jkt, got.x5t_s256), (None, Some(JKT)));
        let c = claims(json!({"cnf": {"jkt": JKT, "x5t#S256": JKT, "kid": "ignored"}}));
        let got = confirmation(&c).unwrap().unwrap();
        assert_eq!((got.jkt, got.x5t_s256), (Some(JKT), Some(JKT)));
    }

    #[test]
    fn malformed_cnf_is_invalid_claims() {
        for bad in [
            json!({"cnf": "x"}),
            json!({"cnf": {"jkt": 5}}),
            json!({"cnf": {"jkt": &JKT[..42]}}),
            json!({"cnf": {"jkt": format!("{JKT}A")}}),
            json!({"cnf": {"jkt": JKT.replace('-', "+")}}),
            // non-canonical: last character carries non-zero trailing bits
            json!({"cnf": {"jkt": format!("{}J", &JKT[..42])}}),
            json!({"cnf": {"x5t#S256": null}}),
        ] {
            let err = confirmation(&claims(bad.clone())).unwrap_err();
            assert_eq!(err, BindingError::CnfMalformed, "{bad}");
            assert_eq!(err.reason_code(), "invalid_claims");
        }
        let err = confirmation(&claims(json!({"cnf": {"jwk": {}}}))).unwrap_err();
        assert_eq!(err, BindingError::CnfUnsupported);
        assert_eq!(
            confirmation(&claims(json!({"cnf": {}}))).unwrap_err(),
            BindingError::CnfUnsupported
        );
    }

    #[test]
    fn scheme_rules() {
        let dpop = Confirmation {
            jkt: Some(JKT),
            x5t_s256: None,
        };
        let mtls = Confirmation {
            jkt: None,
            x5t_s256: Some(JKT),
        };
        use AuthScheme::*;
        assert_eq!(
            check_scheme(Some(&dpop), Bearer, false),
            Err(BindingError::BearerWithBoundToken)
        );
        assert_eq!(check_scheme(Some(&dpop), Dpop, false), Ok(()));
        assert_eq!(
            check_scheme(None, Dpop, false),
            Err(BindingError::DpopWithoutJkt)
        );
        assert_eq!(
            check_scheme(Some(&mtls), Dpop, false),
            Err(BindingError::DpopWithoutJkt)
        );
        assert_eq!(check_scheme(Some(&mtls), Bearer, true), Ok(()));
        assert_eq!(check_scheme(None, Bearer, false), Ok(()));
        assert_eq!(
            check_scheme(None, Bearer, true),
            Err(BindingError::BindingRequired)
        );
    }

    #[test]
    fn debug_shows_presence_only() {
        let c = Confirmation {
            jkt: Some(JKT),
            x5t_s256: None,
        };
        assert!(!format!("{c:?}").contains(JKT));
    }
}
