#!/usr/bin/env bats
# synclog-tail and Cyrus 3.6's own rolling sync_client share one sync log
# claiming protocol (log -> log-run, a lock to wait for writers, a
# leftover log-run first), so either can be stopped and the other started
# on the same log: nothing is lost, nothing is stuck.  Against a real
# Cyrus 3.6 master and replica (cyrus-pair); user alice is populated and
# fully synced first, then the master's log is emptied.  The tests run in
# file order and build on each other.
#
#   1. A log-run that synclog-tail claimed and emitted but never
#      committed is taken over by Cyrus's sync_client -r -1, which
#      reprocesses it first; the replica ends level with the master.
#   2. Cyrus's own sync_client -R (rolling, as cyrus-pair sync runs it)
#      is SIGKILLed while its run is under way, with the log-run it
#      claimed still there (400 messages to upload give it about a
#      second; a kill that comes after the run is retried with more
#      work, 5 tries at most).  synclog-tail then emits that log-run
#      first, byte for byte the log Cyrus claimed, leaving the newer log
#      alone, again while uncommitted, and the newer log after the
#      commit: every line of both files is emitted, and Cyrus replays
#      the stream to a level replica.
#   3. synclog-tail -r -d 0 with a committing consumer, while two imapd
#      sessions write the master's log concurrently: every created
#      folder's line is emitted, every batch is whole and committed.

load ../helpers
load interop

setup_file() {
	export CYRUS_PAIR_SYNC_TIMEOUT=${CYRUS_PAIR_SYNC_TIMEOUT:-120}
	ia_workdir
	# A private copy: a rebuild during the run must not pull the binary
	# away from under it.
	cp "$BATS_TEST_DIRNAME/../../cmd/synclog-tail/synclog-tail" "$D/synclog-tail"
	ia_up "$D"
	ia_populate populate
}

# populate: alice, fully synced to the replica.
populate() {
	cyrus_pair populate "$D" alice 10 --seed 11 &&
	cyrus_pair sync "$D" -u alice
}

teardown_file() {
	ia_dir || return 0
	if [[ -s $D/tail.pid ]]; then
		kill "$(cat "$D/tail.pid")" 2>/dev/null || true
	fi
	if [[ -s $D/sc.pid ]]; then
		kill -KILL "$(cat "$D/sc.pid")" 2>/dev/null || true
	fi
	ia_teardown
}

setup() {
	CYRUS_BIN=$(. "$D/ports.env" && echo "$CYRUS_BIN")
	T=$D/synclog-tail
	C=$D/master/imapd.conf
	S=$D/master/conf/sync
}

act() {
	cyrus_pair act "$D" master alice "$@" >>"$D/act.log" 2>&1 ||
	    { tail -n 5 "$D/act.log"; return 1; }
}

# The records of action streams (control lines dropped).
records() {
	grep -v '^%' "$@" || true
}

# has FILE LINE: FILE holds LINE as a whole line.
has() {
	grep -qxF -- "$2" "$1" || { echo "missing from $1: $2"; cat "$1"; return 1; }
}

# commit_of STREAM: the "PATH ID" of the stream's (only) %commit line.
commit_of() {
	local n
	n=$(grep -c '^%commit ' "$1")
	[[ $n -eq 1 ]] || { echo "expected one %commit in $1, found $n" >&2; return 1; }
	grep '^%commit ' "$1" | cut -d' ' -f2-
}

# compare: master and replica agree for alice.
compare() {
	run cyrus_pair compare "$D" alice
	[[ $status -eq 0 ]] || { echo "$output" | head -n 60; return 1; }
}

# The master's syslog from byte offset $1 on.
syslog_since() {
	tail -c +"$(($1 + 1))" "$D/master/log/syslog"
}

syslog_size() {
	stat -c %s "$D/master/log/syslog"
}

@test "setup: the pair agrees for alice and the master's log is empty" {
	compare
	[[ ! -e $S/log && ! -e $S/log-run ]]
}

@test "a log-run claimed by synclog-tail and never committed is replicated by Cyrus's sync_client -r" {
	act append INBOX 2
	act flag INBOX 1:3 '\Flagged'
	act create Inter1
	act subscribe Inter1
	cp "$S/log" "$D/t1.log"
	echo "# the master's log:"; sed 's/^/#   /' "$D/t1.log"
	has "$D/t1.log" "APPEND user.alice"
	has "$D/t1.log" "MAILBOX user.alice.Inter1"
	has "$D/t1.log" "SUB alice user.alice.Inter1"

	# Our pipeline claims and emits the log, then dies before committing.
	"$T" -C "$C" -1 >"$D/t1.actions" 2>"$D/t1.err"
	cat "$D/t1.actions"
	[[ ! -s $D/t1.err ]]
	[[ ! -e $S/log ]]
	[[ -e $S/log-run ]]
	cmp "$D/t1.log" "$S/log-run"
	has "$D/t1.actions" "%batch 1 $S/log-run"
	has "$D/t1.actions" "MAILBOX user.alice"
	has "$D/t1.actions" "MAILBOX user.alice.Inter1"
	has "$D/t1.actions" "SUB alice user.alice.Inter1"
	read -r cpath cid < <(commit_of "$D/t1.actions")
	[[ $cpath == "$S/log-run" ]]
	# The id names the claimed file: ... size ...
	[[ $(cut -d: -f3 <<<"$cid") == "$(stat -c %s "$S/log-run")" ]]

	# Cyrus's rolling client takes over: the leftover log-run goes first.
	local off
	off=$(syslog_size)
	run cyrus_pair sync "$D" -v -r -1
	echo "$output" | tail -n 20
	[[ $status -eq 0 ]]
	syslog_since "$off" | grep sync_client | sed 's/^/# syslog: /'
	syslog_since "$off" | grep -q "Reprocessing sync log file $S/log-run"
	[[ $output == *"MAILBOX user.alice.Inter1"* ]]
	[[ ! -e $S/log-run ]]
	[[ ! -e $S/log ]]
	compare

	# Our late commit, if it ever came, removes nothing.
	run "$T" -C "$C" --commit "$cpath" "$cid"
	[[ $status -eq 0 ]]
}

@test "a log-run left by Cyrus's own sync_client -R, SIGKILLed mid-run, is emitted first, then the new log" {
	local try pid rc i killed=0
	# Pending work for the rolling client: 400 messages to upload take
	# it about a second, a window the kill lands in.  A kill that comes
	# after the run (log-run already removed) is a miss: more work and
	# another try, 5 at most.
	act unsubscribe Inter1
	for ((try = 1; try <= 5; try++)); do
		act append INBOX 400
		act create "Kill$try"
		act subscribe "Kill$try"
		[[ -s $S/log && ! -e $S/log-run ]]
		cp "$S/log" "$D/t2.written"
		# As cyrus-pair sync runs it, without the timeout wrapper,
		# so that $! is sync_client itself.
		env CYRUS_ISDAEMON=1 CYRUS_PAIR_SYSLOG="$D/master/log/syslog" \
		    LD_PRELOAD="$D/lib/cyrus-pair-syslog.so" \
		    "$CYRUS_BIN/sync_client" -C "$C" -R >"$D/t2.sc$try" 2>&1 3>&- &
		pid=$!
		echo "$pid" >"$D/sc.pid"
		for ((i = 0; i < 3000; i++)); do
			[[ -e $S/log-run ]] && break
			sleep 0.01
		done
		# Into the run, past the claim.
		sleep 0.2
		kill -KILL "$pid"
		rc=0
		wait "$pid" || rc=$?
		rm -f "$D/sc.pid"
		[[ $rc -eq 137 ]] || { echo "sync_client exit $rc"; cat "$D/t2.sc$try"; return 1; }
		if [[ -e $S/log-run ]]; then
			killed=$try
			break
		fi
		echo "# try $try: the run was over before the kill"
	done
	echo "# sync_client killed mid-run at try $killed"
	((killed > 0))
	# Cyrus's client claimed the log as it was written and left it.
	[[ ! -e $S/log ]]
	cmp "$D/t2.written" "$S/log-run"
	cp "$S/log-run" "$D/t2.run"
	act create Inter3
	act annotate Inter3 /private/comment "written after the claim"
	act flag INBOX 1 '$Work'
	cp "$S/log" "$D/t2.log"
	echo "# log-run:"; sed 's/^/#   /' "$D/t2.run"
	echo "# log:"; sed 's/^/#   /' "$D/t2.log"
	has "$D/t2.run" "MAILBOX user.alice.Kill$killed"
	has "$D/t2.log" "MAILBOX user.alice.Inter3"

	# First pass: the leftover, and log is left alone.
	"$T" -C "$C" -1 >"$D/t2.a1" 2>"$D/t2.e1"
	cat "$D/t2.a1"
	[[ ! -s $D/t2.e1 ]]
	has "$D/t2.a1" "%batch 1 $S/log-run"
	has "$D/t2.a1" "MAILBOX user.alice"
	has "$D/t2.a1" "MAILBOX user.alice.Kill$killed"
	run grep Inter3 "$D/t2.a1"
	[[ $status -ne 0 ]]
	cmp "$D/t2.run" "$S/log-run"
	cmp "$D/t2.log" "$S/log"
	read -r p1 id1 < <(commit_of "$D/t2.a1")
	[[ $p1 == "$S/log-run" ]]

	# Uncommitted, a second pass emits the same leftover again.
	"$T" -C "$C" -1 >"$D/t2.a1again"
	cmp "$D/t2.a1" "$D/t2.a1again"

	"$T" -C "$C" --commit "$p1" "$id1"
	[[ ! -e $S/log-run ]]
	cmp "$D/t2.log" "$S/log"

	# Second pass: the new log.
	"$T" -C "$C" -1 >"$D/t2.a2" 2>"$D/t2.e2"
	cat "$D/t2.a2"
	[[ ! -s $D/t2.e2 ]]
	has "$D/t2.a2" "%batch 1 $S/log-run"
	has "$D/t2.a2" "MAILBOX user.alice"
	has "$D/t2.a2" "MAILBOX user.alice.Inter3"
	grep -qE '^ANNOTATION |^MAILBOX user.alice.Inter3$' "$D/t2.a2"
	[[ ! -e $S/log ]]
	read -r p2 id2 < <(commit_of "$D/t2.a2")
	[[ $p2 == "$S/log-run" && $id2 != "$id1" ]]
	"$T" -C "$C" --commit "$p2" "$id2"
	[[ ! -e $S/log-run && ! -e $S/log ]]

	# Nothing lost: every line of both files was emitted (APPEND as
	# MAILBOX, UNSUB as SUB).
	cat "$D/t2.a1" "$D/t2.a2" >"$D/t2.stream"
	local line
	while read -r line; do
		line=${line/#APPEND /MAILBOX }
		line=${line/#UNSUB /SUB }
		has "$D/t2.stream" "$line"
	done < <(cat "$D/t2.run" "$D/t2.log")

	# The replica is not level yet (the run was killed, the new log
	# never replicated).
	run cyrus_pair compare "$D" alice
	[[ $status -ne 0 ]]

	# Our saved action stream is a valid Cyrus sync_log: Cyrus's
	# sync_client -r -f replays it (the file must be the cyrus user's:
	# sync_client opens it read-write to lock it).
	cp "$D/t2.stream" "$D/t2.cyrus"
	chown cyrus:mail "$D/t2.cyrus"
	local off
	off=$(syslog_size)
	run cyrus_pair sync "$D" -v -r -f "$D/t2.cyrus"
	echo "$output" | tail -n 20
	syslog_since "$off" | grep sync_client | sed 's/^/# syslog: /'
	[[ $status -eq 0 ]]
	[[ $output == *"MAILBOX user.alice.Inter3"* ]]
	# What Cyrus does with our control lines: one "Unknown action type"
	# error each, then it goes on.
	syslog_since "$off" | grep -q 'Unknown action type: %COMMIT'
	run bash -c "tail -c +$((off + 1)) '$D/master/log/syslog' | grep sync_client |
	    grep -v 'Unknown action type: %' | grep -E ' (err|error|crit|alert|emerg): '"
	[[ -z $output ]]
	compare
}

# consume: read an action stream on stdin, copy it to stdout, and commit
# each batch at its %commit line.
consume() {
	local line tag path id
	while IFS= read -r line; do
		printf '%s\n' "$line"
		if [[ $line == '%commit '* ]]; then
			read -r tag path id <<<"$line"
			"$T" -C "$C" --commit "$path" "$id" ||
			    echo "%consume: commit $path $id failed"
		fi
	done
}

@test "synclog-tail -r -d 0 with a committing consumer loses no line of concurrent Cyrus writers" {
	rm -f "$D/tail.fifo"
	mkfifo "$D/tail.fifo"
	"$T" -C "$C" -r -d 0 >"$D/tail.fifo" 2>"$D/t3.err" 3>&- &
	echo $! >"$D/tail.pid"
	consume <"$D/tail.fifo" >"$D/t3.stream" 3>&- &
	local cpid=$! i n
	sleep 0.3

	# Two writers at once (one IMAP session each): imapd processes
	# appending to the master's log while synclog-tail renames it under
	# them.  Each folder created logs its own MAILBOX line.
	local peer w1 w2
	peer=$(dirname "$(sp_cyrus_pair_path)")
	python3 "$BATS_TEST_DIRNAME/synclog-interchange-writer.py" "$peer" \
	    "$D/ports.env" alice F 25 >"$D/t3.w1" 2>&1 3>&- &
	w1=$!
	python3 "$BATS_TEST_DIRNAME/synclog-interchange-writer.py" "$peer" \
	    "$D/ports.env" alice G 25 >"$D/t3.w2" 2>&1 3>&- &
	w2=$!
	act flag INBOX 1:5 '\Flagged'
	wait "$w1" || { cat "$D/t3.w1"; return 1; }
	wait "$w2" || { cat "$D/t3.w2"; return 1; }
	[[ $(wc -l <"$D/t3.w1") -eq 25 && $(wc -l <"$D/t3.w2") -eq 25 ]]

	# Everything is claimed and committed within a few seconds.
	for ((i = 0; i < 100; i++)); do
		[[ ! -e $S/log && ! -e $S/log-run ]] && break
		sleep 0.1
	done
	ls -la "$S"
	[[ ! -e $S/log && ! -e $S/log-run ]]

	kill -TERM "$(cat "$D/tail.pid")"
	wait "$(cat "$D/tail.pid")"
	rm -f "$D/tail.pid"
	wait "$cpid"
	echo "# $(grep -c '^%batch ' "$D/t3.stream") batches"
	cat "$D/t3.err"
	[[ ! -s $D/t3.err ]]
	[[ ! -e $S/log-rejects ]]
	run grep '^%consume:' "$D/t3.stream"
	[[ $status -ne 0 ]]

	# Every batch is whole and committed.
	n=$(grep -c '^%batch ' "$D/t3.stream")
	[[ $n -ge 2 ]]
	[[ $(grep -c '^%commit ' "$D/t3.stream") -eq $n ]]
	[[ $(grep -c '^%end ' "$D/t3.stream") -eq $n ]]

	# Nothing lost: each created folder's record was emitted.
	for i in $(seq 1 25); do
		has "$D/t3.stream" "MAILBOX user.alice.F$i"
		has "$D/t3.stream" "MAILBOX user.alice.G$i"
	done
	has "$D/t3.stream" "MAILBOX user.alice"

	# And the records alone bring the replica level (Cyrus replays them).
	records "$D/t3.stream" >"$D/t3.cyrus"
	chown cyrus:mail "$D/t3.cyrus"
	run cyrus_pair sync "$D" -r -f "$D/t3.cyrus"
	[[ $status -eq 0 ]]
	compare
}
