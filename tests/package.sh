#!/usr/bin/env bash
# The Debian package: build asterisk-res-memcached with dpkg-buildpackage, check
# it with lintian and its dependencies, then install it with dpkg into a copy
# (an overlay) of the clean root that `make test` lends at /mnt/clean-root, and
# run the demo dialplan there against the installed module. Closes with
# "package: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
check() {  # check NAME COMMAND...: run it, count it, show its output on failure
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		passed=$((passed + 1))
		echo "package: ok   $name"
	else
		failed=$((failed + 1))
		echo "package: FAIL $name"
		echo "$out" | sed 's/^/    /' | tail -40
	fi
}

. tests/overlay.sh
work=$(mktemp -d /tmp/package.XXXXXX)
overlay=$work/root
trap 'overlay_down "$overlay"; rm -rf "$work"' EXIT

version=$(dpkg-parsechangelog -l debian/changelog -S Version)
source=$work/asterisk-res-memcached-$version
sandbox/copy-tree.sh "$source"
deb=$work/asterisk-res-memcached_${version}_$(dpkg --print-architecture).deb

check "dpkg-buildpackage builds $(basename "$deb")" \
	sh -c "cd '$source' && dpkg-buildpackage -us -uc -b && test -f '$deb'"
check "lintian finds no error or warning" lintian --fail-on error,warning "$work"/*.changes
abi=$(sed -n 's/^#define AST_BUILDOPT_SUM "\([0-9a-f]*\)".*/\1/p' /usr/include/asterisk/buildopts.h)
check "it depends on the Asterisk ABI it was built for (asterisk-abi-$abi) and on libmemcached" \
	sh -c "dpkg-deb -f '$deb' Depends | tee /dev/stderr | grep -q 'asterisk-abi-$abi' \
		&& dpkg-deb -f '$deb' Depends | grep -q 'libmemcached11t64 (>= 1.1.4)'"
check "it ships the modules, the documentation and the sample config" \
	sh -c "dpkg-deb -c '$deb' | tee /dev/stderr | grep -q 'asterisk/modules/res_memcached.so\$' \
		&& dpkg-deb -c '$deb' | grep -q 'asterisk/modules/res_memcached_prometheus.so\$' \
		&& dpkg-deb -c '$deb' | grep -q 'documentation/thirdparty/res_memcached-en_US.xml\$' \
		&& dpkg-deb -c '$deb' | grep -q 'etc/asterisk/memcached.conf\$'"

if [ ! -f /mnt/clean-root/usr/sbin/asterisk ]; then
	failed=$((failed + 1))
	echo "package: FAIL no clean root lent at /mnt/clean-root (run it with make test)"
else
	check "a writable copy of the clean root (overlay)" overlay_up /mnt/clean-root "$overlay"
	cp "$deb" "$overlay/tmp/"
	mkdir -p "$overlay/tmp/demo/sandbox"
	cp -r harness "$overlay/tmp/demo/"
	cp sandbox/demo.py sandbox/demo-extensions.conf "$overlay/tmp/demo/sandbox/"
	in_root() { in_overlay "$overlay" "$@"; }
	check "it is not installed before" sh -c "! test -e '$overlay'/usr/lib/*/asterisk/modules/res_memcached.so"
	# Two roots built on different days can hold different Asterisk builds: say so plainly.
	built_for=$(dpkg-query -W -f '${Version}' asterisk)
	check "the clean root has the Asterisk it was built for ($built_for; if not, rm -rf /var/cache/res_memcached and run again)" \
		sh -c "in_version=\$(chroot '$overlay' dpkg-query -W -f '\${Version}' asterisk); echo \"clean root: \$in_version\"; \
			test \"\$in_version\" = '$built_for'"
	check "dpkg installs it into the clean root, dependencies satisfied" \
		in_root sh -c "dpkg -i /tmp/$(basename "$deb") && dpkg -s asterisk-res-memcached | grep -q 'Status: install ok installed'"
	check "memcached.conf is readable by Asterisk's user only" \
		in_root sh -c "stat -c '%a %U' /etc/asterisk/memcached.conf | tee /dev/stderr | grep -qx '640 asterisk'"
	check "the demo dialplan runs on the installed module" \
		in_root sh -c "cd /tmp/demo && python3 -m sandbox.demo | tee /dev/stderr | grep -q 'demo_greeting *= b.some text... and some more text.'"
	check "dpkg removes it cleanly" \
		in_root sh -c "dpkg -r asterisk-res-memcached && ! ls /usr/lib/*/asterisk/modules/res_memcached.so"
fi
echo "package: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
