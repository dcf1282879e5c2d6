#!/usr/bin/env python3
"""Summarize Autobahn TestSuite reports and check them against the committed expectations.

For each side (``server``: wstest fuzzingclient vs. ``tether serve``; ``client``: wstest
fuzzingserver vs. the ``autobahn_client`` example) this reads
``<reports>/<side>/index.json`` and

* prints ``<side>: N cases, P passed (OK n, INFORMATIONAL n, NON-STRICT n), F failed``
  followed by every failing case with its result text (taken from the case's JSON report);
* writes the actual results to ``<reports>/<side>/actual.txt`` (one ``case_id behavior
  behaviorClose`` line per case, sorted by numeric case id -- the same format as
  ``expected/<side>.txt``);
* diffs them against ``<expected>/<side>.txt``, restricted to the selected cases.

A case passes when ``behavior`` is OK or INFORMATIONAL (NON-STRICT only when
``allow-non-strict.txt`` lists ``<side> <case> <reason>``) and ``behaviorClose`` is OK or
INFORMATIONAL. Exit status: 0 when everything passes and matches the expectations, 1 on
any violation, missing case or difference, 2 on usage errors / unreadable input.

``--update`` rewrites the expected files from the run (only the selected cases' lines
change); violations still make the exit status nonzero, differences do not.
"""

import argparse
import difflib
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SIDES = ("server", "client")
AGENT = "tether"

PASS_BEHAVIOR = {"OK", "INFORMATIONAL"}
PASS_CLOSE = {"OK", "INFORMATIONAL"}
NON_STRICT = "NON-STRICT"


class UsageError(Exception):
    pass


def case_key(case_id):
    try:
        return tuple(int(x) for x in case_id.split("."))
    except ValueError:
        raise UsageError("malformed case id %r" % case_id)


def parse_patterns(text):
    pats = [p.strip() for p in text.split(",") if p.strip()]
    if not pats:
        raise UsageError("empty --cases pattern list")
    for p in pats:
        if not re.fullmatch(r"[0-9.*]+", p):
            raise UsageError("bad case pattern %r (use e.g. '1.*,2.10,12.1.*')" % p)
    return pats


def select(case_ids, patterns):
    """Same semantics as autobahntestsuite's CaseSet.resolveCasePatternList:
    a pattern with '*' becomes a regex ('.' literal, '*' -> '.*') matched at the start of
    the id (re.match, not anchored at the end); a pattern without '*' is a literal id."""
    chosen = set()
    for p in patterns:
        if "*" in p:
            rx = re.compile(p.replace(".", r"\.").replace("*", ".*"))
            chosen.update(c for c in case_ids if rx.match(c))
        else:
            chosen.add(p)
    return chosen


def read_results_file(path):
    """Read an expected/actual file: {case_id: (behavior, behaviorClose)}."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 3:
                raise UsageError("%s:%d: expected 'case_id behavior behaviorClose', got %r"
                                 % (path, n, line))
            case_key(parts[0])
            if parts[0] in out:
                raise UsageError("%s:%d: duplicate case %s" % (path, n, parts[0]))
            out[parts[0]] = (parts[1], parts[2])
    return out


def format_results(results):
    return ["%s %s %s\n" % (c, results[c][0], results[c][1])
            for c in sorted(results, key=case_key)]


def write_results_file(path, results):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(format_results(results))
    os.replace(tmp, path)


def read_allow_list(path):
    """allow-non-strict.txt: '<side> <case_id> <reason...>' per line, '#' comments."""
    allowed = {}
    if not os.path.exists(path):
        return allowed
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            if len(parts) < 3 or parts[0] not in SIDES:
                raise UsageError("%s:%d: expected '<server|client> <case_id> <reason>', got %r"
                                 % (path, n, line))
            case_key(parts[1])
            allowed[(parts[0], parts[1])] = parts[2]
    return allowed


def load_report(side_dir):
    index_path = os.path.join(side_dir, "index.json")
    with open(index_path, encoding="utf-8") as f:
        index = json.load(f)
    if AGENT in index:
        agent = AGENT
    elif len(index) == 1:
        agent = next(iter(index))
    else:
        raise UsageError("%s: agent %r not found (agents: %s)"
                         % (index_path, AGENT, ", ".join(sorted(index)) or "none"))
    return agent, index[agent]


def case_detail(side_dir, entry):
    """Result texts from the per-case JSON report (best effort)."""
    name = entry.get("reportfile")
    if not name:
        return None
    try:
        with open(os.path.join(side_dir, name), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def check_side(side, args, allowed, all_ids_hint):
    """Returns (ok: bool, lines printed are emitted directly)."""
    side_dir = os.path.join(args.reports, side)
    expected_path = os.path.join(args.expected, side + ".txt")

    expected = read_results_file(expected_path) if os.path.exists(expected_path) else {}
    try:
        agent, report = load_report(side_dir)
    except FileNotFoundError:
        print("%s: no report (%s missing) -- did wstest run and write its reports?"
              % (side, os.path.join(side_dir, "index.json")))
        return False
    except ValueError as e:
        print("%s: unreadable index.json: %s" % (side, e))
        return False

    actual = {c: (e["behavior"], e["behaviorClose"]) for c, e in report.items()}
    write_results_file(os.path.join(side_dir, "actual.txt"), actual)

    # Which cases were supposed to run: the pattern applied to every known case id.
    known = set(expected) | set(actual) | all_ids_hint
    selected = select(known, args.patterns)

    counts = {"OK": 0, "INFORMATIONAL": 0, NON_STRICT: 0}
    failures = []
    for c in sorted(actual, key=case_key):
        behavior, close = actual[c]
        problems = []
        if behavior == NON_STRICT:
            if (side, c) not in allowed:
                problems.append("behavior NON-STRICT not in allow-non-strict.txt")
        elif behavior not in PASS_BEHAVIOR:
            problems.append("behavior %s" % behavior)
        if close not in PASS_CLOSE:
            problems.append("behaviorClose %s" % close)
        if problems:
            failures.append((c, problems))
        else:
            counts[behavior] += 1

    missing = sorted(selected - set(actual), key=case_key)
    unexpected_ran = sorted(set(actual) - selected, key=case_key)
    passed = sum(counts.values())
    print("%s: %d cases, %d passed (OK %d, INFORMATIONAL %d, NON-STRICT %d), %d failed%s"
          % (side, len(actual), passed, counts["OK"], counts["INFORMATIONAL"],
             counts[NON_STRICT], len(failures),
             (", %d missing" % len(missing)) if missing else ""))

    for c, problems in failures:
        entry = report[c]
        detail = case_detail(side_dir, entry) or {}
        print("  FAIL %s [%s / %s] %s" % (c, entry["behavior"], entry["behaviorClose"],
                                           "; ".join(problems)))
        if detail.get("description"):
            desc = " ".join(re.sub(r"<[^>]+>", " ", detail["description"]).split())
            print("       case:        %s" % desc[:200])
        if detail.get("result"):
            print("       result:      %s" % detail["result"])
        if detail.get("resultClose"):
            print("       resultClose: %s" % detail["resultClose"])
        extra = []
        for k in ("remoteCloseCode", "localCloseCode", "wasClean", "wasNotCleanReason",
                  "droppedByMe", "closedByMe"):
            if k in detail and detail[k] is not None:
                extra.append("%s=%s" % (k, detail[k]))
        if extra:
            print("       close:       %s" % ", ".join(extra))
        print("       report:      %s" % os.path.join(side_dir, entry.get("reportfile", "?")))
    if missing:
        print("  MISSING (selected but not in the report): %s" % " ".join(missing))
    if unexpected_ran:
        print("  note: report has cases outside the selection: %s" % " ".join(unexpected_ran))

    # Allow-list entries that did not apply (stale entries are worth cleaning up).
    for (s, c), reason in sorted(allowed.items(), key=lambda kv: case_key(kv[0][1])):
        if s == side and c in actual and actual[c][0] != NON_STRICT:
            print("  note: allow-non-strict.txt lists %s %s but it is %s now"
                  % (s, c, actual[c][0]))

    ok = not failures and not missing

    # Diff against expectations, restricted to the selected cases.
    exp_sel = {c: v for c, v in expected.items() if c in selected}
    act_sel = {c: v for c, v in actual.items() if c in selected}
    if args.update:
        merged = {c: v for c, v in expected.items() if c not in selected}
        merged.update(act_sel)
        os.makedirs(args.expected, exist_ok=True)
        write_results_file(expected_path, merged)
        changed = sum(1 for c in set(exp_sel) | set(act_sel) if exp_sel.get(c) != act_sel.get(c))
        print("  updated %s (%d line(s) changed)" % (os.path.relpath(expected_path), changed))
    else:
        if not expected:
            print("  %s is missing or empty; run with --update to create it"
                  % os.path.relpath(expected_path))
            ok = False
        diff = list(difflib.unified_diff(format_results(exp_sel), format_results(act_sel),
                                         fromfile="expected/%s.txt" % side,
                                         tofile="actual (%s)" % os.path.relpath(
                                             os.path.join(side_dir, "actual.txt")),
                                         n=0))
        if diff:
            ok = False
            print("  results differ from expected/%s.txt:" % side)
            for line in diff:
                print("    " + line.rstrip("\n"))
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reports", default=os.path.join(HERE, "reports"),
                    help="directory holding <side>/index.json (default: %(default)s)")
    ap.add_argument("--expected", default=os.path.join(HERE, "expected"),
                    help="directory holding <side>.txt (default: %(default)s)")
    ap.add_argument("--allow", default=os.path.join(HERE, "allow-non-strict.txt"),
                    help="NON-STRICT allow-list (default: %(default)s)")
    ap.add_argument("--cases", default="*",
                    help="comma-separated wstest case patterns that were run, e.g. '1.*,2.*' "
                         "(default: all); the diff only covers these")
    ap.add_argument("--side", action="append", choices=SIDES,
                    help="check only this side (repeatable; default: both)")
    ap.add_argument("--update", action="store_true",
                    help="rewrite the expected files from this run's results")
    args = ap.parse_args(argv)

    try:
        args.patterns = parse_patterns(args.cases)
        allowed = read_allow_list(args.allow)
        sides = args.side or list(SIDES)
        # Union of ids known from either side's expected file, so a side whose report is
        # incomplete still learns which cases the pattern covers.
        hint = set()
        for s in SIDES:
            p = os.path.join(args.expected, s + ".txt")
            if os.path.exists(p):
                hint |= set(read_results_file(p))
        results = [check_side(s, args, allowed, hint) for s in sides]
    except UsageError as e:
        print("summarize.py: %s" % e, file=sys.stderr)
        return 2
    if all(results):
        print("conformance: PASS")
        return 0
    print("conformance: FAIL")
    return 1


if __name__ == "__main__":
    sys.exit(main())
