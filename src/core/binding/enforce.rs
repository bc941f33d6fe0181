//! The §10 rules for one Check, after the token verified (or came from the cache): given the
//! verified claims, what the request carried and the client's [`BindingConfig`], answer `Ok` or
//! the [`BindingError`]; and turn a refusal into the deny (reason, detail, DPoP challenge, fresh
//! `DPoP-Nonce`). Runs on every request, cached token or not: the cache keeps the verified
//! token, never the proof.

use super::BindingError;
use super::cnf::{self, AuthScheme};
use super::dpop::{self, DpopRequest};
use super::mtls;
use super::replay::ReplayMemory;
use super::settings::{BindingConfig, CertificateSource};
use crate::decision::{Deny, DpopChallenge, Reason};

/// What one request carried, as far as binding is concerned. `Debug` is not derived: the
/// fields hold the token, the proof and the certificate.
#[derive(Clone, Copy)]
pub struct BindingRequest<'a> {
    /// The `Authorization` scheme the token came with (a token from a cookie or another header
    /// counts as `Bearer`).
    pub auth_scheme: AuthScheme,
    /// The access token as sent.
    pub access_token: &'a str,
    /// Every `DPoP` header value (at most two are collected: two already refuse).
    pub proofs: &'a [&'a str],
    pub method: &'a str,
    /// Request scheme from the Check's attributes (`http` / `https`).
    pub scheme: &'a str,
    /// `:authority`, with its port if any.
    pub authority: &'a str,
    /// `:path` as received (the query is ignored for `htu`).
    pub path: &'a str,
    /// Envoy's `attributes.source.certificate` (URL-encoded PEM; empty without one).
    pub peer_certificate: &'a str,
    /// `x-forwarded-client-cert`: `Ok(None)` absent, `Err(())` sent twice.
    pub xfcc: Result<Option<&'a str>, ()>,
    pub now: i64,
}

/// DESIGN §10, in order: `cnf` readable; the scheme fits it (`binding_required`,
/// `binding_mismatch`); `cnf.jkt` → the DPoP proof; `cnf["x5t#S256"]` → the client
/// certificate. Both bindings present → both must hold.
pub fn enforce(
    claims: &serde_json::Map<String, serde_json::Value>,
    req: &BindingRequest<'_>,
    cfg: &BindingConfig,
    replay: &ReplayMemory,
) -> Result<(), BindingError> {
    let confirmation = cnf::confirmation(claims)?;
    cnf::check_scheme(confirmation.as_ref(), req.auth_scheme, cfg.require)?;
    let Some(confirmation) = confirmation else {
        return Ok(());
    };
    if let Some(jkt) = confirmation.jkt {
        dpop::verify(
            &DpopRequest {
                proofs: req.proofs,
                access_token: req.access_token,
                jkt,
                method: req.method,
                scheme: req.scheme,
                authority: req.authority,
                path: req.path,
                now: req.now,
            },
            &cfg.dpop,
            replay,
        )?;
    }
    if let Some(x5t) = confirmation.x5t_s256 {
        let thumbprint = match cfg.certificate {
            CertificateSource::Peer => mtls::peer_certificate_thumbprint(req.peer_certificate)?,
            CertificateSource::Xfcc => match req.xfcc {
                Ok(Some(h)) => mtls::xfcc_thumbprint(h)?,
                Ok(None) => return Err(BindingError::CertificateMissing),
                Err(()) => return Err(BindingError::CertificateMalformed),
            },
        };
        mtls::check_x5t(x5t, &thumbprint)?;
    }
    Ok(())
}

/// [`enforce`] for a token whose claims have no `cnf` (known when it was verified): only the
/// scheme and `binding.require` apply, so no proof or certificate header is looked at.
pub fn enforce_unbound(scheme: AuthScheme, cfg: &BindingConfig) -> Result<(), BindingError> {
    cnf::check_scheme(None, scheme, cfg.require)
}

/// `algs` only: the challenge every 401 of a DPoP-configured client carries.
pub fn advertise(cfg: &BindingConfig) -> DpopChallenge {
    DpopChallenge {
        algs: cfg.algs.clone(),
        error: None,
        nonce: None,
    }
}

/// The stable reason of a binding refusal.
pub fn reason(e: BindingError) -> Reason {
    match e.reason_code() {
        "invalid_dpop_proof" => Reason::InvalidDpopProof,
        "use_dpop_nonce" => Reason::UseDpopNonce,
        "binding_mismatch" => Reason::BindingMismatch,
        "binding_required" => Reason::BindingRequired,
        _ => Reason::InvalidClaims,
    }
}

/// The deny for a binding refusal: DPoP proof errors carry `DPoP error="…"` (and a fresh nonce
/// for `use_dpop_nonce`); a DPoP scheme mismatch or a client with DPoP configured carries the
/// `algs` challenge, so the client learns it must (and how to) use DPoP.
pub fn deny(e: BindingError, cfg: &BindingConfig, now: i64) -> Deny {
    let reason = reason(e);
    let mut deny = Deny::new(reason, e.detail());
    let dpop_related = matches!(
        e,
        BindingError::BearerWithBoundToken | BindingError::DpopWithoutJkt
    );
    deny.dpop = match reason {
        Reason::InvalidDpopProof => Some(Box::new(DpopChallenge {
            error: Some(reason),
            ..advertise(cfg)
        })),
        Reason::UseDpopNonce => Some(Box::new(DpopChallenge {
            error: Some(reason),
            nonce: cfg.dpop.nonce.as_ref().map(|k| k.issue(now)),
            ..advertise(cfg)
        })),
        _ if dpop_related || cfg.dpop_configured => Some(Box::new(advertise(cfg))),
        _ => None,
    };
    deny
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The shortcut answers exactly what the full rules answer for a token without `cnf`,
    /// whatever the request carries.
    #[test]
    fn enforce_unbound_is_enforce_without_cnf() {
        let claims = serde_json::json!({"sub": "a"}).as_object().unwrap().clone();
        let replay = ReplayMemory::new(64, 1);
        for require in [false, true] {
            let mut cfg = BindingConfig::defaults(Duration::from_secs(30));
            cfg.require = require;
            for scheme in [AuthScheme::Bearer, AuthScheme::Dpop] {
                let req = BindingRequest {
                    auth_scheme: scheme,
                    access_token: "t",
                    proofs: &["not-a-proof"],
                    method: "GET",
                    scheme: "https",
                    authority: "h",
                    path: "/",
                    peer_certificate: "",
                    xfcc: Ok(Some("garbage")),
                    now: 0,
                };
                assert_eq!(
                    enforce_unbound(scheme, &cfg),
                    enforce(&claims, &req, &cfg, &replay),
                    "require {require}, {scheme:?}"
                );
            }
        }
        let mut cfg = BindingConfig::defaults(Duration::from_secs(30));
        cfg.require = true;
        assert_eq!(
            enforce_unbound(AuthScheme::Bearer, &cfg),
            Err(BindingError::BindingRequired)
        );
    }
}
