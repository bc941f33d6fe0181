#!/usr/bin/env bash
# End-to-end tests with real parts on 127.0.0.1: Envoy (deploy/envoy/envoy.yaml) -> oidc-authz (release
# build) -> node-oidc-provider, and an echo upstream. See e2e/test_e2e.py.
#
#   scripts/e2e.sh                 # setup (idempotent) + cargo build --release + pytest
#   scripts/e2e.sh -k rotation -v  # extra arguments go to pytest
#
# Exits with pytest's exit code. E2E_KEEP_LOGS=1 keeps every process's log and config (path printed).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scripts/setup-e2e.sh
# incremental: a no-op when target/release/oidc-authz is up to date
cargo build --release --bin oidc-authz

set +e
.venv/bin/pytest -q e2e "$@"
status=$?
set -e
exit "$status"
