#!/usr/bin/env bash
# Installs everything the test suite needs that this machine lacks, idempotently:
# Debian packages (chromium, redis, tinyproxy, dante-server), a Python 3 venv
# with the interop peers and pproxy,
# a Python 2.7 venv with the Autobahn TestSuite, Node's `ws`, and cargo-fuzz.
# Everything lands under $TETHER_DEPS (default ~/.cache/tether-deps) so a
# second run is a no-op.
set -euo pipefail

DEPS="${TETHER_DEPS:-$HOME/.cache/tether-deps}"
mkdir -p "$DEPS"
log() { printf '[install-deps] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------
need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# Real proxies for tests/peers/proxy.py: tinyproxy (HTTP CONNECT), dante (SOCKS5).
[ -x /usr/bin/tinyproxy ] || need_apt+=(tinyproxy)
[ -x /usr/sbin/danted ] || need_apt+=(dante-server)
# A throwaway certificate for the Python package's wss tests.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# --- Python 3 venv: interop peers -------------------------------------------
PY3_VENV="$DEPS/py3"
if [ ! -x "$PY3_VENV/bin/python" ] || [ ! -x "$PY3_VENV/bin/maturin" ] \
  || ! "$PY3_VENV/bin/python" -c 'import websockets, websocket, virtualenv, pproxy' 2>/dev/null; then
  log "python3 venv with websockets, websocket-client, pproxy, maturin"
  python3 -m venv "$PY3_VENV"
  "$PY3_VENV/bin/pip" install -q --upgrade pip
  # virtualenv < 20.22 is the last that can still create Python 2.7 environments.
  # maturin builds the tether Python package (crates/tether-py).
  "$PY3_VENV/bin/pip" install -q 'websockets==15.*' 'websocket-client==1.*' 'virtualenv<20.22' 'pproxy==2.7.9' \
    'maturin==1.15.*'
fi

# --- Python 2.7 venv: Autobahn TestSuite ------------------------------------
AB_VENV="$DEPS/autobahn"
if [ ! -x "$AB_VENV/bin/wstest" ]; then
  PY27="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/2.7.18/bin/python"
  log "python2.7 venv with autobahntestsuite 0.8.2 ($PY27)"
  rm -rf "$AB_VENV"
  "$PY3_VENV/bin/virtualenv" -q -p "$PY27" "$AB_VENV"
  "$AB_VENV/bin/pip" install -q autobahntestsuite==0.8.2
fi

# --- Node: ws ----------------------------------------------------------------
NODE_DIR="$DEPS/node"
if [ ! -d "$NODE_DIR/node_modules/ws" ]; then
  log "npm install ws"
  mkdir -p "$NODE_DIR"
  (cd "$NODE_DIR" && { [ -f package.json ] || echo '{"name":"tether-peers","private":true}' > package.json; } && npm install --silent --no-audit --no-fund ws@8 >/dev/null)
fi

log "done: $DEPS"
