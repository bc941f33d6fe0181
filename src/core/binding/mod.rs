//! Sender-constrained tokens (DESIGN §10): DPoP proofs (RFC 9449) and mTLS-bound tokens
//! (RFC 8705 §3). The pure core only: every function here is given the request values it needs
//! and the current time (`now`, Unix seconds) and answers `Ok` or a [`BindingError`].
//!
//! What this folder owns:
//! - [`cnf`]    what a verified token's `cnf` claim asks for, and whether the `Authorization`
//!   scheme fits it (`binding_mismatch`, `binding_required`)
//! - [`dpop`]   parsing and verifying one DPoP proof (RFC 9449 §4.3), the RFC 7638 thumbprint
//!   and the `ath` hash
//! - [`nonce`]  stateless server nonces (HMAC over a time window), accepted by every replica
//!   that shares the secret
//! - [`replay`] the per-replica memory of recently seen proof `jti`s (bounded, sharded)
//! - [`settings`] `clients[].binding`: schema, load-time validation, the compiled settings
//! - [`enforce`] the §10 rules for one Check (calls the pure parts below) and the deny they make
//! - [`mtls`]   the client-certificate thumbprint from Envoy's peer certificate or from
//!   `x-forwarded-client-cert`, compared with `cnf["x5t#S256"]`
//!
//! What it must not do: no I/O, no tokio, no clock reads (time comes in as `now`), no config
//! parsing (settings come in as plain structs built by the config layer), no logging of
//! request values. Errors carry no data at all, so neither their `Display` nor their `Debug`
//! can echo a token, a proof, a key or a certificate.
//!
//! Not here (the caller's job): reading headers out of the CheckRequest, choosing the client's
//! settings, building the 401 (`WWW-Authenticate: DPoP error="…"`, a fresh `DPoP-Nonce` from
//! [`nonce::NonceKey::issue`] on [`BindingError::reason_code`] `use_dpop_nonce`), metrics.
//!
//! The order a caller is expected to follow for one Check, after the token itself verified:
//! 1. [`cnf::confirmation`] on the verified claims (malformed `cnf` → `invalid_claims`);
//! 2. [`cnf::check_scheme`] with the `Authorization` scheme and `binding.require`;
//! 3. when `cnf.jkt` is present: [`dpop::verify`] (it consults the nonce key and the replay
//!    memory itself, replay last, so only fully valid proofs are remembered);
//! 4. when `cnf["x5t#S256"]` is present: [`mtls::peer_certificate_thumbprint`] or
//!    [`mtls::xfcc_thumbprint`] (per the client's `mtls.certificate` mode — in `peer` mode the
//!    header is never read), then [`mtls::check_x5t`]. Both bindings present → both must hold.

pub mod cnf;
pub mod dpop;
pub mod enforce;
pub mod mtls;
pub mod nonce;
pub mod replay;
pub mod settings;

pub use cnf::{AuthScheme, Confirmation, check_scheme, confirmation};
pub use dpop::{DpopRequest, DpopSettings};
pub use enforce::BindingRequest;
pub use nonce::NonceKey;
pub use replay::ReplayMemory;
pub use settings::{BindingConfig, CertificateSource};

/// Why a sender-constrained request is refused. Each variant maps to one DESIGN §6/§10 reason
/// code ([`BindingError::reason_code`]); its `Display` is the one-sentence description for the
/// deny body. No variant carries request data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingError {
    // ---- invalid_dpop_proof -------------------------------------------------------------
    ProofMissing,
    ProofDuplicated,
    ProofTooLarge,
    ProofMalformed,
    ProofType,
    ProofAlgorithm,
    ProofCritical,
    ProofKeyMissing,
    ProofKeyPrivate,
    ProofKeyUnusable,
    ProofKeyAlgMismatch,
    ProofSignature,
    ProofClaims,
    ProofMethod,
    ProofUri,
    ProofTooOld,
    ProofFromFuture,
    ProofJtiMissing,
    ProofJtiTooLong,
    ProofReplayed,
    ReplayMemoryFull,
    ProofAth,
    ProofKeyMismatch,
    // ---- use_dpop_nonce -----------------------------------------------------------------
    NonceMissing,
    NonceStale,
    NonceInvalid,
    // ---- binding_mismatch ---------------------------------------------------------------
    BearerWithBoundToken,
    DpopWithoutJkt,
    CertificateMissing,
    CertificateMalformed,
    CertificateMismatch,
    // ---- binding_required ---------------------------------------------------------------
    BindingRequired,
    // ---- invalid_claims (the token's own cnf claim is unusable) -------------------------
    CnfMalformed,
    CnfUnsupported,
}

impl BindingError {
    /// The stable reason code (DESIGN §6 / §10). A malformed `cnf` claim is a claim error of
    /// the token itself, so it maps to the existing `invalid_claims`.
    pub fn reason_code(&self) -> &'static str {
        use BindingError::*;
        match self {
            ProofMissing | ProofDuplicated | ProofTooLarge | ProofMalformed | ProofType
            | ProofAlgorithm | ProofCritical | ProofKeyMissing | ProofKeyPrivate
            | ProofKeyUnusable | ProofKeyAlgMismatch | ProofSignature | ProofClaims
            | ProofMethod | ProofUri | ProofTooOld | ProofFromFuture | ProofJtiMissing
            | ProofJtiTooLong | ProofReplayed | ReplayMemoryFull | ProofAth | ProofKeyMismatch => {
                "invalid_dpop_proof"
            }
            NonceMissing | NonceStale | NonceInvalid => "use_dpop_nonce",
            BearerWithBoundToken | DpopWithoutJkt | CertificateMissing | CertificateMalformed
            | CertificateMismatch => "binding_mismatch",
            BindingRequired => "binding_required",
            CnfMalformed | CnfUnsupported => "invalid_claims",
        }
    }

    /// The one-sentence description for the deny body (the `Display` text, never request data).
    pub fn description(&self) -> String {
        self.to_string()
    }

    /// What failed, as static text (for logs, `explain` and the deny detail).
    pub const fn detail(self) -> &'static str {
        use BindingError::*;
        match self {
            ProofMissing => "the request carries no DPoP proof",
            ProofDuplicated => "the request carries more than one DPoP proof",
            ProofTooLarge => "the DPoP proof is longer than 8 KiB",
            ProofMalformed => {
                "the DPoP proof is not a compact JWS with strict base64url JSON parts"
            }
            ProofType => "the DPoP proof's typ is not dpop+jwt",
            ProofAlgorithm => "the DPoP proof's alg is not an accepted asymmetric algorithm",
            ProofCritical => "the DPoP proof has a crit or b64 header, which is not accepted",
            ProofKeyMissing => "the DPoP proof has no jwk header",
            ProofKeyPrivate => "the DPoP proof's jwk contains private key material",
            ProofKeyUnusable => "the DPoP proof's jwk is not a usable public signing key",
            ProofKeyAlgMismatch => "the DPoP proof's alg does not fit its jwk",
            ProofSignature => "the DPoP proof's signature does not verify with its jwk",
            ProofClaims => "a DPoP proof claim is missing or has the wrong type",
            ProofMethod => "the DPoP proof's htm is not the request method",
            ProofUri => "the DPoP proof's htu is not the request URI",
            ProofTooOld => "the DPoP proof is too old",
            ProofFromFuture => "the DPoP proof was issued in the future",
            ProofJtiMissing => "the DPoP proof has no jti",
            ProofJtiTooLong => "the DPoP proof's jti is too long",
            ProofReplayed => "the DPoP proof was already used",
            ReplayMemoryFull => "too many recent DPoP proofs to remember; retry shortly",
            ProofAth => "the DPoP proof's ath is not the hash of the access token",
            ProofKeyMismatch => "the DPoP proof's key is not the key the access token is bound to",
            NonceMissing => "a DPoP nonce is required",
            NonceStale => "the DPoP nonce has expired",
            NonceInvalid => "the DPoP nonce is not one this server issued",
            BearerWithBoundToken => "a DPoP-bound token was sent with the Bearer scheme",
            DpopWithoutJkt => "a token sent with the DPoP scheme is not DPoP-bound",
            CertificateMissing => {
                "the token is bound to a client certificate and none was presented"
            }
            CertificateMalformed => "the client certificate could not be read",
            CertificateMismatch => "the client certificate is not the one the token is bound to",
            BindingRequired => "this client requires sender-constrained tokens (cnf)",
            CnfMalformed => "the token's cnf claim is malformed",
            CnfUnsupported => {
                "the token's cnf claim names no confirmation method this server supports"
            }
        }
    }
}

impl std::fmt::Display for BindingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.detail())
    }
}

impl std::error::Error for BindingError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_the_design_codes() {
        assert_eq!(
            BindingError::ProofSignature.reason_code(),
            "invalid_dpop_proof"
        );
        assert_eq!(BindingError::NonceStale.reason_code(), "use_dpop_nonce");
        assert_eq!(
            BindingError::BearerWithBoundToken.reason_code(),
            "binding_mismatch"
        );
        assert_eq!(
            BindingError::BindingRequired.reason_code(),
            "binding_required"
        );
        assert_eq!(BindingError::CnfMalformed.reason_code(), "invalid_claims");
    }
}
