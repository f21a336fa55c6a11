#!/usr/bin/env bash
# The whole test suite: formatting, lints, every Rust test (unit, integration, end-to-end with
# real git, git daemon on 127.0.0.1, kill -9, tmpfs disk-full), and the independent Python
# reader of FORMAT.md against vaults written by gitvault.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
step "cargo test"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc --quiet
else
  cargo test --workspace --no-fail-fast
fi
step "independent reader (FORMAT.md)"
bash tools/test_reader.sh
step "all tests passed"
