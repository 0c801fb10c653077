#!/usr/bin/env bash
# Run every suite: the unit tests (the core, its coordination, a short cluster
# simulation), a short fuzz of the parsers, the Debian
# package test, the Asterisk tests (Asterisk 22, and at the same time again in
# the Asterisk 16 root: the tests mostly wait, on ports of their own); print the
# figures they measured, then one line per suite and the closing
# "tests: N passed, N failed" (tests/summary.py). Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

harness/with-memcached.sh tests/unit/run_unit 2>&1 | tee "$results/unit.log"
unit=${PIPESTATUS[0]}
python3 tests/summary.py cmocka unit "$results/unit.log" "$unit" > "$results/unit.txt"
harness/with-memcached.sh tests/unit/run_coord 2>&1 | tee "$results/coord.log"
coord=${PIPESTATUS[0]}
python3 tests/summary.py cmocka coord "$results/coord.log" "$coord" > "$results/coord.txt"
# The cluster simulation: a short run, its seed printed (SIM passes options: --seed N replays).
tests/unit/cluster_sim --port "$(python3 -m harness.ports)" ${SIM:-} 2>&1 | tee "$results/simulation.txt"
simulation=${PIPESTATUS[0]}
FUZZ_SECONDS=${FUZZ_SECONDS:-10} tests/fuzz/run.sh tests/fuzz/fuzz_config tests/fuzz/fuzz_parsers \
	2>&1 | tee "$results/fuzz.txt"
fuzz=${PIPESTATUS[0]}
tests/package.sh 2>&1 | tee "$results/package.txt"
package=${PIPESTATUS[0]}
tests/asterisk16.sh > "$results/asterisk16.txt" 2>&1 &
asterisk16_pid=$!
MCD_FIGURES="$results/figures.txt" python3 -m pytest -q -p no:cacheprovider \
	--junitxml="$results/asterisk.xml" tests/asterisk
asterisk=$?
python3 tests/summary.py junit asterisk "$results/asterisk.xml" "$asterisk" > "$results/asterisk.txt"
wait "$asterisk16_pid"
asterisk16=$?
cat "$results/asterisk16.txt"
if [ -s "$results/figures.txt" ]; then
	echo "Figures measured in this run:"
	sed 's/^/  /' "$results/figures.txt"
fi

python3 tests/summary.py total unit="$results/unit.txt:$unit" coord="$results/coord.txt:$coord" \
	simulation="$results/simulation.txt:$simulation" asterisk="$results/asterisk.txt:$asterisk" \
	asterisk16="$results/asterisk16.txt:$asterisk16" package="$results/package.txt:$package" \
	fuzz="$results/fuzz.txt:$fuzz"
[ "$unit" -eq 0 ] && [ "$coord" -eq 0 ] && [ "$simulation" -eq 0 ] && [ "$asterisk" -eq 0 ] && [ "$fuzz" -eq 0 ] && [ "$asterisk16" -eq 0 ] \
	&& [ "$package" -eq 0 ]
