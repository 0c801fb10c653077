"""The closing lines of a test run: one "NAME: N passed, N failed" per suite.

    python3 tests/summary.py junit NAME REPORT STATUS [MORE_PASSED]
        for a pytest --junitxml REPORT; MORE_PASSED adds checks made outside
        pytest (a build, say) to the passed count
    python3 tests/summary.py cmocka NAME LOG STATUS
        for the output of a cmocka run
    python3 tests/summary.py total NAME=LOG:STATUS...
        each suite's line as found in its LOG, then "tests: N passed, N failed"

STATUS is the suite's exit status: non-zero counts as at least one failure,
as does a missing or broken report; nothing is then counted as passed that
the report does not show.
"""

import re
import sys
import xml.etree.ElementTree as ET


def counts(passed, failed, status):
    """(passed, failed) with a non-zero exit status counting as at least one failure."""
    return max(passed, 0), max(failed, 1 if status else 0)


def line(name, passed, failed, status):
    return "%s: %d passed, %d failed" % ((name,) + counts(passed, failed, status))


def junit(name, report, status, more_passed=0):
    try:
        suite = ET.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        total, skipped = int(suite.get("tests")), int(suite.get("skipped"))
        failed = int(suite.get("failures")) + int(suite.get("errors"))
    except (OSError, ET.ParseError, AttributeError, TypeError):
        total, skipped, failed = 0, 0, 1
    return line(name, max(total - failed - skipped, 0) + more_passed, failed, status)


def cmocka(name, log, status):
    try:
        text = open(log, errors="replace").read()
    except OSError:
        text = ""
    # cmocka closes with "[==========] tests: N test(s) run." and "[  PASSED  ] N test(s)."
    run = re.search(r"\] tests: (\d+) test\(s\) run", text)
    ok = re.search(r"\[  PASSED  \] (\d+) test", text)
    passed = int(ok.group(1)) if ok else 0
    # A crash (a sanitizer report, say) ends the run before its summary.
    return line(name, passed, (int(run.group(1)) - passed) if run else 1, status)


def total(suites):
    lines, passed, failed = [], 0, 0
    for suite in suites:
        name, rest = suite.split("=", 1)
        log, status = rest.rsplit(":", 1)
        try:
            text = open(log, errors="replace").read()
        except OSError:
            text = ""
        found = re.findall(r"^%s: (\d+) passed, (\d+) failed" % re.escape(name), text, re.M)
        p, f = counts(*((int(found[-1][0]), int(found[-1][1])) if found else (0, 1)), int(status))
        lines.append(line(name, p, f, 0))
        passed, failed = passed + p, failed + f
    lines.append("tests: %d passed, %d failed" % (passed, failed))
    return "\n".join(lines)


if __name__ == "__main__":
    kind, args = sys.argv[1], sys.argv[2:]
    if kind == "junit":
        print(junit(args[0], args[1], int(args[2]), int(args[3]) if len(args) > 3 else 0))
    elif kind == "cmocka":
        print(cmocka(args[0], args[1], int(args[2])))
    elif kind == "total":
        print(total(args))
    else:
        sys.exit("usage: see the docstring of tests/summary.py")
