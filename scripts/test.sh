#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with only the Rust toolchain:
# installs what is missing (Debian packages, Kubernetes v1.20.2 built from Debian's source,
# Tryton virtualenvs — all cached outside the repository), checks formatting and lints, then
# runs every test inside one local environment shared by all test processes.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }
started=$(date +%s)

for tool in cargo rustfmt cargo-clippy; do
  command -v "$tool" >/dev/null || { echo "missing $tool: install the Rust toolchain with rustfmt and clippy" >&2; exit 1; }
done

step "build the environment tool"
cargo build --locked -p e2e --bin testenv
testenv="${CARGO_TARGET_DIR:-target}/debug/testenv"

step "install what is missing (cached after the first run)"
"$testenv" install

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  runner=(cargo nextest run --locked --workspace --profile ci)
else
  runner=(cargo test --locked --workspace)
fi
step "tests: ${runner[*]} (inside one local environment)"
cargo build --locked --workspace --all-targets
"$testenv" exec -- "${runner[@]}"

step "done in $(( $(date +%s) - started ))s"
