//! Stateless DPoP server nonces (RFC 9449 §8–9): no per-nonce state, so every replica that
//! shares the secret (`binding.dpop.nonce_secret`) accepts a nonce any of them issued.
//!
//! `nonce = base64url(window || HMAC-SHA256(secret, CONTEXT || window))` where `window` is
//! `floor(now / window_secs)` as 8 big-endian bytes and `CONTEXT` a fixed label that keeps these
//! MACs apart from anything else the same secret might ever be used for. A nonce is accepted
//! in the window it was issued in and the next one (so it lives between `window_secs` and
//! `2 × window_secs`). The MAC is checked with `aws_lc_rs::hmac::verify` (constant time)
//! before the window is looked at, so a forged nonce is told apart from a stale one.
//! Replicas' clocks must agree to well within `window_secs`: a nonce from a replica whose
//! clock runs a whole window ahead is refused (as stale) until the others catch up.

use std::fmt;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::BindingError;

const CONTEXT: &[u8] = b"oidc-authz/dpop-nonce/v1\0";
const WINDOW_BYTES: usize = 8;
const TAG_BYTES: usize = 32;
const RAW_BYTES: usize = WINDOW_BYTES + TAG_BYTES;
/// base64url length of a nonce (40 bytes → 54 characters, unpadded).
pub const NONCE_LEN: usize = (RAW_BYTES * 8).div_ceil(6);

/// Why a nonce key cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NonceKeyError {
    #[error("the DPoP nonce secret must be at least 32 bytes")]
    SecretTooShort,
    #[error("the DPoP nonce window must be at least one second")]
    WindowZero,
}

/// The shared secret and window length. Debug never shows the secret.
#[derive(Clone)]
pub struct NonceKey {
    key: hmac::Key,
    window_secs: i64,
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceKey")
            .field("window_secs", &self.window_secs)
            .finish_non_exhaustive()
    }
}

impl NonceKey {
    /// The shortest secret accepted (the HMAC-SHA256 key size).
    pub const MIN_SECRET_BYTES: usize = 32;

    pub fn new(secret: &[u8], window_secs: u32) -> Result<Self, NonceKeyError> {
        if secret.len() < Self::MIN_SECRET_BYTES {
            return Err(NonceKeyError::SecretTooShort);
        }
        if window_secs == 0 {
            return Err(NonceKeyError::WindowZero);
        }
        Ok(NonceKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            window_secs: i64::from(window_secs),
        })
    }

    fn window(&self, now: i64) -> i64 {
        now.div_euclid(self.window_secs)
    }

    fn tag(&self, window: [u8; WINDOW_BYTES]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(CONTEXT);
        ctx.update(&window);
        ctx.sign()
    }

    /// A fresh nonce for the `DPoP-Nonce` response header.
    pub fn issue(&self, now: i64) -> String {
        let window = self.window(now).to_be_bytes();
        let mut raw = [0u8; RAW_BYTES];
        raw[..WINDOW_BYTES].copy_from_slice(&window);
        raw[WINDOW_BYTES..].copy_from_slice(self.tag(window).as_ref());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Accept a nonce issued (by any replica with this secret) in the current or the previous
    /// window. Forged or malformed → [`BindingError::NonceInvalid`]; genuine but from another
    /// window → [`BindingError::NonceStale`]. Both are `use_dpop_nonce`.
    pub fn check(&self, nonce: &str, now: i64) -> Result<(), BindingError> {
        if nonce.len() != NONCE_LEN {
            return Err(BindingError::NonceInvalid);
        }
        let mut raw = [0u8; RAW_BYTES + 2];
        match URL_SAFE_NO_PAD.decode_slice(nonce, &mut raw) {
            Ok(RAW_BYTES) => {}
            _ => return Err(BindingError::NonceInvalid),
        }
        let mut msg = [0u8; CONTEXT.len() + WINDOW_BYTES];
        msg[..CONTEXT.len()].copy_from_slice(CONTEXT);
        msg[CONTEXT.len()..].copy_from_slice(&raw[..WINDOW_BYTES]);
        hmac::verify(&self.key, &msg, &raw[WINDOW_BYTES..RAW_BYTES])
            .map_err(|_| BindingError::NonceInvalid)?;
        let mut window = [0u8; WINDOW_BYTES];
        window.copy_from_slice(&raw[..WINDOW_BYTES]);
        let issued = i64::from_be_bytes(window);
        let current = self.window(now);
        if issued == current || Some(issued) == current.checked_sub(1) {
            Ok(())
        } else {
            Err(BindingError::NonceStale)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const T: i64 = 1_800_000_000;

    fn key() -> NonceKey {
        NonceKey::new(SECRET, 60).unwrap()
    }

    #[test]
    fn issued_nonce_is_accepted_now_and_in_the_next_window_only() {
        let k = key();
        let start = T - T.rem_euclid(60); // first second of a window
        let n = k.issue(start);
        assert_eq!(n.len(), NONCE_LEN);
        assert_eq!(k.check(&n, start), Ok(()));
        assert_eq!(k.check(&n, start + 119), Ok(()));
        assert_eq!(k.check(&n, start + 120), Err(BindingError::NonceStale));
        // issued in a window that has not started yet (a clock running ahead)
        assert_eq!(k.check(&n, start - 1), Err(BindingError::NonceStale));
    }

    #[test]
    fn another_replica_with_the_same_secret_accepts_it() {
        let a = NonceKey::new(SECRET, 60).unwrap();
        let b = NonceKey::new(SECRET, 60).unwrap();
        assert_eq!(b.check(&a.issue(T), T + 30), Ok(()));
        let other = NonceKey::new(b"another secret, also 32 bytes long", 60).unwrap();
        assert_eq!(other.check(&a.issue(T), T), Err(BindingError::NonceInvalid));
    }

    #[test]
    fn forged_and_malformed_nonces_are_invalid() {
        let k = key();
        let n = k.issue(T);
        // a tampered window (the MAC no longer matches), and a tampered MAC
        let mut raw = URL_SAFE_NO_PAD.decode(&n).unwrap();
        raw[7] ^= 1;
        let forged_window = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(k.check(&forged_window, T), Err(BindingError::NonceInvalid));
        raw[7] ^= 1;
        raw[39] ^= 0x80;
        let forged_tag = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(k.check(&forged_tag, T), Err(BindingError::NonceInvalid));
        for bad in [
            "",
            "abc",
            &n[..NONCE_LEN - 1],
            &format!("{n}A"),
            &n.replace('A', "+"),
        ] {
            if bad == n {
                continue;
            }
            assert_eq!(k.check(bad, T), Err(BindingError::NonceInvalid), "{bad}");
        }
        // a window that never existed, MAC'd with a different key, is still invalid
        let other = NonceKey::new(&[7u8; 32], 60).unwrap();
        assert_eq!(k.check(&other.issue(T), T), Err(BindingError::NonceInvalid));
    }

    #[test]
    fn weak_settings_are_refused() {
        assert_eq!(
            NonceKey::new(&SECRET[..31], 60).unwrap_err(),
            NonceKeyError::SecretTooShort
        );
        assert_eq!(
            NonceKey::new(SECRET, 0).unwrap_err(),
            NonceKeyError::WindowZero
        );
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let d = format!("{:?}", key());
        assert!(!d.contains("0123456789"), "{d}");
    }
}
