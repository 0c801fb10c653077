#!/usr/bin/env bash
# Run the unit tests, a short fuzz of the parsers, the Debian package test, the
# Asterisk tests (Asterisk 22, then again in the Asterisk 16 root), then print
# one closing line, "tests: N passed, N failed", summing them. Exits non-zero
# on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

sandbox/with-memcached.sh tests/unit/run_unit 2>&1 | tee "$results/unit.txt"
unit_status=${PIPESTATUS[0]}
FUZZ_SECONDS=${FUZZ_SECONDS:-10} tests/fuzz/run.sh tests/fuzz/fuzz_config tests/fuzz/fuzz_parsers \
	2>&1 | tee "$results/fuzz.txt"
fuzz_status=${PIPESTATUS[0]}
tests/package.sh 2>&1 | tee "$results/package.txt"
package_status=${PIPESTATUS[0]}
MCD_FIGURES="$results/figures.txt" python3 -m pytest -q -p no:cacheprovider \
	--junitxml="$results/asterisk.xml" tests/asterisk
asterisk_status=$?
python3 tests/junit_summary.py asterisk "$results/asterisk.xml" "$asterisk_status" > "$results/asterisk.txt"
tests/asterisk16.sh 2>&1 | tee "$results/asterisk16.txt"
asterisk16_status=${PIPESTATUS[0]}
if [ -s "$results/figures.txt" ]; then
	echo "Figures measured in this run:"
	sed 's/^/  /' "$results/figures.txt"
fi

python3 - "$results" "$unit_status" "$asterisk_status" "$fuzz_status" "$asterisk16_status" \
	"$package_status" <<'PY'
import re
import sys

results = sys.argv[1]
unit_status, asterisk_status, fuzz_status, asterisk16_status, package_status = map(int, sys.argv[2:7])
text = open(results + "/unit.txt", errors="replace").read()
# cmocka closes with "[==========] tests: N test(s) run." and "[  PASSED  ] N test(s)."
run = re.search(r"\] tests: (\d+) test\(s\) run", text)
ok = re.search(r"\[  PASSED  \] (\d+) test", text)
unit_passed = int(ok.group(1)) if ok else 0
unit_failed = (int(run.group(1)) - unit_passed) if run else 0
# A crash (a sanitizer report, say) ends the run before its summary.
unit_failed = max(unit_failed, 1 if unit_status else 0)


def plain_suite(name, status):
    """A suite that closes with "NAME: N passed, N failed"; a non-zero exit is a failure."""
    found = re.search(r"^%s: (\d+) passed, (\d+) failed" % name,
                      open(results + "/" + name + ".txt").read(), re.M)
    passed, failed = (int(found.group(1)), int(found.group(2))) if found else (0, 1)
    return passed, max(failed, 1 if status else 0)


passed, failed = plain_suite("asterisk", asterisk_status)
fuzz_passed, fuzz_failed = plain_suite("fuzz", fuzz_status)
build16_passed, build16_failed = plain_suite("asterisk16", asterisk16_status)
package_passed, package_failed = plain_suite("package", package_status)
print("unit: %d passed, %d failed" % (unit_passed, unit_failed))
print("asterisk: %d passed, %d failed" % (passed, failed))
print("asterisk16: %d passed, %d failed" % (build16_passed, build16_failed))
print("package: %d passed, %d failed" % (package_passed, package_failed))
print("tests: %d passed, %d failed" % (
    unit_passed + passed + fuzz_passed + build16_passed + package_passed,
    unit_failed + failed + fuzz_failed + build16_failed + package_failed))
PY
[ "$unit_status" -eq 0 ] && [ "$asterisk_status" -eq 0 ] && [ "$fuzz_status" -eq 0 ] \
	&& [ "$asterisk16_status" -eq 0 ] && [ "$package_status" -eq 0 ]
