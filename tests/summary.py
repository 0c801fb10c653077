"""Print "NAME: N passed, N failed" for a pytest --junitxml report.

    python3 tests/junit_summary.py NAME REPORT STATUS [MORE_PASSED]

STATUS is pytest's exit status: non-zero counts as at least one failure, as
does a missing or broken report. MORE_PASSED adds checks made outside pytest
(a build, say) to the passed count.
"""

import sys
import xml.etree.ElementTree as ET

name, report, status = sys.argv[1], sys.argv[2], int(sys.argv[3])
more_passed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
try:
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, skipped = int(suite.get("tests")), int(suite.get("skipped"))
    failed = int(suite.get("failures")) + int(suite.get("errors"))
except (OSError, ET.ParseError):
    total, skipped, failed = 0, 0, 1
failed = max(failed, 1 if status else 0)
# A missing report is one failure out of no tests: nothing passed, not -1.
passed = max(total - failed - skipped, 0) + more_passed
print("%s: %d passed, %d failed" % (name, passed, failed))
