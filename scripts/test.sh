#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with only the Rust toolchain:
# installs what is missing (Debian packages, Kubernetes v1.20.2 built from Debian's source,
# Tryton virtualenvs — all cached outside the repository), checks formatting and lints, then
# runs every test inside one local environment shared by all test processes.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - started ))" "$*" >&2; }

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

step "nothing left behind"
# Every process the environment starts runs inside its work directory, so a process whose
# working directory is (or was) one of them is a leftover.
leftovers() {
  local proc cwd
  for proc in /proc/[0-9]*; do
    cwd=$(readlink "$proc/cwd" 2>/dev/null) || continue
    case "$cwd" in
      "${TMPDIR:-/tmp}"/tenantry-*) echo "  pid ${proc#/proc/} in $cwd: $(tr '\0' ' ' <"$proc/cmdline" | cut -c1-120)" ;;
    esac
  done
}
for _ in $(seq 100); do [ -z "$(leftovers)" ] && break; sleep 0.1; done
if [ -n "$(leftovers)" ]; then
  echo "processes of a test environment are still running (a 'testenv up' of your own counts too):" >&2
  leftovers >&2
  exit 1
fi
if [ -z "${TENANTRY_KEEP_WORKDIR:-}" ] && compgen -G "${TMPDIR:-/tmp}/tenantry-*" >/dev/null; then
  echo "work directories left behind: $(echo "${TMPDIR:-/tmp}"/tenantry-*)" >&2
  exit 1
fi

step "done in $(( $(date +%s) - started ))s"
