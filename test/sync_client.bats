#!/usr/bin/env bats
# sync_client: every option of Cyrus's command line, each observed on the
# replica (sync-store dump), in the exit status, or in what the script
# leaves behind.  Most tests reach the replica over a pipe (-e); the
# transport tests use sync_server --listen on a free port.

load helpers

setup() {
	ROOT=$(sp_project_root)
	T=$(sp_tmpdir)
	mkdir -p "$T/m" "$T/r" "$T/r/other"
	sp_conf "$T/m/imapd.conf"
	sp_conf "$T/r/imapd.conf" replica
	echo "partition-other: $T/r/other" >>"$T/r/imapd.conf"
	echo "sync_log: 1" >>"$T/m/imapd.conf"
	M=$T/m/imapd.conf
	R=$T/r/imapd.conf
	STORE=$ROOT/cmd/sync-store/sync-store
	SC=$ROOT/cmd/sync_client/sync_client
	E="$ROOT/cmd/sync_server/sync_server -C $R"
	for u in alice bob; do
		"$STORE" -C "$M" create "user.$u"
		"$STORE" -C "$M" create "user.$u.Sent"
		for i in 1 2 3; do
			printf 'From: %s@example.com\r\nSubject: %s\r\n\r\nbody %s\r\n' \
			    "$u" "$i" "$i" | "$STORE" -C "$M" deliver "user.$u" \
			    --flags '\Seen' >/dev/null
		done
		"$STORE" -C "$M" sub "$u" "user.$u.Sent"
	done
	"$STORE" -C "$M" create shared.news
	rm -f "$T/m/conf/sync/log"
}

teardown() {
	[[ -n ${CPID:-} ]] && kill -TERM "$CPID" 2>/dev/null
	[[ -n ${HOLDER:-} ]] && kill -TERM "$HOLDER" 2>/dev/null
	sp_server_stop "$R"
	sp_server_stop "$M"
	sp_rmtmp "$T"
}

# The replica holds exactly what the master holds for user $1.
same() {
	diff <("$STORE" -C "$M" dump "$1") <("$STORE" -C "$R" dump "$1")
}
has_mailbox() {
	"$STORE" -C "$R" list | grep -qx "$1"
}
deliver() {
	printf 'Subject: %s\r\n\r\nnew\r\n' "$2" | "$STORE" -C "$M" deliver "$1" >/dev/null
}
# TCP: the replica listens on $PORT, the master authenticates to it.
tcp() {
	PORT=$(sp_freeport)
	sp_sasluser "$T/r/conf/sasldb2" replica repluser secret
	cat >>"$M" <<-EOF
	sync_authname: repluser
	sync_password: secret
	sync_host: 127.0.0.1:$PORT
	EOF
	sp_server_start "$R" "$PORT"
}
# wait_for SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
	local i n=$(( $1 * 10 )); shift
	for ((i = 0; i < n; i++)); do
		"$@" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
# No process of ours (stage or script) is left for config $M.
none_left() {
	! pgrep -f -- "-C $M" >/dev/null
}

@test "-u: the named user is replicated, no other" {
	run "$SC" -C "$M" -e "$E" -u alice
	[ "$status" -eq 0 ]
	same alice
	has_mailbox user.alice.Sent
	! has_mailbox user.bob
}

@test "-u with -f: names from a file, comments and blank lines ignored" {
	printf '# users\n\nbob\n' >"$T/list"
	run "$SC" -C "$M" -e "$E" -u -f "$T/list"
	[ "$status" -eq 0 ]
	same bob
	! has_mailbox user.alice
}

@test "-m: only the named mailboxes" {
	run "$SC" -C "$M" -e "$E" -m user.alice.Sent shared.news
	[ "$status" -eq 0 ]
	has_mailbox user.alice.Sent
	has_mailbox shared.news
	! has_mailbox user.alice
	! has_mailbox user.bob.Sent
}

@test "-A: every user and the shared mailboxes" {
	run "$SC" -C "$M" -e "$E" -A
	[ "$status" -eq 0 ]
	same alice
	same bob
	has_mailbox shared.news
}

@test "-A prefix: only the users under the prefix" {
	run "$SC" -C "$M" -e "$E" -A user.b
	[ "$status" -eq 0 ]
	same bob
	! has_mailbox user.alice
	! has_mailbox shared.news
}

@test "-s: per-user state only (subscriptions), no mailboxes" {
	"$STORE" -C "$M" sieve put alice vacation <<<'keep;'
	run "$SC" -C "$M" -e "$E" -s alice
	[ "$status" -eq 0 ]
	! has_mailbox user.alice
	"$STORE" -C "$R" dump alice | grep -q 'sub.*user.alice.Sent'
	"$STORE" -C "$R" dump alice | grep -q vacation
}

@test "-r -1: one pass over the rolling log, which is then removed" {
	"$SC" -C "$M" -e "$E" -u alice
	deliver user.alice rolled
	"$STORE" -C "$M" flag user.alice 1 '\Flagged'
	"$STORE" -C "$M" rename user.alice.Sent user.alice.Outbox
	[ -s "$T/m/conf/sync/log" ]
	run "$SC" -C "$M" -e "$E" -r -1
	[ "$status" -eq 0 ]
	same alice
	[ ! -e "$T/m/conf/sync/log" ]
	[ ! -e "$T/m/conf/sync/log-run" ]
}

@test "-R -f: a log-format file is replicated once and kept" {
	printf 'USER bob\n' >"$T/actions"
	run "$SC" -C "$M" -e "$E" -R -f "$T/actions"
	[ "$status" -eq 0 ]
	same bob
	[ -s "$T/actions" ]
}

@test "-R -F: rolling in the foreground until the shutdown file appears" {
	"$SC" -C "$M" -e "$E" -R -d 0 -F "$T/stop" 3>&- &
	CPID=$!
	deliver user.alice one
	wait_for 10 same alice
	touch "$T/stop"
	wait_for 10 eval '! kill -0 $CPID'
	wait "$CPID"
	[ ! -e "$T/stop" ]
	none_left
}

@test "-r: detaches, keeps replicating, stops on sync_shutdown_file" {
	echo "sync_shutdown_file: $T/shutdown" >>"$M"
	SECONDS=0
	run "$SC" -C "$M" -e "$E" -r -d 0 3>&-
	[ "$status" -eq 0 ]
	# It returned while the detached copy runs on (checked below).
	[ "$SECONDS" -lt 30 ]
	wait_for 5 pgrep -f -- "synclog-tail -C $M"
	deliver user.bob detached
	wait_for 10 same bob
	touch "$T/shutdown"
	wait_for 10 none_left
	[ ! -e "$T/shutdown" ]
}

@test "configuration: the script reads sync_shutdown_file through @include (no final newline), the channel's key first" {
	printf '@include: %s\nchan_sync_shutdown_file: %s' \
	    "$T/inc2.conf" "$T/shutdown-chan" >"$T/inc.conf"
	printf 'sync_shutdown_file: %s' "$T/not-this" >"$T/inc2.conf"
	echo "@include: $T/inc.conf" >>"$M"
	deliver user.alice pending
	# The replica cannot be reached: the script backs off between
	# pipelines and looks for the shutdown file itself.
	"$SC" -C "$M" -e false -R -d 0 -n chan 3>&- 2>"$T/err" &
	CPID=$!
	wait_for 20 grep -q "pipeline ended" "$T/err"
	touch "$T/shutdown-chan"
	wait_for 10 eval '! kill -0 $CPID'
	rc=0
	wait "$CPID" || rc=$?
	cat "$T/err"
	# Stopped by the script (the failed pipeline's status), not by
	# synclog-tail in a next pipeline (0).
	[ "$rc" -ne 0 ]
	[ ! -e "$T/shutdown-chan" ]
	none_left
}

@test "SIGTERM: the pipeline stops, nothing is left running or half claimed" {
	"$SC" -C "$M" -e "$E" -R -d 0 3>&- &
	CPID=$!
	deliver user.alice before
	wait_for 10 same alice
	kill -TERM "$CPID"
	wait_for 10 none_left
	wait "$CPID" || true
	[ ! -e "$T/m/conf/sync/log-run" ]
	deliver user.alice after
	[ -s "$T/m/conf/sync/log" ]
}

@test "-t: the connections are restarted every t seconds" {
	"$SC" -C "$M" -e "$E" -R -d 0 -t 1 -v 2>"$T/err" 3>&- &
	CPID=$!
	sleep 3.5
	deliver user.alice late
	wait_for 10 same alice
	kill -TERM "$CPID"
	wait "$CPID" || true
	[ "$(grep -c 'sync-send: .* applied' "$T/err")" -ge 2 ]
}

@test "-d: at least d seconds between two passes over the log" {
	"$SC" -C "$M" -e "$E" -R -d 3 3>&- &
	CPID=$!
	deliver user.alice first
	wait_for 5 same alice
	deliver user.alice second
	sleep 1
	! same alice >/dev/null
	wait_for 5 same alice
}

@test "reconnect: the rolling client catches up after the replica restarts" {
	tcp
	"$SC" -C "$M" -R -d 0 2>"$T/err" 3>&- &
	CPID=$!
	deliver user.alice one
	wait_for 10 same alice
	sp_server_stop "$R"
	deliver user.alice two
	sleep 1
	sp_server_start "$R" "$PORT"
	deliver user.alice three
	wait_for 20 same alice
}

@test "-S: overrides sync_host" {
	tcp
	sed -i "s/^sync_host: .*/sync_host: 127.0.0.1:1/" "$M"
	run "$SC" -C "$M" -o -u alice
	[ "$status" -eq 69 ]
	run "$SC" -C "$M" -S "127.0.0.1:$PORT" -u alice
	[ "$status" -eq 0 ]
	same alice
}

@test "-o: an unreachable replica fails at once with status 69, stage named" {
	port=$(sp_freeport)
	SECONDS=0
	run "$SC" -C "$M" -S "127.0.0.1:$port" -o -u alice
	[ "$status" -eq 69 ]
	# Without -o the same run retries for up to 1000 s.
	[ "$SECONDS" -lt 30 ]
	# Whichever stage reached the replica first names the failure.
	[[ $output == *"sync-send: connect"* || $output == *"sync-plan: connect"* ]]
	[[ $output == *"sync-send exited with status 69"* ||
	    $output == *"sync-plan exited with status 69"* ]]
}

@test "without -o: an unreachable replica is retried until it answers" {
	tcp
	sp_server_stop "$R"
	"$SC" -C "$M" -u alice 2>"$T/err" 3>&- &
	CPID=$!
	sleep 1.5
	kill -0 "$CPID"
	sp_server_start "$R" "$PORT"
	wait "$CPID" || { cat "$T/err"; false; }
	same alice
	grep -q retrying "$T/err"
}

@test "-n: the channel's <channel>_sync_host is used" {
	tcp
	sed -i "s/^sync_host: .*/sync_host: 127.0.0.1:1/" "$M"
	echo "alt_sync_host: 127.0.0.1:$PORT" >>"$M"
	run "$SC" -C "$M" -n alt -o -u alice
	[ "$status" -eq 0 ]
	same alice
}

@test "-z: compression is negotiated with a replica that offers it" {
	tcp
	run "$SC" -C "$M" -z -v -v -u alice
	[ "$status" -eq 0 ]
	[[ $output == *"C COMPRESS DEFLATE"* ]]
	same alice
}

@test "-p: new mailboxes go to the replica's partition" {
	run "$SC" -C "$M" -e "$E" -p other -u alice
	[ "$status" -eq 0 ]
	"$STORE" -C "$R" dump alice | grep -q 'mailbox user.alice partition other'
}

@test "a refused object: status 1 and the replica's answer on stderr" {
	run "$SC" -C "$M" -e "$E" -p nosuchpartition -u alice
	[ "$status" -eq 1 ]
	[[ $output == *"sync-send: NO APPLY"* ]]
}

@test "-L: local-only commands are sent" {
	run "$SC" -C "$M" -e "$E" -L -v -v -u alice
	[ "$status" -eq 0 ]
	[[ $output == *"C APPLY LOCAL_MAILBOX"* ]]
	same alice
}

@test "-O: APPLY FORCE is sent" {
	run "$SC" -C "$M" -e "$E" -O -v -v -u alice
	[ "$status" -eq 0 ]
	[[ $output == *"C APPLY FORCE"* ]]
}

@test "-v: the results on stdout; silent without it" {
	run "$SC" -C "$M" -e "$E" -u alice
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	"$STORE" -C "$M" flag user.alice 1 '\Flagged'
	"$SC" -C "$M" -e "$E" -v -u alice >"$T/out" 2>/dev/null
	grep -q '^OK APPLY MAILBOX user.alice' "$T/out"
}

@test "-l: what is done also goes to syslog" {
	mkdir "$T/bin"
	printf '#!/bin/sh\ncat >>%s/syslog\n' "$T" >"$T/bin/logger"
	chmod +x "$T/bin/logger"
	PATH="$T/bin:$PATH" run "$SC" -C "$M" -e "$E" -l -u alice
	[ "$status" -eq 0 ]
	grep -q 'OK APPLY MAILBOX user.alice' "$T/syslog"
}

@test "-N: a user locked by another run is skipped; without -N it waits" {
	mkdir -p "$T/m/conf/lock/sync_client"
	lock=$T/m/conf/lock/sync_client/S-alice
	flock "$lock" sleep 2 3>&- &
	sleep 0.3
	run "$SC" -C "$M" -e "$E" -N -u alice bob
	[ "$status" -eq 0 ]
	[[ $output == *"alice: locked by another run: skipped"* ]]
	! has_mailbox user.alice
	same bob
	SECONDS=0
	run "$SC" -C "$M" -e "$E" -u alice
	[ "$status" -eq 0 ]
	[ "$SECONDS" -ge 1 ]
	same alice
}

# hold_lock USER: another run holds USER's sync lock until $HOLDER ends.
hold_lock() {
	local lock=$T/m/conf/lock/sync_client/S-$1
	mkdir -p "$T/m/conf/lock/sync_client"
	bash -c 'exec 8>"$1"; flock 8; exec sleep 600' _ "$lock" 3>&- &
	HOLDER=$!
	wait_for 30 eval "! flock -n '$lock' true"
}

@test "-N with -r -1: a locked user's log lines stay in the log for a later pass" {
	deliver user.alice rolled
	deliver user.bob rolled
	hold_lock alice
	run "$SC" -C "$M" -e "$E" -N -r -1
	[ "$status" -eq 0 ]
	[[ $output == *"alice: locked by another run"* ]]
	same bob
	! has_mailbox user.alice
	# The claimed file is gone; alice's lines are back in the log.
	[ ! -e "$T/m/conf/sync/log-run" ]
	grep -q 'user\.alice' "$T/m/conf/sync/log"
	! grep -q 'user\.bob' "$T/m/conf/sync/log"
	kill -TERM "$HOLDER"
	wait "$HOLDER" || true
	HOLDER=
	run "$SC" -C "$M" -e "$E" -N -r -1
	[ "$status" -eq 0 ]
	same alice
	[ ! -e "$T/m/conf/sync/log" ]
}

@test "-N with -R: a locked user is left for later, the others go on" {
	hold_lock alice
	"$SC" -C "$M" -e "$E" -N -R -d 0 2>"$T/err" 3>&- &
	CPID=$!
	deliver user.alice waiting
	deliver user.bob first
	wait_for 60 same bob
	deliver user.bob second
	wait_for 60 same bob
	! has_mailbox user.alice
	grep -q 'alice: locked by another run' "$T/err"
	kill -TERM "$HOLDER"
	wait "$HOLDER" || true
	HOLDER=
	wait_for 60 same alice
}

@test "-R: a batch that was not committed is sent again soon, not after --retry" {
	"$SC" -C "$M" -e "$E" -u alice
	# The replica can not store bodies: every batch with one is kept.
	rm -rf "$T/r/spool/stage"
	touch "$T/r/spool/stage"
	timeout 120 "$SC" -C "$M" -e "$E" -R -d 0 2>"$T/err" 3>&- &
	CPID=$!
	deliver user.alice kept
	# Three attempts: re-sent only every 60 s (synclog-tail's --retry),
	# they and the catch-up below would outlast the 120 s bound.
	wait_for 100 eval '[ "$(grep -c "%kept" "$T/err")" -ge 3 ]'
	rm -f "$T/r/spool/stage"
	wait_for 100 same alice
	kill -0 "$CPID"
}

@test "--source-command, -M: the master's state is read from a csync source" {
	# A client whose own store is empty: what reaches the replica can
	# only come from the source, a sync_server over the master store.
	mkdir -p "$T/c"
	sp_conf "$T/c/imapd.conf"
	C=$T/c/imapd.conf
	run "$SC" -C "$C" -e "$E" \
	    --source-command "$ROOT/cmd/sync_server/sync_server -C $M" -u alice
	[ "$status" -eq 0 ]
	same alice
	! has_mailbox user.bob
	# -M: the same store served over TCP, credentials from the
	# configuration.
	PORT=$(sp_freeport)
	sp_sasluser "$T/m/conf/sasldb2" syncpipe-test repluser secret
	printf 'sync_source_authname: repluser\nsync_source_password: secret\n' \
	    >>"$C"
	sp_server_start "$M" "$PORT"
	run "$SC" -C "$C" -e "$E" -M "127.0.0.1:$PORT" -u bob
	[ "$status" -eq 0 ]
	same bob
	# A source can not list its users; -M and --source-command exclude
	# each other.
	run "$SC" -C "$C" -e "$E" -M "127.0.0.1:$PORT" -A
	[ "$status" -eq 64 ]
	run "$SC" -C "$C" -e "$E" -M "127.0.0.1:$PORT" --source-command true -u bob
	[ "$status" -eq 64 ]
}

@test "-w: waits before starting" {
	SECONDS=0
	run "$SC" -C "$M" -e "$E" -w 2 -u alice
	[ "$status" -eq 0 ]
	[ "$SECONDS" -ge 2 ]
	same alice
}

@test "-C: a missing configuration is status 78" {
	run "$SC" -C "$T/nonexistent.conf" -e "$E" -u alice
	[ "$status" -eq 78 ]
}

@test "usage: no mode, two modes, or a bad option is status 64" {
	run "$SC" -C "$M" alice
	[ "$status" -eq 64 ]
	run "$SC" -C "$M" -u -m alice
	[ "$status" -eq 64 ]
	run "$SC" -C "$M" -X -u alice
	[ "$status" -eq 64 ]
	run "$SC" -C "$M" -u
	[ "$status" -eq 64 ]
}

# The stages' pids, below the script's pid $1.
stage_pid() {
	pgrep -P "$1" -x "$2"
}

@test "sync-send dies: sync-plan and synclog-tail do not hang" {
	"$SC" -C "$M" -e "$E" -R -d 0 -o 2>"$T/err" 3>&- &
	CPID=$!
	wait_for 30 stage_pid "$CPID" sync-send
	kill -KILL "$(stage_pid "$CPID" sync-send)"
	wait_for 10 none_left
	run wait "$CPID"
	[ "$status" -eq 70 ]
	grep -q 'sync-send was killed by signal 9' "$T/err"
}

@test "sync-plan dies: sync-send sees the end of the plan, nothing hangs" {
	"$SC" -C "$M" -e "$E" -R -d 0 -o 2>"$T/err" 3>&- &
	CPID=$!
	wait_for 30 stage_pid "$CPID" sync-plan
	kill -KILL "$(stage_pid "$CPID" sync-plan)"
	wait_for 10 none_left
	run wait "$CPID"
	[ "$status" -eq 70 ]
	grep -q 'sync-plan was killed by signal 9' "$T/err"
}

@test "a timer stopped as soon as it is started ends at once (a SIGTERM lost before its trap is sent again)" {
	# The script's own timer functions, run the way the pipeline runs
	# them: started, then stopped at once (sync-plan ending as sync-send
	# does).  A lost SIGTERM would leave each timer to run its 60 s.
	sed -n -e '/^running() {/,/^}/p' -e '/^timer() {/,/^}/p' \
	    -e '/^stop_timer() {/,/^}/p' "$SC" >"$T/timer.sh"
	[ "$(grep -c '^[a-z_]*() {' "$T/timer.sh")" -eq 3 ]
	cat >>"$T/timer.sh" <<-'EOS'
	trap : TERM INT
	i=0
	while [ $i -lt 40 ]; do
		timer 60 999999999 0
		stop_timer $!
		i=$((i + 1))
	done
	echo "stopped $i"
	EOS
	run timeout 100 sh "$T/timer.sh"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "stopped 40" ]
}
