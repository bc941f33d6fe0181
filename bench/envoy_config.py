#!/usr/bin/env python3
"""Envoy bootstrap configs for bench/run.sh (printed as JSON, which Envoy reads as YAML).

    envoy_config.py MODE --port P --admin-port A [--authz-port G] [--jwks FILE --iss ISS --aud AUD]
                    [--variant NAME ...]

Every mode has the same listener on 127.0.0.1:P (HTTP/1.1 and HTTP/2, no access log) and a route
that answers with `direct_response` 200, so no upstream is measured; only the HTTP filters differ:

  plain      no filter but the router (Envoy alone)
  jwt        envoy.filters.http.jwt_authn, local_jwks (same keys as oidc-authz), no token cache
  jwt_cache  the same with jwt_cache_config (sized to hold the whole warm mix)
  ext_authz  envoy.filters.http.ext_authz, gRPC (envoy_grpc, HTTP/2) to 127.0.0.1:G, with the
             settings deploy/envoy/envoy.yaml recommends: transport_api_version V3, no request body,
             no peer certificate, failure_mode_allow false, clear_route_cache false, 1 s timeout
  ext_authz_http
             envoy.filters.http.ext_authz, http_service (HTTP/1.1) to http://127.0.0.1:G with
             path_prefix /ext-authz and the header lists of deploy/envoy/envoy-http.yaml (request:
             authorization, cookie, dpop, x-forwarded-proto, traceparent, tracestate; upstream: the
             x-auth-* claim headers and x-authz-client), failure_mode_allow false, 1 s timeout

jwt_authn and oidc-authz do the same work per request: verify the RS256 token, check iss, aud,
exp, and copy `sub` into `x-auth-subject`.

--variant adds an ext_authz tuning tried for docs/performance.md (each may repeat):
  allowed_headers   send only `authorization` (plus the pseudo-headers) to the authz server
  raw_headers       encode_raw_headers: true (header_map with raw bytes instead of the string map)
  h2_window         larger HTTP/2 stream/connection windows on the authz cluster
  google_grpc       Envoy's google_grpc client instead of envoy_grpc
"""

from __future__ import annotations

import argparse
import json
import sys


def hcm(http_filters: list[dict]) -> dict:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "bench",
            "codec_type": "AUTO",
            "route_config": {
                "name": "bench",
                "virtual_hosts": [
                    {
                        "name": "bench",
                        "domains": ["*"],
                        "routes": [
                            {
                                "match": {"prefix": "/"},
                                "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
                            }
                        ],
                    }
                ],
            },
            "http_filters": http_filters
            + [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }
            ],
        },
    }


def jwt_filter(jwks: str, iss: str, aud: str, cache: bool) -> dict:
    provider = {
        "issuer": iss,
        "audiences": [aud],
        "local_jwks": {"inline_string": jwks},
        "forward": True,
        "claim_to_headers": [{"header_name": "x-auth-subject", "claim_name": "sub"}],
    }
    if cache:
        # Default jwt_cache_size is 100: size it to hold the 1,000-token warm mix.
        provider["jwt_cache_config"] = {"jwt_cache_size": 4096}
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"bench": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        },
    }


def ext_authz_filter(variants: set[str]) -> dict:
    if "google_grpc" in variants:
        grpc = {
            "google_grpc": {"target_uri": "AUTHZ_TARGET", "stat_prefix": "ext_authz"},
            "timeout": "1s",
        }
    else:
        grpc = {"envoy_grpc": {"cluster_name": "ext_authz"}, "timeout": "1s"}
    cfg = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "grpc_service": grpc,
        "failure_mode_allow": False,
        "status_on_error": {"code": "ServiceUnavailable"},
        "include_peer_certificate": False,
        "clear_route_cache": False,
    }
    if "allowed_headers" in variants:
        cfg["allowed_headers"] = {"patterns": [{"exact": "authorization"}]}
    if "raw_headers" in variants:
        cfg["encode_raw_headers"] = True
    return {"name": "envoy.filters.http.ext_authz", "typed_config": cfg}


def ext_authz_http_filter(port: int) -> dict:
    """The http_service settings of deploy/envoy/envoy-http.yaml (its header lists, not its access log)."""

    def exact(names: list[str]) -> dict:
        return {"patterns": [{"exact": n, "ignore_case": True} for n in names]}

    cfg = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "allowed_headers": exact(["authorization", "cookie", "dpop", "x-forwarded-proto", "traceparent", "tracestate"]),
        "http_service": {
            "server_uri": {"uri": f"http://127.0.0.1:{port}", "cluster": "ext_authz", "timeout": "1s"},
            "path_prefix": "/ext-authz",
            "authorization_response": {
                "allowed_upstream_headers": exact(
                    ["x-auth-subject", "x-auth-email", "x-auth-roles", "x-auth-client-id", "x-authz-client"]
                ),
                "allowed_client_headers": exact(["www-authenticate", "x-authz-reason", "content-type", "dpop-nonce"]),
            },
        },
        "failure_mode_allow": False,
        "status_on_error": {"code": "ServiceUnavailable"},
        "include_peer_certificate": False,
    }
    return {"name": "envoy.filters.http.ext_authz", "typed_config": cfg}


def http_cluster(port: int) -> dict:
    """HTTP/1.1 to the authz server (Envoy's default upstream protocol), as envoy-http.yaml has it."""
    return {
        "name": "ext_authz",
        "type": "STATIC",
        "connect_timeout": "0.5s",
        "load_assignment": {
            "cluster_name": "ext_authz",
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}
            ],
        },
    }


def authz_cluster(port: int, variants: set[str]) -> dict:
    h2: dict = {}
    if "h2_window" in variants:
        h2 = {"initial_stream_window_size": 1048576, "initial_connection_window_size": 16777216}
    return {
        "name": "ext_authz",
        "type": "STATIC",
        "connect_timeout": "0.5s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": h2},
            }
        },
        "load_assignment": {
            "cluster_name": "ext_authz",
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}
            ],
        },
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["plain", "jwt", "jwt_cache", "ext_authz", "ext_authz_http"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--admin-port", type=int, required=True)
    p.add_argument("--authz-port", type=int)
    p.add_argument("--jwks")
    p.add_argument("--iss")
    p.add_argument("--aud")
    p.add_argument("--variant", action="append", default=[])
    a = p.parse_args()
    variants = set(a.variant)
    filters: list[dict] = []
    clusters: list[dict] = []
    if a.mode in ("jwt", "jwt_cache"):
        if not (a.jwks and a.iss and a.aud):
            p.error("jwt modes need --jwks, --iss and --aud")
        with open(a.jwks, encoding="utf-8") as f:
            jwks = f.read()
        filters.append(jwt_filter(jwks, a.iss, a.aud, a.mode == "jwt_cache"))
    elif a.mode == "ext_authz":
        if not a.authz_port:
            p.error("ext_authz needs --authz-port")
        f = ext_authz_filter(variants)
        if "google_grpc" in variants:
            f["typed_config"]["grpc_service"]["google_grpc"]["target_uri"] = f"127.0.0.1:{a.authz_port}"
        else:
            clusters.append(authz_cluster(a.authz_port, variants))
        filters.append(f)
    elif a.mode == "ext_authz_http":
        if not a.authz_port:
            p.error("ext_authz_http needs --authz-port")
        if variants:
            p.error("--variant applies to the gRPC ext_authz mode only")
        filters.append(ext_authz_http_filter(a.authz_port))
        clusters.append(http_cluster(a.authz_port))
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": a.admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "bench",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": a.port}},
                    "filter_chains": [{"filters": [hcm(filters)]}],
                }
            ],
            "clusters": clusters,
        },
    }
    json.dump(bootstrap, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
