"""Test certificates for the mTLS-bound token tests (e2e/test_binding.py), made fresh by every run.

    ca       self-signed test CA (Envoy's TLS listener trusts only it for client certificates)
    server   CN=127.0.0.1, SAN IP 127.0.0.1, signed by the CA (Envoy's listener certificate)
    client   CN=e2e-client, clientAuth, signed by the CA (the certificate the token is bound to)
    other    CN=e2e-other,  clientAuth, signed by the CA (a valid certificate, but not the bound one)
    rogue    CN=e2e-rogue,  clientAuth, signed by ANOTHER CA (Envoy must refuse the handshake)

All keys are EC P-256. `x5t_s256(cert)` is RFC 8705 §3.1's thumbprint: base64url(SHA-256(DER)), no padding.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Issued:
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    cert_path: Path
    key_path: Path

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def x5t_s256(self) -> str:
        return x5t_s256(self.cert)


def x5t_s256(cert: x509.Certificate) -> str:
    """RFC 8705 §3.1: base64url(SHA-256(DER of the certificate)) without padding."""
    digest = cert.fingerprint(hashes.SHA256())
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "oidc-authz e2e"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(outdir: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Issued:
    cert_path, key_path = outdir / f"{name}.crt", outdir / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return Issued(name, key, cert, cert_path, key_path)


def make_ca(outdir: Path, name: str = "ca", cn: str = "oidc-authz e2e test CA") -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(outdir, name, key, cert)


def issue(ca: Issued, outdir: Path, name: str, cn: str, *, server: bool = False) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(cn))]), critical=False)
    return _write(outdir, name, key, builder.sign(ca.key, hashes.SHA256()))


@dataclass
class Pki:
    ca: Issued
    server: Issued
    client: Issued
    other: Issued
    rogue_ca: Issued
    rogue: Issued


def make_pki(outdir: Path) -> Pki:
    outdir.mkdir(parents=True, exist_ok=True)
    ca = make_ca(outdir)
    rogue_ca = make_ca(outdir, "rogue-ca", "not the e2e CA")
    return Pki(
        ca=ca,
        server=issue(ca, outdir, "server", "127.0.0.1", server=True),
        client=issue(ca, outdir, "client", "e2e-client"),
        other=issue(ca, outdir, "other", "e2e-other"),
        rogue_ca=rogue_ca,
        rogue=issue(rogue_ca, outdir, "rogue", "e2e-rogue"),
    )


if __name__ == "__main__":  # scripts/validate-envoy.sh: `python e2e/certs.py DIR` writes the files it renders
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: certs.py OUTDIR")
    pki = make_pki(Path(sys.argv[1]))
    for item in (pki.ca, pki.server, pki.client, pki.other, pki.rogue_ca, pki.rogue):
        print(f"{item.name}: {item.cert_path} {item.key_path}")
