#!/usr/bin/env bash
# The tether Python package, as a user gets it: pip builds the wheel from the
# checkout (pyproject.toml names maturin as its build backend), installs it
# into a fresh venv, and its tests run there (the seeds' programs,
# websocket-client's and websockets' APIs, interop, faults) against
# `tether serve` and Python websockets' server. The wheel uses CPython's
# stable ABI (abi3, 3.11 and later): the same file is then installed on every
# other CPython 3.11+ that pyenv has, where the seeds' programs and the API
# tests run again.
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
PEERS=(pytest 'websockets==15.*' 'websocket-client==1.*')

rm -rf "$WHEELS"
# `pip wheel` drives maturin through PEP 517, as `pip install crates/tether-py`
# does; maturin is already in the deps venv, so no isolated build env.
PATH="$DEPS/py3/bin:$PATH" MATURIN_PEP517_ARGS="--profile $PROFILE" "$DEPS/py3/bin/pip" wheel -q --no-deps --no-build-isolation \
  -w "$WHEELS" crates/tether-py
WHEEL="$(ls "$WHEELS"/tether-*.whl)"
case "$WHEEL" in
  *-cp311-abi3-*) ;;
  *) echo "expected one abi3 wheel for CPython 3.11+, got $WHEEL"; exit 1 ;;
esac
# A fresh venv at $1 made by the interpreter $2, with the wheel and the peers.
fresh_venv() {
  rm -rf "$1"
  "$2" -m venv "$1"
  "$1/bin/pip" install -q "$WHEEL" "${PEERS[@]}"
}

fresh_venv "$VENV" python3
BIN="$(realpath "${TETHER_BIN:-$ROOT/target/release/tether}")"
(cd crates/tether-py && TETHER_BIN="$BIN" "$VENV/bin/python" -m pytest -q tests)

# The same wheel on the other CPython versions.
PYENV_VERSIONS="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions"
# "3.N" for 3.11 and later, nothing for older versions.
VERSION_IF_ABI3='import sys; print("%d.%d" % sys.version_info[:2] if sys.version_info >= (3, 11) else "")'
tested="$(python3 -c "$VERSION_IF_ABI3")"
others=0
for python in "$PYENV_VERSIONS"/3.*/bin/python3; do
  [ -x "$python" ] || continue
  version="$("$python" -c "$VERSION_IF_ABI3")"
  [ -n "$version" ] && [ "$version" != "$tested" ] || continue
  echo "the same wheel on CPython $version ($python)"
  venv="$ROOT/target/py-package-venv-$version"
  fresh_venv "$venv" "$python"
  # All but the seed whose client sleeps a second per round (40 s; 3.11 ran it).
  (cd crates/tether-py && TETHER_BIN="$BIN" "$venv/bin/python" -m pytest -q -k 'not test_002' \
    tests/test_seeds_websocket_client.py tests/test_seeds_websockets.py \
    tests/test_websocket_client_api.py tests/test_websockets_api.py)
  others=$((others + 1))
done
if [ "$others" -eq 0 ]; then
  echo "no other CPython 3.11+ under $PYENV_VERSIONS: the abi3 wheel was tried on one version only"
  exit 1
fi
