#!/usr/bin/env bash
# Fuzz smoke (issue 6): run each cargo-fuzz target in fuzz/ for ${FUZZ_SECONDS:-60} seconds,
# seeded from fuzz/corpus/<target>/ (read-only: new inputs go to a scratch directory).
# cargo-fuzz needs a nightly toolchain; without one, say so and replay the corpora through the
# targets' functions on stable instead (tests/fuzz_corpus.rs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
secs="${FUZZ_SECONDS:-60}"
targets=(token_parse auth_header path_normalize config_parse dpop_proof)

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain — running the corpora through the targets' functions on stable instead"
  cargo test --quiet --test fuzz_corpus
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (cargo install --locked cargo-fuzz)"
  cargo install --locked cargo-fuzz
fi
echo "fuzz: $(cargo +nightly --version); $(cargo fuzz --version); ${secs}s per target"

# The fuzz crate is its own workspace; start its lockfile from the main one so it builds the
# same (audited) dependency versions, adding only libfuzzer-sys and its few dependencies.
[[ -f fuzz/Cargo.lock ]] || cp Cargo.lock fuzz/Cargo.lock

# The sanitizer build is slow on 2 cores: keep it outside the clone so CI runs on the same
# machine reuse it (override with FUZZ_TARGET_DIR).
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/oidc-authz/fuzz-target}"
mkdir -p "$CARGO_TARGET_DIR"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd fuzz
cargo +nightly fuzz build
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  echo "== fuzz $t (${secs}s)"
  if ! cargo +nightly fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$scratch/$t.log" 2>&1; then
    tail -n 60 "$scratch/$t.log"
    echo "fuzz: $t FAILED — the crashing input is in fuzz/artifacts/$t/ (reproduce: cd fuzz && cargo +nightly fuzz run $t <file>)"
    exit 1
  fi
  grep -E "^stat::number_of_executed_units|^Done [0-9]+ runs" "$scratch/$t.log" | tail -n 2 || true
done
echo "fuzz: ${#targets[@]} targets x ${secs}s, no crash"
