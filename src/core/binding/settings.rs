//! A client's compiled `binding` block (DESIGN §10): what the Check path reads. The YAML schema
//! and its validation live in `config` (`config/binding.rs`), which builds this.

use std::fmt;
use std::time::Duration;

use super::dpop::DpopSettings;
use crate::keys::Alg;

/// Where the client certificate of an mTLS-bound token comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertificateSource {
    /// Envoy's `attributes.source.certificate` (`include_peer_certificate: true`); a caller's
    /// `x-forwarded-client-cert` header is never read.
    #[default]
    Peer,
    /// The last element of `x-forwarded-client-cert`, set by a trusted Envoy (`SANITIZE_SET`).
    Xfcc,
}

/// A client's compiled `binding` block (the defaults of DESIGN §10 when absent).
#[derive(Clone)]
pub struct BindingConfig {
    /// `binding.require`: tokens without `cnf` are refused (`binding_required`).
    pub require: bool,
    /// `binding.dpop` is written in the config: this client's 401s carry a
    /// `WWW-Authenticate: DPoP algs="…"` challenge alongside `Bearer`.
    pub dpop_configured: bool,
    /// The DPoP settings in effect (the defaults when `dpop` is absent: a token's `cnf.jkt`
    /// is honoured for every client).
    pub dpop: DpopSettings,
    /// `algs` of the DPoP challenge: the accepted proof algorithms, space-separated.
    pub algs: String,
    pub certificate: CertificateSource,
    /// SHA-256 of the nonce secret, only to compare configs (the secret itself is not kept).
    pub secret_digest: Option<[u8; 32]>,
}

impl BindingConfig {
    /// The defaults of DESIGN §10 with the client's leeway.
    pub fn defaults(leeway: Duration) -> Self {
        let dpop = DpopSettings {
            leeway,
            ..DpopSettings::default()
        };
        BindingConfig {
            require: false,
            dpop_configured: false,
            algs: algs_param(&dpop.algorithms),
            dpop,
            certificate: CertificateSource::Peer,
            secret_digest: None,
        }
    }
}

/// The `algs` parameter of the DPoP challenge.
pub fn algs_param(algs: &[Alg]) -> String {
    algs.iter().map(|a| a.name()).collect::<Vec<_>>().join(" ")
}

impl PartialEq for BindingConfig {
    fn eq(&self, other: &Self) -> bool {
        self.require == other.require
            && self.dpop_configured == other.dpop_configured
            && self.dpop.algorithms == other.dpop.algorithms
            && self.dpop.max_age == other.dpop.max_age
            && self.dpop.leeway == other.dpop.leeway
            && self.dpop.nonce.is_some() == other.dpop.nonce.is_some()
            && self.secret_digest == other.secret_digest
            && self.certificate == other.certificate
    }
}

impl Eq for BindingConfig {}

impl fmt::Debug for BindingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BindingConfig")
            .field("require", &self.require)
            .field("dpop_configured", &self.dpop_configured)
            .field("algorithms", &self.algs)
            .field("max_age", &self.dpop.max_age)
            .field("nonce", &self.dpop.nonce.is_some())
            .field("certificate", &self.certificate)
            .finish()
    }
}
