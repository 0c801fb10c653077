#!/usr/bin/env bash
# Run `make ARGS...` inside the Debian sid sandbox, on a fresh copy of this
# tree. The sandbox gets its own mount and process namespaces: /proc is
# mounted for it alone, and every process it started ends with it.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
root=$("$here/sandbox/root.sh")
work=$(mktemp -d "$root/tmp/res_memcached.XXXXXX")
trap 'rm -rf "$work"' EXIT

"$here/sandbox/copy-tree.sh" "$work"

# MCD_KEEP: paths (files or folders, relative to the tree) the run made that are
# copied back into this tree afterwards, such as the benchmark's charts.
# MCD_LEND_CLEAN_ROOT and MCD_LEND_ASTERISK16_ROOT: roots (sandbox/root.sh clean,
# sandbox/root.sh asterisk16) lent read-only at /mnt/clean-root and
# /mnt/asterisk16-root, where the package and Asterisk 16 tests run.
status=0
unshare --mount --pid --fork --mount-proc="$root/proc" sh -c '
	root=$1
	lend() {
		[ -n "$1" ] || return 0
		mkdir -p "$root/mnt/$2"
		mount --bind "$1" "$root/mnt/$2"
		mount -o remount,bind,ro "$root/mnt/$2"
	}
	lend "$2" clean-root
	lend "$3" asterisk16-root
	shift 3
	exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
	' sh "$root" "${MCD_LEND_CLEAN_ROOT:-}" "${MCD_LEND_ASTERISK16_ROOT:-}" \
	make --no-print-directory -C "${work#"$root"}" "$@" || status=$?
for kept in ${MCD_KEEP:-}; do
	if [ -e "$work/$kept" ]; then
		rm -rf "${here:?}/$kept"
		cp -r "$work/$kept" "$here/$kept"
	fi
done
exit "$status"
