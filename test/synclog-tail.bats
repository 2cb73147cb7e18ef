#!/usr/bin/env bats
# synclog-tail(1): claiming, coalescing, the action stream, commit, status.

TOOL="$BATS_TEST_DIRNAME/../cmd/synclog-tail/synclog-tail"

setup() {
	D=$(mktemp -d)
	chmod 755 "$D"
	mkdir -p "$D/conf/sync"
	printf 'configdirectory: %s/conf\nsync_log: 1\n' "$D" > "$D/imapd.conf"
	C="$D/imapd.conf"
	L="$D/conf/sync/log"
	# A private copy: a rebuild during a long test must not pull the
	# binary away from under it.
	cp "$TOOL" "$D/synclog-tail"
	T="$D/synclog-tail"
	cp "$BATS_TEST_DIRNAME/synclog-tail-writer.py" "$D/writer.py"
	W="$D/writer.py"
}

teardown() {
	local p
	[ -n "$TAILPID" ] && kill "$TAILPID" 2>/dev/null || true
	for p in "${WPIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${WPIDS[@]}" $TAILPID; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$D"
	if [ -n "$SHM" ]; then rm -rf "$SHM"; fi
}

# The record lines of a stream (control lines dropped).
records() {
	grep -v '^%' "$@" || true
}

# Wait up to 10 s for a command to succeed.
waitfor() {
	local i
	for i in $(seq 100); do
		if "$@"; then return 0; fi
		sleep 0.1
	done
	return 1
}

@test "usage errors exit 64 with the synopsis" {
	run "$T" -x
	[ "$status" -eq 64 ]
	[[ "$output" == *"usage: synclog-tail [-1r] [-C config]"* ]]
	run "$T" --status -1 -C "$C"
	[ "$status" -eq 64 ]
	run "$T" -d -3 -C "$C"
	[ "$status" -eq 64 ]
}

@test "a missing config exits 78" {
	run "$T" -1 -C "$D/nope.conf"
	[ "$status" -eq 78 ]
}

@test "-1 with nothing to do exits 0 with only the header" {
	run "$T" -1 -C "$C"
	[ "$status" -eq 0 ]
	[ "$output" = "%syncpipe-actions 1" ]
}

@test "-1 claims the log, coalesces and ends the batch with a commit" {
	cat > "$L" <<'LOG'
APPEND user.alice
MAILBOX user.alice
SEEN bob 4f1e-77
META bob
USER carol
SUB carol user.x
UNUSER dave
USER dave
QUOTA user.alice
RENAME user.alice.a user.alice.b
MAILBOX user.alice.a
MAILBOX user.alice.b
ANNOTATION ""
UNMAILBOX user.e.x
LOG
	run "$T" -1 -C "$C"
	[ "$status" -eq 0 ]
	[ ! -e "$L" ]
	[ -f "$L-run" ]
	[ "${lines[0]}" = "%syncpipe-actions 1" ]
	[ "${lines[1]}" = "%batch 1 $L-run" ]
	[ "${lines[2]}" = "RENAME user.alice.a user.alice.b" ]
	[ "${lines[3]}" = "MAILBOX user.alice" ]
	[ "${lines[4]}" = "MAILBOX user.alice.a" ]
	[ "${lines[5]}" = "MAILBOX user.alice.b" ]
	[ "${lines[6]}" = "QUOTA user.alice" ]
	[ "${lines[7]}" = 'ANNOTATION ""' ]
	[ "${lines[8]}" = "UNMAILBOX user.e.x" ]
	[ "${lines[9]}" = "META bob" ]
	[ "${lines[10]}" = "USER carol" ]
	[ "${lines[11]}" = "UNUSER dave" ]
	[[ "${lines[12]}" == "%commit $L-run "*:*:*:* ]]
	[ "${lines[13]}" = "%end 1" ]
	[ "${#lines[@]}" -eq 14 ]
}

@test "an uncommitted log-run is emitted again, before the newer log" {
	echo "USER old" > "$L-run"
	echo "USER new" > "$L"
	run "$T" -1 -C "$C"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | records)" = "USER old" ]
	[ -f "$L" ] && [ -f "$L-run" ]
	run "$T" -1 -C "$C"
	[ "$(echo "$output" | records)" = "USER old" ]
}

@test "an empty log is not claimed" {
	: > "$L"
	run "$T" -1 -C "$C"
	[ "$status" -eq 0 ]
	[ -e "$L" ] && [ ! -e "$L-run" ]
}

@test "-n reads the channel's own log" {
	mkdir -p "$D/conf/sync/chan"
	echo "USER inchan" > "$D/conf/sync/chan/log"
	echo "USER indefault" > "$L"
	run "$T" -1 -C "$C" -n chan
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | records)" = "USER inchan" ]
	[ -f "$D/conf/sync/chan/log-run" ] && [ -f "$L" ]
}

@test "malformed lines go to stderr and the rejects file; the rest goes on" {
	{
		echo "USER ok1"
		echo "FOO bar"
		echo "MAILBOX a b"
		printf 'MAILBOX "unterminated\n'
		printf 'USER a\0b\n'
		printf 'MAILBOX %09000d\n' 7
		printf 'USER ok2\r\n'
		echo ""
		echo "USER ok3"
	} > "$L"
	run "$T" -1 -C "$C"
	[ "$status" -eq 0 ]
	[[ "$output" == *"$L-run:2: unknown type 'FOO'"* ]]
	[[ "$output" == *"$L-run:3: MAILBOX takes 1 argument"* ]]
	[[ "$output" == *"$L-run:4: unterminated quoted string"* ]]
	[[ "$output" == *"$L-run:5: NUL byte in line"* ]]
	[[ "$output" == *"$L-run:6: line longer than 8192 bytes"* ]]
	[ "$(grep -c '^USER ok' <<<"$output")" -eq 3 ]
	[ "$(wc -l < "$L-rejects")" -eq 5 ]
	sed -n 2,6p "$L" 2>/dev/null || true
	# Verbatim: byte for byte the rejected lines.
	sed -n 2,6p "$L-run" | cmp - "$L-rejects"
}

@test "-f reads a file without renaming it and without a commit line" {
	printf 'USER u1\nMAILBOX "user.u1.My Folder"\nBAD\n' > "$D/in"
	run "$T" -f "$D/in"
	[ "$status" -eq 0 ]
	[ -f "$D/in" ]
	[[ "$output" != *"%commit"* ]]
	[[ "$output" == *'MAILBOX "user.u1.My Folder"'* ]]
	[ "$(cat "$D/in-rejects")" = "BAD" ]
}

@test "a saved action stream is a valid -f input and reads back the same" {
	cat > "$L" <<'LOG'
MAILBOX "user.a.sp ace"
MAILBOX "user.a.q\"uote"
MAILBOX "user.a.back\\slash"
MAILBOX "user.a.br\{ace\}"
MAILBOX user.a.&AOQ-
MAILBOX user.a.é
SUB b "user.b.x y"
DOUBLEMAILBOX user.a.x user.b.y
SEEN c 123
ANNOTATION ""
LOG
	"$T" -1 -C "$C" > "$D/s1"
	"$T" -f "$D/s1" > "$D/s2"
	[ "$(records "$D/s1")" = "$(records "$D/s2")" ]
	[ "$(records "$D/s1" | wc -l)" -eq 10 ]
	# And the records alone are what Cyrus's writer would have written.
	diff <(records "$D/s1" | sort) <(sort "$L-run")
	[ ! -e "$D/s1-rejects" ]
}

@test "--commit removes a claimed file, checks its identity, refuses others" {
	echo "USER x" > "$L"
	"$T" -1 -C "$C" > "$D/s"
	read -r _ path id < <(grep '^%commit' "$D/s")
	[ "$path" = "$L-run" ]
	run "$T" -C "$C" --commit "$path" 1:2:3:4.5
	[ "$status" -eq 1 ]
	[ -f "$L-run" ]
	echo x > "$D/other-run"
	run "$T" -C "$C" --commit "$D/other-run"
	[ "$status" -eq 1 ]
	[ -f "$D/other-run" ]
	run "$T" -C "$C" --commit "$path" "$id"
	[ "$status" -eq 0 ]
	[ ! -e "$L-run" ]
	# Committing twice is harmless.
	run "$T" -C "$C" --commit "$path" "$id"
	[ "$status" -eq 0 ]
	# An -f file only when named again with -f.
	run "$T" -f "$D/other-run" --commit "$D/other-run"
	[ "$status" -eq 0 ]
	[ ! -e "$D/other-run" ]
}

@test "--status reports pending, claimed, age and rejects" {
	printf 'USER a\nUSER b\n' > "$L-run"
	printf 'USER c\nUSER d\nUSER e\n' > "$L"
	printf 'BAD\n' > "$L-rejects"
	touch -d '-30 seconds' "$L-run"
	run "$T" --status -C "$C"
	[ "$status" -eq 0 ]
	[[ "$output" == *"pending lines: 3"* ]]
	[[ "$output" == *"claimed: yes, 2 lines"* ]]
	[[ "$output" == *"rejected lines: 1"* ]]
	run "$T" --status -C "$C" --format prom
	[ "$status" -eq 0 ]
	grep -qx 'syncpipe_synclog_pending_lines{channel=""} 3' <<<"$output"
	grep -qx 'syncpipe_synclog_claimed{channel=""} 1' <<<"$output"
	grep -qx 'syncpipe_synclog_claimed_lines{channel=""} 2' <<<"$output"
	grep -qx 'syncpipe_synclog_rejected_lines{channel=""} 1' <<<"$output"
	grep -q '^syncpipe_synclog_oldest_age_seconds{channel=""} [0-9]' <<<"$output"
}

@test "--status lists every channel of sync_log_channels" {
	printf 'sync_log_channels: "" squatter\n' >> "$C"
	mkdir -p "$D/conf/sync/squatter"
	echo "USER s" > "$D/conf/sync/squatter/log"
	run "$T" --status -C "$C" --format prom
	grep -qx 'syncpipe_synclog_pending_lines{channel="squatter"} 1' <<<"$output"
	grep -qx 'syncpipe_synclog_pending_lines{channel=""} 0' <<<"$output"
}

@test "-r -d 0 picks up a line at once, waits for the commit, stops on the shutdown file" {
	"$T" -r -d 0 -C "$C" -F "$D/stop" > "$D/out" 2> "$D/err" &
	TAILPID=$!
	waitfor grep -q '^%syncpipe-actions 1' "$D/out"
	"$W" "$L" first 1
	waitfor grep -q '^MAILBOX user.first.m0' "$D/out"
	[ -f "$L-run" ]
	"$W" "$L" second 1
	sleep 0.5
	# Not claimed while the previous log-run is there.
	[ -f "$L" ]
	! grep -q second "$D/out"
	"$T" -C "$C" --commit "$L-run"
	waitfor grep -q '^MAILBOX user.second.m0' "$D/out"
	[ "$(grep -c '^%batch' "$D/out")" -eq 2 ]
	touch "$D/stop"
	waitfor test ! -e "$D/stop"
	wait "$TAILPID"
	TAILPID=
	[ -f "$L-run" ]
	[ "$(tail -n 1 "$D/out")" = "%end 2" ]
}

@test "-r emits an uncommitted log-run again after --retry" {
	echo "USER r" > "$L"
	"$T" -r -d 0 --retry 1 -C "$C" > "$D/out" &
	TAILPID=$!
	twice() { [ "$(grep -c '^USER r' "$D/out")" -ge 2 ]; }
	waitfor twice
	kill -TERM "$TAILPID"
	wait "$TAILPID"
	TAILPID=
}

@test "SIGUSR1: a kept log-run is emitted again long before --retry" {
	echo "USER k" > "$L"
	"$T" -r -d 0 --retry 3600 -C "$C" > "$D/out" &
	TAILPID=$!
	waitfor grep -q '^%end 1' "$D/out"
	kill -USR1 "$TAILPID"
	waitfor grep -q '^%end 2' "$D/out"
	[ "$(grep -c '^USER k' "$D/out")" -eq 2 ]
	# Once committed, the next claim starts afresh.
	"$T" -C "$C" --commit "$L-run"
	echo "USER l" > "$L"
	waitfor grep -q '^USER l' "$D/out"
	kill -TERM "$TAILPID"
	wait "$TAILPID"
	TAILPID=
}

@test "--skip-locked: a locked owner's records go back to the log, the rest on" {
	mkdir "$D/locks"
	cat > "$L" <<'LOG'
MAILBOX user.alice
MAILBOX user.bob.x
SEEN alice user.bob
RENAME user.carol.a user.alice.b
SUB bob user.bob.x
MAILBOX shared.news
LOG
	exec 8>"$D/locks/S-alice"
	flock 8
	run "$T" -1 -C "$C" --skip-locked "$D/locks"
	exec 8>&-
	[ "$status" -eq 0 ]
	[[ "$output" == *"alice: locked by another run"* ]]
	[ "$(records <<<"$output" | grep -v 'locked by')" = "MAILBOX user.bob.x
MAILBOX shared.news
SUB bob user.bob.x" ]
	[[ "$output" == *"%commit $L-run "* ]]
	# alice's three records are in the log again, synced to disk.
	[ "$(cat "$L")" = "MAILBOX user.alice
SEEN alice user.bob
RENAME user.carol.a user.alice.b" ]
	# The lock free, the next pass takes them.
	"$T" -C "$C" --commit "$L-run"
	run "$T" -1 -C "$C" --skip-locked "$D/locks"
	[ "$status" -eq 0 ]
	[[ "$output" == *"MAILBOX user.alice"* ]]
	[[ "$output" != *"locked by"* ]]
	run "$T" -f "$L" --skip-locked "$D/locks"
	[ "$status" -eq 64 ]
}

@test "--skip-locked: a dotted userid's mailboxes (user.first^last) are held by S-first.last" {
	mkdir "$D/locks"
	cat > "$L" <<'LOG'
MAILBOX user.first^last
MAILBOX user.first^last.Sent
SEEN first.last user.bob
MAILBOX example.com!user.j^doe.Trash
MAILBOX user.first
LOG
	exec 8>"$D/locks/S-first.last"
	flock 8
	exec 7>"$D/locks/S-j.doe@example.com"
	flock 7
	run "$T" -1 -C "$C" --skip-locked "$D/locks"
	exec 8>&- 7>&-
	[ "$status" -eq 0 ]
	[[ "$output" == *"first.last: locked by another run"* ]]
	[[ "$output" == *"j.doe@example.com: locked by another run"* ]]
	[ "$(records <<<"$output" | grep -v 'locked by')" = "MAILBOX user.first" ]
	[ "$(cat "$L")" = "MAILBOX user.first^last
MAILBOX user.first^last.Sent
SEEN first.last user.bob
MAILBOX example.com!user.j^doe.Trash" ]
}

@test "--skip-locked: a kept log-run emitted again hands a locked owner's records back once" {
	mkdir "$D/locks"
	printf 'MAILBOX user.alice\nMAILBOX user.bob\n' > "$L"
	exec 8>"$D/locks/S-alice"
	flock 8
	"$T" -r -d 0 --retry 3600 -C "$C" --skip-locked "$D/locks" > "$D/out" 2>"$D/err" &
	TAILPID=$!
	waitfor grep -q '^%end 1' "$D/out"
	kill -USR1 "$TAILPID"
	waitfor grep -q '^%end 2' "$D/out"
	kill -USR1 "$TAILPID"
	waitfor grep -q '^%end 3' "$D/out"
	kill -TERM "$TAILPID"
	wait "$TAILPID"
	TAILPID=
	exec 8>&-
	[ "$(grep -c '^MAILBOX user.bob' "$D/out")" -eq 3 ]
	! grep -q '^MAILBOX user.alice' "$D/out"
	# Three emissions of one log-run, alice's line in the log once.
	[ "$(cat "$L")" = "MAILBOX user.alice" ]
}

@test "SIGTERM stops -r cleanly, exit 0, batches whole" {
	"$T" -r -d 0 -C "$C" > "$D/out" &
	TAILPID=$!
	"$W" "$L" t 3
	waitfor grep -q '^%end 1' "$D/out"
	kill -TERM "$TAILPID"
	rc=0
	wait "$TAILPID" || rc=$?
	TAILPID=
	[ "$rc" -eq 0 ]
	[ "$(tail -n 1 "$D/out")" = "%end 1" ]
	[ -f "$L-run" ]
}

@test "a closed stdout is an error and the log-run stays" {
	echo "USER p" > "$L-run"
	{ sleep 0.5; rc=0; "$T" -1 -C "$C" || rc=$?; echo $rc > "$D/rc"; } | true
	[ "$(cat "$D/rc")" -eq 1 ]
	[ "$(cat "$L-run")" = "USER p" ]
}

# The concurrency test: four writer processes append to the default log
# while synclog-tail -r -d 0 claims it and a consumer commits each batch
# at its %commit line.  Three writers are the store's own C writer
# (synclog_append() in lib/synclog.c, through build/test/synclog-writer),
# 10,000 lines each; the fourth is Cyrus 3.6's own cyr_synclog, one exec
# per line.  An exec of cyr_synclog costs 0.1 to 0.2 s here (library
# loading and Cyrus's start-up, on 2 loaded cores), so 10,000 of them
# would take 15 to 30 minutes: make check has it append 250 lines, and
# TORTURE=1 the full 10,000.  The cyr_synclog lines start with the store
# writers and go on after them, so each races the claims on its own too.
# Every writer runs as the cyrus user, as Cyrus's processes do (the log
# must stay writable by each of them).  The log lives on tmpfs
# (/dev/shm) when there is one: fsync is free there, so the writers
# append as fast as the locking allows and the claims land among them
# far more often than on a disk, where each fsync takes milliseconds.
# It proves: every line written is emitted, none twice within one claim
# (nor at all, since every claim is committed at once), every batch is
# whole and committed, nothing is rejected.  SYNCLOG_TAIL_LINES and
# SYNCLOG_TAIL_CYR_LINES override the two counts.
@test "4 concurrent writers (3 store writers x 10,000 lines, cyr_synclog 250, 10,000 with TORTURE=1) and a committing consumer: no line lost or doubled" {
	local N=${SYNCLOG_TAIL_LINES:-10000} NC cyr sw cpid p w k
	NC=${SYNCLOG_TAIL_CYR_LINES:-250}
	[[ ${TORTURE:-0} == 1 ]] && NC=${SYNCLOG_TAIL_CYR_LINES:-10000}
	sw="$BATS_TEST_DIRNAME/../build/test/synclog-writer"
	cyr=/usr/lib/cyrus/bin/cyr_synclog
	[[ -x $cyr ]] || cyr=$(dpkg -L cyrus-replication 2>/dev/null |
	    grep '/cyr_synclog$' || true)
	if [[ -z $cyr || ! -x $cyr ]]; then
		echo "Cyrus's cyr_synclog is not installed (make deps)" >&2
		return 1
	fi
	if [[ ! -x $sw ]]; then
		echo "$sw is not built (make)" >&2
		return 1
	fi
	id cyrus >/dev/null || { echo "no cyrus user (make deps)" >&2; return 1; }
	((EUID == 0)) || skip "needs privilege: writers run as the cyrus user"
	if [[ -d /dev/shm && -w /dev/shm ]]; then
		SHM=$(mktemp -d /dev/shm/synclog-tail-test.XXXXXX)
		chmod 755 "$SHM"
		mkdir -p "$SHM/conf/sync"
		printf 'configdirectory: %s/conf\nsync_log: 1\n' "$SHM" \
		    > "$SHM/imapd.conf"
		C=$SHM/imapd.conf
		L=$SHM/conf/sync/log
		chown -R cyrus "$SHM/conf"
	fi
	cp "$sw" "$D/synclog-writer"
	chown -R cyrus "$D/conf"
	echo "log: $L"

	mkfifo "$D/fifo"
	"$T" -r -d 0 -C "$C" -F "$D/stop" > "$D/fifo" 2> "$D/err" 3>&- &
	TAILPID=$!
	# The consumer applies nothing and commits every claimed file.
	tee "$D/stream" < "$D/fifo" | grep --line-buffered '^%commit ' |
	    while read -r _ p k; do
		"$T" -C "$C" --commit "$p" "$k" ||
		    echo "commit $p $k: $?" >> "$D/err"
	    done 3>&- &
	cpid=$!
	SECONDS=0
	WPIDS=()
	(
		for ((k = 0; k < NC; k++)); do
			"$cyr" -C "$C" -m "user.cyr.m$k" ||
			    echo "cyr_synclog line $k: $?" >&2
		done
	) 2>> "$D/werr" 3>&- &
	WPIDS+=($!)
	for w in 0 1 2; do
		runuser -u cyrus -- "$D/synclog-writer" "$C" "w$w" "$N" \
		    2>> "$D/werr" 3>&- &
		WPIDS+=($!)
	done
	for p in "${WPIDS[@]:1}" "${WPIDS[0]}"; do
		wait "$p" || echo "writer $p: exit $?" >> "$D/werr"
		echo "writer $p done after ${SECONDS}s"
	done
	WPIDS=()
	for ((k = 0; k < 600; k++)); do
		[[ ! -e $L && ! -e $L-run ]] && break
		sleep 0.1
	done
	echo "log drained after ${SECONDS}s"
	touch "$D/stop"
	wait "$TAILPID"
	TAILPID=
	wait "$cpid"
	echo "synclog-tail stopped after ${SECONDS}s"
	ls -l "$(dirname "$L")"
	cat "$D/err" "$D/werr"
	[[ ! -e $D/stop ]]
	[[ ! -s $D/werr ]]
	[[ ! -s $D/err ]]
	[[ ! -e $L && ! -e $L-run && ! -e $L-rejects ]]

	# Every line written was emitted.
	awk -v n="$N" -v nc="$NC" 'BEGIN {
		for (w = 0; w < 3; w++)
			for (k = 0; k < n; k++)
				printf "MAILBOX user.w%d.m%d\n", w, k
		for (k = 0; k < nc; k++)
			printf "MAILBOX user.cyr.m%d\n", k
	}' | sort > "$D/want"
	records "$D/stream" | sort -u > "$D/got"
	echo "compared after ${SECONDS}s"
	echo "batches: $(grep -c '^%batch' "$D/stream")"
	for w in w0 w1 w2 cyr; do
		echo "$w: $(grep -c "^MAILBOX user.$w.m" "$D/stream")"
	done
	diff "$D/want" "$D/got" | head -n 20
	cmp -s "$D/want" "$D/got"
	# None twice within one claim ...
	awk '/^%batch/ { delete seen; next } /^%/ { next }
	    { if (seen[$0]++) { print "twice in one claim: " $0; bad = 1 } }
	    END { exit bad }' "$D/stream"
	# ... nor at all: each claim was committed at once, none came back.
	[[ $(records "$D/stream" | wc -l) -eq $(wc -l < "$D/want") ]]
	# And every batch is whole and committed.
	k=$(grep -c '^%batch' "$D/stream")
	[[ $(grep -c '^%commit' "$D/stream") -eq $k ]]
	[[ $(grep -c '^%end' "$D/stream") -eq $k ]]
}
