//! Keys and tokens for tests, benchmarks and the demo: generate a key pair, publish its JWK,
//! mint well-formed tokens with `jsonwebtoken` (the library an issuer would use: [`TestKey::token`],
//! [`TestKey::token_with`]), and sign arbitrary (even hostile) headers and claims byte by byte
//! ([`TestKey::sign`], [`TestKey::sign_bytes`]) where a test needs what no library would produce.
//! Never used by `serve`; the keys live only in memory of the process that made them.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::keys::Alg;

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A signing key with its kid and default algorithm.
pub struct TestKey {
    pub kid: String,
    pub alg: Alg,
    pair: Pair,
    /// The private key as `jsonwebtoken` takes it: PKCS#1 `RSAPrivateKey` for RSA, PKCS#8 for
    /// EC and Ed25519.
    der: Vec<u8>,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

impl TestKey {
    /// Generate a key for `alg` (RSA 2048 for RS*/PS*).
    pub fn generate(alg: Alg, kid: &str) -> TestKey {
        Self::try_generate(alg, kid).expect("key generation")
    }

    pub fn try_generate(alg: Alg, kid: &str) -> Result<TestKey, aws_lc_rs::error::Unspecified> {
        let pair = match alg {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                Pair::Rsa(RsaKeyPair::generate(KeySize::Rsa2048)?)
            }
            Alg::ES256 => Pair::Ec(EcdsaKeyPair::generate(
                &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            )?),
            Alg::ES384 => Pair::Ec(EcdsaKeyPair::generate(
                &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            )?),
            Alg::EdDSA => Pair::Ed(Ed25519KeyPair::generate()?),
        };
        let der = match &pair {
            Pair::Rsa(k) => {
                let pkcs8 = k.as_der()?;
                pkcs8_private_key(pkcs8.as_ref())
                    .ok_or(aws_lc_rs::error::Unspecified)?
                    .to_vec()
            }
            Pair::Ec(k) => k.to_pkcs8v1()?.as_ref().to_vec(),
            Pair::Ed(k) => k.to_pkcs8v1()?.as_ref().to_vec(),
        };
        Ok(TestKey {
            kid: kid.to_owned(),
            alg,
            pair,
            der,
        })
    }

    /// The private key for `jsonwebtoken::encode`.
    pub fn encoding_key(&self) -> jsonwebtoken::EncodingKey {
        match &self.pair {
            Pair::Rsa(_) => jsonwebtoken::EncodingKey::from_rsa_der(&self.der),
            Pair::Ec(_) => jsonwebtoken::EncodingKey::from_ec_der(&self.der),
            Pair::Ed(_) => jsonwebtoken::EncodingKey::from_ed_der(&self.der),
        }
    }

    pub fn rsa(kid: &str) -> TestKey {
        Self::generate(Alg::RS256, kid)
    }

    /// The public JWK (with `kid`, `use: sig`; `alg` only if `with_alg`).
    pub fn jwk(&self, with_alg: bool) -> Value {
        let mut v = match &self.pair {
            Pair::Rsa(k) => {
                let p = k.public_key();
                json!({"kty": "RSA", "n": b64(p.modulus().big_endian_without_leading_zero()),
                       "e": b64(p.exponent().big_endian_without_leading_zero())})
            }
            Pair::Ec(k) => {
                let pt = k.public_key().as_ref();
                let n = (pt.len() - 1) / 2;
                let crv = if n == 32 { "P-256" } else { "P-384" };
                json!({"kty": "EC", "crv": crv, "x": b64(&pt[1..1 + n]), "y": b64(&pt[1 + n..])})
            }
            Pair::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
        };
        v["kid"] = json!(self.kid);
        v["use"] = json!("sig");
        if with_alg {
            v["alg"] = json!(self.alg.name());
        }
        v
    }

    /// Raw signature over `msg` with `alg` (must fit the key type).
    pub fn sign_raw(&self, alg: Alg, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(k) => {
                let enc: &'static dyn sig::RsaEncoding = match alg {
                    Alg::RS256 => &sig::RSA_PKCS1_SHA256,
                    Alg::RS384 => &sig::RSA_PKCS1_SHA384,
                    Alg::RS512 => &sig::RSA_PKCS1_SHA512,
                    Alg::PS256 => &sig::RSA_PSS_SHA256,
                    Alg::PS384 => &sig::RSA_PSS_SHA384,
                    _ => &sig::RSA_PSS_SHA512,
                };
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(enc, &rng, msg, &mut out).expect("rsa sign");
                out
            }
            Pair::Ec(k) => k.sign(&rng, msg).expect("ecdsa sign").as_ref().to_vec(),
            Pair::Ed(k) => k.sign(msg).as_ref().to_vec(),
        }
    }

    /// Sign any header and claims (no checks: tests craft hostile tokens with this).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        self.sign_bytes(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }

    /// Sign raw header/claims bytes (for duplicate members, BOMs, trailing data…).
    pub fn sign_bytes(&self, header: &[u8], claims: &[u8]) -> String {
        let input = format!("{}.{}", b64(header), b64(claims));
        let alg = std::str::from_utf8(header)
            .ok()
            .and_then(|h| serde_json::from_str::<Value>(h).ok())
            .and_then(|h| h.get("alg").and_then(Value::as_str).and_then(Alg::parse))
            .filter(|a| a.key_type() == self.alg.key_type())
            .unwrap_or(self.alg);
        let s = self.sign_raw(alg, input.as_bytes());
        format!("{input}.{}", b64(&s))
    }

    /// A normal token, minted by `jsonwebtoken`: header `{typ: JWT, alg, kid}`.
    pub fn token(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jwt_alg(self.alg));
        header.kid = Some(self.kid.clone());
        self.token_with(&header, claims)
    }

    /// A well-formed token with this `jsonwebtoken` header (another `alg` of the key's type,
    /// another `typ`, no `kid`…), minted by `jsonwebtoken`.
    pub fn token_with(&self, header: &jsonwebtoken::Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding_key()).expect("jsonwebtoken encode")
    }
}

/// The `jsonwebtoken` name of an algorithm.
pub fn jwt_alg(alg: Alg) -> jsonwebtoken::Algorithm {
    use jsonwebtoken::Algorithm as J;
    match alg {
        Alg::RS256 => J::RS256,
        Alg::RS384 => J::RS384,
        Alg::RS512 => J::RS512,
        Alg::PS256 => J::PS256,
        Alg::PS384 => J::PS384,
        Alg::PS512 => J::PS512,
        Alg::ES256 => J::ES256,
        Alg::ES384 => J::ES384,
        Alg::EdDSA => J::EdDSA,
    }
}

/// One DER TLV at the start of `b`: (tag, contents, rest). Short and long definite lengths only.
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let (bytes, rest) = b.split_at(n);
        b = rest;
        bytes
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x))
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

/// The `privateKey` OCTET STRING of a PKCS#8 `PrivateKeyInfo` (for RSA: the PKCS#1 key).
fn pkcs8_private_key(pkcs8: &[u8]) -> Option<&[u8]> {
    let (0x30, info, _) = der_tlv(pkcs8)? else {
        return None;
    };
    let (0x02, _version, rest) = der_tlv(info)? else {
        return None;
    };
    let (0x30, _algorithm, rest) = der_tlv(rest)? else {
        return None;
    };
    let (0x04, key, _) = der_tlv(rest)? else {
        return None;
    };
    Some(key)
}

/// A JWKS document with the given keys' public JWKs.
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk(true)).collect::<Vec<_>>()}).to_string()
}

/// A loaded key state holding the given keys' public JWKs (for the pure verification functions).
pub fn key_state(keys: &[&TestKey]) -> crate::core::ports::KeyState {
    let parsed =
        crate::keys::parse_jwks(jwks(keys).as_bytes(), "testkit").expect("test keys parse");
    crate::core::ports::KeyState {
        keys: parsed.into(),
        generation: 1,
        ..Default::default()
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Standard claims for `iss`/`aud`, valid for an hour, plus `extra` merged in.
pub fn claims(iss: &str, aud: Value, extra: Value) -> Value {
    let now = now();
    let mut c = json!({"iss": iss, "aud": aud, "sub": "user-1", "iat": now, "exp": now + 3600});
    if let (Some(m), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    c
}
