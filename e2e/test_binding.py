"""End-to-end tests of sender-constrained tokens (DESIGN §10; DPoP RFC 9449, mTLS-bound RFC 8705) with the
real parts, all on 127.0.0.1:

    DPoP:  client ──HTTP──▶ Envoy (deploy/envoy/envoy.yaml) ──ext_authz──▶ oidc-authz ──JWKS──▶ provider
    mTLS:  client ══TLS + client cert══▶ Envoy (deploy/envoy/envoy-mtls.yaml)
               listener ingress_mtls_peer  (include_peer_certificate) ──▶ oidc-authz, `mtls.certificate: peer`
               listener ingress_mtls_xfcc  (x-forwarded-client-cert)  ──▶ oidc-authz, `mtls.certificate: xfcc`
           every allowed request ──HTTP──▶ e2e/upstream.py (echoes what it received)

Tokens are real: node-oidc-provider (e2e/provider/server.js, features dPoP and mTLS.certificateBoundAccessTokens)
issues DPoP-bound tokens (`cnf.jkt`, token_type DPoP) to a client that sends a real proof
(e2e/dpop_client.py), and certificate-bound tokens (`cnf["x5t#S256"]`) for a client certificate of a test
PKI made by every run (e2e/certs.py). Two provider instances:

    bind   clients `bound` (aud orders-api: dpop + mtls peer) and `bound-xfcc` (aud billing-api: mtls xfcc)
    nonce  client  `bound-nonce` (aud orders-api: binding.require, dpop with server nonces)

Two groups of tests:
  * test_harness_*: the parts this file relies on, checked without oidc-authz (the provider issues bound
    tokens, the client's proofs pass an independent RFC 9449 §4.3 check, Envoy's TLS listener takes the
    right certificate and refuses the others, Envoy forwards the verified certificate in XFCC).
  * everything else: through the full stack, with oidc-authz (OIDC_AUTHZ_BIN, default
    target/release/oidc-authz) configured with `clients[].binding` as in DESIGN §10.

Run: `.venv/bin/pytest -q e2e/test_binding.py` after scripts/setup-e2e.sh and `cargo build --release`.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from certs import Issued, Pki, make_pki  # noqa: E402
from dpop_client import DpopKey, ProofError, ath, b64u, jwk_thumbprint, verify_proof  # noqa: E402
from render_envoy import render  # noqa: E402
from test_e2e import (  # noqa: E402
    Proc,
    Provider,
    Response,
    assert_denied,
    authz_bin,
    dump_logs,
    envoy_bin,
    free_port,
    genkey,
    http_request,
    http_status,
    jwt_parts,
    stop_all,
    upstream_saw,
    wait_until,
)

ORDERS = "https://api.example/orders"
BILLING = "https://api.example/billing"
NONCE_SECRET = "e2e-dpop-nonce-secret-0123456789abcdef"  # given to oidc-authz as ${E2E_DPOP_NONCE_SECRET}


# --------------------------------------------------------------------------------------------------
# helpers


def https_request(port: int, method: str, path: str, *, pki: Pki, cert: Issued | None,
                  headers: dict[str, str] | None = None, timeout: float = 10.0) -> Response:
    """One HTTP/1.1 request over TLS to 127.0.0.1:port, verifying the server against the test CA and
    presenting `cert` (or no client certificate)."""
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert_path))
    ctx.set_alpn_protocols(["http/1.1"])
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        hdrs: dict[str, str] = {}
        for name, value in resp.getheaders():
            key = name.lower()
            hdrs[key] = f"{hdrs[key]}, {value}" if key in hdrs else value
        return Response(resp.status, hdrs, resp.read())
    finally:
        conn.close()


def assert_tls_refused(port: int, pki: Pki, cert: Issued | None) -> None:
    """The listener refuses the client: the handshake fails, or (TLS 1.3, where the server checks the
    client certificate after the client considers the handshake done) the connection is closed with an
    alert before any HTTP response."""
    with pytest.raises((ssl.SSLError, OSError, http.client.HTTPException)):
        resp = https_request(port, "GET", "/api/orders", pki=pki, cert=cert, timeout=5)
        pytest.fail(f"TLS listener answered a client with {'no' if cert is None else cert.name} certificate: {resp}")


_CHALLENGE_TOKEN = re.compile(r'\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)(?:\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+)))?\s*,?')


def challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """Parse a WWW-Authenticate value (several challenges may share one header line, RFC 9110 §11.6.1) into
    [(scheme, {param: value})]. Scheme names are lower-cased."""
    out: list[tuple[str, dict[str, str]]] = []
    pos = 0
    while pos < len(header):
        m = _CHALLENGE_TOKEN.match(header, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        name, quoted, bare = m.group(1), m.group(2), m.group(3)
        if quoted is None and bare is None:
            out.append((name.lower(), {}))
        elif out:
            out[-1][1][name.lower()] = quoted if quoted is not None else bare
    return out


def dpop_challenge(resp: Response) -> dict[str, str]:
    found = [params for scheme, params in challenges(resp.headers.get("www-authenticate", "")) if scheme == "dpop"]
    assert found, f"no DPoP challenge in WWW-Authenticate: {resp}"
    return found[0]


def claims_of(token: str) -> dict:
    return jwt_parts(token)[1]


def cert_bound_token(provider: Provider, client_id: str, cert: Issued | None, resource: str) -> dict:
    """client_credentials for a tls_client_certificate_bound_access_tokens client. The provider runs on
    plain HTTP, so the client certificate goes in x-e2e-client-cert (URL-encoded PEM; see server.js)."""
    headers = {"authorization": "Basic " + base64.b64encode(f"{client_id}:{client_id}-secret".encode()).decode(),
               "content-type": "application/x-www-form-urlencoded"}
    if cert is not None:
        headers["x-e2e-client-cert"] = urllib.parse.quote(cert.pem, safe="")
    req = urllib.request.Request(provider.token_endpoint, method="POST", headers=headers,
                                 data=urllib.parse.urlencode({"grant_type": "client_credentials",
                                                              "resource": resource}).encode())
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return {"http_status": e.code, **json.loads(e.read() or b"{}")}


# --------------------------------------------------------------------------------------------------
# the parts


@dataclass
class Harness:
    """What needs no oidc-authz: the test PKI, the providers, the echo upstream."""
    tmp: Path
    pki: Pki
    providers: dict[str, Provider]
    upstream_port: int
    procs: list[Proc] = field(default_factory=list)

    @property
    def bind(self) -> Provider:
        return self.providers["bind"]


def start_envoy(h: Harness, name: str, template: str, values: dict, *, patch=None) -> tuple[Proc, int]:
    admin = free_port()
    text = render((ROOT / "deploy" / "envoy" / template).read_text(),
                  {**values, "ENVOY_ADMIN_PORT": admin, "ENVOY_LISTEN_ADDRESS": "127.0.0.1",
                   "UPSTREAM_HOST": "127.0.0.1", "UPSTREAM_PORT": h.upstream_port})
    if patch:
        text = patch(text)
    path = h.tmp / f"{name}.yaml"
    path.write_text(text)
    proc = Proc(name, [envoy_bin(), "-c", str(path), "--disable-hot-restart", "--concurrency", "1",
                       "--log-level", "warn"], h.tmp)
    h.procs.append(proc)
    wait_until(f"{name} /ready", lambda: http_status(admin, "/ready") == 200, 30, procs=[proc])
    return proc, admin


def mtls_values(h: Harness) -> dict:
    return {"TLS_CERT_FILE": h.pki.server.cert_path, "TLS_KEY_FILE": h.pki.server.key_path,
            "CLIENT_CA_FILE": h.pki.ca.cert_path}


@pytest.fixture(scope="session")
def harness(request):
    tmp = Path(tempfile.mkdtemp(prefix="oidc-authz-binding-e2e-"))
    h = Harness(tmp=tmp, pki=make_pki(tmp / "pki"), providers={}, upstream_port=free_port())
    try:
        for name in ("bind", "nonce"):
            prov = Provider(name, free_port(), 300, [genkey(f"{name}-1")], tmp)
            h.providers[name] = prov
            prov.start()
        up = Proc("upstream", [sys.executable, str(HERE / "upstream.py"), "--port", str(h.upstream_port)], tmp)
        h.procs.append(up)
        wait_until("upstream", lambda: http_status(h.upstream_port, "/") == 200, 10, procs=[up])
    except BaseException:
        stop_all(h.procs, h.providers)
        dump_logs(tmp)
        raise
    try:
        yield h
    finally:
        stop_all(h.procs, h.providers)
        if request.session.testsfailed:
            dump_logs(tmp)
        elif not os.environ.get("E2E_KEEP_LOGS"):
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_envoy(harness) -> dict[str, int]:
    """HARNESS ONLY: deploy/envoy/envoy-mtls.yaml with ext_authz pointed at a closed port and
    failure_mode_allow flipped to true, so requests reach the echo upstream without oidc-authz. Used to
    show what Envoy itself does: the TLS handshake rules and the XFCC header it forwards."""
    def fail_open(text: str) -> str:
        assert text.count("failure_mode_allow: false") == 2, "envoy-mtls.yaml changed: update this fixture"
        return text.replace("failure_mode_allow: false", "failure_mode_allow: true")

    ports = {"ENVOY_MTLS_PORT": free_port(), "ENVOY_XFCC_PORT": free_port()}
    closed = free_port()  # nothing listens here
    start_envoy(harness, "envoy-tls-harness", "envoy-mtls.yaml",
                {**ports, **mtls_values(harness), "OIDC_AUTHZ_HOST": "127.0.0.1", "OIDC_AUTHZ_PORT": closed},
                patch=fail_open)
    return {"peer": ports["ENVOY_MTLS_PORT"], "xfcc": ports["ENVOY_XFCC_PORT"]}


def authz_config_yaml(h: Harness, grpc_port: int, admin_port: int, http_port: int) -> str:
    """oidc-authz config with DESIGN §10 `binding` blocks (and the HTTP door of DESIGN §9)."""
    return f"""\
listen:
  grpc: 127.0.0.1:{grpc_port}
  admin: 127.0.0.1:{admin_port}
  http: 127.0.0.1:{http_port}

token:
  sources:
    - header: authorization

jwks:
  min_refresh_interval: 1s
  timeout: 2s

clients:
  - name: bound                        # DPoP-bound, certificate-bound (peer) and plain bearer tokens
    issuer: {h.providers["bind"].issuer}
    audiences: [orders-api]
    roles: [realm_access.roles]
    headers:
      x-auth-subject: sub
      x-auth-roles: realm_access.roles
    binding:
      require: false
      dpop:
        algorithms: [ES256]
      mtls:
        certificate: peer
  - name: bound-xfcc                   # certificate-bound tokens, certificate from x-forwarded-client-cert
    issuer: {h.providers["bind"].issuer}
    audiences: [billing-api]
    headers:
      x-auth-subject: sub
    binding:
      mtls:
        certificate: xfcc
  - name: bound-nonce                  # only sender-constrained tokens; DPoP proofs need a server nonce
    issuer: {h.providers["nonce"].issuer}
    audiences: [orders-api]
    headers:
      x-auth-subject: sub
    binding:
      require: true
      dpop:
        algorithms: [ES256]
        max_age: 60s
        nonce: true
        nonce_secret: ${{E2E_DPOP_NONCE_SECRET}}

rules:
  - name: api
    match: {{ prefix: /api }}
default: deny
"""


@dataclass
class Stack:
    h: Harness
    envoy_port: int          # plain HTTP, deploy/envoy/envoy.yaml
    mtls_port: int           # TLS, ingress_mtls_peer
    xfcc_port: int           # TLS, ingress_mtls_xfcc
    http_port: int           # oidc-authz's HTTP door (listen.http), behind the proxies of test_http_door.py

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.envoy_port}{path}"

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Response:
        return http_request(self.envoy_port, method, path, headers)

    def dpop(self, key: DpopKey, token: str, path: str = "/api/orders", method: str = "GET", **proof_kw) -> Response:
        """A DPoP request as RFC 9449 §7.1 has it: `Authorization: DPoP <token>` plus a fresh proof."""
        proof = key.proof(method, self.url(path), access_token=token, **proof_kw)
        return self.get(path, {"authorization": f"DPoP {token}", "dpop": proof}, method)

    def tls(self, port: int, path: str, cert: Issued | None, token: str) -> Response:
        return https_request(port, "GET", path, pki=self.h.pki, cert=cert,
                             headers={"authorization": f"Bearer {token}"})


@pytest.fixture(scope="session")
def stack(harness) -> Stack:
    binary = authz_bin()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"{binary} not found: run `cargo build --release` (scripts/e2e.sh does) "
                    "or set OIDC_AUTHZ_BIN", pytrace=False)
    grpc_port, admin_port, http_port = free_port(), free_port(), free_port()
    cfg = harness.tmp / "oidc-authz-binding.yaml"
    cfg.write_text(authz_config_yaml(harness, grpc_port, admin_port, http_port))
    authz = Proc("oidc-authz", [str(binary), "serve", "--config", str(cfg)], harness.tmp,
                 env={"RUST_LOG": os.environ.get("RUST_LOG", "info"), "RUST_BACKTRACE": "1",
                      "E2E_DPOP_NONCE_SECRET": NONCE_SECRET})
    harness.procs.append(authz)
    wait_until("oidc-authz /readyz == 200", lambda: http_status(admin_port, "/readyz") == 200, 30, procs=[authz])

    envoy_port = free_port()
    start_envoy(harness, "envoy", "envoy.yaml",
                {"ENVOY_PORT": envoy_port, "OIDC_AUTHZ_HOST": "127.0.0.1", "OIDC_AUTHZ_PORT": grpc_port})
    tls_ports = {"ENVOY_MTLS_PORT": free_port(), "ENVOY_XFCC_PORT": free_port()}
    start_envoy(harness, "envoy-mtls", "envoy-mtls.yaml",
                {**tls_ports, **mtls_values(harness), "OIDC_AUTHZ_HOST": "127.0.0.1", "OIDC_AUTHZ_PORT": grpc_port})
    return Stack(harness, envoy_port, tls_ports["ENVOY_MTLS_PORT"], tls_ports["ENVOY_XFCC_PORT"], http_port)


@pytest.fixture(scope="session")
def key() -> DpopKey:
    return DpopKey.generate()


@pytest.fixture()
def dpop_token(harness, key) -> str:
    """A fresh DPoP-bound access token for `key` (dpop-app, aud orders-api)."""
    tok = key.token(harness.bind.token_endpoint, "dpop-app", resource=ORDERS)
    assert tok.token_type == "DPoP", tok.body
    assert claims_of(tok.access_token)["cnf"] == {"jkt": key.thumbprint}
    return tok.access_token


@pytest.fixture()
def mtls_token(harness) -> str:
    body = cert_bound_token(harness.bind, "mtls-app", harness.pki.client, ORDERS)
    assert claims_of(body["access_token"])["cnf"] == {"x5t#S256": harness.pki.client.x5t_s256}
    return body["access_token"]


# ==================================================================================================
# harness: the parts, checked without oidc-authz


def test_harness_provider_issues_dpop_bound_tokens(harness, key):
    tok = key.token(harness.bind.token_endpoint, "dpop-app", resource=ORDERS)
    assert tok.token_type == "DPoP", tok.body
    header, claims = jwt_parts(tok.access_token)
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256"
    assert claims["aud"] == "orders-api" and claims["sub"] == "dpop-app"
    # RFC 9449 §6.1: cnf.jkt is the RFC 7638 thumbprint of the proof's key
    assert claims["cnf"] == {"jkt": key.thumbprint}
    assert jwk_thumbprint(key.public_jwk) == key.thumbprint


def test_harness_rfc7638_thumbprint_matches_the_rfc_example():
    rfc7638 = {"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
               "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
                    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY3"
                    "68QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4"
                    "lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
    assert jwk_thumbprint(rfc7638) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_harness_provider_demands_dpop_nonce_and_client_retries(harness):
    fresh = DpopKey.generate()  # no nonce remembered yet
    tok = fresh.token(harness.bind.token_endpoint, "dpop-nonce-app", resource=ORDERS)
    assert tok.nonce_used, "the provider did not demand a nonce, so the retry path was not exercised"
    assert tok.token_type == "DPoP" and claims_of(tok.access_token)["cnf"] == {"jkt": fresh.thumbprint}


def test_harness_provider_refuses_dpop_only_client_without_proof(harness):
    with pytest.raises(AssertionError, match="token request failed: 400"):
        harness.bind.token("dpop-app", ORDERS)


def test_harness_unbound_client_still_gets_bearer_tokens_without_cnf(harness):
    claims = claims_of(harness.bind.token("orders-reader", ORDERS))  # Provider.token asserts token_type Bearer
    assert "cnf" not in claims


def test_harness_provider_issues_certificate_bound_tokens(harness):
    pki = harness.pki
    body = cert_bound_token(harness.bind, "mtls-app", pki.client, ORDERS)
    assert body.get("token_type") == "Bearer", body
    claims = claims_of(body["access_token"])
    # RFC 8705 §3.1: base64url(SHA-256(DER)), computed here independently of certs.x5t_s256
    expected = b64u(hashlib.sha256(pki.client.der).digest())
    assert claims["cnf"] == {"x5t#S256": expected}
    assert expected == pki.client.x5t_s256 != pki.other.x5t_s256
    # the same client with another certificate gets a token bound to that one
    other = claims_of(cert_bound_token(harness.bind, "mtls-app", pki.other, BILLING)["access_token"])
    assert other["cnf"] == {"x5t#S256": pki.other.x5t_s256} and other["aud"] == "billing-api"
    # and none without a certificate
    refused = cert_bound_token(harness.bind, "mtls-app", None, ORDERS)
    assert refused.get("http_status") == 400 and refused.get("error") == "invalid_grant", refused


def test_harness_client_proofs_pass_rfc9449_checks(key):
    url, token = "http://127.0.0.1:8080/api/orders?page=2#frag", "header.payload.signature"
    proof = key.proof("GET", url, access_token=token)
    claims = verify_proof(proof, htm="GET", url=url, access_token=token, expected_jkt=key.thumbprint)
    assert claims["htu"] == "http://127.0.0.1:8080/api/orders"  # no query, no fragment
    assert claims["ath"] == ath(token)
    assert len(claims["jti"]) >= 16 and abs(claims["iat"] - time.time()) < 5
    header = json.loads(base64.urlsafe_b64decode(proof.split(".")[0] + "=="))
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256"
    assert set(header["jwk"]) == {"kty", "crv", "x", "y"}  # public members only
    assert key.proof("GET", url, access_token=token).split(".")[1] != proof.split(".")[1]  # fresh jti
    assert verify_proof(key.proof("POST", url, nonce="n-1"), htm="POST", url=url, nonce="n-1")["nonce"] == "n-1"


@pytest.mark.parametrize("bad", ["htm", "htu", "ath", "other_key", "old_iat", "typ", "signature"])
def test_harness_proof_checker_is_not_vacuous(key, bad):
    url, token = "http://127.0.0.1:8080/api/orders", "header.payload.signature"
    proof = {
        "htm": lambda: key.proof("POST", url, access_token=token),
        "htu": lambda: key.proof("GET", "http://127.0.0.1:8080/api/other", access_token=token),
        "ath": lambda: key.proof("GET", url, access_token="another.access.token"),
        "other_key": lambda: DpopKey.generate().proof("GET", url, access_token=token),
        "old_iat": lambda: key.proof("GET", url, access_token=token, iat=int(time.time()) - 600),
        "typ": lambda: key.proof("GET", url, access_token=token, header={"typ": "JWT"}),
        "signature": lambda: key.proof("GET", url, access_token=token)[:-4] + "AAAA",
    }[bad]()
    with pytest.raises(ProofError):
        verify_proof(proof, htm="GET", url=url, access_token=token, expected_jkt=key.thumbprint)


def test_harness_challenge_parser():
    parsed = challenges('Bearer realm="oidc-authz", error="invalid_token", DPoP algs="ES256 PS256", '
                        'error="invalid_dpop_proof"')
    assert parsed == [("bearer", {"realm": "oidc-authz", "error": "invalid_token"}),
                      ("dpop", {"algs": "ES256 PS256", "error": "invalid_dpop_proof"})]


def test_harness_envoy_tls_listener_requires_a_certificate_from_the_ca(harness, tls_envoy):
    pki = harness.pki
    for port in tls_envoy.values():
        # the right certificate: handshake done, request reaches the upstream (ext_authz fails open here)
        echo = upstream_saw(https_request(port, "GET", "/api/orders", pki=pki, cert=pki.client))
        assert echo["path"] == "/api/orders"
        upstream_saw(https_request(port, "GET", "/api/orders", pki=pki, cert=pki.other))
        assert_tls_refused(port, pki, None)        # no client certificate
        assert_tls_refused(port, pki, pki.rogue)   # a certificate from another CA


def test_harness_envoy_mtls_sample_fails_closed_without_oidc_authz(harness):
    # the sample as shipped (failure_mode_allow: false) in front of a closed ext_authz port: 503, never the upstream
    ports = {"ENVOY_MTLS_PORT": free_port(), "ENVOY_XFCC_PORT": free_port()}
    proc, _ = start_envoy(harness, "envoy-tls-closed", "envoy-mtls.yaml",
                          {**ports, **mtls_values(harness), "OIDC_AUTHZ_HOST": "127.0.0.1",
                           "OIDC_AUTHZ_PORT": free_port()})
    try:
        for port in ports.values():
            resp = https_request(port, "GET", "/api/orders", pki=harness.pki, cert=harness.pki.client)
            assert resp.status == 503 and b'"headers"' not in resp.body, resp
    finally:
        proc.stop()


def test_harness_envoy_forwards_the_verified_certificate_in_xfcc(harness, tls_envoy):
    pki = harness.pki
    forged = f"Hash={hashlib.sha256(pki.client.der).hexdigest()};Cert=\"{urllib.parse.quote(pki.client.pem)}\""
    for cert in (pki.client, pki.other):
        h = upstream_saw(https_request(tls_envoy["xfcc"], "GET", "/api/x", pki=pki, cert=cert,
                                       headers={"x-forwarded-client-cert": forged}))["headers"]
        xfcc = h["x-forwarded-client-cert"]
        assert "," not in xfcc, xfcc  # SANITIZE_SET: only this Envoy's element, the caller's is dropped
        fields = dict(part.split("=", 1) for part in xfcc.split(";"))
        assert fields["Hash"] == hashlib.sha256(cert.der).hexdigest(), xfcc
        assert urllib.parse.unquote(fields["Cert"].strip('"')) == cert.pem, xfcc
    # the peer listener (`mtls.certificate: peer`) drops a caller's XFCC and adds none
    h = upstream_saw(https_request(tls_envoy["peer"], "GET", "/api/x", pki=pki, cert=pki.other,
                                   headers={"x-forwarded-client-cert": forged}))["headers"]
    assert "x-forwarded-client-cert" not in h


# ==================================================================================================
# DPoP through the real Envoy (plain HTTP) and oidc-authz — DESIGN §10


def test_dpop_valid_proof_is_allowed_with_claim_headers(stack, key, dpop_token):
    h = upstream_saw(stack.dpop(key, dpop_token, "/api/orders?page=2"))["headers"]  # htu has no query
    assert h["x-auth-subject"] == "dpop-app"
    assert h["x-auth-roles"] == "orders_reader"
    assert h["x-authz-client"] == "bound"
    # every request carries its own proof, the cached token notwithstanding
    upstream_saw(stack.dpop(key, dpop_token, "/api/orders", method="POST"))


def test_dpop_bound_token_sent_as_bearer_is_binding_mismatch(stack, key, dpop_token):
    proof = key.proof("GET", stack.url("/api/orders"), access_token=dpop_token)
    for headers in ({"authorization": f"Bearer {dpop_token}"},                 # downgrade, no proof
                    {"authorization": f"Bearer {dpop_token}", "dpop": proof}):  # downgrade with a proof
        resp = stack.get("/api/orders", headers)
        assert_denied(resp, 401, "binding_mismatch")


def test_dpop_scheme_with_unbound_token_is_binding_mismatch(stack, key, harness):
    bearer = harness.bind.token("orders-reader", ORDERS)
    assert_denied(stack.dpop(key, bearer), 401, "binding_mismatch")


def test_dpop_replayed_proof_is_refused(stack, key, dpop_token):
    path = "/api/orders"
    headers = {"authorization": f"DPoP {dpop_token}",
               "dpop": key.proof("GET", stack.url(path), access_token=dpop_token)}
    upstream_saw(stack.get(path, headers))
    resp = stack.get(path, headers)
    assert_denied(resp, 401, "invalid_dpop_proof")
    assert dpop_challenge(resp).get("error") == "invalid_dpop_proof", resp


@pytest.mark.parametrize("bad", ["htu_path", "htu_port", "htu_scheme", "htm", "ath", "other_key", "old_iat",
                                 "future_iat", "no_jti", "private_jwk", "alg_none"])
def test_dpop_bad_proof_is_invalid_dpop_proof(stack, key, dpop_token, bad):
    path = "/api/orders"
    url = stack.url(path)
    other_url = {"htu_path": stack.url("/api/other"),
                 "htu_port": f"http://127.0.0.1:{stack.envoy_port + 1}{path}",
                 "htu_scheme": f"https://127.0.0.1:{stack.envoy_port}{path}"}
    if bad in other_url:
        proof = key.proof("GET", other_url[bad], access_token=dpop_token)
    elif bad == "htm":
        proof = key.proof("POST", url, access_token=dpop_token)
    elif bad == "ath":
        proof = key.proof("GET", url, access_token="another.access.token")
    elif bad == "other_key":  # well-formed, signed by a key whose thumbprint is not cnf.jkt
        proof = DpopKey.generate().proof("GET", url, access_token=dpop_token)
    elif bad == "old_iat":  # older than max_age (60s) + leeway (30s)
        proof = key.proof("GET", url, access_token=dpop_token, iat=int(time.time()) - 300)
    elif bad == "future_iat":
        proof = key.proof("GET", url, access_token=dpop_token, iat=int(time.time()) + 300)
    elif bad == "no_jti":
        proof = key.proof("GET", url, access_token=dpop_token, claims={"jti": None})
    elif bad == "private_jwk":
        d = key.private.private_numbers().private_value.to_bytes(32, "big")
        proof = key.proof("GET", url, access_token=dpop_token, header={"jwk": {**key.public_jwk, "d": b64u(d)}})
    else:  # alg none, no signature
        hdr = b64u(json.dumps({"typ": "dpop+jwt", "alg": "none", "jwk": key.public_jwk}).encode())
        body = b64u(json.dumps({"jti": "x" * 16, "htm": "GET", "htu": url, "iat": int(time.time()),
                                "ath": ath(dpop_token)}).encode())
        proof = f"{hdr}.{body}."
    resp = stack.get(path, {"authorization": f"DPoP {dpop_token}", "dpop": proof})
    assert_denied(resp, 401, "invalid_dpop_proof")
    assert dpop_challenge(resp).get("error") == "invalid_dpop_proof", resp


def test_dpop_without_proof_is_401_with_dpop_challenge(stack, dpop_token):
    resp = stack.get("/api/orders", {"authorization": f"DPoP {dpop_token}"})
    assert_denied(resp, 401, "invalid_dpop_proof")
    challenge = dpop_challenge(resp)
    assert challenge.get("error") == "invalid_dpop_proof", resp
    # DESIGN §10: a client with DPoP configured advertises its proof algorithms
    assert challenge.get("algs", "").split() == ["ES256"], resp


def test_dpop_two_proof_headers_are_refused(stack, key, dpop_token):
    # http.client sends a repeated header as two lines; Envoy passes both to ext_authz (joined with ",")
    path = "/api/orders"
    conn = http.client.HTTPConnection("127.0.0.1", stack.envoy_port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.putheader("authorization", f"DPoP {dpop_token}")
        conn.putheader("dpop", key.proof("GET", stack.url(path), access_token=dpop_token))
        conn.putheader("dpop", key.proof("GET", stack.url(path), access_token=dpop_token))
        conn.endheaders()
        r = conn.getresponse()
        resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()
    assert_denied(resp, 401, "invalid_dpop_proof")


def test_bearer_token_without_cnf_still_works_when_binding_not_required(stack, harness):
    bearer = harness.bind.token("orders-reader", ORDERS)
    h = upstream_saw(stack.get("/api/orders", {"authorization": f"Bearer {bearer}"}))["headers"]
    assert h["x-authz-client"] == "bound" and h["x-auth-subject"] == "orders-reader"


# -- nonces and binding.require (client bound-nonce)


def test_binding_required_refuses_a_token_without_cnf(stack, harness):
    bearer = harness.providers["nonce"].token("orders-reader", ORDERS)
    resp = stack.get("/api/orders", {"authorization": f"Bearer {bearer}"})
    assert_denied(resp, 401, "binding_required")


def test_dpop_nonce_is_demanded_then_accepted(stack, harness):
    k = DpopKey.generate()
    tok = k.token(harness.providers["nonce"].token_endpoint, "dpop-app", resource=ORDERS).access_token
    resp = stack.dpop(k, tok)  # no nonce yet
    assert_denied(resp, 401, "use_dpop_nonce")
    assert dpop_challenge(resp).get("error") == "use_dpop_nonce", resp
    nonce = resp.headers.get("dpop-nonce")
    assert nonce, f"use_dpop_nonce without a DPoP-Nonce header: {resp}"
    h = upstream_saw(stack.dpop(k, tok, nonce=nonce))["headers"]
    assert h["x-authz-client"] == "bound-nonce" and h["x-auth-subject"] == "dpop-app"
    resp = stack.dpop(k, tok, nonce="not-a-nonce-this-server-issued")
    assert_denied(resp, 401, "use_dpop_nonce")
    assert resp.headers.get("dpop-nonce"), resp


# ==================================================================================================
# mTLS-bound tokens through the real Envoy TLS listeners — DESIGN §10, RFC 8705 §3


def test_mtls_bound_token_with_the_right_certificate_is_allowed(stack, mtls_token):
    h = upstream_saw(stack.tls(stack.mtls_port, "/api/orders", stack.h.pki.client, mtls_token))["headers"]
    assert h["x-authz-client"] == "bound" and h["x-auth-subject"] == "mtls-app"


def test_mtls_bound_token_with_another_certificate_is_binding_mismatch(stack, mtls_token):
    resp = stack.tls(stack.mtls_port, "/api/orders", stack.h.pki.other, mtls_token)  # same CA, other cert
    assert_denied(resp, 401, "binding_mismatch")


def test_mtls_bound_token_without_a_certificate_is_binding_mismatch(stack, mtls_token):
    # the plain-HTTP listener: no client certificate at all
    resp = stack.get("/api/orders", {"authorization": f"Bearer {mtls_token}"})
    assert_denied(resp, 401, "binding_mismatch")


def test_mtls_forged_xfcc_does_not_stand_in_for_the_certificate(stack, mtls_token):
    # Belt and braces: Envoy drops a caller's XFCC on every listener here (envoy-mtls.yaml: SANITIZE;
    # envoy.yaml: Envoy's default, SANITIZE), and oidc-authz in `peer` mode never reads the header.
    pki = stack.h.pki
    forged = f"Hash={hashlib.sha256(pki.client.der).hexdigest()};Cert=\"{urllib.parse.quote(pki.client.pem)}\""
    resp = https_request(stack.mtls_port, "GET", "/api/orders", pki=pki, cert=pki.other,
                         headers={"authorization": f"Bearer {mtls_token}", "x-forwarded-client-cert": forged})
    assert_denied(resp, 401, "binding_mismatch")
    # and over plain HTTP, with no client certificate at all
    resp = stack.get("/api/orders", {"authorization": f"Bearer {mtls_token}", "x-forwarded-client-cert": forged})
    assert_denied(resp, 401, "binding_mismatch")


def test_bearer_token_without_cnf_works_over_mtls(stack, harness):
    bearer = harness.bind.token("orders-reader", ORDERS)
    h = upstream_saw(stack.tls(stack.mtls_port, "/api/orders", harness.pki.other, bearer))["headers"]
    assert h["x-authz-client"] == "bound"


def test_mtls_xfcc_mode(stack, harness):
    pki = harness.pki
    token = cert_bound_token(harness.bind, "mtls-app", pki.client, BILLING)["access_token"]
    assert claims_of(token)["aud"] == "billing-api"
    h = upstream_saw(stack.tls(stack.xfcc_port, "/api/orders", pki.client, token))["headers"]
    assert h["x-authz-client"] == "bound-xfcc" and h["x-auth-subject"] == "mtls-app"
    assert_denied(stack.tls(stack.xfcc_port, "/api/orders", pki.other, token), 401, "binding_mismatch")


def test_dpop_works_on_the_tls_listener_too(stack, key, dpop_token):
    # htu carries the https scheme: oidc-authz takes the scheme from the Check's attributes
    path = "/api/orders"
    proof = key.proof("GET", f"https://127.0.0.1:{stack.mtls_port}{path}", access_token=dpop_token)
    resp = https_request(stack.mtls_port, "GET", path, pki=stack.h.pki, cert=stack.h.pki.other,
                         headers={"authorization": f"DPoP {dpop_token}", "dpop": proof})
    assert upstream_saw(resp)["headers"]["x-auth-subject"] == "dpop-app"
    # a proof for that https URL, sent over the plain-HTTP listener (other scheme and port), is refused
    proof = key.proof("GET", f"https://127.0.0.1:{stack.mtls_port}{path}", access_token=dpop_token)
    assert_denied(stack.get(path, {"authorization": f"DPoP {dpop_token}", "dpop": proof}), 401, "invalid_dpop_proof")


# ==================================================================================================
# the HTTP door (DESIGN §9) behind the real nginx, Caddy and Envoy http_service, started from their
# deploy/ samples (test_http_door.py's starters): DPoP proofs are checked against the scheme, host and
# path the proxy forwards; a use_dpop_nonce deny's DPoP-Nonce reaches the client; a peer-certificate
# binding cannot be proven on this door and fails closed.

DOOR_PROXIES = ["nginx", "caddy", "envoy_http"]


@pytest.fixture(scope="session")
def door(harness, stack) -> dict[str, int]:
    from test_http_door import start_caddy, start_envoy_http, start_nginx  # noqa: PLC0415 - helpers only
    ports = {}
    for name, start in (("nginx", start_nginx), ("caddy", start_caddy), ("envoy_http", start_envoy_http)):
        proc, port = start(harness.tmp, stack.http_port, harness.upstream_port)
        harness.procs.append(proc)
        ports[name] = port
    return ports


@pytest.fixture(params=DOOR_PROXIES)
def door_proxy(request) -> str:
    return request.param


def door_dpop(port: int, key: DpopKey, token: str, path: str = "/api/orders", method: str = "GET",
              htu: str | None = None, **proof_kw) -> Response:
    proof = key.proof(method, htu or f"http://127.0.0.1:{port}{path}", access_token=token, **proof_kw)
    return http_request(port, method, path, {"authorization": f"DPoP {token}", "dpop": proof})


def test_http_door_dpop_proof_is_checked_against_what_the_proxy_forwards(door, door_proxy, key, dpop_token):
    port = door[door_proxy]
    h = upstream_saw(door_dpop(port, key, dpop_token, "/api/orders?page=2"))["headers"]  # htu has no query
    assert h["x-authz-client"] == "bound" and h["x-auth-subject"] == "dpop-app"
    upstream_saw(door_dpop(port, key, dpop_token, "/api/orders", method="POST"))
    # a proof for another scheme, another port, another method: refused (never a 200)
    for wrong in ({"htu": f"https://127.0.0.1:{port}/api/orders"}, {"htu": f"http://127.0.0.1:{port + 1}/api/orders"},
                  {"htu": f"http://127.0.0.1:{port}/api/other"}):
        assert_denied(door_dpop(port, key, dpop_token, **wrong), 401, "invalid_dpop_proof")
    resp = http_request(port, "GET", "/api/orders", {"authorization": f"Bearer {dpop_token}"})  # downgrade
    assert_denied(resp, 401, "binding_mismatch")


def test_http_door_dpop_nonce_reaches_the_client(harness, door, door_proxy):
    port = door[door_proxy]
    k = DpopKey.generate()
    tok = k.token(harness.providers["nonce"].token_endpoint, "dpop-app", resource=ORDERS).access_token
    resp = door_dpop(port, k, tok)
    assert_denied(resp, 401, "use_dpop_nonce")
    nonce = resp.headers.get("dpop-nonce")
    assert nonce, f"{door_proxy}: use_dpop_nonce without a DPoP-Nonce header: {resp}"
    h = upstream_saw(door_dpop(port, k, tok, nonce=nonce))["headers"]
    assert h["x-authz-client"] == "bound-nonce"


def test_http_door_peer_certificate_binding_fails_closed(harness, door, door_proxy, mtls_token):
    # the proxy's TLS connection is not ours: no peer certificate, and a caller's XFCC does not stand in
    port = door[door_proxy]
    xfcc = f"Hash={hashlib.sha256(harness.pki.client.der).hexdigest()}"  # the right certificate's hash
    for headers in ({}, {"x-forwarded-client-cert": xfcc}):
        resp = http_request(port, "GET", "/api/orders", {"authorization": f"Bearer {mtls_token}", **headers})
        assert_denied(resp, 401, "binding_mismatch")
