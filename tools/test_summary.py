#!/usr/bin/env python3
"""Counts every test that ran, for the last line of `tools/dev.sh test`.

    tools/test_summary.py [--results FILE]... [--output FILE]... TESTLOG.json...

A meson test is counted by what it ran, not as one: a Check suite by its
"Checks: N, Failures: F, Errors: E" line, a pytest file by its
"N passed, M failed, K skipped" line. A test whose output has no such line
(it crashed, timed out, or is a plain program) counts as one test with
meson's verdict; a test that meson failed but whose counts show no failure
(a crash after the last check, a sanitizer report at exit) adds one failure.
--results FILE holds one line per extra test, "PASS name", "FAIL name" or
"SKIP name" (the fuzz and valgrind steps write them); --output FILE is the
output of a pytest run outside meson (the valgrind suite), counted by its
last summary line.

Prints one line: "N passed, N failed" (", N skipped" when any were).
"""

import json
import re
import sys

CHECK = re.compile(r"Checks: (\d+), Failures: (\d+), Errors: (\d+)")
PYTEST = re.compile(r"(\d+) (passed|failed|skipped|error|errors|xfailed|xpassed)\b")
PYTEST_LINE = re.compile(r"^=*\s*(\d+ (passed|failed|skipped|errors?|deselected)\b.*) in [\d.]+s", re.M)


def counts_of(stdout):
    """(passed, failed, skipped) from a test's output, or None."""
    checks = CHECK.findall(stdout)
    if checks:
        total = sum(int(n) for n, _, _ in checks)
        failed = sum(int(f) + int(e) for _, f, e in checks)
        return total - failed, failed, 0
    lines = PYTEST_LINE.findall(stdout)
    if lines:
        p = f = s = 0
        for n, what in PYTEST.findall(lines[-1][0]):
            n = int(n)
            if what in ("passed", "xpassed"):
                p += n
            elif what in ("failed", "error", "errors"):
                f += n
            else:
                s += n
        return p, f, s
    return None


def main(argv):
    passed = failed = skipped = 0
    logs, results, outputs = [], [], []
    it = iter(argv)
    for a in it:
        if a == "--results":
            results.append(next(it))
        elif a == "--output":
            outputs.append(next(it))
        else:
            logs.append(a)
    for path in logs:
        try:
            f = open(path)
        except OSError:
            failed += 1  # the step that should have written it did not run
            continue
        with f:
            for line in f:
                t = json.loads(line)
                verdict = t.get("result")
                c = counts_of(t.get("stdout") or "")
                if c is None:
                    if verdict == "SKIP":
                        skipped += 1
                    elif verdict in ("OK", "EXPECTEDFAIL"):
                        passed += 1
                    else:
                        failed += 1
                    continue
                p, fl, s = c
                if verdict not in ("OK", "SKIP", "EXPECTEDFAIL") and fl == 0:
                    fl = 1
                passed, failed, skipped = passed + p, failed + fl, skipped + s
    for path in outputs:
        try:
            c = counts_of(open(path, errors="replace").read())
        except OSError:
            c = None
        if c:
            passed, failed, skipped = passed + c[0], failed + c[1], skipped + c[2]
    for path in results:
        try:
            lines = open(path).read().split("\n")
        except OSError:
            failed += 1
            continue
        for line in lines:
            word = line.split(" ", 1)[0]
            if word == "PASS":
                passed += 1
            elif word == "FAIL":
                failed += 1
            elif word == "SKIP":
                skipped += 1
    out = "%d passed, %d failed" % (passed, failed)
    if skipped:
        out += ", %d skipped" % skipped
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
