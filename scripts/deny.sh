#!/usr/bin/env bash
# Supply-chain check (issue 6): licences, bans (no OpenSSL / native-tls), sources (crates.io
# only) and RustSec advisories (unmaintained, unsound, yanked) — see deny.toml.
#
# The advisory database is the offline snapshot in ../shared/advisory-db, prepared into
# target/advisory-db by ../shared/tools/advisory-db (cargo-deny reads a database only from a git
# checkout named after its URL). Installs cargo-deny when missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! cargo deny --version >/dev/null 2>&1; then
  echo "deny: installing cargo-deny (cargo install --locked cargo-deny)"
  cargo install --locked cargo-deny
fi
cargo deny --version

tool="$root/../shared/tools/advisory-db"
[[ -x "$tool" ]] || { echo "deny: $tool not found (../shared must sit beside the repo)"; exit 1; }
"$tool" "$root/target/advisory-db" >/dev/null
echo "deny: advisory database snapshot prepared in target/advisory-db"

# `--offline` needs every crate of Cargo.lock (all targets) in the local cargo cache; fetch them
# first when the network allows (a no-op when they are already there).
cargo fetch --locked --quiet 2>/dev/null || echo "deny: cargo fetch failed; continuing offline with the local cache"

cargo deny --offline check
