#!/usr/bin/env bash
# Offline validation of the alerting rules and the Grafana dashboard (docs/operations.md):
#
#   1. promtool check rules   deploy/prometheus/oidc-authz.rules.yaml
#   2. deploy/prometheus/prometheusrule.yaml is generated from it (scripts/gen-prometheusrule.py
#      --check), and the groups extracted back out of it pass promtool check rules too
#   3. promtool test rules    deploy/prometheus/tests/*.yaml
#   4. every alert has a unit test in which it FIRES and one in which it does NOT FIRE
#   5. scripts/check-dashboard.py: every PromQL expression of the dashboard and the rules parses
#      and uses only metrics src/observe/metrics.rs exports; runbook links resolve
#
#   scripts/validate-alerts.sh
#
# Needs promtool (Debian/Ubuntu: `apt-get install prometheus`) and python3. Without promtool it
# fails: nothing here is skipped. Prints one "PASS|FAIL  <check>" line per check and a summary;
# exits 1 if any check failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RULES=deploy/prometheus/oidc-authz.rules.yaml
TESTS=(deploy/prometheus/tests/*.yaml)

missing=()
command -v promtool >/dev/null 2>&1 || missing+=("promtool (Debian/Ubuntu: apt-get update && apt-get install -y prometheus; or the promtool binary from https://prometheus.io/download/)")
command -v python3 >/dev/null 2>&1 || missing+=("python3 (apt-get install -y python3)")
if ((${#missing[@]})); then
  echo "FAIL  validate-alerts: required tools missing — install them and re-run:" >&2
  for m in "${missing[@]}"; do echo "        * $m" >&2; done
  exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
failed=0
total=0
indent() { sed 's/^/      /'; }
# run <name> <command…>: PASS or FAIL with the command's output indented
run() {
  local name="$1"
  shift
  total=$((total + 1))
  if "$@" >"$WORK/out" 2>&1; then
    echo "PASS  $name"
  else
    echo "FAIL  $name"
    indent <"$WORK/out"
    failed=$((failed + 1))
  fi
}

echo "validate-alerts: $(promtool --version 2>&1 | head -1); $(python3 --version)"

run "promtool check rules $RULES" promtool check rules "$RULES"
run "prometheusrule.yaml generated from $RULES" scripts/gen-prometheusrule.py --check
extract_and_check() {
  scripts/gen-prometheusrule.py --extract >"$WORK/prometheusrule-groups.yaml" &&
    promtool check rules "$WORK/prometheusrule-groups.yaml"
}
run "promtool check rules (groups of prometheusrule.yaml)" extract_and_check
run "promtool test rules ${TESTS[*]}" promtool test rules "${TESTS[@]}"

# Each alert must be tested both ways: an alert_rule_test with exp_alerts listing it, and one
# with `exp_alerts: []`.
coverage() {
  python3 - "$RULES" "${TESTS[@]}" <<'PY'
import re, sys
rules, tests = sys.argv[1], sys.argv[2:]
alerts = re.findall(r"^\s*- alert:\s*(\S+)", open(rules).read(), re.M)
fires, quiet = set(), set()
for t in tests:
    lines = [l for l in open(t).read().splitlines() if l.strip() and not l.strip().startswith("#")]
    for i, l in enumerate(lines):
        m = re.match(r"^\s*alertname:\s*(\S+)", l)
        if not m:
            continue
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if nxt == "exp_alerts: []":
            quiet.add(m.group(1))
        elif nxt == "exp_alerts:":
            fires.add(m.group(1))
bad = 0
for a in alerts:
    for what, s in (("FIRES", fires), ("does NOT FIRE", quiet)):
        if a not in s:
            print(f"{a}: no unit test in which it {what}")
            bad += 1
unknown = (fires | quiet) - set(alerts)
for a in sorted(unknown):
    print(f"{a}: tested but not an alert of {rules}")
    bad += 1
groups = re.findall(r"^\s*- name:\s*(\S+)", open(rules).read(), re.M)
for t in tests:
    # Without group_eval_order promtool evaluates the groups in Go map order, so an alert that
    # reads a recorded series lags one evaluation on some runs only: a flaky test.
    m = re.search(r"^group_eval_order:\n((?:\s+- \S+\n)+)", open(t).read(), re.M)
    order = re.findall(r"- (\S+)", m.group(1)) if m else []
    if order != groups:
        print(f"{t}: group_eval_order must list {groups} in that order (got {order})")
        bad += 1
print(f"{len(alerts)} alerts, each tested firing and not firing; groups evaluated in file order" if not bad else f"{bad} problem(s)")
sys.exit(1 if bad else 0)
PY
}
run "every alert has tests that fire it and that do not; every test file orders the groups" coverage
run "scripts/check-dashboard.py (dashboard and rules PromQL vs src/observe/metrics.rs)" scripts/check-dashboard.py

echo "validate-alerts: $((total - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
