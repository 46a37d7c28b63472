#!/usr/bin/env bash
# Supply-chain checks: licenses, banned or duplicated crates, sources (deny.toml); advisories
# too when the advisory database can be fetched. Not part of the test suite (it builds
# cargo-deny first); run it before a release.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deny >/dev/null 2>&1 || cargo install --locked cargo-deny
cargo deny check licenses bans sources
if cargo deny fetch >/dev/null 2>&1; then
  cargo deny check advisories
else
  echo "advisory database unreachable from here: advisories not checked" >&2
fi
