#!/usr/bin/env bats
# make install: the plumbing tools to bin/ and section 1, sync_server and
# sync_client to sbin/ and section 8, the formats to section 5, under
# DESTDIR and PREFIX; nothing else.

setup() {
	ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
	T=$BATS_TEST_TMPDIR
}

@test "make install PREFIX=/opt/sp DESTDIR=...: tools and manual pages where they belong" {
	run make -C "$ROOT" -s install PREFIX=/opt/sp DESTDIR="$T/root"
	echo "$output"
	[ "$status" -eq 0 ]
	R=$T/root/opt/sp
	for t in synclog-tail sync-plan sync-send sync-store; do
		[ -x "$R/bin/$t" ]
		[ -f "$R/share/man/man1/$t.1" ]
	done
	for t in sync_server sync_client; do
		[ -x "$R/sbin/$t" ]
		[ -f "$R/share/man/man8/$t.8" ]
	done
	# Every manual page of the tree is installed, in its section.
	for m in "$ROOT"/man/*.[158]; do
		b=${m##*/}
		[ -f "$R/share/man/man${b##*.}/$b" ]
	done
	# The installed sync_client finds the installed tools (here its
	# replica command fails at once: 69, but every stage ran).
	mkdir -p "$T/c/conf" "$T/c/spool"
	printf 'configdirectory: %s\npartition-default: %s\n' \
	    "$T/c/conf" "$T/c/spool" >"$T/c/imapd.conf"
	PATH=/usr/bin:/bin run timeout 60 "$R/sbin/sync_client" \
	    -C "$T/c/imapd.conf" -e false -r -1
	echo "$output"
	[ "$status" -eq 69 ]
	[[ "$output" != *"not found"* && "$output" != *"cannot run"* ]]
	# Nothing outside DESTDIR/PREFIX.
	[ "$(find "$T/root" -mindepth 1 -maxdepth 2 | sort | tr '\n' ' ')" = \
	    "$T/root/opt $T/root/opt/sp " ]
}
