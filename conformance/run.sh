#!/usr/bin/env bash
# Autobahn TestSuite (wstest 0.8.2) conformance run for tether, both sides at once:
#
#   server side: wstest fuzzingclient  ->  target/release/tether serve
#   client side: target/release/examples/autobahn_client  ->  wstest fuzzingserver
#
# All 517 cases by default, permessage-deflate on (our peers always offer/accept it;
# wstest negotiates it in cases 12.x/13.x). Groups 12/13 take wstest 12-14 minutes per
# side, which is why the two sides run concurrently.
#
# Usage: conformance/run.sh [--cases '1.*,2.*'] [--update] [--timeout SECONDS]
#   --cases    comma-separated wstest case patterns (default '*'); the expected-results
#              diff then only covers the selected cases
#   --update   rewrite conformance/expected/*.txt from this run (review the git diff!)
#   --timeout  give up on a side after this many seconds (default 3600)
#
# Builds nothing. Needs:
#   cargo build --release -p tether-cli --bin tether -p tether --example autobahn_client
#   scripts/install-deps.sh        (wstest in $TETHER_DEPS/autobahn, python3 venv)
# Environment overrides: TETHER_DEPS, CARGO_TARGET_DIR, TETHER_BIN, AUTOBAHN_CLIENT_BIN,
#   TETHER_MAX_MESSAGE_SIZE (default 16777216 = 16 MiB, exactly the largest 9.x message;
#   the limit is inclusive).
# Other testees (the Python package): AUTOBAHN_SERVER_CMD (a shell command with {port})
#   and AUTOBAHN_CLIENT_CMD (with {url} and {agent}) replace tether serve and
#   autobahn_client; AUTOBAHN_REPORTS puts the reports elsewhere.
# Reports: conformance/reports/{server,client}/index.html (gitignored), logs next to them.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
DEPS="${TETHER_DEPS:-$HOME/.cache/tether-deps}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
TETHER_BIN="${TETHER_BIN:-$TARGET/release/tether}"
CLIENT_BIN="${AUTOBAHN_CLIENT_BIN:-$TARGET/release/examples/autobahn_client}"
MAX_MESSAGE_SIZE="${TETHER_MAX_MESSAGE_SIZE:-16777216}"
WSTEST_PY="$DEPS/autobahn/bin/python"
REPORTS="${AUTOBAHN_REPORTS:-$HERE/reports}"
SERVER_CMD="${AUTOBAHN_SERVER_CMD:-}"
CLIENT_CMD="${AUTOBAHN_CLIENT_CMD:-}"
AGENT=tether

CASES='*'
UPDATE=()
TIMEOUT=3600

die() { printf 'conformance: %s\n' "$*" >&2; exit 2; }
log() { printf '[conformance %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --cases) [ $# -ge 2 ] || die "--cases needs a value"; CASES="$2"; shift 2 ;;
    --cases=*) CASES="${1#--cases=}"; shift ;;
    --update) UPDATE=(--update); shift ;;
    --timeout) [ $# -ge 2 ] || die "--timeout needs a value"; TIMEOUT="$2"; shift 2 ;;
    --timeout=*) TIMEOUT="${1#--timeout=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done
[[ "$CASES" =~ ^[0-9.*]+(,[0-9.*]+)*$ ]] || die "bad --cases '$CASES' (e.g. '1.*,2.10,12.1.*')"
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "bad --timeout '$TIMEOUT'"

# --- prerequisites ------------------------------------------------------------
missing=()
[ -n "$SERVER_CMD" ] || [ -x "$TETHER_BIN" ] || missing+=("$TETHER_BIN")
[ -n "$CLIENT_CMD" ] || [ -x "$CLIENT_BIN" ] || missing+=("$CLIENT_BIN")
if [ "${#missing[@]}" -gt 0 ]; then
  die "missing binaries: ${missing[*]}
  build them first:  cargo build --release -p tether-cli --bin tether -p tether --example autobahn_client"
fi
[ -x "$WSTEST_PY" ] && [ -x "$DEPS/autobahn/bin/wstest" ] \
  || die "wstest not installed under $DEPS/autobahn; run scripts/install-deps.sh"
if [ -x "$DEPS/py3/bin/python" ]; then PY3="$DEPS/py3/bin/python"; else PY3="$(command -v python3)" || die "python3 not found"; fi

# --- processes: started in the background, stopped by PID on exit -------------
declare -A PIDS=()   # name -> pid
stop_all() {
  local name pid
  for name in "${!PIDS[@]}"; do
    pid="${PIDS[$name]}"
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for name in "${!PIDS[@]}"; do
    pid="${PIDS[$name]}"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap stop_all EXIT
trap 'log "interrupted"; exit 130' INT TERM

free_port() {
  "$PY3" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_listening() { # name port pid
  local name="$1" port="$2" pid="$3" i
  for i in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited before listening on 127.0.0.1:$port; log:"; tail -n 30 "$REPORTS/$name.log" >&2 || true
      return 1
    fi
    if "$PY3" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()' "$port" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  log "$name did not listen on 127.0.0.1:$port within 30s; log:"; tail -n 30 "$REPORTS/$name.log" >&2 || true
  return 1
}

write_spec() { # template out port outdir
  "$PY3" - "$@" "$CASES" "$AGENT" <<'PY'
import json, sys
template, out, port, outdir, cases, agent = sys.argv[1:7]
with open(template) as f:
    spec = json.load(f)
spec.pop("_comment", None)
url = "ws://127.0.0.1:%d" % int(port)
if "servers" in spec:                      # fuzzingclient
    spec["servers"][0]["url"] = url
    spec["servers"][0]["agent"] = agent
else:                                      # fuzzingserver
    spec["url"] = url
spec["outdir"] = outdir
spec["cases"] = [c.strip() for c in cases.split(",") if c.strip()]
spec.setdefault("exclude-cases", [])
with open(out, "w") as f:
    json.dump(spec, f, indent=3)
    f.write("\n")
PY
}

# --- set up --------------------------------------------------------------------
rm -rf "$REPORTS/server" "$REPORTS/client"
mkdir -p "$REPORTS/server" "$REPORTS/client"
rm -f "$REPORTS"/*.log "$REPORTS"/*.spec.json

SERVER_PORT="$(free_port)"
FUZZSERVER_PORT="$(free_port)"
while [ "$FUZZSERVER_PORT" = "$SERVER_PORT" ]; do FUZZSERVER_PORT="$(free_port)"; done

write_spec "$HERE/fuzzingclient.json" "$REPORTS/fuzzingclient.spec.json" "$SERVER_PORT" "$REPORTS/server"
write_spec "$HERE/fuzzingserver.json" "$REPORTS/fuzzingserver.spec.json" "$FUZZSERVER_PORT" "$REPORTS/client"

export PYTHONWARNINGS=ignore   # silence Python 2 deprecation noise from cryptography
log "cases: $CASES   tether serve on 127.0.0.1:$SERVER_PORT   wstest fuzzingserver on 127.0.0.1:$FUZZSERVER_PORT"

# 1. the two servers
if [ -n "$SERVER_CMD" ]; then
  bash -c "exec ${SERVER_CMD//\{port\}/$SERVER_PORT}" >"$REPORTS/tether-serve.log" 2>&1 &
else
  "$TETHER_BIN" serve --listen "127.0.0.1:$SERVER_PORT" --max-message-size "$MAX_MESSAGE_SIZE" \
    >"$REPORTS/tether-serve.log" 2>&1 &
fi
PIDS[tether-serve]=$!
(cd "$REPORTS" && exec "$WSTEST_PY" -u "$HERE/wstest_local.py" -m fuzzingserver \
  -s "$REPORTS/fuzzingserver.spec.json" -u 0) >"$REPORTS/wstest-fuzzingserver.log" 2>&1 &
PIDS[wstest-fuzzingserver]=$!

wait_listening tether-serve "$SERVER_PORT" "${PIDS[tether-serve]}" || exit 1
wait_listening wstest-fuzzingserver "$FUZZSERVER_PORT" "${PIDS[wstest-fuzzingserver]}" || exit 1

# 2. the two clients, concurrently
(cd "$REPORTS" && exec "$WSTEST_PY" -u "$HERE/wstest_local.py" -m fuzzingclient \
  -s "$REPORTS/fuzzingclient.spec.json") >"$REPORTS/wstest-fuzzingclient.log" 2>&1 &
PIDS[wstest-fuzzingclient]=$!
if [ -n "$CLIENT_CMD" ]; then
  command="${CLIENT_CMD//\{url\}/ws://127.0.0.1:$FUZZSERVER_PORT}"
  bash -c "exec ${command//\{agent\}/$AGENT}" >"$REPORTS/autobahn-client.log" 2>&1 &
else
  "$CLIENT_BIN" --url "ws://127.0.0.1:$FUZZSERVER_PORT" --agent "$AGENT" \
    >"$REPORTS/autobahn-client.log" 2>&1 &
fi
PIDS[autobahn-client]=$!
log "running (logs: $REPORTS/*.log) ..."

declare -A RC=()
start=$SECONDS
last_report=$SECONDS
while :; do
  for name in wstest-fuzzingclient autobahn-client; do
    [ -n "${RC[$name]:-}" ] && continue
    pid="${PIDS[$name]}"
    if ! kill -0 "$pid" 2>/dev/null; then
      rc=0; wait "$pid" || rc=$?
      RC[$name]=$rc
      log "$name finished (exit $rc) after $((SECONDS - start))s"
    fi
  done
  [ -n "${RC[wstest-fuzzingclient]:-}" ] && [ -n "${RC[autobahn-client]:-}" ] && break
  if [ $((SECONDS - start)) -ge "$TIMEOUT" ]; then
    log "timeout after ${TIMEOUT}s"
    for name in wstest-fuzzingclient autobahn-client; do
      if [ -z "${RC[$name]:-}" ]; then
        RC[$name]=timeout
        log "$name still running; last log lines:"; tail -n 5 "$REPORTS/$name.log" >&2 || true
      fi
    done
    break
  fi
  if [ $((SECONDS - last_report)) -ge 60 ]; then
    last_report=$SECONDS
    srv="$(grep -c '^Running test case' "$REPORTS/wstest-fuzzingclient.log" 2>/dev/null || true)"
    cli="$(grep -c '^Running test case' "$REPORTS/wstest-fuzzingserver.log" 2>/dev/null || true)"
    log "progress: server side ${srv:-0} cases started, client side ${cli:-0} cases started"
  fi
  sleep 1
done

# 3. did the servers survive?
status=0
if ! kill -0 "${PIDS[tether-serve]}" 2>/dev/null; then
  rc=0; wait "${PIDS[tether-serve]}" || rc=$?
  log "tether serve exited during the run (exit $rc); last log lines:"; tail -n 20 "$REPORTS/tether-serve.log" >&2 || true
  unset 'PIDS[tether-serve]'
  status=1
fi
if ! kill -0 "${PIDS[wstest-fuzzingserver]}" 2>/dev/null; then
  log "wstest fuzzingserver died during the run; last log lines:"; tail -n 20 "$REPORTS/wstest-fuzzingserver.log" >&2 || true
  status=1
fi
stop_all

if [ "${RC[autobahn-client]}" != 0 ]; then
  log "autobahn_client failed (exit ${RC[autobahn-client]}); last log lines:"; tail -n 20 "$REPORTS/autobahn-client.log" >&2 || true
  status=1
fi
if [ "${RC[wstest-fuzzingclient]}" != 0 ]; then
  log "wstest fuzzingclient failed (exit ${RC[wstest-fuzzingclient]}); last log lines:"; tail -n 20 "$REPORTS/wstest-fuzzingclient.log" >&2 || true
  status=1
fi

# 4. verdict
rc=0
"$PY3" "$HERE/summarize.py" --reports "$REPORTS" --cases "$CASES" "${UPDATE[@]}" || rc=$?
log "HTML reports: $REPORTS/server/index.html  $REPORTS/client/index.html"
[ "$rc" -ne 0 ] && exit "$rc"
exit "$status"
