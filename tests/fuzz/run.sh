#!/usr/bin/env bash
# Run each libFuzzer target given for FUZZ_SECONDS (default 60) on a scratch
# copy of its corpus in tests/fuzz/corpus/<name>; new inputs it finds are
# merged into FUZZ_CORPUS_OUT/<name> when that is set. Prints
# "fuzz: N passed, N failed"; exits non-zero when a target crashed.
set -uo pipefail
cd "$(dirname "$0")/../.."

seconds=${FUZZ_SECONDS:-60}
passed=0
failed=0
for fuzzer in "$@"; do
	name=${fuzzer##*/fuzz_}
	scratch=$(mktemp -d)
	cp tests/fuzz/corpus/"$name"/* "$scratch"/
	if "$fuzzer" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$scratch/" \
		"$scratch" > "$scratch.log" 2>&1; then
		passed=$((passed + 1))
		runs=$(grep -m1 'stat::number_of_executed_units' "$scratch.log" | awk '{print $2}')
		echo "fuzz_$name: ${runs:-?} inputs in ${seconds} s, no crash"
		if [ -n "${FUZZ_CORPUS_OUT:-}" ]; then
			mkdir -p "$FUZZ_CORPUS_OUT/$name"
			"$fuzzer" -merge=1 "$FUZZ_CORPUS_OUT/$name" "$scratch" > /dev/null 2>&1
		fi
	else
		failed=$((failed + 1))
		echo "fuzz_$name FAILED:"
		tail -40 "$scratch.log"
	fi
	rm -rf "$scratch" "$scratch.log"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
