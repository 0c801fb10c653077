#!/usr/bin/env bash
# Run `make ARGS...` inside the Debian sid sandbox, on a fresh copy of this
# tree. The sandbox gets its own mount and process namespaces: /proc is
# mounted for it alone, and every process it started ends with it.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
root=$("$here/sandbox/root.sh")
work=$(mktemp -d "$root/tmp/res_memcached.XXXXXX")
trap 'rm -rf "$work"' EXIT

tar -C "$here" --exclude=.git --exclude='*.so' --exclude=tests/unit/run_unit --exclude=tests/fuzz/fuzz_config --exclude=tests/fuzz/fuzz_parsers --exclude=bench/raw -cf - . | tar -C "$work" -xf -

# MCD_LEND_CLEAN_ROOT: a root (sandbox/root.sh clean) lent read-only at /mnt/clean-root,
# where the package test installs the .deb.
unshare --mount --pid --fork --mount-proc="$root/proc" sh -c '
	root=$1 clean=$2
	shift 2
	if [ -n "$clean" ]; then
		mkdir -p "$root/mnt/clean-root"
		mount --bind "$clean" "$root/mnt/clean-root"
		mount -o remount,bind,ro "$root/mnt/clean-root"
	fi
	exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
	' sh "$root" "${MCD_LEND_CLEAN_ROOT:-}" make --no-print-directory -C "${work#"$root"}" "$@"
