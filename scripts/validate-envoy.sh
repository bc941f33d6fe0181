#!/usr/bin/env bash
# Render deploy/envoy/envoy.yaml (gRPC ext_authz) and deploy/envoy/envoy-http.yaml (ext_authz http_service)
# with example values and check each with `envoy --mode validate`.
# Uses $ENVOY (an envoy binary) if set, else .venv/bin/envoy (created by scripts/setup-e2e.sh, run here
# when missing), else `envoy` from PATH.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

envoy="${ENVOY:-}"
if [[ -z "$envoy" ]]; then
  if [[ ! -x "$root/.venv/bin/envoy" ]] && ! command -v envoy >/dev/null; then
    "$root/scripts/setup-e2e.sh"
  fi
  if [[ -x "$root/.venv/bin/envoy" ]]; then envoy="$root/.venv/bin/envoy"; else envoy="$(command -v envoy)"; fi
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Two renderings: the container shape (hostnames, 0.0.0.0) and the e2e shape (loopback IPs).
status=0
for name in envoy envoy-http; do
template="$root/deploy/envoy/$name.yaml"
for shape in container loopback; do
  if [[ "$shape" == container ]]; then
    vals=(ENVOY_LISTEN_ADDRESS=0.0.0.0 ENVOY_PORT=8080 ENVOY_ADMIN_PORT=9901
          OIDC_AUTHZ_HOST=oidc-authz OIDC_AUTHZ_PORT=9001 OIDC_AUTHZ_HTTP_PORT=9004 UPSTREAM_HOST=app UPSTREAM_PORT=8000)
  else
    vals=(ENVOY_LISTEN_ADDRESS=127.0.0.1 ENVOY_PORT=18080 ENVOY_ADMIN_PORT=19901
          OIDC_AUTHZ_HOST=127.0.0.1 OIDC_AUTHZ_PORT=19001 OIDC_AUTHZ_HTTP_PORT=19004 UPSTREAM_HOST=127.0.0.1 UPSTREAM_PORT=18000)
  fi
  python3 "$root/e2e/render_envoy.py" "$template" "${vals[@]}" > "$tmp/$name-$shape.yaml"
  if out="$("$envoy" --mode validate -c "$tmp/$name-$shape.yaml" --log-level warn 2>&1)"; then
    echo "validate-envoy: deploy/envoy/$name.yaml ($shape values): OK"
  else
    echo "$out" >&2
    echo "validate-envoy: deploy/envoy/$name.yaml ($shape values): INVALID" >&2
    status=1
  fi
done
done
exit "$status"
