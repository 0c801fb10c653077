#!/usr/bin/env bash
# Start a memcached on a free loopback port and another on a unix socket, run
# the given command with MCD_TEST_SERVER=127.0.0.1:PORT and MCD_TEST_SOCKET=PATH,
# then stop both by their pids. Run from the repository's root, where the
# harness package is.
set -euo pipefail

port=$(python3 -m harness.ports)
dir=$(mktemp -d)
chmod 1777 "$dir"  # memcached drops to nobody before it makes the socket
memcached -u nobody -l 127.0.0.1 -p "$port" -U 0 &
tcp=$!
memcached -u nobody -s "$dir/memcached.sock" -a 0666 &
unix=$!
trap 'kill "$tcp" "$unix" 2>/dev/null; wait "$tcp" "$unix" 2>/dev/null || true; rm -rf "$dir"' EXIT
python3 -m harness.ports --wait "$port"
for _ in $(seq 100); do [ -S "$dir/memcached.sock" ] && break; sleep 0.05; done
MCD_TEST_SERVER="127.0.0.1:$port" MCD_TEST_SOCKET="$dir/memcached.sock" "$@"
