//! Pure key material: signature algorithms, JWK / JWKS parsing, and a parsed [`Key`] that
//! verifies a signature. No HTTP, no tokio, no config: the key-set fetcher (`outside`) fetches documents and
//! hands the bytes here; everything that decides whether a published key is usable lives here,
//! so it can be tested (and fuzzed) without a network.
//!
//! Keys that cannot or must not be used are refused with a [`KeyError`] naming why; a JWKS
//! document with no usable key at all is a [`JwksError`].

use std::fmt;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use serde_json::Value;

/// Signature algorithms we verify. HMAC is deliberately absent (public keys only).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// JWK key types we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Alg {
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// Exact, case-sensitive names (RFC 7518): `none`, `None`, `rs256` are not algorithms here.
    pub fn parse(s: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == s)
    }

    pub const fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub const fn key_type(self) -> KeyType {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                KeyType::Rsa
            }
            Alg::ES256 => KeyType::P256,
            Alg::ES384 => KeyType::P384,
            Alg::EdDSA => KeyType::Ed25519,
        }
    }

    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Alg::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Alg::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Alg::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Alg::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Alg::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Alg::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            // JWS uses the fixed-width r||s encoding (RFC 7518 §3.4), never DER.
            Alg::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Alg::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            Alg::EdDSA => &sig::ED25519,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One usable public key with its verifiers built for each algorithm it may be used with.
pub struct Key {
    pub kid: Option<String>,
    pub key_type: KeyType,
    /// The JWK's own `alg`, when it named one.
    pub alg: Option<Alg>,
    verifiers: Vec<(Alg, ParsedPublicKey)>,
    /// Public key bytes, to tell whether a refetch changed anything.
    pub(crate) material: Vec<u8>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("key_type", &self.key_type)
            .field("alg", &self.alg)
            .finish()
    }
}

impl Key {
    /// Is this key allowed to verify `alg` (key type, curve and the JWK's own `alg`)?
    pub fn supports(&self, alg: Alg) -> bool {
        self.verifiers.iter().any(|(a, _)| *a == alg)
    }

    /// Verify a signature with the pre-parsed key. `false` for a wrong signature or an
    /// algorithm this key may not be used with.
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .is_some_and(|(_, k)| k.verify_sig(message, signature).is_ok())
    }
}

/// Why one JWK is not used (logged as the reason it was skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a JSON object")]
    NotObject,
    #[error("use is not sig")]
    NotForSignatures,
    #[error("key_ops does not include verify")]
    NoVerifyOp,
    #[error("kid is not a string")]
    KidNotString,
    #[error("alg is not a supported signature algorithm")]
    UnsupportedAlg,
    #[error("alg is not a string")]
    AlgNotString,
    #[error("a required member is missing")]
    MissingMember,
    #[error("a member is not base64url")]
    NotBase64Url,
    #[error("RSA modulus shorter than 2048 bits")]
    RsaTooShort,
    #[error("RSA modulus longer than 8192 bits")]
    RsaTooLong,
    #[error("RSA exponent is zero")]
    RsaZeroExponent,
    #[error("RSA key has the ROCA fingerprint (CVE-2017-15361): its factors are recoverable")]
    RsaRoca,
    #[error("unsupported EC curve")]
    UnsupportedEcCurve,
    #[error("EC coordinates have the wrong length")]
    EcWrongLength,
    #[error("unsupported OKP curve")]
    UnsupportedOkpCurve,
    #[error("Ed25519 key has the wrong length")]
    Ed25519WrongLength,
    #[error("Ed25519 key is not canonically encoded (y >= p)")]
    Ed25519NonCanonical,
    #[error(
        "Ed25519 key is a small-order point: signatures for it can be forged without a private key"
    )]
    Ed25519SmallOrder,
    #[error("symmetric (oct) keys are never used")]
    Symmetric,
    #[error("unknown kty")]
    UnknownKty,
    #[error("alg does not fit the key type")]
    AlgKeyTypeMismatch,
    #[error("the key material is invalid")]
    InvalidMaterial,
}

/// Why a whole JWKS document is not used (the last good keys are kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS is not a JSON object: {0}")]
    NotObject(String),
    #[error("JWKS has no `keys` array")]
    NoKeysArray,
    #[error("JWKS has no usable signing key")]
    NoUsableKey,
}

/// The most usable keys kept from one JWKS document (in document order); the rest are ignored
/// with one warning. Real IdPs publish a handful; a key set of thousands makes every lookup and
/// every kid-less token costlier (issue 11 finding 6).
pub const MAX_KEYS_PER_SET: usize = 100;

/// Parse a JWKS document; skip (with a warning) every key we cannot or must not use, and keep at
/// most [`MAX_KEYS_PER_SET`] usable keys. A document with no usable key at all is an error (the
/// last good keys are kept).
pub fn parse_jwks(bytes: &[u8], key_set: &str) -> Result<Vec<Key>, JwksError> {
    let doc = crate::json::strict_object(bytes).map_err(|e| JwksError::NotObject(e.to_string()))?;
    let Some(Value::Array(items)) = doc.get("keys") else {
        return Err(JwksError::NoKeysArray);
    };
    let mut keys: Vec<Key> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if keys.len() == MAX_KEYS_PER_SET {
            tracing::warn!(
                key_set,
                kept = MAX_KEYS_PER_SET,
                ignored = items.len() - i,
                "JWKS has more keys than the per-set cap; ignoring the rest (not parsed)"
            );
            break;
        }
        match parse_jwk(item) {
            Ok(k) => {
                if k.kid.is_some() && keys.iter().any(|o| o.kid == k.kid) {
                    tracing::warn!(key_set, index = i, kid = ?k.kid, "duplicate kid in JWKS; keeping the first");
                    continue;
                }
                keys.push(k);
            }
            Err(why) => tracing::warn!(key_set, index = i, reason = %why, "skipping unusable JWK"),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(keys)
}

fn b64_field(obj: &serde_json::Map<String, Value>, name: &str) -> Result<Vec<u8>, KeyError> {
    let s = obj
        .get(name)
        .and_then(Value::as_str)
        .ok_or(KeyError::MissingMember)?;
    // Tolerate padding in key material (some IdPs pad); the alphabet must be base64url.
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| KeyError::NotBase64Url)
}

/// One JWK → a usable key, or why not.
pub fn parse_jwk(v: &Value) -> Result<Key, KeyError> {
    let obj = v.as_object().ok_or(KeyError::NotObject)?;
    let text = |n: &str| obj.get(n).and_then(Value::as_str);
    if let Some(u) = obj.get("use")
        && u.as_str() != Some("sig")
    {
        return Err(KeyError::NotForSignatures);
    }
    if let Some(ops) = obj.get("key_ops") {
        let ok = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
        if !ok {
            return Err(KeyError::NoVerifyOp);
        }
    }
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(KeyError::KidNotString),
    };
    let jwk_alg = match obj.get("alg") {
        None => None,
        Some(Value::String(s)) => Some(Alg::parse(s).ok_or(KeyError::UnsupportedAlg)?),
        Some(_) => return Err(KeyError::AlgNotString),
    };
    let (key_type, material) = match text("kty") {
        Some("RSA") => {
            let n = b64_field(obj, "n")?;
            let e = b64_field(obj, "e")?;
            let n = strip_leading_zeros(&n);
            let e = strip_leading_zeros(&e);
            let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
            if bits < 2048 {
                return Err(KeyError::RsaTooShort);
            }
            if bits > 8192 {
                return Err(KeyError::RsaTooLong);
            }
            if e.is_empty() {
                return Err(KeyError::RsaZeroExponent);
            }
            if has_roca_fingerprint(n) {
                return Err(KeyError::RsaRoca);
            }
            (KeyType::Rsa, rsa_public_key_der(n, e))
        }
        Some("EC") => {
            let (kt, len) = match text("crv") {
                Some("P-256") => (KeyType::P256, 32),
                Some("P-384") => (KeyType::P384, 48),
                _ => return Err(KeyError::UnsupportedEcCurve),
            };
            let x = b64_field(obj, "x")?;
            let y = b64_field(obj, "y")?;
            if x.len() != len || y.len() != len {
                return Err(KeyError::EcWrongLength);
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (kt, point)
        }
        Some("OKP") => {
            if text("crv") != Some("Ed25519") {
                return Err(KeyError::UnsupportedOkpCurve);
            }
            let x = b64_field(obj, "x")?;
            let encoded: &[u8; 32] = x
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::Ed25519WrongLength)?;
            ed25519_public_key_check(encoded)?;
            (KeyType::Ed25519, x)
        }
        Some("oct") => return Err(KeyError::Symmetric),
        _ => return Err(KeyError::UnknownKty),
    };
    if let Some(a) = jwk_alg
        && a.key_type() != key_type
    {
        return Err(KeyError::AlgKeyTypeMismatch);
    }
    let mut verifiers = Vec::new();
    for alg in Alg::ALL {
        if alg.key_type() != key_type || jwk_alg.is_some_and(|a| a != alg) {
            continue;
        }
        let parsed = ParsedPublicKey::new(alg.verification(), &material)
            .map_err(|_| KeyError::InvalidMaterial)?;
        verifiers.push((alg, parsed));
    }
    Ok(Key {
        kid,
        key_type,
        alg: jwk_alg,
        verifiers,
        material,
    })
}

/// p = 2^255 - 19, little-endian (the Ed25519 field prime).
const ED25519_P: [u8; 32] = {
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

/// The y-coordinates (little-endian, canonical) of the eight points of order dividing 8:
/// y = 1 (the identity, x = 0), y = p − 1 (order 2, x = 0), y = 0 (order 4, x = ±√−1), and
/// y = ±Y8 (order 8, two x each). A public key with one of these y — whatever its sign bit —
/// is a small-order point.
const ED25519_SMALL_ORDER_Y: [[u8; 32]; 5] = {
    let mut one = [0; 32];
    one[0] = 1;
    let mut p_minus_1 = ED25519_P;
    p_minus_1[0] = 0xec;
    [
        [0; 32],
        one,
        p_minus_1,
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
            0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
            0x92, 0xac, 0x03, 0x7a,
        ],
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef,
            0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88,
            0x6d, 0x53, 0xfc, 0x05,
        ],
    ]
};

/// Refuse Ed25519 public keys that make forgery possible or are ambiguous (RFC 8032 §5.1.3
/// decoding; "Taming the many EdDSAs", 2020): a y-coordinate ≥ p (non-canonical: another
/// encoding of the same point, or none), and the eight small-order points in every encoding
/// (for those, R = identity and S = 0 verifies for a large share of messages — no private key
/// needed). Mixed-order keys (a large point plus a torsion component) are not detected; with a
/// cofactorless verifier they do not allow forgery.
fn ed25519_public_key_check(encoded: &[u8; 32]) -> Result<(), KeyError> {
    let mut y = *encoded;
    y[31] &= 0x7f; // the top bit is the sign of x
    // little-endian comparison: the most significant byte is the last
    let less_than_p = y.iter().rev().cmp(ED25519_P.iter().rev()).is_lt();
    if !less_than_p {
        return Err(KeyError::Ed25519NonCanonical);
    }
    if ED25519_SMALL_ORDER_Y.contains(&y) {
        return Err(KeyError::Ed25519SmallOrder);
    }
    Ok(())
}

/// ROCA (CVE-2017-15361): keys from the affected Infineon library have primes
/// `p = k·M + (65537^a mod M)`, `M` a primorial, so for every small prime `r` dividing `M`,
/// `p mod r` — and hence `n mod r` — lies in the subgroup generated by 65537 mod `r`. A modulus
/// passing that test for all the primes below is (with negligible error) such a key.
fn has_roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&r| {
        let rem = n
            .iter()
            .fold(0u32, |acc, &b| (acc * 256 + u32::from(b)) % r);
        // walk the cyclic subgroup <65537 mod r>
        let g = 65537 % r;
        let mut x = 1 % r;
        loop {
            if x == rem {
                return true;
            }
            x = (x * g) % r;
            if x == 1 % r {
                return false;
            }
        }
    })
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&x| x == 0).count();
    &b[n..]
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (PKCS#1).
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, v: &[u8]) {
        let pad = v.first().is_some_and(|b| b & 0x80 != 0);
        out.push(0x02);
        der_len(out, v.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    integer(&mut body, n);
    integer(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(0x30);
    der_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn der_lengths() {
        let mut v = Vec::new();
        der_len(&mut v, 0x7f);
        assert_eq!(v, [0x7f]);
        v.clear();
        der_len(&mut v, 0x80);
        assert_eq!(v, [0x81, 0x80]);
        v.clear();
        der_len(&mut v, 0x1234);
        assert_eq!(v, [0x82, 0x12, 0x34]);
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let b = |n: usize| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(vec![0xffu8; n]);
        use KeyError as E;
        let cases = [
            (json!({"kty": "oct", "k": "c2VjcmV0"}), E::Symmetric),
            (
                json!({"kty": "RSA", "use": "enc", "n": b(256), "e": "AQAB"}),
                E::NotForSignatures,
            ),
            (
                json!({"kty": "RSA", "n": b(128), "e": "AQAB"}),
                E::RsaTooShort,
            ),
            (
                json!({"kty": "RSA", "n": b(1025), "e": "AQAB"}),
                E::RsaTooLong,
            ),
            (
                json!({"kty": "RSA", "n": b(256), "e": "AA"}),
                E::RsaZeroExponent,
            ),
            (
                json!({"kty": "RSA", "n": "!!", "e": "AQAB"}),
                E::NotBase64Url,
            ),
            (json!({"kty": "RSA", "e": "AQAB"}), E::MissingMember),
            (
                json!({"kty": "EC", "crv": "P-521", "x": b(66), "y": b(66)}),
                E::UnsupportedEcCurve,
            ),
            (
                json!({"kty": "EC", "crv": "secp256k1", "x": b(32), "y": b(32)}),
                E::UnsupportedEcCurve,
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": b(32), "y": b(31)}),
                E::EcWrongLength,
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": b(32), "y": b(32)}),
                E::InvalidMaterial,
            ),
            (
                json!({"kty": "OKP", "crv": "X25519", "x": b(32)}),
                E::UnsupportedOkpCurve,
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": b(31)}),
                E::Ed25519WrongLength,
            ),
            (json!({"kty": "XYZ"}), E::UnknownKty),
            (
                json!({"kty": "RSA", "alg": "HS256", "n": b(256), "e": "AQAB"}),
                E::UnsupportedAlg,
            ),
            (
                json!({"kty": "RSA", "alg": 256, "n": b(256), "e": "AQAB"}),
                E::AlgNotString,
            ),
            (
                json!({"kty": "RSA", "kid": 1, "n": b(256), "e": "AQAB"}),
                E::KidNotString,
            ),
            (
                json!({"kty": "RSA", "alg": "ES256", "n": b(256), "e": "AQAB"}),
                E::AlgKeyTypeMismatch,
            ),
            (
                json!({"kty": "RSA", "key_ops": ["encrypt"], "n": b(256), "e": "AQAB"}),
                E::NoVerifyOp,
            ),
            (json!("not an object"), E::NotObject),
        ];
        for (c, want) in &cases {
            assert_eq!(parse_jwk(c).err(), Some(*want), "{c}");
        }
        let cases: Vec<Value> = cases.into_iter().map(|(c, _)| c).collect();
        let doc = json!({"keys": cases}).to_string();
        assert!(
            parse_jwks(doc.as_bytes(), "t").is_err(),
            "no usable key is an error"
        );
        assert!(parse_jwks(b"{\"keys\": 1}", "t").is_err());
        assert!(parse_jwks(b"[]", "t").is_err());
    }

    #[test]
    fn roca_fingerprint() {
        // Ordinary generated keys never carry it.
        for kid in ["a", "b", "c", "d"] {
            let k = crate::testkit::TestKey::generate(Alg::RS256, kid);
            let jwk = k.jwk(false);
            let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(jwk["n"].as_str().unwrap())
                .unwrap();
            assert!(!has_roca_fingerprint(&n));
        }
        // 65537^k itself (k = 1, 2, 3) is in the subgroup modulo every prime.
        for k in 1..=3u32 {
            let mut v: Vec<u8> = vec![1];
            for _ in 0..k {
                // v *= 65537 (big-endian bytes)
                let mut carry = 0u64;
                for b in v.iter_mut().rev() {
                    let t = u64::from(*b) * 65537 + carry;
                    *b = (t & 0xff) as u8;
                    carry = t >> 8;
                }
                while carry > 0 {
                    v.insert(0, (carry & 0xff) as u8);
                    carry >>= 8;
                }
            }
            assert!(has_roca_fingerprint(&v), "65537^{k}");
        }
    }

    #[test]
    fn a_key_set_keeps_at_most_max_keys_per_set_usable_keys() {
        let key = crate::testkit::TestKey::generate(Alg::EdDSA, "k");
        let jwk = |i: usize| {
            let mut j = key.jwk(false);
            j["kid"] = json!(format!("k{i}"));
            j
        };
        // unusable keys do not count toward the cap
        let mut items: Vec<Value> = vec![json!({"kty": "oct", "k": "c2VjcmV0"}); 5];
        items.extend((0..MAX_KEYS_PER_SET + 50).map(jwk));
        let keys = parse_jwks(json!({ "keys": items }).to_string().as_bytes(), "t").unwrap();
        assert_eq!(keys.len(), MAX_KEYS_PER_SET);
        assert_eq!(keys[0].kid.as_deref(), Some("k0"), "document order");
        assert_eq!(
            keys[MAX_KEYS_PER_SET - 1].kid.as_deref(),
            Some(format!("k{}", MAX_KEYS_PER_SET - 1).as_str())
        );
    }

    #[test]
    fn alg_names_are_exact() {
        assert_eq!(Alg::parse("RS256"), Some(Alg::RS256));
        for bad in ["none", "None", "NONE", "rs256", "HS256", "", "RS256 "] {
            assert_eq!(Alg::parse(bad), None, "{bad}");
        }
    }
}
