#!/usr/bin/env bash
# Build (once) and print the path of a Debian sid root, cached outside the work
# tree and rebuilt only when its package list below changes.
#   sandbox/root.sh          the build root: a real Asterisk, its headers,
#                            libmemcached, memcached (with its proxy and TLS),
#                            twemproxy, stunnel and every tool the tests use
#   sandbox/root.sh clean    a plain root with Asterisk, memcached and
#                            libmemcached's runtime but no build tools: the
#                            package test installs the .deb there with dpkg,
#                            which checks its dependencies (the tests run
#                            offline, so apt cannot fetch them)
#   sandbox/root.sh asterisk16
#                            Debian bullseye with Asterisk 16.28, where the
#                            integration tests run again. Bullseye's
#                            libmemcached (1.0.18) is older than the module
#                            accepts, so libmemcached 1.1.4 is built from
#                            Debian's source tarball into /usr/local.
set -euo pipefail

MIRROR=${MCD_MIRROR:-http://deb.debian.org/debian}
SUITE=sid
HOOKS=()
LIBMEMCACHED_TARBALL=$MIRROR/pool/main/libm/libmemcached/libmemcached_1.1.4.orig.tar.gz
LIBMEMCACHED_SHA256=285b21a138fc693ea44b0ea5d050e2d796ca8ee78023724a2bd385f25fbd1da1
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
		nutcracker stunnel4 openssl
		promtool python3-matplotlib
	)
	;;
clean)
	ROOT=${MCD_CLEAN_ROOT:-/var/cache/res_memcached/clean-root}
	PACKAGES=(asterisk libmemcached11t64 libmemcachedutil2t64 memcached python3 python3-pymemcache procps)
	;;
asterisk16)
	ROOT=${MCD_ASTERISK16_ROOT:-/var/cache/res_memcached/asterisk16-root}
	SUITE=bullseye
	PACKAGES=(
		asterisk asterisk-dev memcached
		gcc g++ make libc6-dev pkgconf cmake bison flex libsasl2-dev
		python3 python3-pymemcache python3-pytest
		sasl2-bin libsasl2-modules procps valgrind
	)
	HOOKS=(
		# bullseye's base has no /etc/hosts, and the tests resolve localhost.
		--customize-hook='printf "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n" > "$1/etc/hosts"'
		--customize-hook="chroot \"\$1\" sh -ec '
			mkdir -p /usr/src/libmemcached && cd /usr/src/libmemcached
			/usr/lib/apt/apt-helper download-file $LIBMEMCACHED_TARBALL libmemcached.tar.gz
			echo \"$LIBMEMCACHED_SHA256  libmemcached.tar.gz\" | sha256sum -c
			tar xzf libmemcached.tar.gz && mkdir build && cd build
			cmake -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr/local -DENABLE_SASL=ON ../libmemcached-1.1.4
			make -j\$(nproc) && make install && ldconfig'"
	)
	;;
*)
	echo "usage: sandbox/root.sh [build|clean|asterisk16]" >&2
	exit 2
	;;
esac
want="${PACKAGES[*]}"
if [ "$SUITE" != sid ]; then
	want="$SUITE $want ${HOOKS[*]}"
fi

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
	${HOOKS[@]+"${HOOKS[@]}"} \
	"$SUITE" "$ROOT.new" "$MIRROR" >&2
echo "$want" > "$ROOT.new/.res_memcached-packages"
rm -rf "$ROOT"
mv "$ROOT.new" "$ROOT"
echo "$ROOT"
