#!/usr/bin/env bash
# Render deploy/envoy/envoy.yaml and deploy/envoy/envoy-mtls.yaml with example values and check them with
# `envoy --mode validate`. The mTLS sample names certificate files, which Envoy reads while validating: a
# throw-away test PKI is made with e2e/certs.py (python `cryptography`, installed into .venv/ by
# scripts/setup-e2e.sh; $PYTHON_E2E overrides that interpreter).
# Uses $ENVOY (an envoy binary) if set, else .venv/bin/envoy (created by scripts/setup-e2e.sh, run here
# when missing), else `envoy` from PATH.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
template="$root/deploy/envoy/envoy.yaml"

envoy="${ENVOY:-}"
if [[ -z "$envoy" ]]; then
  if [[ ! -x "$root/.venv/bin/envoy" ]] && ! command -v envoy >/dev/null; then
    "$root/scripts/setup-e2e.sh"
  fi
  if [[ -x "$root/.venv/bin/envoy" ]]; then envoy="$root/.venv/bin/envoy"; else envoy="$(command -v envoy)"; fi
fi
py="${PYTHON_E2E:-$root/.venv/bin/python}"
if ! "$py" -c 'import cryptography' 2>/dev/null; then
  "$root/scripts/setup-e2e.sh"
  py="$root/.venv/bin/python"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Two renderings: the container shape (hostnames, 0.0.0.0) and the e2e shape (loopback IPs).
status=0
for shape in container loopback; do
  if [[ "$shape" == container ]]; then
    vals=(ENVOY_LISTEN_ADDRESS=0.0.0.0 ENVOY_PORT=8080 ENVOY_ADMIN_PORT=9901
          OIDC_AUTHZ_HOST=oidc-authz OIDC_AUTHZ_PORT=9001 UPSTREAM_HOST=app UPSTREAM_PORT=8000)
  else
    vals=(ENVOY_LISTEN_ADDRESS=127.0.0.1 ENVOY_PORT=18080 ENVOY_ADMIN_PORT=19901
          OIDC_AUTHZ_HOST=127.0.0.1 OIDC_AUTHZ_PORT=19001 UPSTREAM_HOST=127.0.0.1 UPSTREAM_PORT=18000)
  fi
  python3 "$root/e2e/render_envoy.py" "$template" "${vals[@]}" > "$tmp/envoy-$shape.yaml"
  if out="$("$envoy" --mode validate -c "$tmp/envoy-$shape.yaml" --log-level warn 2>&1)"; then
    echo "validate-envoy: deploy/envoy/envoy.yaml ($shape values): OK"
  else
    echo "$out" >&2
    echo "validate-envoy: deploy/envoy/envoy.yaml ($shape values): INVALID" >&2
    status=1
  fi
done

# The mTLS sample (TLS listeners requiring client certificates), same two shapes.
"$py" "$root/e2e/certs.py" "$tmp/pki" > /dev/null
mtls_template="$root/deploy/envoy/envoy-mtls.yaml"
for shape in container loopback; do
  if [[ "$shape" == container ]]; then
    vals=(ENVOY_LISTEN_ADDRESS=0.0.0.0 ENVOY_MTLS_PORT=8443 ENVOY_XFCC_PORT=8444 ENVOY_ADMIN_PORT=9901
          OIDC_AUTHZ_HOST=oidc-authz OIDC_AUTHZ_PORT=9001 UPSTREAM_HOST=app UPSTREAM_PORT=8000)
  else
    vals=(ENVOY_LISTEN_ADDRESS=127.0.0.1 ENVOY_MTLS_PORT=18443 ENVOY_XFCC_PORT=18444 ENVOY_ADMIN_PORT=19901
          OIDC_AUTHZ_HOST=127.0.0.1 OIDC_AUTHZ_PORT=19001 UPSTREAM_HOST=127.0.0.1 UPSTREAM_PORT=18000)
  fi
  vals+=(TLS_CERT_FILE="$tmp/pki/server.crt" TLS_KEY_FILE="$tmp/pki/server.key" CLIENT_CA_FILE="$tmp/pki/ca.crt")
  python3 "$root/e2e/render_envoy.py" "$mtls_template" "${vals[@]}" > "$tmp/envoy-mtls-$shape.yaml"
  if out="$("$envoy" --mode validate -c "$tmp/envoy-mtls-$shape.yaml" --log-level warn 2>&1)"; then
    echo "validate-envoy: deploy/envoy/envoy-mtls.yaml ($shape values): OK"
  else
    echo "$out" >&2
    echo "validate-envoy: deploy/envoy/envoy-mtls.yaml ($shape values): INVALID" >&2
    status=1
  fi
done
exit "$status"
