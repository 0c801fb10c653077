#!/usr/bin/env bash
# The module on Asterisk 16: build it with -Wall -Wextra -Werror in a Debian
# bullseye root (Asterisk 16.28; libmemcached 1.1.4 built there from Debian's
# source, see sandbox/root.sh), install it and run every integration test
# there. `make test` lends that root read-only at /mnt/asterisk16-root; the
# work happens in an overlay. Closes with "asterisk16: N passed, N failed",
# the build counting as one.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/overlay.sh

lent=/mnt/asterisk16-root
root=$(mktemp -d /tmp/asterisk16.XXXXXX)
trap 'overlay_down "$root"; rmdir "$root"' EXIT
if [ ! -f "$lent/usr/sbin/asterisk" ] || ! overlay_up "$lent" "$root"; then
	echo "asterisk16: no Asterisk 16 root lent at $lent (run it with make test)"
	echo "asterisk16: 0 passed, 1 failed"
	exit 1
fi
sandbox/copy-tree.sh "$root/tmp/res_memcached"
echo "asterisk16: $(in_overlay "$root" asterisk -V), libmemcached $(in_overlay "$root" pkg-config --modversion libmemcached)"
if ! in_overlay "$root" make -s -C /tmp/res_memcached install > "$root/tmp/build.log" 2>&1; then
	cat "$root/tmp/build.log"
	echo "asterisk16: 0 passed, 1 failed"
	exit 1
fi
echo "asterisk16: built and installed with -Wall -Wextra -Werror, no warning"
# Bullseye's memcached has neither the proxy nor TLS, and no twemproxy or stunnel is
# installed there: the tests that need them skip (MCD_OPTIONAL_TOOLS); the protocol
# and result tests run. The long load tests (marked long) exercise no code that depends
# on Asterisk's version: they run once, in the sid root.
in_overlay "$root" sh -c 'cd /tmp/res_memcached && MCD_FIGURES=/tmp/figures.txt MCD_OPTIONAL_TOOLS=1 \
	python3 -m pytest -q -p no:cacheprovider -m "not long" --junitxml=/tmp/asterisk16.xml tests/asterisk'
status=$?
python3 tests/summary.py junit asterisk16 "$root/tmp/asterisk16.xml" "$status" 1
exit "$status"
