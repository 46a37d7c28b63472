#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property, golden-capture and conformance tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
# A one-shot build gains nothing from incremental state but its disk space.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi
