//! mTLS-bound tokens (RFC 8705 §3): the token's `cnf["x5t#S256"]` must be the base64url SHA-256
//! of the DER of the client certificate presented on this request.
//!
//! Where the certificate comes from (the client's `binding.mtls.certificate`; the caller picks
//! one and never falls back to the other — in `peer` mode an `x-forwarded-client-cert` sent
//! by the caller is ignored, DESIGN §10):
//! * `peer`: Envoy's `attributes.source.certificate` (with `include_peer_certificate`): the
//!   peer's certificate, URL-encoded PEM → [`peer_certificate_thumbprint`]. Exactly one
//!   `CERTIFICATE` block is accepted.
//! * `xfcc`: the `x-forwarded-client-cert` header set by a trusted Envoy →
//!   [`xfcc_thumbprint`]. The header is a comma-separated list of elements, one per proxy
//!   hop; Envoy (`forward_client_cert_details: APPEND_FORWARD`) *appends* the element for the
//!   client certificate of the connection it terminated, and `SANITIZE_SET` replaces the list
//!   with that one element. Either way the **last** element is the one the trusted Envoy wrote
//!   about its immediate client; earlier ones came from further upstream (and, with a
//!   misconfigured front proxy, possibly from the caller), so only the last is used. Within it,
//!   `Hash=` (hex SHA-256 of the DER) is used when present, else `Cert=` (URL-encoded PEM).
//!
//! The comparison with `cnf["x5t#S256"]` is constant time on the 32-byte digests.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest;
use percent_encoding::percent_decode_str;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::BindingError;
use super::cnf::decode_sha256_b64;

/// Larger certificate attributes / headers are refused before decoding.
pub const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;

/// SHA-256 of a certificate's DER.
pub fn der_thumbprint(der: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, der).as_ref());
    out
}

/// The thumbprint of Envoy's `attributes.source.certificate` (URL-encoded PEM of one
/// certificate). Empty → [`BindingError::CertificateMissing`]; not exactly one readable
/// `CERTIFICATE` block → [`BindingError::CertificateMalformed`].
pub fn peer_certificate_thumbprint(url_encoded_pem: &str) -> Result<[u8; 32], BindingError> {
    if url_encoded_pem.is_empty() {
        return Err(BindingError::CertificateMissing);
    }
    pem_thumbprint(url_encoded_pem)
}

fn pem_thumbprint(url_encoded_pem: &str) -> Result<[u8; 32], BindingError> {
    if url_encoded_pem.len() > MAX_CERTIFICATE_BYTES {
        return Err(BindingError::CertificateMalformed);
    }
    let pem: Vec<u8> = percent_decode_str(url_encoded_pem).collect();
    let mut certs = CertificateDer::pem_slice_iter(&pem);
    let first = match certs.next() {
        Some(Ok(cert)) => cert,
        _ => return Err(BindingError::CertificateMalformed),
    };
    if certs.next().is_some() {
        return Err(BindingError::CertificateMalformed);
    }
    Ok(der_thumbprint(first.as_ref()))
}

/// The thumbprint from an `x-forwarded-client-cert` header: its last element's `Hash=` (hex)
/// or, without one, its `Cert=` (URL-encoded PEM). Neither → [`BindingError::CertificateMissing`].
pub fn xfcc_thumbprint(header: &str) -> Result<[u8; 32], BindingError> {
    if header.len() > MAX_CERTIFICATE_BYTES {
        return Err(BindingError::CertificateMalformed);
    }
    let element = last_element(header).ok_or(BindingError::CertificateMalformed)?;
    let mut hash = None;
    let mut cert = None;
    for pair in split_top_level(element, b';') {
        let pair = pair.trim_matches(|c| c == ' ' || c == '\t');
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair
            .split_once('=')
            .ok_or(BindingError::CertificateMalformed)?;
        let v = unquote(v.trim()).ok_or(BindingError::CertificateMalformed)?;
        if k.trim().eq_ignore_ascii_case("hash") {
            if hash.replace(v).is_some() {
                return Err(BindingError::CertificateMalformed);
            }
        } else if k.trim().eq_ignore_ascii_case("cert") && cert.replace(v).is_some() {
            return Err(BindingError::CertificateMalformed);
        }
    }
    match (hash, cert) {
        (Some(h), _) => hex_sha256(h).ok_or(BindingError::CertificateMalformed),
        (None, Some(c)) => pem_thumbprint(c),
        (None, None) => Err(BindingError::CertificateMissing),
    }
}

/// `thumbprint` must equal the token's `cnf["x5t#S256"]` (constant time).
pub fn check_x5t(x5t_s256: &str, thumbprint: &[u8; 32]) -> Result<(), BindingError> {
    let expected = decode_sha256_b64(x5t_s256).ok_or(BindingError::CnfMalformed)?;
    verify_slices_are_equal(&expected, thumbprint).map_err(|_| BindingError::CertificateMismatch)
}

/// The text after the last top-level comma (commas inside double quotes do not count).
fn last_element(header: &str) -> Option<&str> {
    let element = split_top_level(header, b',').last()?;
    let element = element.trim_matches(|c| c == ' ' || c == '\t');
    (!element.is_empty()).then_some(element)
}

/// Split on `sep` outside double-quoted strings (`\` escapes the next byte inside quotes).
fn split_top_level(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut i = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        while i < bytes.len() {
            let b = bytes[i];
            i += 1;
            if escaped {
                escaped = false;
            } else if quoted && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = !quoted;
            } else if b == sep && !quoted {
                let part = &s[start..i - 1];
                start = i;
                return Some(part);
            }
        }
        done = true;
        Some(&s[start..])
    })
}

/// A value, without its surrounding double quotes when quoted. An unbalanced quote → `None`.
/// (Escapes inside quotes are kept as-is: `Hash` and `Cert` never contain them.)
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => (!v.contains('"')).then_some(v),
    }
}

/// 64 hex digits (either case) → 32 bytes.
fn hex_sha256(h: &str) -> Option<[u8; 32]> {
    let h = h.as_bytes();
    if h.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(h.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    /// Any bytes stand in for a DER certificate: only the PEM framing and the digest matter.
    const DER: &[u8] = b"\x30\x82\x01\x0a not a real certificate, but DER-shaped bytes";

    fn pem(der: &[u8]) -> String {
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            STANDARD.encode(der)
        )
    }

    fn url_encode(s: &str) -> String {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    }

    fn x5t(der: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(der_thumbprint(der))
    }

    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn peer_certificate_thumbprint_matches_cnf() {
        let t = peer_certificate_thumbprint(&url_encode(&pem(DER))).unwrap();
        assert_eq!(check_x5t(&x5t(DER), &t), Ok(()));
        assert_eq!(
            check_x5t(&x5t(b"another certificate"), &t),
            Err(BindingError::CertificateMismatch)
        );
    }

    #[test]
    fn peer_certificate_must_be_exactly_one_certificate() {
        assert_eq!(
            peer_certificate_thumbprint(""),
            Err(BindingError::CertificateMissing)
        );
        assert_eq!(
            peer_certificate_thumbprint("not%20a%20pem"),
            Err(BindingError::CertificateMalformed)
        );
        let two = format!("{}{}", pem(DER), pem(b"other"));
        assert_eq!(
            peer_certificate_thumbprint(&url_encode(&two)),
            Err(BindingError::CertificateMalformed)
        );
        let key_only = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            peer_certificate_thumbprint(&url_encode(key_only)),
            Err(BindingError::CertificateMalformed)
        );
        let huge = "A".repeat(MAX_CERTIFICATE_BYTES + 1);
        assert_eq!(
            peer_certificate_thumbprint(&huge),
            Err(BindingError::CertificateMalformed)
        );
    }

    #[test]
    fn xfcc_hash_is_hex_of_the_der_digest_and_the_last_element_wins() {
        let ours = hex(&der_thumbprint(DER));
        let forged = hex(&der_thumbprint(b"forged by the caller"));
        let header = format!(
            "By=spiffe://a;Hash={forged};Subject=\"/C=US/CN=x, y\";URI=spiffe://evil,\
             By=spiffe://b;Hash={};Subject=\"CN=client\"",
            ours.to_uppercase()
        );
        let t = xfcc_thumbprint(&header).unwrap();
        assert_eq!(check_x5t(&x5t(DER), &t), Ok(()));
        // the first element is never the one used
        let swapped = format!("Hash={ours},Hash={forged}");
        let t = xfcc_thumbprint(&swapped).unwrap();
        assert_eq!(
            check_x5t(&x5t(DER), &t),
            Err(BindingError::CertificateMismatch)
        );
    }

    #[test]
    fn xfcc_cert_is_url_encoded_pem() {
        let header = format!("By=spiffe://b;Cert=\"{}\"", url_encode(&pem(DER)));
        let t = xfcc_thumbprint(&header).unwrap();
        assert_eq!(check_x5t(&x5t(DER), &t), Ok(()));
    }

    #[test]
    fn xfcc_malformed_or_without_certificate() {
        assert_eq!(
            xfcc_thumbprint("By=spiffe://b;URI=spiffe://c"),
            Err(BindingError::CertificateMissing)
        );
        for bad in [
            "",
            "Hash=abc",
            "Hash=zz",
            "Hash=\"unterminated",
            &format!("Hash={};Hash={}", "0".repeat(64), "1".repeat(64)),
            "Hash",
            "x,",
        ] {
            assert_eq!(
                xfcc_thumbprint(bad),
                Err(BindingError::CertificateMalformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn malformed_x5t_in_the_token_is_a_claim_error() {
        assert_eq!(
            check_x5t("short", &der_thumbprint(DER)),
            Err(BindingError::CnfMalformed)
        );
    }
}
