#!/usr/bin/env bats
# Faults of the machine rather than of the input: a replica whose disk
# fills up (its partition, or its database), a master whose sync log
# fills up in the middle of a line, partitions that do not exist, a
# replica that stops reading while the client uploads, and a network
# that stalls in the middle of a run.  Each case checks what is
# left: the exit status, the master's claimed sync log, the replica's
# mailboxes (none, or whole ones), and that a rerun converges once the
# fault is gone (dumps equal, both stores verify clean).
#
# The disk cases mount small tmpfs filesystems and need root; without
# that they are skipped, saying why.  The fakes live in test/hostile/.

load helpers

setup() {
	ROOT=$(sp_project_root)
	HDIR=$ROOT/test/hostile
	T=$(sp_tmpdir)
	mkdir -p "$T/m" "$T/r"
	sp_conf "$T/m/imapd.conf"
	sp_conf "$T/r/imapd.conf" replica
	echo "sync_log: 1" >>"$T/m/imapd.conf"
	M=$T/m/imapd.conf
	R=$T/r/imapd.conf
	STORE=$ROOT/cmd/sync-store/sync-store
	SC=$ROOT/cmd/sync_client/sync_client
	TAIL=$ROOT/cmd/synclog-tail/synclog-tail
	PLAN=$ROOT/cmd/sync-plan/sync-plan
	SEND=$ROOT/cmd/sync-send/sync-send
	SRV=$ROOT/cmd/sync_server/sync_server
	# The replica over a pipe, its log (-D) kept for the checks.
	E="$SRV -D -C $R 2>>$T/server.err"
	FPID=
}

teardown() {
	local mp
	if [[ -n ${FPID:-} ]]; then
		kill "$FPID" 2>/dev/null
		wait "$FPID" 2>/dev/null
	fi
	# innermost first
	awk -v t="$T/" 'index($2, t) == 1 { print $2 }' /proc/mounts |
	    sort -r | while read -r mp; do
		umount "$mp" || umount -l "$mp"
	done
	sp_rmtmp "$T"
}

# small_fs DIR SIZE: an empty tmpfs of SIZE mounted on DIR, or skip.
small_fs() {
	mkdir -p "$1"
	if ! mount -t tmpfs -o "size=$2,mode=0755" tmpfs "$1" 2>"$T/mount.err"; then
		skip "needs privilege: cannot mount a tmpfs on $1: $(cat "$T/mount.err")"
	fi
}

# msg FILE SUBJECT KB: a message with a body of about KB kilobytes of
# random base64 (no two alike).
msg() {
	{
		printf 'From: f@example.com\r\nSubject: %s\r\n\r\n' "$2"
		head -c $(($3 * 750)) /dev/urandom | base64 | sed 's/$/\r/'
	} >"$1"
}

# user NAME COUNT KB: user.NAME with COUNT messages of KB kilobytes, and
# user.NAME.Sent with one small one, subscribed.
user() {
	local u=$1 n=$2 kb=$3 i
	"$STORE" -C "$M" create "user.$u"
	"$STORE" -C "$M" create "user.$u.Sent"
	mkdir -p "$T/msg/$u"
	for ((i = 1; i <= n; i++)); do
		if ((kb > 0)); then
			msg "$T/msg/$u/$i" "$u $i" "$kb"
		else
			printf 'Subject: %s %d\r\n\r\nsmall %d\r\n' "$u" "$i" "$i" \
			    >"$T/msg/$u/$i"
		fi
	done
	"$STORE" -C "$M" deliver "user.$u" --flags '\Seen' "$T/msg/$u"/* >/dev/null
	msg "$T/msg/$u.sent" "$u sent" 1
	"$STORE" -C "$M" deliver "user.$u.Sent" "$T/msg/$u.sent" >/dev/null
	"$STORE" -C "$M" sub "$u" "user.$u.Sent"
	rm -rf "$T/msg/$u" "$T/msg/$u.sent"
}

# log_users USER...: the master's sync log asks for a full sync of each
# user, in that order (and holds nothing else).
log_users() {
	local u
	rm -f "$T/m/conf/sync/log"
	for u in "$@"; do
		echo "USER $u"
	done >"$T/m/conf/sync/log"
}

has_mailbox() {
	"$STORE" -C "$R" list | grep -qx "$1"
}

# (A negated command is no assertion in the middle of a bats test: these
# functions return the negation as their status.)
no_mailbox() {
	! has_mailbox "$1"
}

# no_crash: the replica's log shows no crash or sanitizer report.
no_crash() {
	! grep -E -q 'AddressSanitizer|runtime error|Segmentation|Aborted' \
	    "$T/server.err"
}

# same USER: the replica holds exactly what the master holds for USER.
same() {
	diff -u <("$STORE" -C "$M" dump "$1") <("$STORE" -C "$R" dump "$1")
}

# converged: the whole replica equals the master, both verify clean, and
# the sync log is drained with no claimed file left.
converged() {
	diff -u <("$STORE" -C "$M" dump) <("$STORE" -C "$R" dump)
	clean "$M"
	clean "$R"
	[ ! -e "$T/m/conf/sync/log-run" ]
	[ ! -e "$T/m/conf/sync/log" ]
}

# clean CONF: sync-store verify finds no fault.
clean() {
	run "$STORE" -C "$1" verify
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *": 0 faults"* ]]
}

# whole: every mailbox the replica has is the master's, line for line
# (no mailbox is there in part), and no staging file is left behind.
whole() {
	local mb
	"$STORE" -C "$M" dump >"$T/m.dump"
	"$STORE" -C "$R" dump >"$T/r.dump"
	"$STORE" -C "$R" list >"$T/r.list"
	while read -r mb; do
		if ! diff -u <(awk -v n="$mb" '$1 != "sub" && $2 == n' "$T/m.dump") \
		    <(awk -v n="$mb" '$1 != "sub" && $2 == n' "$T/r.dump"); then
			echo "mailbox $mb is on the replica in part"
			return 1
		fi
	done <"$T/r.list"
	run find "$PART" -path "$PART/bodies" -prune -o -type f -print
	[ "$output" = "" ] || { echo "stray files: $output"; return 1; }
}

# kept: the run did not commit: the claimed log file is still there.
kept() {
	[ -s "$T/m/conf/sync/log-run" ] ||
	    { echo "claimed log-run missing"; ls -l "$T/m/conf/sync"; return 1; }
}

# wait_exit PID SECONDS: wait for PID to end, at most SECONDS; its exit
# status in $status.  Fails (after killing it) if it is still running.
wait_exit() {
	local pid=$1 i
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid"
		wait "$pid" 2>/dev/null
		echo "still running after $2 s: killed"
		return 1
	fi
	status=0
	wait "$pid" || status=$?
}

# ---------------------------------------------------------------------
# Disk full

@test "disk full: the replica's partition fills during a full user sync: NO, stream in sync, log kept, no partial mailbox; converges once space returns" {
	# The partition lives on an 8 MB filesystem of which a filler leaves
	# about 1 MB; alice's INBOX needs over 2 MB.
	small_fs "$T/r/vol" 8m
	PART=$T/r/vol/spool
	mkdir -p "$PART"
	sed -i "s|^partition-default:.*|partition-default: $PART|" "$R"
	head -c $((7 * 1024 * 1024)) /dev/zero >"$T/r/vol/filler"
	user alice 40 54
	user bob 2 1
	log_users alice bob

	run "$SC" -C "$M" -e "$E" -v -r -1
	echo "$output"
	cat "$T/server.err"
	# objects failed (1), not a lost replica (69) or a dead stage (70)
	[ "$status" -eq 1 ]
	[[ $output == *"NO APPLY MESSAGE"* ]]
	[[ $output != *"IMAP_PROTOCOL_ERROR"* ]]
	grep -q 'No space left on device' "$T/server.err"
	no_crash
	kept
	no_mailbox user.alice
	# the commands after the refused ones were read and applied
	has_mailbox user.alice.Sent
	same bob
	whole
	clean "$R"

	rm "$T/r/vol/filler"
	run "$SC" -C "$M" -e "$E" -r -1
	echo "$output"
	[ "$status" -eq 0 ]
	converged
}

@test "disk full: the replica's database fills: NO, log kept, no partial mailbox; converges once space returns" {
	# configdirectory (the SQLite database) on 192 KB; alice's 1500
	# records need more.  The bodies have room.
	small_fs "$T/r/conf" 192k
	PART=$T/r/spool
	user alice 1500 0
	user bob 2 1
	log_users alice bob

	run "$SC" -C "$M" -e "$E" -v -r -1
	echo "$output"
	grep -v DEBUG "$T/server.err" | tail -n 20
	[ "$status" -eq 1 ]
	[[ $output == *"NO APPLY MAILBOX user.alice:"* ]]
	# the replica says why, not something else
	grep -q 'APPLY MAILBOX: .*database or disk is full' "$T/server.err"
	no_crash
	kept
	no_mailbox user.alice
	# the command after the refused one was read and applied (what
	# follows may find the disk full too)
	has_mailbox user.alice.Sent
	whole
	clean "$R"

	mount -o remount,size=32m "$T/r/conf"
	run "$SC" -C "$M" -e "$E" -r -1
	echo "$output"
	[ "$status" -eq 0 ]
	converged
}

@test "disk full: an upload that does not fit is answered NO Unknown error, no staging file is left, and the next commands are answered" {
	small_fs "$T/r/spool" 1m
	PART=$T/r/spool
	# a body of 2 MB that cannot fit, then the 5-byte "hello"
	python3 - "$T/in" <<-'EOF'
	import hashlib, os, sys
	big = os.urandom(2 * 1024 * 1024)
	hello = b"hello"
	with open(sys.argv[1], "wb") as f:
	    for b in (big, hello):
	        f.write(b"APPLY MESSAGE (%%{default %s %d}\r\n"
	                % (hashlib.sha1(b).hexdigest().encode(), len(b)))
	        f.write(b + b")\r\n")
	    f.write(b"NOOP\r\nEXIT\r\n")
	EOF
	run "$SRV" -C "$R" <"$T/in"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(printf '%s\n' "$output" | tr -d '\r' | sed 1d | tr '\n' '|')" = \
	    "NO Unknown error|OK success|OK Noop completed|OK Finished|" ]
	# only "hello" is stored; nothing is left in the staging area
	run find "$PART" -type f
	[ "$output" = "$PART/bodies/aa/f4/aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d" ]
}

# pad_log FILE SIZE: append whole MAILBOX lines (at most 200 bytes each)
# to FILE until it is exactly SIZE bytes long.
pad_log() {
	python3 - "$1" "$2" <<-'EOF'
	import os, sys
	path, target = sys.argv[1], int(sys.argv[2])
	size = os.path.getsize(path)
	assert size + 30 <= target
	with open(path, "a") as f:
	    n = 0
	    while size < target:
	        left = target - size
	        want = left if left <= 200 else min(200, left - 30)
	        base = "MAILBOX user.pad.%d." % n
	        f.write(base + "x" * (want - len(base) - 1) + "\n")
	        size += want
	        n += 1
	EOF
}

@test "disk full: the master's sync log fills in the middle of an append: the writer fails, the log is cut back to its last whole line, and the next change is logged whole" {
	# The master's sync/ directory on a 64 KB tmpfs.  The log is padded
	# with whole lines to 8 bytes short of a page boundary and a filler
	# takes every other page: of the next line only "MAILBOX " fits.
	small_fs "$T/m/conf/sync" 64k
	LOG=$T/m/conf/sync/log
	"$STORE" -C "$M" create user.alice
	pad_log "$LOG" $(($(getconf PAGESIZE) - 8))
	head -c 1G /dev/zero >"$T/m/conf/sync/filler" 2>/dev/null || true
	[ "$(stat -f -c %a "$T/m/conf/sync")" -eq 0 ]
	cp "$LOG" "$T/log.before"

	run "$STORE" -C "$M" create user.alice.lost
	echo "$output"
	[ "$status" -eq 1 ]
	[[ $output == *"committed, but the sync log was not written: $LOG: write: No space left on device"* ]]
	# not a byte of the failed line is left
	cmp "$T/log.before" "$LOG"

	rm "$T/m/conf/sync/filler"
	"$STORE" -C "$M" create user.alice.after
	# what was there, then whole lines that all parse
	cmp -n "$(stat -c %s "$T/log.before")" "$T/log.before" "$LOG"
	grep -qx "MAILBOX user.alice.after" "$LOG"
	cp "$LOG" "$T/log.after"
	"$TAIL" -f "$T/log.after" >"$T/actions" 2>"$T/tail.err"
	cat "$T/tail.err"
	[ ! -s "$T/tail.err" ]
	[ ! -e "$T/log.after-rejects" ]
	grep -qx "MAILBOX user.alice.after" "$T/actions"
}

# ---------------------------------------------------------------------
# Partitions that do not exist

@test "partition unknown on the replica (-p nosuch): NO, nothing stored, log kept, the replica names the partition" {
	PART=$T/r/spool
	user alice 3 1
	log_users alice
	run "$SC" -C "$M" -e "$E" -p nosuch -r -1
	echo "$output"
	cat "$T/server.err"
	[ "$status" -eq 1 ]
	[[ $output == *"NO APPLY MAILBOX user.alice"* ]]
	grep -q 'partition nosuch is not configured' "$T/server.err"
	kept
	[ -z "$("$STORE" -C "$R" list)" ]
	run find "$PART" -type f
	[ "$output" = "" ]
	clean "$R"
}

@test "a mailbox on a partition the replica does not have: NO for it, the rest applied, log kept" {
	PART=$T/r/spool
	mkdir -p "$T/m/other"
	echo "partition-other: $T/m/other" >>"$M"
	user alice 3 1
	"$STORE" -C "$M" create user.alice.Old --partition other
	msg "$T/old" old 1
	"$STORE" -C "$M" deliver user.alice.Old "$T/old" >/dev/null
	log_users alice
	run "$SC" -C "$M" -e "$E" -r -1
	echo "$output"
	cat "$T/server.err"
	[ "$status" -eq 1 ]
	[[ $output == *"NO APPLY MAILBOX user.alice.Old"* ]]
	grep -q 'partition other' "$T/server.err"
	kept
	no_mailbox user.alice.Old
	has_mailbox user.alice
	whole
	clean "$R"
}

@test "the replica's partition-default directory is missing: sync_server refuses to start (78) and names it, nothing stored, log kept" {
	sed -i "s|^partition-default:.*|partition-default: $T/r/nosuch|" "$R"
	user alice 3 1
	log_users alice
	run "$SC" -C "$M" -e "$E" -r -1
	echo "$output"
	cat "$T/server.err"
	[ "$status" -ne 0 ]
	grep -q "partition-default: $T/r/nosuch: No such file or directory" "$T/server.err"
	kept
	# the store was never opened, nor the partition made
	[ ! -e "$T/r/conf/syncpipe.db" ]
	[ ! -e "$T/r/nosuch" ]
	# the same refusal when listening
	run "$SRV" -C "$R" --listen "127.0.0.1:$(sp_freeport)"
	[ "$status" -eq 78 ]
	[[ $output == *"partition-default: $T/r/nosuch: No such file or directory"* ]]
	[ ! -e "$T/r/conf/syncpipe.db" ]
}

# ---------------------------------------------------------------------
# Stalls

# stall_plan: alice with one 16 MB message, logged, claimed and planned
# against an empty replica: the plan uploads it first.
stall_plan() {
	"$STORE" -C "$M" create user.alice
	msg "$T/big" big $((16 * 1024))
	"$STORE" -C "$M" deliver user.alice "$T/big" >/dev/null
	"$TAIL" -C "$M" -1 | "$PLAN" -C "$M" -e "$SRV -C $R" >"$T/plan"
	grep -q '^APPLY MESSAGE' "$T/plan"
	grep -q '^%commit ' "$T/plan"
	kept
}

@test "write timeout: a replica that stops reading during an upload (TCP): sync-send -t 5 gives up with a timeout (75), log kept" {
	stall_plan
	STALL_LOG=$T/stall.log python3 "$HDIR/stallreader.py" tcp "$T/port" 3>&- &
	FPID=$!
	for ((i = 0; i < 300; i++)); do
		[ -s "$T/port" ] && break
		sleep 0.1
	done
	[ -s "$T/port" ]
	"$SEND" -C "$M" -t 5 -S "127.0.0.1:$(<"$T/port")" -f "$T/plan" \
	    >"$T/out" 2>"$T/err" 3>&- &
	# without a bound on the write, sync-send waits as long as the fake
	# (600 s): 120 s is far more than 5 s on a loaded machine
	wait_exit $! 120
	cat "$T/out" "$T/err" "$T/stall.log" || true
	# a timeout (75), not a lost replica (69)
	[ "$status" -eq 75 ]
	grep -q 'write timed out after 5 seconds' "$T/err"
	# the fake stopped reading at the upload, and saw the client go
	grep -q '^stalled' "$T/stall.log"
	kept
}

# With -e the fake's start-up (seconds for python3 on a loaded machine)
# counts against the timeout too: it is wider here.
@test "write timeout: a replica command that stops reading during an upload (-e): sync-send -t 20 gives up with a timeout (75), log kept" {
	stall_plan
	STALL_LOG=$T/stall.log "$SEND" -C "$M" -t 20 \
	    -e "python3 $HDIR/stallreader.py stdio" -f "$T/plan" \
	    >"$T/out" 2>"$T/err" 3>&- &
	wait_exit $! 240
	cat "$T/out" "$T/err" "$T/stall.log" || true
	# a timeout (75), not a lost replica (69)
	[ "$status" -eq 75 ]
	grep -q 'write timed out after 20 seconds' "$T/err"
	grep -q '^stalled' "$T/stall.log"
	kept
}

@test "network stall mid-run: sync-send -t 20 gives up, the claimed log is kept, and a rerun converges" {
	PART=$T/r/spool
	user alice 5 2
	user bob 5 2
	user carol 5 2
	log_users alice bob carol
	# the replica is reached through a proxy that passes three commands
	# on, then nothing more either way
	"$TAIL" -C "$M" -1 | "$PLAN" -C "$M" -e "$SRV -C $R" |
	    STALL_LOG=$T/stall.log "$SEND" -C "$M" -t 20 \
	    -e "python3 $HDIR/stallreader.py proxy 3 $SRV -C $R" \
	    >"$T/out" 2>"$T/err" 3>&- &
	wait_exit $! 240
	cat "$T/out" "$T/err" "$T/stall.log" || true
	[[ " 69 75 " == *" $status "* ]]
	grep -q '^stalled' "$T/stall.log"
	kept
	whole
	run "$SC" -C "$M" -e "$E" -r -1
	echo "$output"
	[ "$status" -eq 0 ]
	converged
}
