#!/usr/bin/env bash
# Build (once) and print the path of a Debian sid root, cached outside the work
# tree and rebuilt only when its package list below changes.
#   sandbox/root.sh          the build root: a real Asterisk, its headers,
#                            libmemcached, memcached and every tool the tests use
#   sandbox/root.sh clean    a plain root with Asterisk, memcached and
#                            libmemcached's runtime but no build tools: the
#                            package test installs the .deb there with dpkg,
#                            which checks its dependencies (the tests run
#                            offline, so apt cannot fetch them)
set -euo pipefail

MIRROR=${MCD_MIRROR:-http://deb.debian.org/debian}
case "${1:-build}" in
build)
	ROOT=${MCD_SANDBOX:-/var/cache/res_memcached/sid-root}
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
	;;
clean)
	ROOT=${MCD_CLEAN_ROOT:-/var/cache/res_memcached/clean-root}
	PACKAGES=(asterisk libmemcached11t64 libmemcachedutil2t64 memcached python3 python3-pymemcache procps)
	;;
*)
	echo "usage: sandbox/root.sh [build|clean]" >&2
	exit 2
	;;
esac
want="${PACKAGES[*]}"

if [ -f "$ROOT/.res_memcached-packages" ] && [ "$(cat "$ROOT/.res_memcached-packages")" = "$want" ]; then
	echo "$ROOT"
	exit 0
fi

command -v mmdebstrap >/dev/null || { echo "mmdebstrap is missing: apt-get install mmdebstrap" >&2; exit 1; }
mkdir -p "$(dirname "$ROOT")"
rm -rf "$ROOT.new"
echo "building a sid root in $ROOT (about a minute)" >&2
# The mirror's sid Release file can be past its valid-until date.
mmdebstrap --variant=apt --quiet \
	--aptopt='Acquire::Check-Valid-Until "false"' \
	--include="$(IFS=,; echo "${PACKAGES[*]}")" \
	sid "$ROOT.new" "$MIRROR" >&2
echo "$want" > "$ROOT.new/.res_memcached-packages"
rm -rf "$ROOT"
mv "$ROOT.new" "$ROOT"
echo "$ROOT"
