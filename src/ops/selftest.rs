//! Startup self-test of the signature stack.
//!
//! `jsonwebtoken` 11 picks its crypto backend from crate features and panics at first use when
//! zero or two backends are enabled. We enable exactly one (`aws_lc_rs`); this test proves it at
//! startup — sign with `jsonwebtoken`, verify with `jsonwebtoken` and with our own pre-parsed
//! verifier — and turns a panic into a clear error instead of a crash on the first Check.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use crate::keys::{Alg, parse_jwk};

#[derive(Debug, thiserror::Error)]
#[error("crypto self-test failed: {0}")]
pub struct SelfTestError(String);

pub fn run() -> Result<(), SelfTestError> {
    match std::panic::catch_unwind(inner) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("panic");
            Err(SelfTestError(format!(
                "the jsonwebtoken crypto backend is misconfigured (exactly one of aws_lc_rs / rust_crypto must be enabled): {}",
                msg.trim()
            )))
        }
    }
}

fn inner() -> Result<(), SelfTestError> {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let e = |m: &str| SelfTestError(m.to_owned());
    let doc =
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| e("key generation"))?;
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| e("key parse"))?;
    let msg = b"oidc-authz self-test";
    let sig = jsonwebtoken::crypto::sign(
        msg,
        &EncodingKey::from_ed_der(doc.as_ref()),
        Algorithm::EdDSA,
    )
    .map_err(|x| SelfTestError(format!("jsonwebtoken sign: {x}")))?;
    let dk = DecodingKey::from_ed_der(pair.public_key().as_ref());
    let ok = jsonwebtoken::crypto::verify(&sig, msg, &dk, Algorithm::EdDSA)
        .map_err(|x| SelfTestError(format!("jsonwebtoken verify: {x}")))?;
    if !ok {
        return Err(e("jsonwebtoken rejected its own signature"));
    }
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&sig)
        .map_err(|_| e("signature encoding"))?;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    let key = parse_jwk(&serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x}))
        .map_err(|m| SelfTestError(format!("own verifier: {m}")))?;
    if !key.verify(Alg::EdDSA, msg, &raw) || key.verify(Alg::EdDSA, b"tampered", &raw) {
        return Err(e("our verifier disagrees with jsonwebtoken"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn passes_with_exactly_one_backend() {
        super::run().unwrap();
    }
}
