#!/usr/bin/env bash
# The whole test suite, from a clean checkout on a fresh Debian 12 machine (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export CARGO_TERM_COLOR=never
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads=2
# Every fuzz target a few seconds each, built unoptimised with debug assertions and libFuzzer's
# coverage but no sanitizer (about 4 minutes cold here; Rust code needs ASan little, and
# `FUZZ_BUILD="" scripts/fuzz.sh 3600` is the optimised ASan build for long runs).
bash scripts/fuzz.sh "${FUZZ_SECONDS:-5}"
