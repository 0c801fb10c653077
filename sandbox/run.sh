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

unshare --mount --pid --fork --mount-proc="$root/proc" \
	chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
	make --no-print-directory -C "${work#"$root"}" "$@"
