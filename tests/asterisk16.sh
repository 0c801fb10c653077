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
mkdir -p "$root/tmp/res_memcached"
tar --exclude=.git --exclude='*.so' --exclude=tests/unit/run_unit --exclude=tests/fuzz/fuzz_config \
	--exclude=tests/fuzz/fuzz_parsers --exclude=bench/raw -cf - . | tar -C "$root/tmp/res_memcached" -xf -
echo "asterisk16: $(in_overlay "$root" asterisk -V), libmemcached $(in_overlay "$root" pkg-config --modversion libmemcached)"
if ! in_overlay "$root" make -s -C /tmp/res_memcached install > "$root/tmp/build.log" 2>&1; then
	cat "$root/tmp/build.log"
	echo "asterisk16: 0 passed, 1 failed"
	exit 1
fi
echo "asterisk16: built and installed with -Wall -Wextra -Werror, no warning"
in_overlay "$root" sh -c 'cd /tmp/res_memcached && MCD_FIGURES=/tmp/figures.txt \
	python3 -m pytest -q -p no:cacheprovider --junitxml=/tmp/asterisk16.xml tests/asterisk'
status=$?
python3 - "$root/tmp/asterisk16.xml" "$status" <<'PY'
import sys
import xml.etree.ElementTree as ET

try:
    suite = ET.parse(sys.argv[1]).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, skipped = int(suite.get("tests")), int(suite.get("skipped"))
    failed = int(suite.get("failures")) + int(suite.get("errors"))
except (OSError, ET.ParseError):
    total, skipped, failed = 0, 0, 1
failed = max(failed, 1 if int(sys.argv[2]) else 0)
print("asterisk16: %d passed, %d failed" % (total - failed - skipped + 1, failed))
PY
exit "$status"
