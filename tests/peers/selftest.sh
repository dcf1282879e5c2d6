#!/usr/bin/env bash
# Cross-checks the interop peers against each other (no Rust involved):
# every client x every server, over ws:// and wss:// (self-signed cert made
# here with openssl). Prints one line per pair and `N passed, N failed`.
# Usage: tests/peers/selftest.sh [--quick]   (--quick: sizes 0,125,126,65536)
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEPS="${TETHER_DEPS:-$HOME/.cache/tether-deps}"
PY="$DEPS/py3/bin/python"
export NODE_PATH="$DEPS/node/node_modules"
EXTRA=()
[ "${1:-}" = "--quick" ] && EXTRA=(--sizes 0,125,126,65536)

WORK="$(mktemp -d -t tether-peers-selftest.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -days 1 \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1 || { echo "openssl failed"; exit 1; }

# start_server NAME CMD... : starts it, waits for `LISTENING <port>`, sets PORT.
start_server() {
  local name="$1"; shift
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=("$!")
  for _ in $(seq 1 100); do
    PORT="$(awk '/^LISTENING /{print $2; exit}' "$WORK/$name.out")"
    [ -n "$PORT" ] && return 0
    sleep 0.1
  done
  echo "server $name did not start:"; cat "$WORK/$name.err"; exit 1
}

start_server py_ws   "$PY" "$HERE/py_websockets_server.py" --host 127.0.0.1 --port 0;  P_PY_WS=$PORT
start_server py_wss  "$PY" "$HERE/py_websockets_server.py" --host 127.0.0.1 --port 0 \
  --cert "$WORK/cert.pem" --key "$WORK/key.pem";                                      P_PY_WSS=$PORT
start_server node_ws  node "$HERE/node_ws_server.js" --host 127.0.0.1 --port 0;        P_NODE_WS=$PORT
start_server node_wss node "$HERE/node_ws_server.js" --host 127.0.0.1 --port 0 \
  --cert "$WORK/cert.pem" --key "$WORK/key.pem";                                      P_NODE_WSS=$PORT

pass=0; fail=0
run_client() {  # LABEL URL CMD...
  local label="$1" url="$2"; shift 2
  local tls=(); [[ "$url" == wss://* ]] && tls=(--cafile "$WORK/cert.pem")
  local t0=$SECONDS out
  out="$("$@" "$url" "${tls[@]}" "${EXTRA[@]}" 2>"$WORK/client.err")"
  local rc=$?
  if [ $rc -eq 0 ] && [[ "$out" == OK* ]]; then
    pass=$((pass+1)); echo "PASS $label $url ($((SECONDS-t0)) s): $out"
  else
    fail=$((fail+1)); echo "FAIL $label $url rc=$rc: $out"; tail -5 "$WORK/client.err" | sed 's/^/    /'
  fi
}

for srv in "py_websockets_server $P_PY_WS $P_PY_WSS" "node_ws_server $P_NODE_WS $P_NODE_WSS"; do
  set -- $srv
  for url in "ws://127.0.0.1:$2/" "wss://127.0.0.1:$3/"; do
    run_client "py_websockets_client -> $1" "$url" "$PY" "$HERE/py_websockets_client.py"
    run_client "py_websocket_client(create_connection) -> $1" "$url" "$PY" "$HERE/py_websocket_client.py" --mode create_connection
    run_client "py_websocket_client(app) -> $1" "$url" "$PY" "$HERE/py_websocket_client.py" --mode app
    run_client "node_ws_client -> $1" "$url" node "$HERE/node_ws_client.js"
    run_client "chromium_client -> $1" "$url" "$PY" "$HERE/chromium_client.py"
  done
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
