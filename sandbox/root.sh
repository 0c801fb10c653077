#!/usr/bin/env bash
# Build (once) and print the path of the Debian sid root that holds a real
# Asterisk, its headers, libmemcached and memcached. The root is cached outside
# the work tree and rebuilt only when the package list below changes.
set -euo pipefail

ROOT=${MCD_SANDBOX:-/var/cache/res_memcached/sid-root}
MIRROR=${MCD_MIRROR:-http://deb.debian.org/debian}
PACKAGES=(
	asterisk asterisk-dev
	libmemcached-dev libmemcached-tools memcached
	gcc make libc6-dev pkgconf libcmocka-dev
	python3 python3-pymemcache python3-pytest
	sasl2-bin libsasl2-modules
	procps
	clang libclang-rt-dev valgrind
	build-essential dpkg-dev debhelper fakeroot lintian mount
)
want="${PACKAGES[*]}"

if [ -f "$ROOT/.res_memcached-packages" ] && [ "$(cat "$ROOT/.res_memcached-packages")" = "$want" ]; then
	echo "$ROOT"
	exit 0
fi

command -v mmdebstrap >/dev/null || { echo "mmdebstrap is missing: apt-get install mmdebstrap" >&2; exit 1; }
mkdir -p "$(dirname "$ROOT")"
rm -rf "$ROOT.new"
echo "building the sid sandbox in $ROOT (about 30 s, 700 MB)" >&2
# The mirror's sid Release file can be past its valid-until date.
mmdebstrap --variant=apt --quiet \
	--aptopt='Acquire::Check-Valid-Until "false"' \
	--include="$(IFS=,; echo "${PACKAGES[*]}")" \
	sid "$ROOT.new" "$MIRROR" >&2
echo "$want" > "$ROOT.new/.res_memcached-packages"
rm -rf "$ROOT"
mv "$ROOT.new" "$ROOT"
echo "$ROOT"
