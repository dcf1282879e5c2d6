#!/usr/bin/env bash
# The tether Python package, as a user gets it: build the wheel with maturin,
# install it with pip into a fresh venv, and run its tests there (the seeds'
# programs, websocket-client's API) against `tether serve` and Python
# websockets' server.
#
# Environment: TETHER_DEPS (the venv with maturin, from install-deps.sh),
# TETHER_BIN (default target/release/tether), PY_PROFILE (cargo profile of
# the wheel: dev by default, release for benchmarks).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEPS="${TETHER_DEPS:-$HOME/.cache/tether-deps}"
PROFILE="${PY_PROFILE:-dev}"
WHEELS="$ROOT/target/wheels"
VENV="$ROOT/target/py-package-venv"

rm -rf "$WHEELS"
"$DEPS/py3/bin/maturin" build --quiet --profile "$PROFILE" -m crates/tether-py/Cargo.toml -o "$WHEELS"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "$WHEELS"/tether-*.whl pytest 'websockets==15.*' 'websocket-client==1.*'
BIN="$(realpath "${TETHER_BIN:-$ROOT/target/release/tether}")"
cd crates/tether-py
TETHER_BIN="$BIN" "$VENV/bin/python" -m pytest -q tests
