#!/usr/bin/env bash
# Copy this source tree into DEST (made if missing), leaving out git and build
# products, so that a build there starts clean: sandbox/run.sh, the package test
# and the Asterisk 16 test all take their copies this way.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: sandbox/copy-tree.sh DEST" >&2; exit 2; }
mkdir -p "$1"
tar -C "$(dirname "$0")/.." --exclude=.git --exclude='*.so' --exclude=tests/unit/run_unit \
	--exclude=tests/fuzz/fuzz_config --exclude=tests/fuzz/fuzz_parsers --exclude=bench/raw \
	-cf - . | tar -C "$1" -xf -
