#!/usr/bin/env bash
# Build (once) and print the path of a plain Debian sid root with Asterisk,
# memcached and libmemcached's runtime libraries but none of the module's build
# tools: the package test installs the .deb there with dpkg, which checks its
# dependencies (the tests run offline, so apt cannot fetch them).
set -euo pipefail

ROOT=${MCD_CLEAN_ROOT:-/var/cache/res_memcached/clean-root}
MIRROR=${MCD_MIRROR:-http://deb.debian.org/debian}
PACKAGES=(asterisk libmemcached11t64 libmemcachedutil2t64 memcached python3 python3-pymemcache procps)
want="${PACKAGES[*]}"

if [ -f "$ROOT/.res_memcached-packages" ] && [ "$(cat "$ROOT/.res_memcached-packages")" = "$want" ]; then
	echo "$ROOT"
	exit 0
fi

command -v mmdebstrap >/dev/null || { echo "mmdebstrap is missing: apt-get install mmdebstrap" >&2; exit 1; }
mkdir -p "$(dirname "$ROOT")"
rm -rf "$ROOT.new"
echo "building the clean sid root in $ROOT (about 30 s)" >&2
mmdebstrap --variant=apt --quiet \
	--aptopt='Acquire::Check-Valid-Until "false"' \
	--include="$(IFS=,; echo "${PACKAGES[*]}")" \
	sid "$ROOT.new" "$MIRROR" >&2
echo "$want" > "$ROOT.new/.res_memcached-packages"
rm -rf "$ROOT"
mv "$ROOT.new" "$ROOT"
echo "$ROOT"
