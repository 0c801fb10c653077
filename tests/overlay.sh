# Sourced by the tests that work in a root lent read-only by sandbox/run.sh:
# overlay_up LOWER DIR mounts a writable copy of LOWER at DIR (changes go to
# DIR.upper), with its own /proc; overlay_down DIR takes it away again.

overlay_up() {
	mkdir -p "$2" "$2.upper" "$2.scratch"
	mount -t overlay overlay -o "lowerdir=$1,upperdir=$2.upper,workdir=$2.scratch" "$2" \
		&& mount -t proc proc "$2/proc"
}

overlay_down() {
	umount "$1/proc" 2>/dev/null
	umount "$1" 2>/dev/null
	rm -rf "$1.upper" "$1.scratch"
}

# in_overlay DIR COMMAND...: run COMMAND in DIR as in the sandbox, with a clean environment.
in_overlay() {
	local dir=$1
	shift
	chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
}
