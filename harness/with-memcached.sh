#!/usr/bin/env bash
# Start a memcached on a free loopback port, run the given command with
# MCD_TEST_SERVER=127.0.0.1:PORT, then stop that memcached by its pid.
# Run from the repository's root, where the harness package is.
set -euo pipefail

port=$(python3 -m harness.ports)
memcached -u nobody -l 127.0.0.1 -p "$port" -U 0 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
python3 -m harness.ports --wait "$port"
MCD_TEST_SERVER="127.0.0.1:$port" "$@"
