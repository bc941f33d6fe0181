"""End-to-end tests of the HTTP authorization API (DESIGN §9) through the REAL proxies:

    client ──▶ nginx  (deploy/nginx/oidc-authz.conf, auth_request)   ──▶ oidc-authz /forward-auth ─┐
    client ──▶ Caddy  (deploy/caddy/Caddyfile, forward_auth)          ──▶ oidc-authz /forward-auth ─┤ listen.http
    client ──▶ Envoy  (deploy/envoy/envoy-http.yaml, http_service)    ──▶ oidc-authz /ext-authz/…  ─┘
                 └──▶ e2e/upstream.py (echoes the headers it received)

plus direct requests to the door (no proxy) for what no proxy can show (missing headers, precedence of
X-Forwarded-* over X-Original-*, the Envoy anti-spoofing list, the `api` metric label).

Each proxy runs unprivileged on 127.0.0.1 with its deploy/ sample rendered into the temporary directory
(so these tests prove the samples). Tokens come from the real node-oidc-provider of e2e/test_e2e.py (same
helpers, imported). nginx and caddy must be on PATH (scripts/setup-e2e.sh fails when they are not; .ci/run
installs them from Debian): a missing proxy fails the tests, it never skips them.

Environment overrides as in e2e/test_e2e.py (OIDC_AUTHZ_BIN, ENVOY, NODE, E2E_KEEP_LOGS), plus NGINX and
CADDY (binaries).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from render_envoy import render  # noqa: E402
from test_e2e import (  # noqa: E402 - helpers only (no fixtures, no tests)
    BILLING,
    ORDERS,
    Proc,
    Provider,
    Response,
    authz_bin,
    b64url_encode,
    dump_logs,
    envoy_bin,
    free_port,
    genkey,
    http_request,
    http_status,
    jwt_parts,
    wait_until,
)

# every claim header the config below maps (the union over its clients), plus x-authz-client: the same
# list the deploy/ samples copy (nginx proxy_set_header, Caddy copy_headers, Envoy allowed_upstream_headers,
# Traefik authResponseHeaders)
CLAIM_HEADERS = ["x-auth-subject", "x-auth-email", "x-auth-roles", "x-auth-client-id", "x-authz-client"]
PROXIES = ["nginx", "caddy", "envoy_http"]


# --------------------------------------------------------------------------------------------------
# starting the proxies from the deploy/ samples (also used to check the samples against a stand-in)


def nginx_bin() -> str:
    return os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"


def caddy_bin() -> str:
    return os.environ.get("CADDY") or shutil.which("caddy") or "caddy"


def port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


NGINX_MAIN = """\
daemon off;
worker_processes 1;
pid nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
  include oidc-authz.conf;
}
"""


def start_nginx(tmp: Path, authz_http_port: int, upstream_port: int) -> tuple[Proc, int]:
    port = free_port()
    prefix = tmp / "nginx"
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    (prefix / "oidc-authz.conf").write_text(render((ROOT / "deploy" / "nginx" / "oidc-authz.conf").read_text(), {
        "NGINX_LISTEN": f"127.0.0.1:{port}", "OIDC_AUTHZ_HOST": "127.0.0.1", "OIDC_AUTHZ_HTTP_PORT": authz_http_port,
        "UPSTREAM_HOST": "127.0.0.1", "UPSTREAM_PORT": upstream_port,
    }))
    (prefix / "nginx.conf").write_text(NGINX_MAIN)
    proc = Proc("nginx", [nginx_bin(), "-p", str(prefix), "-e", str(prefix / "error.log"),
                          "-c", str(prefix / "nginx.conf")], tmp)
    wait_until("nginx listening", lambda: port_open(port), 10, procs=[proc])
    return proc, port


def start_caddy(tmp: Path, authz_http_port: int, upstream_port: int) -> tuple[Proc, int]:
    port = free_port()
    site = render((ROOT / "deploy" / "caddy" / "Caddyfile").read_text(), {
        "CADDY_SITE": f"http://127.0.0.1:{port}", "OIDC_AUTHZ_HOST": "127.0.0.1",
        "OIDC_AUTHZ_HTTP_PORT": authz_http_port, "UPSTREAM_HOST": "127.0.0.1", "UPSTREAM_PORT": upstream_port,
    })
    caddyfile = tmp / "Caddyfile"
    caddyfile.write_text("{\n\tadmin off\n\tauto_https off\n}\n\n" + site)
    home = tmp / "caddy-home"
    home.mkdir(exist_ok=True)
    proc = Proc("caddy", [caddy_bin(), "run", "--config", str(caddyfile), "--adapter", "caddyfile"], tmp,
                env={"HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config")})
    wait_until("caddy listening", lambda: port_open(port), 15, procs=[proc])
    return proc, port


def start_envoy_http(tmp: Path, authz_http_port: int, upstream_port: int) -> tuple[Proc, int]:
    port, admin = free_port(), free_port()
    cfg = tmp / "envoy-http.yaml"
    cfg.write_text(render((ROOT / "deploy" / "envoy" / "envoy-http.yaml").read_text(), {
        "ENVOY_LISTEN_ADDRESS": "127.0.0.1", "ENVOY_PORT": port, "ENVOY_ADMIN_PORT": admin,
        "OIDC_AUTHZ_HOST": "127.0.0.1", "OIDC_AUTHZ_HTTP_PORT": authz_http_port,
        "UPSTREAM_HOST": "127.0.0.1", "UPSTREAM_PORT": upstream_port,
    }))
    proc = Proc("envoy-http", [envoy_bin(), "-c", str(cfg), "--disable-hot-restart", "--concurrency", "1",
                               "--log-level", "warn", "--base-id", str(admin)], tmp)
    wait_until("envoy-http /ready", lambda: http_status(admin, "/ready") == 200, 30, procs=[proc])
    return proc, port


def start_upstream(tmp: Path) -> tuple[Proc, int]:
    port = free_port()
    proc = Proc("upstream", [sys.executable, str(HERE / "upstream.py"), "--port", str(port)], tmp)
    wait_until("upstream", lambda: http_status(port, "/") == 200, 10, procs=[proc])
    return proc, port


STARTERS = {"nginx": start_nginx, "caddy": start_caddy, "envoy_http": start_envoy_http}


# --------------------------------------------------------------------------------------------------
# the stack: two providers, upstream, oidc-authz with listen.http, the three proxies


def door_config_yaml(main: Provider, short: Provider, gone_port: int, grpc_port: int, admin_port: int,
                     http_port: int) -> str:
    """oidc-authz config with the HTTP door. `gone` points at a closed port: its key set never loads, so a
    token routed to it is denied 503 keys_unavailable."""
    return f"""\
listen:
  grpc: 127.0.0.1:{grpc_port}
  admin: 127.0.0.1:{admin_port}
  http: 127.0.0.1:{http_port}

token:
  sources:
    - header: authorization
  max_bytes: 16384

jwks:
  refresh_interval: 5m
  min_refresh_interval: 1s
  max_stale: 1h
  timeout: 1s

clients:
  - name: orders
    issuer: {main.issuer}
    audiences: [orders-api]
    roles: [realm_access.roles]
    headers:
      x-auth-subject: sub
      x-auth-email: email
      x-auth-roles: realm_access.roles
  - name: billing                      # same issuer, other audience
    issuer: {main.issuer}
    audiences: [billing-api]
    roles: [client_roles]
    headers:
      x-auth-subject: sub
      x-auth-roles: client_roles
      x-auth-client-id: client_id
  - name: short-lived
    issuer: {short.issuer}
    audiences: [orders-api]
    leeway: 0s
    roles: [realm_access.roles]
    headers:
      x-auth-subject: sub
  - name: gone
    issuer: http://127.0.0.1:{gone_port}
    jwks_uri: http://127.0.0.1:{gone_port}/jwks
    audiences: [orders-api]
    headers:
      x-auth-subject: sub

rules:
  - name: public
    match: {{ prefix: /public }}
    auth: none
  - name: names
    match: {{ prefix: /api/names }}
    roles: {{ all_of: [names_editor] }}
  - name: orders-write
    match: {{ prefix: /api/orders, methods: [POST, PUT, PATCH, DELETE] }}
    roles: {{ all_of: [names_editor] }}
  - name: billing-only
    match: {{ prefix: /api/billing }}
    clients: [billing]
  - name: api
    match: {{ prefix: /api }}
default: deny
"""


@dataclass
class DoorStack:
    tmp: Path
    main: Provider
    short: Provider
    gone_port: int
    http_port: int
    admin_port: int
    upstream_port: int
    proxy_ports: dict[str, int]
    procs: list[Proc] = field(default_factory=list)

    def via(self, proxy: str, path: str, token: str | None = None, headers: dict[str, str] | None = None,
            method: str = "GET") -> Response:
        h = dict(headers or {})
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        return http_request(self.proxy_ports[proxy], method, path, h)

    def door(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Response:
        return http_request(self.http_port, method, path, headers)


def forged_token(iss: str, aud: str, kid: str = "gone-1") -> str:
    """A well-formed RS256 JWT whose signature cannot be checked (its key set is unavailable)."""
    now = int(time.time())
    h = b64url_encode(b'{"alg":"RS256","typ":"at+jwt","kid":"%s"}' % kid.encode())
    p = b64url_encode((f'{{"iss":"{iss}","aud":"{aud}","sub":"x","iat":{now},"exp":{now + 300}}}').encode())
    return f"{h}.{p}.{b64url_encode(b'not-a-signature' * 16)}"


@pytest.fixture(scope="session")
def ds(request):
    binary = authz_bin()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"{binary} not found: run `cargo build --release` (scripts/e2e.sh does) "
                    "or set OIDC_AUTHZ_BIN", pytrace=False)
    for name, b in (("nginx", nginx_bin()), ("caddy", caddy_bin())):
        if not (shutil.which(b) or os.access(b, os.X_OK)):
            pytest.fail(f"{name} not found ({b}): apt-get install -y {'nginx-light' if name == 'nginx' else name}"
                        " (scripts/setup-e2e.sh checks this)", pytrace=False)

    tmp = Path(tempfile.mkdtemp(prefix="oidc-authz-door-"))
    procs: list[Proc] = []
    providers: list[Provider] = []
    try:
        main = Provider("door-main", free_port(), 300, [genkey("door-main-1")], tmp)
        short = Provider("door-short", free_port(), 2, [genkey("door-short-1")], tmp)
        for prov in (main, short):
            providers.append(prov)
            prov.start()
        upstream, upstream_port = start_upstream(tmp)
        procs.append(upstream)

        gone_port = free_port()  # never listened on
        grpc_port, admin_port, http_port = free_port(), free_port(), free_port()
        cfg = tmp / "oidc-authz.yaml"
        cfg.write_text(door_config_yaml(main, short, gone_port, grpc_port, admin_port, http_port))
        authz = Proc("oidc-authz", [str(binary), "serve", "--config", str(cfg)], tmp,
                     env={"RUST_LOG": os.environ.get("RUST_LOG", "info"), "RUST_BACKTRACE": "1"})
        procs.append(authz)
        # /readyz stays 503 (the `gone` key set never loads): wait for the process, then for a real allow
        wait_until("oidc-authz /healthz == 200", lambda: http_status(admin_port, "/healthz") == 200, 30,
                   procs=[authz])
        probe = main.token("orders-reader", ORDERS)
        wait_until("the HTTP door allows a valid token",
                   lambda: http_request(http_port, "GET", "/forward-auth", {
                       "x-forwarded-method": "GET", "x-forwarded-uri": "/api/orders",
                       "authorization": f"Bearer {probe}"}, timeout=2).status == 200, 30, procs=[authz])

        ports = {}
        for name in PROXIES:
            proc, port = STARTERS[name](tmp, http_port, upstream_port)
            procs.append(proc)
            ports[name] = port
        st = DoorStack(tmp, main, short, gone_port, http_port, admin_port, upstream_port, ports, procs)
    except BaseException:
        for p in reversed(procs):
            p.stop()
        for prov in providers:
            prov.stop()
        dump_logs(tmp)
        raise

    try:
        yield st
    finally:
        for p in reversed(procs):
            p.stop()
        for prov in providers:
            prov.stop()
        if request.session.testsfailed:
            dump_logs(tmp)
        elif os.environ.get("E2E_KEEP_LOGS"):
            print(f"\ndoor e2e logs and configs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def tokens(ds):
    m = ds.main
    return {
        "editor": m.token("orders-editor", ORDERS),   # roles names_editor, orders_reader; aud orders-api
        "reader": m.token("orders-reader", ORDERS),   # roles orders_reader
        "billing": m.token("billing-app", BILLING),   # aud billing-api → client billing
        "editor-billing": m.token("orders-editor", BILLING),
        "gone": forged_token(f"http://127.0.0.1:{ds.gone_port}", "orders-api"),
    }


@pytest.fixture(scope="session")
def expired_token(ds):
    """One short-lived (2 s, leeway 0 s) token, minted once and waited out once for every proxy."""
    token = ds.short.token("orders-reader", ORDERS)
    _, claims = jwt_parts(token)
    time.sleep(max(0.0, claims["exp"] + 1.2 - time.time()))
    return token


@pytest.fixture(params=PROXIES)
def proxy(request) -> str:
    return request.param


# --------------------------------------------------------------------------------------------------
# assertions


def upstream_saw(resp: Response) -> dict:
    assert resp.status == 200, resp
    echo = resp.json()
    assert "headers" in echo, resp  # the echo upstream answered, not the proxy or oidc-authz
    return echo


def assert_denied(proxy: str | None, resp: Response, status: int, code: str) -> None:
    """A deny as the client sees it. Every door: the status. Every proxy but one case: x-authz-reason and a
    JSON body with the code. Envoy http_service turns any 5xx of the authorization server into
    status_on_error (503) and drops the body (DESIGN §9): a bare 503."""
    assert resp.status == status, resp
    assert "headers" not in resp.body.decode(errors="replace"), resp  # never the upstream's answer
    if proxy == "envoy_http" and status >= 500:
        assert "x-authz-reason" not in resp.headers, resp
        return
    assert resp.headers.get("x-authz-reason") == code, resp
    assert resp.headers.get("content-type", "").startswith("application/json"), resp
    body = resp.json()
    assert body.get("code") == code, resp
    assert isinstance(body.get("description"), str) and body["description"], resp


# --------------------------------------------------------------------------------------------------
# through each real proxy


def test_allow_sets_claim_headers_upstream(ds, tokens, proxy):
    echo = upstream_saw(ds.via(proxy, "/api/names/42?x=1", tokens["editor"]))
    h = echo["headers"]
    assert echo["path"] == "/api/names/42?x=1"
    assert h["x-auth-subject"] == "orders-editor"
    assert h["x-auth-email"] == "orders-editor@clients.example"
    assert h["x-auth-roles"] == "names_editor,orders_reader"
    assert h["x-authz-client"] == "orders"
    assert "x-auth-client-id" not in h  # mapped by `billing` only: not set, and no placeholder text
    assert "authorization" in h  # the token still reaches the application


def test_caller_supplied_claim_headers_never_reach_upstream_with_token(ds, tokens, proxy):
    spoof = {"x-auth-subject": "admin", "X-Authz-Client": "billing", "X-AUTH-ROLES": "names_editor",
             "x-auth-email": "admin@example.org", "x-auth-client-id": "admin"}
    h = upstream_saw(ds.via(proxy, "/api/orders", tokens["reader"], spoof))["headers"]
    assert h["x-auth-subject"] == "orders-reader"
    assert h["x-authz-client"] == "orders"
    assert h["x-auth-roles"] == "orders_reader"
    assert h["x-auth-email"] == "orders-reader@clients.example"
    assert "x-auth-client-id" not in h, h  # `orders` does not map it: the forged one is removed


def test_caller_supplied_claim_headers_never_reach_upstream_on_auth_none(ds, proxy):
    spoof = {name: "admin" for name in CLAIM_HEADERS}
    echo = upstream_saw(ds.via(proxy, "/public/info", headers=spoof))
    for name in CLAIM_HEADERS:
        assert name not in echo["headers"], (name, echo["headers"])


def test_no_token_is_401_with_challenge(ds, proxy):
    resp = ds.via(proxy, "/api/orders")
    assert_denied(proxy, resp, 401, "authorization_header_missing")
    challenge = resp.headers.get("www-authenticate", "")
    assert challenge.startswith('Bearer realm="oidc-authz"'), resp
    assert "error=" not in challenge, resp


def test_wrong_role_is_403(ds, tokens, proxy):
    assert_denied(proxy, ds.via(proxy, "/api/names/42", tokens["reader"]), 403, "missing_required_roles")


def test_routing_by_audience(ds, tokens, proxy):
    h = upstream_saw(ds.via(proxy, "/api/orders", tokens["editor-billing"]))["headers"]
    assert h["x-authz-client"] == "billing"
    assert h["x-auth-client-id"] == "orders-editor"
    assert "x-auth-email" not in h  # `billing` does not map it
    upstream_saw(ds.via(proxy, "/api/billing/invoices", tokens["billing"]))
    assert_denied(proxy, ds.via(proxy, "/api/billing/invoices", tokens["editor"]), 403, "client_not_allowed")


def test_expired_token_is_401(ds, expired_token, proxy):
    resp = ds.via(proxy, "/api/orders", expired_token)
    assert_denied(proxy, resp, 401, "token_expired")
    assert 'error="invalid_token"' in resp.headers.get("www-authenticate", ""), resp


def test_encoded_slash_is_400_never_200(ds, tokens, proxy):
    resp = ds.via(proxy, "/api/orders%2F..%2Fnames/1", tokens["reader"])
    if proxy == "envoy_http":
        # Envoy rejects it itself (path_with_escaped_slashes_action: REJECT_REQUEST) before ext_authz
        assert resp.status == 400, resp
    else:
        assert_denied(proxy, resp, 400, "invalid_path")  # nginx: 400 mapped back from auth_request's 500


def test_encoded_dot_segments_are_resolved_before_matching(ds, tokens, proxy):
    # /api/%2e%2e/admin is /admin: no rule matches it, whatever the proxy does with it first
    resp = ds.via(proxy, "/api/%2e%2e/admin", tokens["editor"])
    assert resp.status in (400, 403), resp
    assert resp.status != 200


def test_method_rules_use_the_proxys_method(ds, tokens, proxy):
    upstream_saw(ds.via(proxy, "/api/orders/1", tokens["reader"]))
    assert_denied(proxy, ds.via(proxy, "/api/orders/1", tokens["reader"], method="DELETE"),
                  403, "missing_required_roles")
    assert upstream_saw(ds.via(proxy, "/api/orders/1", tokens["editor"], method="DELETE"))["method"] == "DELETE"


def test_caller_cannot_choose_the_checked_method_or_path(ds, tokens, proxy):
    # a caller's X-Forwarded-*/X-Original-* must not describe the request for it (DESIGN §9)
    spoof = {"x-forwarded-method": "GET", "x-forwarded-uri": "/public/x", "x-forwarded-host": "other.example",
             "x-original-method": "GET", "x-original-uri": "/public/x"}
    assert_denied(proxy, ds.via(proxy, "/api/names/1", tokens["reader"], spoof, method="POST"),
                  403, "missing_required_roles")
    assert_denied(proxy, ds.via(proxy, "/api/names/1", headers=spoof), 401, "authorization_header_missing")


def test_query_string_is_ignored_for_matching(ds, tokens, proxy):
    assert_denied(proxy, ds.via(proxy, "/api/names/1?next=/public/x", tokens["reader"]), 403, "missing_required_roles")
    assert_denied(proxy, ds.via(proxy, "/api/orders?p=/public", None), 401, "authorization_header_missing")
    echo = upstream_saw(ds.via(proxy, "/public/x?next=/api/names"))
    assert echo["path"] == "/public/x?next=/api/names"


def test_keys_unavailable_is_503_at_the_client(ds, tokens, proxy):
    # Envoy http_service: a bare 503 (status_on_error, body dropped); nginx: mapped back from 500
    assert_denied(proxy, ds.via(proxy, "/api/orders", tokens["gone"]), 503, "keys_unavailable")


# --------------------------------------------------------------------------------------------------
# the door itself, no proxy


def test_forward_auth_allow_answers_200_with_claim_headers(ds, tokens):
    resp = ds.door("/forward-auth", {"x-forwarded-method": "GET", "x-forwarded-uri": "/api/names/1?x=1",
                                     "x-forwarded-host": "api.example", "authorization": f"Bearer {tokens['editor']}"})
    assert resp.status == 200, resp
    assert resp.body == b"", resp
    assert resp.headers["x-auth-subject"] == "orders-editor"
    assert resp.headers["x-authz-client"] == "orders"
    assert "x-auth-client-id" not in resp.headers


def test_forward_auth_any_method(ds, tokens):
    for m in ("GET", "HEAD", "POST"):
        resp = ds.door("/forward-auth", {"x-original-method": "GET", "x-original-uri": "/api/orders",
                                         "authorization": f"Bearer {tokens['reader']}"}, method=m)
        assert resp.status == 200, (m, resp)


@pytest.mark.parametrize("headers", [
    {},
    {"x-forwarded-method": "GET"},
    {"x-original-method": "GET"},
    {"x-forwarded-uri": "/api/orders"},
    {"x-original-uri": "/api/orders"},
], ids=["none", "method-only-fwd", "method-only-orig", "uri-only-fwd", "uri-only-orig"])
def test_forward_auth_missing_method_or_uri_is_400_invalid_request(ds, tokens, headers):
    resp = ds.door("/forward-auth", {**headers, "authorization": f"Bearer {tokens['reader']}"})
    assert_denied(None, resp, 400, "invalid_request")


def test_forward_auth_x_forwarded_wins_over_x_original(ds, tokens):
    # checked path = X-Forwarded-Uri
    resp = ds.door("/forward-auth", {"x-forwarded-method": "GET", "x-forwarded-uri": "/api/orders",
                                     "x-original-method": "GET", "x-original-uri": "/public/x"})
    assert_denied(None, resp, 401, "authorization_header_missing")
    resp = ds.door("/forward-auth", {"x-forwarded-method": "GET", "x-forwarded-uri": "/public/x",
                                     "x-original-method": "GET", "x-original-uri": "/api/orders"})
    assert resp.status == 200, resp
    # checked method = X-Forwarded-Method
    auth = {"authorization": f"Bearer {tokens['reader']}", "x-forwarded-uri": "/api/orders/1",
            "x-original-uri": "/api/orders/1"}
    assert_denied(None, ds.door("/forward-auth", {**auth, "x-forwarded-method": "DELETE",
                                                  "x-original-method": "GET"}), 403, "missing_required_roles")
    assert ds.door("/forward-auth", {**auth, "x-forwarded-method": "GET",
                                     "x-original-method": "DELETE"}).status == 200


def test_forward_auth_invalid_path(ds, tokens):
    resp = ds.door("/forward-auth", {"x-forwarded-method": "GET", "x-forwarded-uri": "/api%2Fnames",
                                     "authorization": f"Bearer {tokens['editor']}"})
    assert_denied(None, resp, 400, "invalid_path")


def test_ext_authz_ignores_forwarded_headers_and_lists_headers_to_remove(ds, tokens):
    # the request itself is described: X-Forwarded-Uri / X-Original-URI are ignored
    resp = ds.door("/ext-authz/api/orders", {"x-forwarded-uri": "/public/x", "x-original-uri": "/public/x"})
    assert_denied(None, resp, 401, "authorization_header_missing")
    resp = ds.door("/ext-authz/api/orders?x=1", {"authorization": f"Bearer {tokens['reader']}"})
    assert resp.status == 200, resp
    assert resp.headers["x-auth-subject"] == "orders-reader"
    removed = {h.strip() for h in resp.headers.get("x-envoy-auth-headers-to-remove", "").split(",") if h.strip()}
    # every claim header it does not set, and none it sets (Envoy would drop a header both set and listed)
    assert removed == {"x-auth-client-id"}, resp
    resp = ds.door("/ext-authz/public/x", {"x-auth-subject": "admin"})
    assert resp.status == 200, resp
    removed = {h.strip() for h in resp.headers.get("x-envoy-auth-headers-to-remove", "").split(",") if h.strip()}
    assert removed == set(CLAIM_HEADERS), resp
    assert "x-auth-subject" not in resp.headers


def test_ext_authz_uses_request_method(ds, tokens):
    h = {"authorization": f"Bearer {tokens['reader']}"}
    assert ds.door("/ext-authz/api/orders/1", h, method="GET").status == 200
    assert_denied(None, ds.door("/ext-authz/api/orders/1", h, method="DELETE"), 403, "missing_required_roles")


def test_metrics_label_the_front_door(ds, tokens):
    ds.door("/forward-auth", {})  # invalid_request
    ds.door("/forward-auth", {"x-forwarded-method": "GET", "x-forwarded-uri": "/api/orders"})
    ds.door("/ext-authz/api/orders")
    text = http_request(ds.admin_port, "GET", "/metrics").body.decode()
    checks = [line for line in text.splitlines() if line.startswith("oidc_authz_checks_total{")]
    assert any('api="forward_auth"' in line for line in checks), checks
    assert any('api="envoy_http"' in line for line in checks), checks
    assert any('reason="invalid_request"' in line for line in checks), checks
