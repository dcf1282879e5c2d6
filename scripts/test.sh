#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   1. install what is missing (Debian packages, Python/Node peers, Autobahn venv)
#   2. static checks: rustfmt, clippy, rustdoc, "tether-proto has no tokio"
#   3. Autobahn TestSuite, both sides, in the background (about 15 minutes)
#   4. meanwhile: cargo test (unit, behaviour, API, bad input, interop with
#      real peers), the Python package (wheel, fresh venv, its tests), then a
#      bounded fuzz run of every target
#   5. wait for Autobahn (tether's, then the Python package's, started once its
#      venv exists) and diff the results against conformance/expected
# Ends with one line "test.sh: N passed, N failed" (a step each).
#
# Environment: TETHER_DEPS (where dependencies go), FUZZ_SECONDS (per target,
# default 20), SKIP_AUTOBAHN=1 / SKIP_FUZZ=1 for a quicker local run.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export TETHER_DEPS="${TETHER_DEPS:-$HOME/.cache/tether-deps}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
passed=0
failed=0
failures=()

step() {
  local name="$1"
  shift
  printf '\n=== %s\n' "$name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    printf '=== %s: ok (%ds)\n' "$name" $((SECONDS - start))
  else
    failed=$((failed + 1))
    failures+=("$name")
    printf '=== %s: FAILED (%ds)\n' "$name" $((SECONDS - start))
  fi
}

no_tokio_in_core() {
  if cargo tree -p tether-proto -e normal --prefix none | grep -E '^(tokio|mio|async-std|futures) ' ; then
    echo "tether-proto must not depend on an async runtime"
    return 1
  fi
}

client_builds_without_the_server() {
  # A client user (`default-features = false`) builds no server, hub,
  # metrics or Redis: none of tether-server.
  if cargo tree -p tether --no-default-features -e normal --prefix none | grep -E '^tether-server ' ; then
    echo "tether without default features must not depend on tether-server"
    return 1
  fi
  cargo clippy --quiet -p tether --no-default-features --lib -- -D warnings
}

if ! bash scripts/install-deps.sh; then
  echo "test.sh: dependency installation failed"
  echo "test.sh: 0 passed, 1 failed"
  exit 1
fi

step "rustfmt" cargo fmt --all --check
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
step "rustdoc" env RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --quiet
step "core has no runtime" no_tokio_in_core
step "client builds without the server" client_builds_without_the_server
step "release build" cargo build --release --quiet -p tether-cli --bin tether -p tether --example autobahn_client

autobahn_pid=""
# Outside conformance/reports/, which run.sh empties when it starts.
autobahn_log="$ROOT/target/autobahn.log"
mkdir -p "$ROOT/target"
if [ "${SKIP_AUTOBAHN:-0}" != 1 ]; then
  bash conformance/run.sh > "$autobahn_log" 2>&1 &
  autobahn_pid=$!
  echo "Autobahn TestSuite running in the background (pid $autobahn_pid, log $autobahn_log)"
fi

step "cargo test" cargo test --workspace --quiet
step "python package (wheel, fresh venv, seeds)" bash scripts/python-package.sh

# The package's own server and client through the same 517 cases, once its
# venv exists (about ten minutes, beside the fuzzing below).
py_autobahn_pid=""
py_autobahn_log="$ROOT/target/autobahn-python.log"
PY_VENV_PYTHON="$ROOT/target/py-package-venv/bin/python"
if [ "${SKIP_AUTOBAHN:-0}" != 1 ] && [ -x "$PY_VENV_PYTHON" ]; then
  AUTOBAHN_REPORTS="$ROOT/target/autobahn-python" \
    AUTOBAHN_SERVER_CMD="$PY_VENV_PYTHON $ROOT/crates/tether-py/tests/autobahn/server.py {port}" \
    AUTOBAHN_CLIENT_CMD="$PY_VENV_PYTHON $ROOT/crates/tether-py/tests/autobahn/client.py --url {url} --agent {agent}" \
    bash conformance/run.sh > "$py_autobahn_log" 2>&1 &
  py_autobahn_pid=$!
  echo "Autobahn TestSuite on the Python package in the background (pid $py_autobahn_pid, log $py_autobahn_log)"
fi
if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzz (${FUZZ_SECONDS:-20}s per target)" bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
fi

# Waits for a background conformance run (pid, log) and prints its verdict.
autobahn_result() {
  wait "$1"
  local status=$?
  grep -E '^(server|client):|^conformance:|^  ' "$2" || tail -40 "$2"
  return $status
}
if [ -n "$autobahn_pid" ]; then
  step "Autobahn TestSuite (both sides, permessage-deflate)" autobahn_result "$autobahn_pid" "$autobahn_log"
fi
if [ -n "$py_autobahn_pid" ]; then
  step "Autobahn TestSuite on the Python package (both sides)" autobahn_result "$py_autobahn_pid" "$py_autobahn_log"
fi

printf '\n'
for name in "${failures[@]}"; do
  echo "FAILED: $name"
done
echo "test.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
