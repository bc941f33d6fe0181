//! `clients[].binding` (DESIGN §10): the YAML schema and its load-time validation, compiled into
//! the [`BindingConfig`] the Check path uses. The config layer calls [`compile`] once per client
//! and reports the returned errors under the field names given here.
//!
//! Validation (DESIGN §3): unknown keys are errors (serde `deny_unknown_fields`); `none` and
//! `HS*` are never DPoP proof algorithms; `max_age` is a duration from 1s to 10m; `nonce: true`
//! needs a `nonce_secret` of at least 32 bytes (after `${VAR}` expansion); `mtls.certificate` is
//! `peer` or `xfcc`. A `nonce_secret` without `nonce: true` is accepted and unused, so the secret
//! can be rolled out to every replica before nonces are switched on.

use std::time::Duration;

use aws_lc_rs::digest;
use serde::Deserialize;

use crate::config::units::parse_duration;
use crate::core::binding::settings::algs_param;
use crate::core::binding::{BindingConfig, CertificateSource, NonceKey};
use crate::keys::Alg;

/// The longest accepted `dpop.max_age` (the replay memory holds a proof for max_age + leeway).
pub const MAX_MAX_AGE: Duration = Duration::from_secs(600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBinding {
    #[serde(default)]
    require: bool,
    dpop: Option<RawDpop>,
    mtls: Option<RawMtls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDpop {
    algorithms: Option<Vec<String>>,
    max_age: Option<RawSecs>,
    #[serde(default)]
    nonce: bool,
    nonce_secret: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMtls {
    certificate: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSecs {
    Seconds(u64),
    Text(String),
}

/// Validate and compile one client's `binding` block. `field` is the block's field name
/// (`clients[i].binding`); `leeway` the client's; `expand` expands `${VAR}` in the secret
/// (reporting its own errors; it answers `None` when expansion failed). Returns the config
/// and the `(field, message)` errors.
pub fn compile(
    raw: Option<RawBinding>,
    field: &str,
    leeway: Duration,
    mut expand: impl FnMut(&str, &str) -> Option<String>,
) -> (BindingConfig, Vec<(String, String)>) {
    let mut cfg = BindingConfig::defaults(leeway);
    let mut errors = Vec::new();
    let Some(raw) = raw else {
        return (cfg, errors);
    };
    cfg.require = raw.require;
    let f = |k: &str| format!("{field}.{k}");
    if let Some(d) = raw.dpop {
        cfg.dpop_configured = true;
        if let Some(list) = d.algorithms {
            if list.is_empty() {
                errors.push((
                    f("dpop.algorithms"),
                    "must list at least one algorithm".into(),
                ));
            }
            let mut algs = Vec::new();
            for a in &list {
                match Alg::parse(a) {
                    Some(alg) if !algs.contains(&alg) => algs.push(alg),
                    Some(_) => {}
                    None if a.eq_ignore_ascii_case("none")
                        || a.to_ascii_uppercase().starts_with("HS") =>
                    {
                        errors.push((
                            f("dpop.algorithms"),
                            format!("`{a}`: a DPoP proof is signed with the client's private key; `none` and HMAC are never accepted"),
                        ))
                    }
                    None => errors.push((
                        f("dpop.algorithms"),
                        format!("`{a}` is not supported (use ES256/384, EdDSA, PS256/384/512, RS256/384/512)"),
                    )),
                }
            }
            if !algs.is_empty() {
                cfg.dpop.algorithms = algs;
            }
        }
        if let Some(secs) = d.max_age {
            let parsed = match secs {
                RawSecs::Seconds(s) => Ok(Duration::from_secs(s)),
                RawSecs::Text(t) => parse_duration(&t),
            };
            match parsed {
                Ok(age) if age >= Duration::from_secs(1) && age <= MAX_MAX_AGE => {
                    cfg.dpop.max_age = age;
                }
                Ok(_) => errors.push((f("dpop.max_age"), "must be from 1s to 10m".into())),
                Err(m) => errors.push((f("dpop.max_age"), m)),
            }
        }
        let secret = d
            .nonce_secret
            .and_then(|s| expand(&f("dpop.nonce_secret"), &s));
        if let Some(s) = &secret {
            if s.len() < NonceKey::MIN_SECRET_BYTES {
                errors.push((
                    f("dpop.nonce_secret"),
                    format!(
                        "must be at least {} bytes (it is an HMAC-SHA256 key shared by every replica)",
                        NonceKey::MIN_SECRET_BYTES
                    ),
                ));
            } else {
                let mut digest_out = [0u8; 32];
                digest_out.copy_from_slice(digest::digest(&digest::SHA256, s.as_bytes()).as_ref());
                cfg.secret_digest = Some(digest_out);
            }
        }
        if d.nonce {
            match &secret {
                None => errors.push((
                    f("dpop.nonce_secret"),
                    "required when nonce: true (at least 32 bytes, the same on every replica; e.g. ${DPOP_NONCE_SECRET})".into(),
                )),
                Some(s) => {
                    // Nonces rotate every max_age and are accepted for the current and the
                    // previous window, so a nonce lives between max_age and twice that.
                    let window = u32::try_from(cfg.dpop.max_age.as_secs().max(1)).unwrap_or(600);
                    if let Ok(key) = NonceKey::new(s.as_bytes(), window) {
                        cfg.dpop.nonce = Some(key);
                    }
                }
            }
        }
        cfg.algs = algs_param(&cfg.dpop.algorithms);
    }
    if let Some(m) = raw.mtls {
        match m.certificate.as_deref() {
            None | Some("peer") => cfg.certificate = CertificateSource::Peer,
            Some("xfcc") => cfg.certificate = CertificateSource::Xfcc,
            Some(other) => errors.push((
                f("mtls.certificate"),
                format!("`{other}` must be `peer` (Envoy's include_peer_certificate) or `xfcc` (x-forwarded-client-cert)"),
            )),
        }
    }
    (cfg, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> (BindingConfig, Vec<(String, String)>) {
        let raw: RawBinding = serde_yaml::from_str(yaml).expect("schema");
        compile(
            Some(raw),
            "clients[0].binding",
            Duration::from_secs(30),
            |_, s| Some(s.to_owned()),
        )
    }

    #[test]
    fn defaults_are_the_design_values() {
        let (c, e) = compile(None, "b", Duration::from_secs(30), |_, s| {
            Some(s.to_owned())
        });
        assert!(e.is_empty());
        assert!(!c.require && !c.dpop_configured && c.dpop.nonce.is_none());
        assert_eq!(c.algs, "ES256 EdDSA PS256 RS256");
        assert_eq!(c.dpop.max_age, Duration::from_secs(60));
        assert_eq!(c.certificate, CertificateSource::Peer);
    }

    #[test]
    fn each_invalid_setting_names_its_field() {
        for (yaml, field) in [
            ("dpop: {algorithms: [none]}", "dpop.algorithms"),
            ("dpop: {algorithms: [HS256]}", "dpop.algorithms"),
            ("dpop: {algorithms: [XX1]}", "dpop.algorithms"),
            ("dpop: {algorithms: []}", "dpop.algorithms"),
            ("dpop: {max_age: 0s}", "dpop.max_age"),
            ("dpop: {max_age: 1h}", "dpop.max_age"),
            ("dpop: {max_age: soon}", "dpop.max_age"),
            ("dpop: {nonce: true}", "dpop.nonce_secret"),
            (
                "dpop: {nonce: true, nonce_secret: short}",
                "dpop.nonce_secret",
            ),
            ("mtls: {certificate: header}", "mtls.certificate"),
        ] {
            let (_, e) = run(yaml);
            assert_eq!(e.len(), 1, "{yaml}: {e:?}");
            assert_eq!(e[0].0, format!("clients[0].binding.{field}"), "{yaml}");
        }
        for unknown in [
            "dpop: {algs: [ES256]}",
            "mtls: {cert: peer}",
            "required: true",
        ] {
            assert!(
                serde_yaml::from_str::<RawBinding>(unknown).is_err(),
                "{unknown}"
            );
        }
    }

    #[test]
    fn a_full_block_compiles() {
        let (c, e) = run(
            "require: true\ndpop: {algorithms: [ES256, EdDSA], max_age: 2m, nonce: true, \
             nonce_secret: 0123456789abcdef0123456789abcdef}\nmtls: {certificate: xfcc}",
        );
        assert!(e.is_empty(), "{e:?}");
        assert!(c.require && c.dpop_configured && c.dpop.nonce.is_some());
        assert_eq!(c.algs, "ES256 EdDSA");
        assert_eq!(c.dpop.max_age, Duration::from_secs(120));
        assert_eq!(c.certificate, CertificateSource::Xfcc);
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        let (other, _) = run(
            "require: true\ndpop: {algorithms: [ES256, EdDSA], max_age: 2m, nonce: true, \
             nonce_secret: fedcba9876543210fedcba9876543210}\nmtls: {certificate: xfcc}",
        );
        assert_ne!(c, other, "a new secret is a config change");
    }
}
