#!/usr/bin/env bash
# The whole test suite, from a clean checkout on a fresh Debian 12 machine (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export CARGO_TERM_COLOR=never
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads=2
# The fuzz targets that need no engine build (Dockerfile parser, tar apply, compose files), a few
# seconds each: the engine-backed ones (references, manifests, configs, API bodies) take over
# 20 minutes to build with sanitizers here, so they run with `FUZZ_ALL=1` or `scripts/fuzz.sh`.
if [ "${FUZZ_ALL:-0}" = 1 ]; then
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-5}"
else
  FUZZ_FEATURES= FUZZ_TARGETS="dockerfile tar_apply compose" bash scripts/fuzz.sh "${FUZZ_SECONDS:-5}"
fi
