#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with only the Rust toolchain:
# installs what is missing (Debian packages, Kubernetes v1.20.2 built from Debian's source,
# Tryton virtualenvs — all cached outside the repository), checks formatting and lints, then
# runs every test inside one local environment shared by all test processes.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
# Only what this run starts is its business: environments from before it (a `testenv up` of
# someone's) are left alone by the leftover check at the end.
run_marker=$(mktemp)
trap 'rm -f "$run_marker"' EXIT
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
# Every process an environment starts runs inside its work directory
# (${TMPDIR:-/tmp}/tenantry-*, holding a .pids file); what this run made is newer than its marker.
ours() {
  local dir=${1% (deleted)}
  [ ! -e "$dir" ] || [ "$dir" -nt "$run_marker" ]
}
leftovers() {
  local proc cwd
  for proc in /proc/[0-9]*; do
    cwd=$(readlink "$proc/cwd" 2>/dev/null) || continue
    case "$cwd" in
      "${TMPDIR:-/tmp}"/tenantry-*) ours "$cwd" && echo "  pid ${proc#/proc/} in $cwd: $(tr '\0' ' ' <"$proc/cmdline" | cut -c1-120)" ;;
    esac
  done
}
leftover_dirs() {
  local dir
  for dir in "${TMPDIR:-/tmp}"/tenantry-*/; do
    [ -f "$dir.pids" ] && ours "${dir%/}" && echo "$dir"
  done
}
for _ in $(seq 100); do [ -z "$(leftovers)" ] && break; sleep 0.1; done
if [ -n "$(leftovers)" ]; then
  echo "processes started by this run are still running:" >&2
  leftovers >&2
  exit 1
fi
if [ -z "${TENANTRY_KEEP_WORKDIR:-}" ] && [ -n "$(leftover_dirs)" ]; then
  echo "work directories left behind: $(leftover_dirs | tr '\n' ' ')" >&2
  exit 1
fi

step "done in $(( $(date +%s) - started ))s"
