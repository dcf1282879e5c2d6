#!/usr/bin/env bash
# Fuzzes tether-proto with cargo-fuzz (libFuzzer) for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     default 20
#
# Installs cargo-fuzz if it is missing (from crates.io, the only network
# use besides fetching the fuzz crate's dependencies), builds every target
# in fuzz/, then runs each for SECONDS_PER_TARGET over its committed corpus
# fuzz/corpus/<target>/. New inputs go to a temporary working corpus, so
# the repository stays clean; the committed corpus is only read.
#
# Works on the stable toolchain: with `-s none` (no sanitizer) cargo-fuzz
# passes only stable rustc flags. FUZZ_SANITIZER=address asks for ASan,
# which needs `-Zsanitizer`: the script then sets RUSTC_BOOTSTRAP=1.
#
# Exits non-zero if any target crashed, hung or failed to run, printing the
# input that did it (saved under fuzz/artifacts/<target>/, git-ignored).
# Prints one summary line per target: target, seconds, executions, exec/s.
# Other environment: FUZZ_TARGETS="a b" to run only some targets.
set -euo pipefail

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi
sanitizer="${FUZZ_SANITIZER:-none}"
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
if [ "$sanitizer" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
echo "fuzz: building ($sanitizer sanitizer): $(echo $targets)" >&2
timeout 3600 cargo fuzz build -s "$sanitizer"

work="$(mktemp -d "${TMPDIR:-/tmp}/tether-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

failed=()
summary=()
for target in $targets; do
    seeds="fuzz/corpus/$target"
    mkdir -p "$work/corpus/$target"
    log="$work/$target.log"
    echo "fuzz: $target for ${seconds}s" >&2
    status=0
    # libFuzzer stops itself after -max_total_time; `timeout` is the
    # backstop should it hang between inputs. -timeout flags an input
    # that takes over 10 s as a failure (a hang), like a crash.
    timeout --kill-after=10 "$((seconds + 120))" \
        cargo fuzz run -s "$sanitizer" "$target" "$work/corpus/$target" "$seeds" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    if [ -z "$execs" ]; then
        execs="$(sed -n 's/^#\([0-9]*\)[[:space:]]*DONE.*/\1/p' "$log" | tail -n 1)"
    fi
    execs="${execs:-0}"
    rate=$((execs / seconds))
    if [ "$status" -ne 0 ]; then
        # The panic message (or libFuzzer's report), not the long backtrace.
        grep -E -A4 'panicked at|ERROR: libFuzzer|^SUMMARY' "$log" | grep -v '^stack backtrace' | head -n 30 >&2 ||
            tail -n 40 "$log" >&2
        crash="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
        echo "fuzz: $target FAILED (exit $status); input: ${crash:-none saved, see the log above}" >&2
        failed+=("$target")
        summary+=("$(printf '%-20s %6ss %12s execs %8s/s  FAILED %s' "$target" "$seconds" "$execs" "$rate" "${crash:-}")")
    else
        summary+=("$(printf '%-20s %6ss %12s execs %8s/s  ok' "$target" "$seconds" "$execs" "$rate")")
    fi
done

echo "fuzz summary (target, seconds, executions, executions/s):"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]}" >&2
    exit 1
fi
