"""A DPoP client (RFC 9449) for the end-to-end tests: an EC P-256 key, real proofs, DPoP-bound tokens.

    key = DpopKey.generate()
    tok = key.token(token_endpoint, "dpop-app", resource="https://api.example/orders")   # DPoP-bound token
    proof = key.proof("GET", "http://127.0.0.1:8080/api/orders", access_token=tok.access_token)
    headers = {"authorization": f"DPoP {tok.access_token}", "dpop": proof}

`token()` is the client_credentials grant (client_secret_basic) with a `DPoP` header; when the provider
answers 400 `use_dpop_nonce` with a `DPoP-Nonce` header it retries once with that nonce (RFC 9449 §8),
and the same for a resource server's 401 `use_dpop_nonce` (`DpopKey.nonce_for` keeps the last nonce per
origin). `verify_proof()` is an independent RFC 9449 §4.3 check of a proof, used by the tests to show the
proofs this client makes are valid before they are used against oidc-authz.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64u_decode(seg: str) -> bytes:
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def jwk_thumbprint(jwk: dict) -> str:
    """RFC 7638 SHA-256 thumbprint: the required members only, lexicographic order, no whitespace."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return b64u(hashlib.sha256(canonical.encode()).digest())


def ath(access_token: str) -> str:
    """RFC 9449 §4.2 `ath`: base64url(SHA-256(ASCII access token))."""
    return b64u(hashlib.sha256(access_token.encode("ascii")).digest())


def htu_of(url: str) -> str:
    """The `htu` for a request URL: no query, no fragment (RFC 9449 §4.2)."""
    p = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((p.scheme, p.netloc, p.path or "/", "", ""))


@dataclass
class TokenResponse:
    access_token: str
    token_type: str
    body: dict
    nonce_used: str | None


@dataclass
class DpopKey:
    private: ec.EllipticCurvePrivateKey
    nonces: dict[str, str] = field(default_factory=dict)  # origin -> last DPoP-Nonce it sent

    @classmethod
    def generate(cls) -> DpopKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_jwk(self) -> dict:
        n = self.private.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": b64u(n.x.to_bytes(32, "big")), "y": b64u(n.y.to_bytes(32, "big"))}

    @property
    def thumbprint(self) -> str:
        return jwk_thumbprint(self.public_jwk)

    def proof(self, htm: str, url: str, *, access_token: str | None = None, nonce: str | None = None,
              iat: int | None = None, jti: str | None = None, header: dict | None = None,
              claims: dict | None = None) -> str:
        """A DPoP proof JWT (ES256). `header` / `claims` override or add members (None values remove
        them): the attack tests use that to make one thing wrong at a time."""
        hdr: dict[str, Any] = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.public_jwk}
        body: dict[str, Any] = {"jti": jti or str(uuid.uuid4()), "htm": htm, "htu": htu_of(url),
                                "iat": int(time.time()) if iat is None else iat}
        if access_token is not None:
            body["ath"] = ath(access_token)
        if nonce is not None:
            body["nonce"] = nonce
        for src, dst in ((header or {}, hdr), (claims or {}, body)):
            for k, v in src.items():
                if v is None:
                    dst.pop(k, None)
                else:
                    dst[k] = v
        signing_input = f"{b64u(_json(hdr))}.{b64u(_json(body))}".encode()
        r, s = decode_dss_signature(self.private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return f"{signing_input.decode()}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def nonce_for(self, url: str) -> str | None:
        p = urllib.parse.urlsplit(url)
        return self.nonces.get(f"{p.scheme}://{p.netloc}")

    def remember_nonce(self, url: str, nonce: str | None) -> None:
        if nonce:
            p = urllib.parse.urlsplit(url)
            self.nonces[f"{p.scheme}://{p.netloc}"] = nonce

    def token(self, token_endpoint: str, client_id: str, *, resource: str | None = None,
              secret: str | None = None) -> TokenResponse:
        """client_credentials with client_secret_basic and a DPoP proof; one retry on use_dpop_nonce."""
        form = {"grant_type": "client_credentials"}
        if resource:
            form["resource"] = resource
        basic = base64.b64encode(f"{client_id}:{secret or client_id + '-secret'}".encode()).decode()
        for attempt in range(2):
            nonce = self.nonce_for(token_endpoint)
            req = urllib.request.Request(
                token_endpoint, data=urllib.parse.urlencode(form).encode(), method="POST",
                headers={"authorization": f"Basic {basic}",
                         "content-type": "application/x-www-form-urlencoded",
                         "dpop": self.proof("POST", token_endpoint, nonce=nonce)})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    self.remember_nonce(token_endpoint, r.headers.get("dpop-nonce"))
                    body = json.load(r)
                return TokenResponse(body["access_token"], body["token_type"], body, nonce)
            except urllib.error.HTTPError as e:
                raw = e.read()
                fresh = e.headers.get("dpop-nonce")
                try:
                    err = json.loads(raw).get("error")
                except ValueError:
                    err = None
                if attempt == 0 and err == "use_dpop_nonce" and fresh:
                    self.remember_nonce(token_endpoint, fresh)
                    continue
                raise AssertionError(f"DPoP token request failed: {e.code} {dict(e.headers)} {raw!r}") from e
        raise AssertionError("unreachable")


class ProofError(AssertionError):
    pass


def verify_proof(proof: str, *, htm: str, url: str, access_token: str | None = None,
                 expected_jkt: str | None = None, nonce: str | None = None, max_age: int = 60,
                 leeway: int = 30, now: float | None = None) -> dict:
    """An independent RFC 9449 §4.3 check of one proof (ES256 only: what this client makes). Returns the
    claims; raises ProofError naming the first check that fails."""
    now = time.time() if now is None else now
    parts = proof.split(".")
    if len(parts) != 3:
        raise ProofError("not a compact JWS")
    hdr, claims = json.loads(b64u_decode(parts[0])), json.loads(b64u_decode(parts[1]))
    if hdr.get("typ") != "dpop+jwt":
        raise ProofError("typ")
    if hdr.get("alg") != "ES256":
        raise ProofError("alg")
    jwk = hdr.get("jwk")
    if not isinstance(jwk, dict) or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ProofError("jwk")
    if "d" in jwk:
        raise ProofError("jwk has private members")
    pub = ec.EllipticCurvePublicNumbers(int.from_bytes(b64u_decode(jwk["x"]), "big"),
                                        int.from_bytes(b64u_decode(jwk["y"]), "big"), ec.SECP256R1()).public_key()
    sig = b64u_decode(parts[2])
    if len(sig) != 64:
        raise ProofError("signature length")
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        pub.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise ProofError("signature") from e
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise ProofError("jti")
    if claims.get("htm") != htm:
        raise ProofError("htm")
    if claims.get("htu") != htu_of(url):
        raise ProofError("htu")
    iat = claims.get("iat")
    if not isinstance(iat, int) or not (now - max_age - leeway <= iat <= now + leeway):
        raise ProofError("iat")
    if access_token is not None and claims.get("ath") != ath(access_token):
        raise ProofError("ath")
    if expected_jkt is not None and jwk_thumbprint(jwk) != expected_jkt:
        raise ProofError("thumbprint != cnf.jkt")
    if nonce is not None and claims.get("nonce") != nonce:
        raise ProofError("nonce")
    return claims
