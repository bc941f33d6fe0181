#!/usr/bin/env bash
# Render deploy/envoy/envoy.yaml, envoy-tracing.yaml, envoy-http.yaml (ext_authz http_service) and envoy-mtls.yaml
# with example values and check each with `envoy --mode validate` (a deprecated field fails too). The mTLS sample names certificate files,
# which Envoy reads while validating: a throw-away test PKI is made with e2e/certs.py (python `cryptography`,
# installed into .venv/ by scripts/setup-e2e.sh; $PYTHON_E2E overrides that interpreter).
# Fail when envoy-tracing.yaml, less its `# >>> tracing` ... `# <<< tracing` blocks and its header comment, is
# not envoy.yaml (the two must not drift apart).
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
py="${PYTHON_E2E:-$root/.venv/bin/python}"
if ! "$py" -c 'import cryptography' 2>/dev/null; then
  "$root/scripts/setup-e2e.sh"
  py="$root/.venv/bin/python"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Two renderings of each template: the container shape (hostnames, 0.0.0.0) and the e2e shape (loopback IPs).
# A sample that uses a field Envoy has deprecated fails too: it would stop loading in a later Envoy.
status=0
validate() { # rendered-file label
  local out
  if out="$("$envoy" --mode validate -c "$1" --log-level warn 2>&1)"; then
    if grep -qi 'deprecated' <<<"$out"; then
      grep -i 'deprecated' <<<"$out" >&2
      echo "validate-envoy: $2: uses a deprecated Envoy field (above)" >&2
      status=1
    else
      echo "validate-envoy: $2: OK"
    fi
  else
    echo "$out" >&2
    echo "validate-envoy: $2: INVALID" >&2
    status=1
  fi
}
for template in envoy.yaml envoy-tracing.yaml envoy-http.yaml; do
  for shape in container loopback; do
    if [[ "$shape" == container ]]; then
      vals=(ENVOY_LISTEN_ADDRESS=0.0.0.0 ENVOY_PORT=8080 ENVOY_ADMIN_PORT=9901
            OIDC_AUTHZ_HOST=oidc-authz OIDC_AUTHZ_PORT=9001 OIDC_AUTHZ_HTTP_PORT=9004 UPSTREAM_HOST=app UPSTREAM_PORT=8000
            OTLP_HOST=otel-collector OTLP_PORT=4317 TRACE_RANDOM_PERCENT=1)
    else
      vals=(ENVOY_LISTEN_ADDRESS=127.0.0.1 ENVOY_PORT=18080 ENVOY_ADMIN_PORT=19901
            OIDC_AUTHZ_HOST=127.0.0.1 OIDC_AUTHZ_PORT=19001 OIDC_AUTHZ_HTTP_PORT=19004 UPSTREAM_HOST=127.0.0.1 UPSTREAM_PORT=18000
            OTLP_HOST=127.0.0.1 OTLP_PORT=14317 TRACE_RANDOM_PERCENT=0)
    fi
    python3 "$root/e2e/render_envoy.py" "$root/deploy/envoy/$template" "${vals[@]}" > "$tmp/${template%.yaml}-$shape.yaml"
    validate "$tmp/${template%.yaml}-$shape.yaml" "deploy/envoy/$template ($shape values)"
  done
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
  validate "$tmp/envoy-mtls-$shape.yaml" "deploy/envoy/envoy-mtls.yaml ($shape values)"
done
# envoy-tracing.yaml = envoy.yaml + tracing blocks (everything from `admin:` on is compared).
if ! python3 - "$root/deploy/envoy/envoy.yaml" "$root/deploy/envoy/envoy-tracing.yaml" <<'PY'
import re, sys
def body(text):
    return text[text.index("\nadmin:\n"):]
plain = body(open(sys.argv[1]).read())
traced = re.sub(r"\n[ ]*# >>> tracing\n.*?# <<< tracing(?=\n)", "", body(open(sys.argv[2]).read()), flags=re.S)
if plain.rstrip("\n") != traced.rstrip("\n"):
    import difflib
    sys.stderr.writelines(difflib.unified_diff(plain.splitlines(True), traced.splitlines(True), "envoy.yaml", "envoy-tracing.yaml less tracing"))
    sys.exit(1)
PY
then
  echo "validate-envoy: deploy/envoy/envoy-tracing.yaml has drifted from envoy.yaml (diff above)" >&2
  status=1
else
  echo "validate-envoy: envoy-tracing.yaml = envoy.yaml + tracing blocks: OK"
fi
exit "$status"
