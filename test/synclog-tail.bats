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
	[ -n "$TAILPID" ] && kill "$TAILPID" 2>/dev/null || true
	rm -rf "$D"
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

@test "4 concurrent writers and a committing consumer: no line lost or doubled" {
	N=${SYNCLOG_TAIL_LINES:-10000}
	# The consumer applies nothing and commits every claimed file.
	( "$T" -r -d 0 -C "$C" -F "$D/stop" 2> "$D/err" | tee "$D/stream" |
	    while read -r w p i; do
		if [ "$w" = "%commit" ]; then
			"$T" -C "$C" --commit "$p" "$i" || echo "commit $?" >> "$D/err"
		fi
	    done ) &
	TAILPID=$!
	pids=()
	# With Cyrus installed, every writer runs as the cyrus user (as
	# Cyrus's own processes do) and some lines come from cyr_synclog.
	as=()
	cyr=0
	if [ -x /usr/lib/cyrus/bin/cyr_synclog ] && id cyrus >/dev/null 2>&1
	then
		chown -R cyrus "$D/conf"
		as=(runuser -u cyrus -- /usr/bin/python3)
	fi
	for w in 0 1 2 3; do
		"${as[@]}" "$W" "$L" "w$w" "$N" &
		pids+=($!)
	done
	if [ "${#as[@]}" -gt 0 ]; then
		for n in $(seq 20); do
			/usr/lib/cyrus/bin/cyr_synclog -C "$C" -m "user.cyr.m$n" &&
			    cyr=$((cyr + 1))
		done
	fi
	for p in "${pids[@]}"; do
		wait "$p"
	done
	for i in $(seq 600); do
		[ ! -e "$L" ] && [ ! -e "$L-run" ] && break
		sleep 0.1
	done
	touch "$D/stop"
	wait "$TAILPID"
	TAILPID=
	[ ! -e "$D/stop" ]
	ls -l "$D/conf/sync"
	cat "$D/err"
	[ ! -e "$L" ]
	[ ! -e "$L-run" ]
	want=$((4 * N + cyr))
	got=$(records "$D/stream" | sort -u | wc -l)
	echo "want $want got $got (cyr_synclog lines: $cyr)"
	for w in 0 1 2 3; do
		echo "w$w: $(grep -c "^MAILBOX user.w$w.m" "$D/stream")"
	done
	echo "cyr: $(grep -c "^MAILBOX user.cyr.m" "$D/stream")"
	[ "$got" -eq "$want" ]
	# Nothing twice within one claim (nor at all: no retry happened).
	[ "$(records "$D/stream" | wc -l)" -eq "$want" ]
	awk '/^%batch/{delete seen; next} /^%/{next}
	    { if (seen[$0]++) { print "dup " $0; bad=1 } } END { exit bad }' \
	    "$D/stream"
	for w in 0 1 2 3; do
		[ "$(grep -c "^MAILBOX user.w$w.m" "$D/stream")" -eq "$N" ]
	done
	[ ! -s "$D/err" ]
}
