#!/usr/bin/env bash
# bench/curves.sh — scaling curves of the cost per decision, as one compact table.
#
#   bench/curves.sh                  # criterion scaling bench + concurrency curve (about 3 minutes)
#   CURVE_SECONDS=3 bench/curves.sh  # shorter concurrency points (default 5 s each)
#
# 1. `cargo bench --bench scaling` (benches/scaling.rs): clients 1 → 100, rules 10 → 1,000, token size
#    1 → 16 KiB; the table shows criterion's mean per operation (full reports in target/criterion/).
# 2. Concurrency: bench/loadgen.rs against oidc-authz (warm cache) and the allow-all reference server,
#    1 HTTP/2 connection x 1, 8, 32, 128 streams; Checks/s and p50 / p99 latency.
# 3. With --pure: also `cargo bench --bench pure` (parse, route, verify per algorithm, policy, decide, protobuf)
#    and its means in the same table.
# Placement as in bench/run.sh (BENCH_PIN=none by default; split: servers on CPU 0, loadgen on CPU 1). 127.0.0.1 only.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
SECS="${CURVE_SECONDS:-5}"
PIN="${BENCH_PIN:-none}"
ISS="https://sso.bench.local/realms/bench"
AUD="bench-app"

say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
die() { echo "curves: $*" >&2; exit 1; }

PURE=0; [[ "${1:-}" == "--pure" ]] && PURE=1
mkdir -p target/bench
if [[ $PURE == 1 ]]; then
  say "cargo bench --bench pure (criterion; log in target/bench/pure.log)"
  cargo bench --quiet --bench pure >target/bench/pure.log 2>&1 || { tail -n 30 target/bench/pure.log >&2; die "cargo bench failed"; }
fi
say "cargo bench --bench scaling (criterion; log in target/bench/scaling.log)"
cargo bench --quiet --bench scaling >target/bench/scaling.log 2>&1 || { tail -n 30 target/bench/scaling.log >&2; die "cargo bench failed"; }

say "building oidc-authz, allow_all, loadgen, bench_tokens (release)"
cargo build --release --quiet --bin oidc-authz --example allow_all --example loadgen --example bench_tokens
BIN="$root/target/release"
work="$(mktemp -d -t oidc-authz-curves.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [[ "$PIN" == split && "$(nproc)" -ge 2 ]]; then SRV=(taskset -c 0); CLI=(taskset -c 1); else SRV=(); CLI=(); fi

"$BIN/examples/bench_tokens" --out "$work" --iss "$ISS" --aud "$AUD" --warm 1000 --cold 0 2>/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
g=$(free_port); a=$(free_port); ag=$(free_port); allow=$(free_port)
cat >"$work/config.yaml" <<YAML
listen: { grpc: "127.0.0.1:$g", admin: "127.0.0.1:$a", admin_grpc: "127.0.0.1:$ag" }
clients:
  - name: bench-app
    issuer: $ISS
    jwks_file: $work/rs256.jwks.json
    audiences: [$AUD]
    algorithms: [RS256]
    roles: [realm_access.roles]
    headers: { x-auth-subject: sub }
rules:
  - { name: health, match: { path: /healthz }, auth: none }
  - { name: api, match: { prefix: /api }, roles: { any_of: [viewer, editor] } }
default: deny
YAML
"${SRV[@]}" "$BIN/oidc-authz" serve --config "$work/config.yaml" >"$work/authz.log" 2>&1 & pids+=($!)
"${SRV[@]}" "$BIN/examples/allow_all" "127.0.0.1:$allow" >"$work/allow.log" 2>&1 & pids+=($!)
for _ in $(seq 1 200); do curl -fsS -o /dev/null "http://127.0.0.1:$a/readyz" 2>/dev/null && break; sleep 0.05; done
curl -fsS -o /dev/null "http://127.0.0.1:$a/readyz" || die "oidc-authz did not become ready"
"$BIN/examples/loadgen" --addr "127.0.0.1:$g" --tokens "$work/warm.txt" --requests 1000 >/dev/null  # warm the cache

conc="$work/concurrency.tsv"
for s in 1 8 32 128; do
  for target in allow authz; do
    port=$g; [[ $target == allow ]] && port=$allow
    say "concurrency: $target, 1 connection x $s streams, ${SECS}s"
    line=$("${CLI[@]}" "$BIN/examples/loadgen" --addr "127.0.0.1:$port" --tokens "$work/warm.txt" \
      --connections 1 --streams "$s" --duration "$SECS" | grep '^checks=')
    echo -e "$target\t$s\t$line" >>"$conc"
  done
done

python3 - "$conc" "$PURE" <<'PY'
import glob, json, os, sys

def est(*parts):
    p = os.path.join("target", "criterion", *parts, "new", "estimates.json")
    try:
        with open(p) as f:
            return json.load(f)["mean"]["point_estimate"]
    except (OSError, KeyError, ValueError):
        return float("nan")

def t(ns):
    return f"{ns / 1000:8.2f} µs" if ns >= 1000 else f"{ns:8.0f} ns"

if sys.argv[2] == "1":
    print()
    print("Pure path (criterion mean, benches/pure.rs)")
    for g in ("token", "verify", "policy", "decide", "grpc"):
        for d in sorted(glob.glob(os.path.join("target", "criterion", g, "*", "new"))):
            try:
                with open(os.path.join(d, "benchmark.json")) as f:
                    name = json.load(f)["full_id"]
                with open(os.path.join(d, "estimates.json")) as f:
                    ns = json.load(f)["mean"]["point_estimate"]
            except (OSError, KeyError, ValueError):
                continue
            print(f"  {name:<72} {t(ns):>11}")

print()
print("Cost per operation (criterion mean, benches/scaling.rs)")
print(f"  {'clients (one issuer)':<22} {'route':>11} {'decide, warm':>14}")
for n in (1, 10, 30, 100):
    print(f"  {n:<22} {t(est('clients', 'route', str(n))):>11} {t(est('clients', 'decide_warm', str(n))):>14}")
print(f"  {'rules (last matches)':<22} {'find':>11} {'(linear)':>11} {'decide, warm':>14}")
for n in (10, 100, 1000):
    print(f"  {n:<22} {t(est('rules', 'find', str(n))):>11} {t(est('rules', 'match_rule', str(n))):>11} {t(est('rules', 'decide_warm', str(n))):>14}")
print(f"  {'token size':<22} {'parse':>11} {'decide, cold':>14} {'decide, warm':>14}")
for k in (1, 2, 4, 8, 16):
    print(f"  {str(k) + ' KiB':<22} {t(est('token_size', 'parse', str(k))):>11} "
          f"{t(est('token_size', 'decide_cold', str(k))):>14} {t(est('token_size', 'decide_warm', str(k))):>14}")

rows = {}
with open(sys.argv[1]) as f:
    for line in f:
        target, streams, kv = line.rstrip("\n").split("\t")
        rows[(target, int(streams))] = dict(x.split("=", 1) for x in kv.split())
print()
print("Concurrency (bench/loadgen.rs, 1 HTTP/2 connection, closed loop, warm cache)")
print(f"  {'streams':<8} {'allow-all Checks/s':>19} {'p50/p99 µs':>13}   {'oidc-authz Checks/s':>20} {'p50/p99 µs':>13} {'ratio':>6}  errors")
for s in (1, 8, 32, 128):
    a, o = rows.get(("allow", s), {}), rows.get(("authz", s), {})
    ar, orr = float(a.get("checks_per_s", "nan")), float(o.get("checks_per_s", "nan"))
    print(f"  {s:<8} {ar:>19.0f} {a.get('p50_us', '?') + '/' + a.get('p99_us', '?'):>13}   {orr:>20.0f} "
          f"{o.get('p50_us', '?') + '/' + o.get('p99_us', '?'):>13} {orr / ar if ar else float('nan'):>6.3f}  "
          f"{int(a.get('errors', 0)) + int(o.get('errors', 0))}")
PY
