#!/usr/bin/env bash
# The whole test suite, from a clean checkout on a fresh Debian 12 machine (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export CARGO_TERM_COLOR=never
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads=2
# every fuzz target briefly (HARDENING: parsers, manifests, tar apply, compose, API bodies)
bash scripts/fuzz.sh "${FUZZ_SECONDS:-5}"
