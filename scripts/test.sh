#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with only the Rust toolchain:
# installs what is missing (Debian packages, Kubernetes v1.20.2 built from Debian's source,
# Tryton, Helm SDK and Schemathesis virtualenvs — all cached outside the repository), checks
# formatting and lints, then runs every test inside one local environment shared by all test
# processes.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
# Only what this run starts is its business: every process it starts inherits this variable,
# and every work directory it makes records it, so the leftover check at the end ignores other
# environments on the machine (a `testenv up` of someone's).
TENANTRY_RUN_ID="test-$$-$(date +%s%N)"
export TENANTRY_RUN_ID
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - started ))" "$*" >&2; }

for tool in cargo rustfmt clippy-driver; do
  command -v "$tool" >/dev/null || { echo "missing $tool: install the Rust toolchain with rustfmt and clippy" >&2; exit 1; }
done

# The lints and the build are one compilation: clippy's driver compiles the workspace's own
# crates (rustc with clippy's lints, as `cargo clippy` runs it) through to the binaries, and
# `-D warnings` makes any warning fail the build, as `cargo clippy -- -D warnings` does.
# Dependencies are compiled by rustc with their lints capped, as always. A separate `cargo
# clippy` would check every dependency a second time: minutes on a fresh machine.
RUSTC_WORKSPACE_WRAPPER="$(command -v clippy-driver)"
export RUSTC_WORKSPACE_WRAPPER
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-D warnings"

step "build the environment tool"
cargo build --locked -p e2e --bin testenv
testenv="${CARGO_TARGET_DIR:-target}/debug/testenv"

# On a fresh machine the install waits on downloads (Debian packages, PyPI, npm) for much of its
# half hour: the lints and the build use that time. Its log is shown when it is done.
step "install what is missing, beside the lints and the build (cached after the first run)"
install_log="$(mktemp "${TMPDIR:-/tmp}/tenantry-install-log.XXXXXX")"
"$testenv" install >"$install_log" 2>&1 &
install_pid=$!
trap 'kill "$install_pid" 2>/dev/null || true; rm -f "$install_log"' EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "build every target, with clippy's lints, -D warnings"
cargo build --locked --workspace --all-targets

step "the install's end"
install_status=0
wait "$install_pid" || install_status=$?
cat "$install_log" >&2
trap - EXIT
rm -f "$install_log"
[ "$install_status" -eq 0 ] || { echo "testenv install failed ($install_status)" >&2; exit 1; }

if cargo nextest --version >/dev/null 2>&1; then
  runner=(cargo nextest run --locked --workspace --profile ci)
else
  runner=(cargo test --locked --workspace)
fi
step "tests: ${runner[*]} (inside one local environment)"
"$testenv" exec -- "${runner[@]}"

step "nothing left behind"
leftovers() {
  local proc
  for proc in /proc/[0-9]*; do
    if { tr '\0' '\n' <"$proc/environ"; } 2>/dev/null | grep -qx "TENANTRY_RUN_ID=$TENANTRY_RUN_ID"; then
      # This script and the tools its check runs carry the variable too.
      case "$(cat "$proc/comm" 2>/dev/null)" in bash | tr | grep | cut | cat | seq | sleep) continue ;; esac
      echo "  pid ${proc#/proc/}: $(tr '\0' ' ' <"$proc/cmdline" 2>/dev/null | cut -c1-120)"
    fi
  done
}
leftover_dirs() {
  local dir
  for dir in "${TMPDIR:-/tmp}"/tenantry-*/; do
    [ "$(cat "$dir.run-id" 2>/dev/null)" = "$TENANTRY_RUN_ID" ] && echo "$dir"
  done
}
for _ in $(seq 100); do [ -z "$(leftovers)" ] && break; sleep 0.1; done
if [ -n "$(leftovers)" ]; then
  echo "processes started by this run are still running:" >&2
  leftovers >&2
  exit 1
fi
# The real node's cgroups are named after the process that owned its environment: one whose
# owner is gone was left behind.
leftover_cgroups() {
  local dir
  for dir in /sys/fs/cgroup/*/tenantry-*-*; do
    [ -d "$dir" ] && [ ! -d "/proc/${dir##*-}" ] && echo "$dir"
  done
}
for _ in $(seq 100); do [ -z "$(leftover_cgroups)" ] && break; sleep 0.1; done
if [ -n "$(leftover_cgroups)" ]; then
  echo "cgroups of a real node left behind: $(leftover_cgroups | tr '\n' ' ')" >&2
  exit 1
fi
# Image builds mount each working container's root file system in the cache's buildah storage;
# a mount still there after the run is a container buildah left behind.
leftover_build_mounts() { awk '$2 ~ /\/images\/buildah\/root\/overlay\/.*\/merged$/ { print $2 }' /proc/mounts; }
if [ -n "$(leftover_build_mounts)" ]; then
  echo "image build containers left mounted: $(leftover_build_mounts | tr '\n' ' ')" >&2
  exit 1
fi
if [ -z "${TENANTRY_KEEP_WORKDIR:-}" ] && [ -n "$(leftover_dirs)" ]; then
  echo "work directories left behind: $(leftover_dirs | tr '\n' ' ')" >&2
  exit 1
fi

step "done in $(( $(date +%s) - started ))s"
