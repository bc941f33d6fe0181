"""End-to-end traces (DESIGN §12): the real Envoy with its OpenTelemetry tracer and oidc-authz both export
over OTLP/gRPC to one receiver inside this test (e2e/otlp_receiver.py), and one trace holds both.

    client ──HTTP──▶ Envoy (deploy/envoy/envoy-tracing.yaml) ──ext_authz gRPC──▶ oidc-authz ──▶ provider
                       │ spans: ingress (SERVER)                              │ span: oidc_authz.check
                       │        async ...Authorization.Check egress (CLIENT)  │
                       └──────────── OTLP/gRPC ──▶ OtlpReceiver ◀── OTLP/gRPC ┘

Sampling is chosen per request: Envoy (random_sampling 0) samples a request only when it carries
`x-client-trace-id` (Envoy 1.40 follows its own tracing decision, not the incoming traceparent's flag:
see deploy/envoy/envoy-tracing.yaml); a sampled request also sends a `traceparent` with flag 01 so the
test knows the trace id. Envoy then passes the sampled flag to oidc-authz in the Check call's gRPC
metadata `traceparent` (the context of its ext_authz egress span), and oidc-authz, with `sample: parent`,
records its span as that span's child. Unsampled requests carry flag 00 there and must produce no span.

The contract for oidc-authz (what the assertions below require):
  * config `telemetry: {otlp_endpoint: http://127.0.0.1:PORT, service_name: oidc-authz, sample: parent}`
    is accepted and spans are exported over OTLP/gRPC (batch export, so the test waits up to ~20 s);
  * the parent is the W3C `traceparent` of the Check call's gRPC request metadata (HTTP/2 headers), i.e.
    Envoy's ext_authz egress span: NOT the `traceparent` inside CheckRequest
    attributes.request.http.headers (that one is the client's, the parent of Envoy's ingress span);
    Envoy also sends `tracestate` with an EMPTY value there, which must be accepted as "no tracestate";
  * one span per sampled Check, name `oidc_authz.check`, resource attribute service.name `oidc-authz`,
    same trace id, parent_span_id = the egress span's id;
  * attributes: client (config client name, "" when none), rule (rule name, "" when none),
    decision ("allow" | "deny"), reason ("" on allow, the deny code — same as x-authz-reason — on deny:
    the checks_total labels), cache_hit (bool), api ("grpc" for Envoy ext_authz gRPC);
  * no token, token segment, claim value or request header value in any attribute, event or resource;
  * flag 00 in the gRPC traceparent (sample: parent) -> no span at all.

Needs the same environment as e2e/test_e2e.py (scripts/setup-e2e.sh, OIDC_AUTHZ_BIN) and an oidc-authz
that implements `telemetry` (DESIGN §12): with one that does not, the stack fixture fails at startup.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from otlp_receiver import OtlpReceiver, Span  # noqa: E402
from render_envoy import render  # noqa: E402
from test_e2e import (  # noqa: E402
    ORDERS, Proc, Provider, Response, authz_bin, b64url_decode, dump_logs, envoy_bin, free_port, genkey,
    http_request, http_status, wait_until,
)

ENVOY_INGRESS = "ingress"
ENVOY_CHECK = "async envoy.service.auth.v3.Authorization.Check egress"
CHECK_SPAN = "oidc_authz.check"
EXPORT_WAIT = 20.0  # Envoy flushes every 5 s; an OTel batch exporter's default delay is 5 s


@dataclass
class TraceStack:
    tmp: Path
    rx: OtlpReceiver
    provider: Provider
    envoy_port: int
    http_port: int  # oidc-authz's HTTP door (listen.http), asked directly

    def get(self, path: str, token: str | None, headers: dict[str, str]) -> Response:
        h = dict(headers)
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        return http_request(self.envoy_port, "GET", path, h)


def config_yaml(issuer: str, grpc_port: int, admin_port: int, otlp_port: int, http_port: int) -> str:
    return f"""\
listen:
  grpc: 127.0.0.1:{grpc_port}
  admin: 127.0.0.1:{admin_port}
  http: 127.0.0.1:{http_port}

telemetry:
  otlp_endpoint: http://127.0.0.1:{otlp_port}
  service_name: oidc-authz
  sample: parent

jwks:
  refresh_interval: 5m
  min_refresh_interval: 1s
  max_stale: 1h
  timeout: 2s

clients:
  - name: orders
    issuer: {issuer}
    audiences: [orders-api]
    algorithms: [RS256]
    roles: [realm_access.roles]
    headers:
      x-auth-subject: sub
      x-auth-email: email
      x-auth-roles: realm_access.roles

rules:
  - name: names
    match: {{ prefix: /api/names }}
    roles: {{ all_of: [names_editor] }}
  - name: api
    match: {{ prefix: /api }}
default: deny
"""


@pytest.fixture(scope="module")
def tstack(request) -> Iterator[TraceStack]:
    binary = authz_bin()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"{binary} not found: run `cargo build --release` (scripts/e2e.sh does) "
                    "or set OIDC_AUTHZ_BIN", pytrace=False)
    tmp = Path(tempfile.mkdtemp(prefix="oidc-authz-traces-"))
    rx = OtlpReceiver().start()
    procs: list[Proc] = []
    prov = Provider("traces", free_port(), 300, [genkey("traces-1")], tmp)
    try:
        prov.start()
        upstream_port = free_port()
        procs.append(Proc("upstream", [sys.executable, str(HERE / "upstream.py"), "--port", str(upstream_port)],
                          tmp))
        wait_until("upstream", lambda: http_status(upstream_port, "/") == 200, 10, procs=procs)

        grpc_port, admin_port, http_port = free_port(), free_port(), free_port()
        cfg = tmp / "oidc-authz.yaml"
        cfg.write_text(config_yaml(prov.issuer, grpc_port, admin_port, rx.port, http_port))
        authz = Proc("oidc-authz", [str(binary), "serve", "--config", str(cfg)], tmp,
                     env={"RUST_LOG": os.environ.get("RUST_LOG", "info"), "RUST_BACKTRACE": "1"})
        procs.append(authz)
        wait_until("oidc-authz /readyz == 200", lambda: http_status(admin_port, "/readyz") == 200, 30,
                   procs=[authz])

        envoy_port, envoy_admin = free_port(), free_port()
        envoy_yaml = tmp / "envoy.yaml"
        envoy_yaml.write_text(render((ROOT / "deploy" / "envoy" / "envoy-tracing.yaml").read_text(), {
            "ENVOY_LISTEN_ADDRESS": "127.0.0.1", "ENVOY_PORT": envoy_port, "ENVOY_ADMIN_PORT": envoy_admin,
            "OIDC_AUTHZ_HOST": "127.0.0.1", "OIDC_AUTHZ_PORT": grpc_port,
            "UPSTREAM_HOST": "127.0.0.1", "UPSTREAM_PORT": upstream_port,
            "OTLP_HOST": "127.0.0.1", "OTLP_PORT": rx.port, "TRACE_RANDOM_PERCENT": 0,
        }))
        envoy = Proc("envoy", [envoy_bin(), "-c", str(envoy_yaml), "--disable-hot-restart", "--concurrency", "1",
                               "--log-level", "warn"], tmp)
        procs.append(envoy)
        wait_until("envoy /ready", lambda: http_status(envoy_admin, "/ready") == 200, 30, procs=[envoy])
    except BaseException:
        for p in reversed(procs):
            p.stop()
        prov.stop()
        rx.stop()
        dump_logs(tmp)
        raise

    failed_before = request.session.testsfailed
    try:
        yield TraceStack(tmp=tmp, rx=rx, provider=prov, envoy_port=envoy_port, http_port=http_port)
    finally:
        for p in reversed(procs):
            p.stop()
        prov.stop()
        rx.stop()
        if request.session.testsfailed > failed_before:
            dump_logs(tmp)
            print_spans(rx)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def print_spans(rx: OtlpReceiver) -> None:
    sys.stderr.write("\n----- spans received -----\n")
    for s in rx.spans():
        sys.stderr.write(f"{s.service} {s.name!r} trace={s.trace_id} span={s.span_id} "
                         f"parent={s.parent_span_id or '-'} {s.attributes}\n")


def sampled_headers() -> tuple[str, dict[str, str]]:
    """Headers that make Envoy sample the request, with a trace id the test chose."""
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, {"traceparent": f"00-{trace_id}-{parent}-01", "x-client-trace-id": trace_id}


def unsampled_headers() -> tuple[str, dict[str, str]]:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, {"traceparent": f"00-{trace_id}-{parent}-00"}


def secrets_of(token: str, headers: dict[str, str]) -> list[str]:
    """What must appear in no span: the token, each of its segments, each claim value (string leaves, the
    issuer URL excepted: JWKS-fetch spans may name the key set's URL), and each request header value."""
    out = [token, *token.split(".")]
    claims = json.loads(b64url_decode(token.split(".")[1]))

    def leaves(x):
        if isinstance(x, dict):
            for v in x.values():
                yield from leaves(v)
        elif isinstance(x, list):
            for v in x:
                yield from leaves(v)
        elif isinstance(x, str):
            yield x

    out += [v for k, v in claims.items() if k != "iss" for v in leaves(v)]
    out += list(headers.values())
    return [s for s in out if len(s) >= 6]


def assert_no_secrets(spans: list[Span], forbidden: list[str], what: str) -> None:
    for span in spans:
        for text in span.all_strings():
            for secret in forbidden:
                assert secret not in text, (
                    f"{what}: span {span.service}/{span.name!r} carries {secret[:12]}… in {text[:80]!r}")


def check_span_of(tstack: TraceStack, trace_id: str) -> tuple[Span, list[Span]]:
    """Wait for the oidc-authz span and Envoy's two spans of this trace; check the tree. Returns the
    oidc-authz span and the whole trace."""
    rx = tstack.rx
    rx.wait_for(lambda s: s.trace_id == trace_id and s.service == "envoy", count=2, timeout=EXPORT_WAIT)
    rx.wait_for(lambda s: s.trace_id == trace_id and s.service == "oidc-authz" and s.name == CHECK_SPAN,
                timeout=EXPORT_WAIT)
    trace = rx.trace(trace_id)
    envoy = {s.name: s for s in trace if s.service == "envoy"}
    assert set(envoy) == {ENVOY_INGRESS, ENVOY_CHECK}, [(s.service, s.name) for s in trace]
    assert envoy[ENVOY_CHECK].parent_span_id == envoy[ENVOY_INGRESS].span_id

    mine = [s for s in trace if s.service == "oidc-authz" and s.name == CHECK_SPAN]
    assert len(mine) == 1, f"one {CHECK_SPAN} span per Check, got {len(mine)}"
    span = mine[0]
    envoy_ids = {s.span_id: s.name for s in envoy.values()}
    assert span.parent_span_id in envoy_ids, (
        f"{CHECK_SPAN}'s parent {span.parent_span_id or '(none)'} is no Envoy span of the trace {envoy_ids}: "
        "take the parent from the gRPC metadata traceparent of the Check call")
    assert envoy_ids[span.parent_span_id] == ENVOY_CHECK  # the ext_authz egress span (see the docstring)
    assert span.resource.get("service.name") == "oidc-authz"
    for key in ("client", "rule", "decision", "reason", "cache_hit", "api"):
        assert key in span.attributes, (key, span.attributes)
    assert span.attributes["api"] == "grpc"
    assert isinstance(span.attributes["cache_hit"], bool), span.attributes
    return span, trace


# --------------------------------------------------------------------------------------------------


def test_allowed_request_is_one_trace_with_envoy_parent(tstack):
    token = tstack.provider.token("orders-editor", ORDERS)
    canary = f"canary-{secrets.token_hex(8)}"
    trace_id, headers = sampled_headers()
    headers["x-trace-canary"] = canary
    resp = tstack.get("/api/names/1", token, headers)
    assert resp.status == 200, resp

    span, trace = check_span_of(tstack, trace_id)
    a = span.attributes
    assert (a["decision"], a["reason"], a["client"], a["rule"]) == ("allow", "", "orders", "names"), a
    assert a["cache_hit"] is False, a  # a token never seen before
    forbidden = secrets_of(token, {"authorization": f"Bearer {token}", "x-trace-canary": canary})
    assert_no_secrets(trace, forbidden, "allowed request")
    # oidc-authz's span carries no header value at all: not even the ones Envoy itself records
    envoy_ingress = next(s for s in trace if s.name == ENVOY_INGRESS)
    header_values = [v for k, v in envoy_ingress.attributes.items()
                     if k.startswith("guid:") and isinstance(v, str) and len(v) >= 6]
    assert_no_secrets([span], header_values + [headers["traceparent"]], "oidc-authz span")

    # the same token again: answered from the verified-token cache, a second trace
    trace2, headers2 = sampled_headers()
    assert tstack.get("/api/names/1", token, headers2).status == 200
    span2, trace2_spans = check_span_of(tstack, trace2)
    assert span2.attributes["cache_hit"] is True, span2.attributes
    assert span2.attributes["decision"] == "allow"
    assert_no_secrets(trace2_spans, forbidden, "cached allowed request")


def test_denied_request_is_one_trace_with_envoy_parent(tstack):
    token = tstack.provider.token("orders-reader", ORDERS)  # no names_editor role
    trace_id, headers = sampled_headers()
    resp = tstack.get("/api/names/1", token, headers)
    assert resp.status == 403, resp
    reason = resp.headers["x-authz-reason"]

    span, trace = check_span_of(tstack, trace_id)
    a = span.attributes
    assert (a["decision"], a["reason"], a["client"], a["rule"]) == ("deny", reason, "orders", "names"), a
    assert_no_secrets(trace, secrets_of(token, {"authorization": f"Bearer {token}"}), "denied request")


def test_denied_request_without_token_is_traced(tstack):
    trace_id, headers = sampled_headers()
    resp = tstack.get("/api/orders", None, headers)
    assert resp.status == 401, resp
    span, _ = check_span_of(tstack, trace_id)
    a = span.attributes
    assert (a["decision"], a["reason"], a["rule"]) == ("deny", resp.headers["x-authz-reason"], "api"), a
    assert a["cache_hit"] is False


def test_unsampled_requests_produce_no_oidc_authz_span(tstack):
    rx = tstack.rx
    before = {s.span_id for s in rx.spans(lambda s: s.service == "oidc-authz" and s.name == CHECK_SPAN)}
    allow_tok = tstack.provider.token("orders-editor", ORDERS)
    deny_tok = tstack.provider.token("orders-reader", ORDERS)

    unsampled: list[str] = []
    for token, path, status in [(allow_tok, "/api/names/1", 200), (deny_tok, "/api/names/1", 403),
                                (None, "/api/orders", 401)]:
        trace_id, headers = unsampled_headers()  # flag 00
        unsampled.append(trace_id)
        assert tstack.get(path, token, headers).status == status
        assert tstack.get(path, token, {}).status == status  # no trace headers at all: random_sampling 0 %

    # a sampled request sent after them: once its span is in, anything exported before it is in too
    # (both exporters send in order), so what is missing now was never recorded
    marker, headers = sampled_headers()
    assert tstack.get("/api/names/1", allow_tok, headers).status == 200
    check_span_of(tstack, marker)

    new = [s for s in rx.spans(lambda s: s.service == "oidc-authz" and s.name == CHECK_SPAN)
           if s.span_id not in before]
    assert [s.trace_id for s in new] == [marker], [(s.trace_id, s.attributes) for s in new]
    for trace_id in unsampled:
        assert rx.trace(trace_id) == [], f"spans exported for unsampled trace {trace_id}"


# --------------------------------------------------------------------------------------------------
# the HTTP door (DESIGN §9): its span's parent is the request's own traceparent, api names the endpoint


@pytest.mark.parametrize("path,api", [("/forward-auth", "forward_auth"), ("/ext-authz/api/orders", "envoy_http")])
def test_http_door_span_has_the_request_traceparent_as_parent_and_its_api(tstack, path, api):
    token = tstack.provider.token("orders-reader", ORDERS)
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    headers = {"traceparent": f"00-{trace_id}-{parent}-01", "authorization": f"Bearer {token}"}
    if path == "/forward-auth":
        headers |= {"x-forwarded-method": "GET", "x-forwarded-uri": "/api/orders"}
    resp = http_request(tstack.http_port, "GET", path, headers)
    assert resp.status == 200, resp
    tstack.rx.wait_for(lambda s: s.trace_id == trace_id and s.name == CHECK_SPAN, timeout=EXPORT_WAIT)
    mine = [s for s in tstack.rx.trace(trace_id) if s.service == "oidc-authz" and s.name == CHECK_SPAN]
    assert len(mine) == 1, mine
    span = mine[0]
    assert span.parent_span_id == parent, (span.parent_span_id, parent)
    assert span.attributes["api"] == api, span.attributes
    assert span.attributes["decision"] == "allow", span.attributes
    assert_no_secrets(tstack.rx.trace(trace_id), secrets_of(token, {"authorization": headers["authorization"]}),
                      f"HTTP door {api}")


def test_http_door_unsampled_or_without_traceparent_makes_no_span(tstack):
    token = tstack.provider.token("orders-reader", ORDERS)
    trace_id, headers = unsampled_headers()
    headers |= {"x-forwarded-method": "GET", "x-forwarded-uri": "/api/orders", "authorization": f"Bearer {token}"}
    assert http_request(tstack.http_port, "GET", "/forward-auth", headers).status == 200
    # a sampled marker request afterwards: once its span is in, the unsampled one would be too
    marker, parent = secrets.token_hex(16), secrets.token_hex(8)
    http_request(tstack.http_port, "GET", "/ext-authz/api/orders",
                 {"traceparent": f"00-{marker}-{parent}-01", "authorization": f"Bearer {token}"})
    tstack.rx.wait_for(lambda s: s.trace_id == marker and s.name == CHECK_SPAN, timeout=EXPORT_WAIT)
    assert not [s for s in tstack.rx.spans() if s.trace_id == trace_id], "an unsampled Check made a span"
