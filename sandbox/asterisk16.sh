#!/usr/bin/env bash
# Compile the module against Asterisk 16's headers (Debian bullseye's
# asterisk-dev 16.28), with the same -Wall -Wextra -Werror. A build check only:
# no Asterisk 16 runs here. The headers are fetched once from Debian's mirror
# into /var/cache/res_memcached-asterisk16 (inside the sandbox).
set -euo pipefail
cd "$(dirname "$0")/.."

cache=/var/cache/res_memcached-asterisk16
mirror=${MCD_MIRROR:-http://deb.debian.org/debian}
if [ ! -f "$cache/root/usr/include/asterisk.h" ]; then
	rm -rf "$cache"
	mkdir -p "$cache/lists/partial" "$cache/archives/partial"
	echo "deb [trusted=yes] $mirror bullseye main" > "$cache/sources.list"
	opts=(-o "Dir::Etc::SourceList=$cache/sources.list" -o Dir::Etc::SourceParts=/nonexistent
		-o "Dir::State::Lists=$cache/lists" -o "Dir::Cache::Archives=$cache/archives"
		-o Acquire::Check-Valid-Until=false -o APT::Sandbox::User=root)
	apt-get "${opts[@]}" -qq update
	(cd "$cache" && apt-get "${opts[@]}" -qq download asterisk-dev/bullseye)
	dpkg -x "$cache"/asterisk-dev_*.deb "$cache/root"
fi
version=$(dpkg-deb -f "$cache"/asterisk-dev_*.deb Version)
# Build in a scratch copy, so that this tree's res_memcached.so stays the Asterisk 22 one.
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cp -r Makefile src doc memcached.conf.sample "$out"/
make -s -C "$out" ASTERISK_INCLUDE_DIR="$cache/root/usr/include" res_memcached.so > "$out/log" 2>&1 \
	|| { cat "$out/log"; echo "asterisk16: 0 passed, 1 failed"; exit 1; }
echo "built against asterisk-dev $version headers with -Wall -Wextra -Werror: no warning"
echo "asterisk16: 1 passed, 0 failed"
