"""deploy/traefik checked against Traefik's documented ForwardAuth contract (Traefik is not installable in
this project's CI, so it cannot run in e2e/test_http_door.py). No network, no processes.

The contract, from Traefik's ForwardAuth documentation (doc.traefik.io, middlewares/http/forwardauth, v2.x
and v3.x alike):
  * the request to `address` carries X-Forwarded-Method, X-Forwarded-Proto, X-Forwarded-Host,
    X-Forwarded-Uri and X-Forwarded-For describing the original request (plus its headers);
  * a 2xx answer grants access: the headers named in `authResponseHeaders` are copied from the answer onto
    the forwarded request, "replacing any existing conflicting headers";
  * any other answer is returned to the client as it is;
  * `trustForwardHeader` (default false) would make Traefik trust the caller's X-Forwarded-* headers.
oidc-authz's /forward-auth (DESIGN §9) reads exactly X-Forwarded-Method / -Uri / -Host / -Proto, so with
trustForwardHeader false the caller cannot choose what is checked.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TRAEFIK = ROOT / "deploy" / "traefik"
# the headers oidc-authz's /forward-auth reads to describe the original request (DESIGN §9) must be a subset
# of what Traefik documents sending
TRAEFIK_SENDS = {"x-forwarded-method", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-uri", "x-forwarded-for"}
DOOR_READS = {"x-forwarded-method", "x-forwarded-uri", "x-forwarded-host", "x-forwarded-proto"}


def claim_headers() -> set[str]:
    """Every claim header of the sample oidc-authz config (deploy/kubernetes/config.yaml) and of the e2e
    configs (e2e/test_http_door.py), plus x-authz-client."""
    cfg = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "config.yaml").read_text())
    names = {h.lower() for c in cfg["clients"] for h in (c.get("headers") or {})}
    import test_http_door  # noqa: PLC0415 - the list the other proxy samples are tested with

    return names | {h.lower() for h in test_http_door.CLAIM_HEADERS} | {"x-authz-client"}


def dynamic() -> dict:
    return yaml.safe_load((TRAEFIK / "dynamic.yaml").read_text())


def labels() -> dict[str, str]:
    compose = yaml.safe_load((TRAEFIK / "docker-compose.labels.yaml").read_text())
    out = {}
    for svc in compose["services"].values():
        for label in svc.get("labels") or []:
            k, _, v = label.partition("=")
            out[k] = v
    return out


def test_the_door_reads_only_headers_traefik_sends():
    assert DOOR_READS <= TRAEFIK_SENDS


def test_dynamic_forward_auth_middleware():
    http = dynamic()["http"]
    fa = http["middlewares"]["oidc-authz"]["forwardAuth"]
    assert fa["address"].endswith(":9004/forward-auth"), fa["address"]
    assert fa["address"].split("://", 1)[1].split("/", 1)[1] == "forward-auth"
    assert fa["trustForwardHeader"] is False
    assert {h.lower() for h in fa["authResponseHeaders"]} == claim_headers()
    assert "authResponseHeadersRegex" not in fa
    # authRequestHeaders would filter what is sent: Authorization / Cookie / DPoP must reach oidc-authz
    assert "authRequestHeaders" not in fa


def test_dynamic_strips_claim_headers_before_forward_auth():
    http = dynamic()["http"]
    strip = http["middlewares"]["strip-claims"]["headers"]["customRequestHeaders"]
    assert {h.lower() for h in strip} == claim_headers()
    assert set(strip.values()) == {""}  # an empty value removes the header (Headers middleware)
    for router in http["routers"].values():
        mws = router["middlewares"]
        assert "oidc-authz" in mws
        assert mws.index("strip-claims") < mws.index("oidc-authz")


def test_labels_match_dynamic():
    lab = {k.lower(): v for k, v in labels().items()}
    pre = "traefik.http.middlewares.oidc-authz.forwardauth."
    assert lab[pre + "address"].endswith(":9004/forward-auth")
    assert lab[pre + "trustforwardheader"] == "false"
    assert {h.lower() for h in lab[pre + "authresponseheaders"].split(",")} == claim_headers()
    strip = {k.rsplit(".", 1)[1] for k, v in lab.items()
             if k.startswith("traefik.http.middlewares.strip-claims.headers.customrequestheaders.") and v == ""}
    assert strip == claim_headers()
    assert lab["traefik.http.routers.app.middlewares"] == "strip-claims,oidc-authz"
