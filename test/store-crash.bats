#!/usr/bin/env bats
# The store under SIGKILL: a `sync-store deliver` of a batch of 300
# messages, and our sync_server applying a bulk APPLY MESSAGE + APPLY
# MAILBOX, each killed at about 12 points spread over its run: at the
# entry of the first, middle and last of its writes and renames into
# place, and the first and last of its flushes (syncfs), database page
# writes and database syncs, by strace's fault injection (the syscall is
# not executed), so that every point is reached on every machine however
# loaded.  After every kill the store
# must verify clean and hold whole batches or nothing; after the
# server's, a rerun of the sync must converge on the master's state.

load helpers

NBATCH=300
# The syscalls a point may be at.
SYSCALLS=write,rename,syncfs,pwrite64,fdatasync,fsync

# The stores live in memory when they can: a process killed with
# SIGKILL leaves the page cache as it was, so what is tested (the state a
# killed writer leaves) is the same, and creating and removing thousands
# of fan-out directories on a busy disk would take most of the time.
crash_tmp() {
	if [[ -d /dev/shm && -w /dev/shm ]]; then
		echo /dev/shm
	else
		echo "${TMPDIR:-/tmp}"
	fi
}

setup_file() {
	D=$(TMPDIR=$(crash_tmp) sp_tmpdir)
	export D
	echo "$D" >"$BATS_FILE_TMPDIR/dir"
}

teardown_file() {
	[[ -n ${D:-} ]] || D=$(cat "$BATS_FILE_TMPDIR/dir" 2>/dev/null) || true
	[[ -n ${D:-} ]] && TMPDIR=$(crash_tmp) sp_rmtmp "$D"
}

setup() {
	ROOT=$(sp_project_root)
	STORE=$ROOT/cmd/sync-store/sync-store
	SRV=$(sp_sync_server_bin)
	PLAN=$ROOT/cmd/sync-plan/sync-plan
	SEND=$ROOT/cmd/sync-send/sync-send
	[ -x "$STORE" ] && [ -x "$SRV" ] || skip "tools not built"
	T=$D/t$BATS_TEST_NUMBER
	rm -rf "$T"
	mkdir -p "$T"
}

teardown() {
	[[ -n ${pid:-} ]] && { kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
	true
}

# conf DIR: a store config in DIR (made).
conf() {
	mkdir -p "$1"
	sp_conf "$1/imapd.conf"
}

# batch DIR TAG: NBATCH small distinct messages as files DIR/1 ... DIR/N.
batch() {
	mkdir -p "$1"
	awk -v d="$1" -v tag="$2" -v n="$NBATCH" 'BEGIN {
		for (i = 1; i <= n; i++) {
			f = d "/" i
			printf "From: crash@example.com\r\nSubject: %s %d\r\n\r\n", tag, i > f
			for (j = 0; j < 4; j++)
				printf "line %d of message %d of %s\r\n", j, i, tag > f
			close(f)
		}
	}'
}

# points OUT CMD...: run CMD under strace counting SYSCALLS, and write the
# kill points to OUT, one "SYSCALL:N" a line: the first and last call of
# each, and the middle one of the writes and renames.
points() {
	local out=$1
	shift
	strace -f -c -o "$out.count" -e trace="$SYSCALLS" "$@" >/dev/null 2>&1
	awk '$4 ~ /^[0-9]+$/ && $NF ~ /^[a-z0-9_]+$/ && $NF != "total" {
		n = $4
		sys = $NF
		print sys ":1"
		if (n > 2 && (sys == "write" || sys == "rename"))
			print sys ":" int((n + 1) / 2)
		if (n > 1)
			print sys ":" n
	}' "$out.count" >"$out"
	[ -s "$out" ]
}

# killat SYSCALL:N CMD...: run CMD, killed by SIGKILL at the entry of its
# Nth SYSCALL; standard input is CMD's.  True if it was killed.
killat() {
	local p=$1 rc=0
	shift
	strace -f -o /dev/null -e trace="${p%%:*}" \
	    -e inject="${p%%:*}:signal=KILL:when=${p#*:}" "$@" >/dev/null 2>&1 || rc=$?
	[ "$rc" -eq 137 ]
}

# How many records mailbox $2 has in the dump of config $1.
nrecords() {
	"$STORE" -C "$1" dump | awk -v m="$2" '$1 == "record" && $2 == m' | wc -l
}

@test "sync-store deliver of $NBATCH messages killed at every phase: verify clean, whole batches" {
	command -v strace >/dev/null || skip "strace is not installed"
	conf "$T"
	C=$T/imapd.conf
	"$STORE" -C "$C" create user.crash
	# An uninterrupted run, counted, gives the points.
	conf "$T/ref"
	"$STORE" -C "$T/ref/imapd.conf" create user.crash
	batch "$T/ref/msgs" ref
	points "$T/points" "$STORE" -C "$T/ref/imapd.conf" deliver user.crash "$T/ref/msgs"/*
	[ "$(nrecords "$T/ref/imapd.conf" user.crash)" -eq "$NBATCH" ]
	mapfile -t pts <"$T/points"
	i=0
	for p in "${pts[@]}"; do
		i=$((i + 1))
		rm -rf "$T/msgs"
		batch "$T/msgs" "kill$i"
		killat "$p" "$STORE" -C "$C" deliver user.crash "$T/msgs"/* ||
		    { echo "not killed at $p"; false; }
		run "$STORE" -C "$C" verify
		[ "$status" -eq 0 ] || { echo "killed at $p: $output"; false; }
		"$STORE" -C "$C" dump >"$T/dump"
		n=$(awk '$1 == "record" && $2 == "user.crash"' "$T/dump" | wc -l)
		last=$(awk '$1 == "mailbox" && $2 == "user.crash" && $3 == "last_uid" { print $4 }' "$T/dump")
		# Whole batches: the records are UIDs 1..n, n a multiple of
		# the batch.
		[ $(( n % NBATCH )) -eq 0 ] || { echo "killed at $p: $n records"; false; }
		[ "$last" -eq "$n" ] || { echo "killed at $p: last_uid $last, $n records"; false; }
		if [ "$n" -gt 0 ]; then
			grep -q "^record user.crash $n " "$T/dump" ||
			    { echo "killed at $p: no UID $n"; false; }
		fi
		echo "# $p: $((n / NBATCH)) batches" >&3
	done
	[ "$i" -ge 10 ]
	# What the killed writers left is only staging files, which gc
	# clears; then one more delivery succeeds.
	sleep 1.1
	run "$STORE" -C "$C" gc --grace 0
	[ "$status" -eq 0 ]
	[ -z "$(ls -A "$T/spool/stage" 2>/dev/null)" ]
	"$STORE" -C "$C" deliver user.crash "$T/msgs"/* >/dev/null
	[ $(( $(nrecords "$C" user.crash) % NBATCH )) -eq 0 ]
	run "$STORE" -C "$C" verify
	[ "$status" -eq 0 ]
}

@test "sync_server applying $NBATCH messages killed at every phase: verify clean, the rerun converges" {
	command -v strace >/dev/null || skip "strace is not installed"
	# The master: one mailbox of NBATCH messages; the session a client
	# sends to a fresh replica, recorded once.
	conf "$T/m"
	M=$T/m/imapd.conf
	"$STORE" -C "$M" create user.crash
	batch "$T/msgs" apply
	"$STORE" -C "$M" deliver user.crash "$T/msgs"/* >/dev/null
	"$STORE" -C "$M" flag user.crash 1:10 '\Seen' >/dev/null
	"$STORE" -C "$M" dump crash >"$T/master.dump"
	conf "$T/r0"
	"$PLAN" -C "$M" -e "$SRV -C $T/r0/imapd.conf" -u crash >"$T/plan"
	"$SEND" -C "$M" -e "tee $T/session | $SRV -C $T/r0/imapd.conf" -f "$T/plan"
	grep -aq '^APPLY MESSAGE' "$T/session"
	grep -aq '^APPLY MAILBOX' "$T/session"
	# An uninterrupted replay, counted, gives the points.
	conf "$T/r1"
	points "$T/points" "$SRV" -C "$T/r1/imapd.conf" <"$T/session"
	"$STORE" -C "$T/r1/imapd.conf" dump crash | diff "$T/master.dump" -
	mapfile -t pts <"$T/points"
	whole=0
	i=0
	for p in "${pts[@]}"; do
		i=$((i + 1))
		R=$T/k$i/imapd.conf
		conf "$T/k$i"
		killat "$p" "$SRV" -C "$R" <"$T/session" ||
		    { echo "not killed at $p"; false; }
		run "$STORE" -C "$R" verify
		[ "$status" -eq 0 ] || { echo "killed at $p: $output"; false; }
		# The mailbox is there with all its records, or not at all
		# (the replica holds no other).
		n=$(printf '%s\n' "$output" | sed -n 's/^verify: [0-9]* mailboxes, \([0-9]*\) records.*/\1/p')
		if [ "$n" -eq "$NBATCH" ]; then
			whole=$((whole + 1))
		else
			[ "$n" -eq 0 ] || { echo "killed at $p: $n records"; false; }
		fi
		# A rerun of the sync brings the replica to the master's state.
		"$PLAN" -C "$M" -e "$SRV -C $R" -u crash >"$T/plan2"
		"$SEND" -C "$M" -e "$SRV -C $R" -f "$T/plan2"
		"$STORE" -C "$R" dump crash | diff "$T/master.dump" - ||
		    { echo "killed at $p: replica differs after the rerun"; false; }
		run "$STORE" -C "$R" verify
		[ "$status" -eq 0 ] || { echo "killed at $p, after the rerun: $output"; false; }
		echo "# $p: $n records before the rerun" >&3
	done
	[ "$i" -ge 10 ]
	echo "# $whole of $i kills came after the mailbox was applied" >&3
}
