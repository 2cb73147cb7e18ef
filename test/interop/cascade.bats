#!/usr/bin/env bats
# A cascade: Cyrus master -> our sync_server (sync_log_chain: yes, so it
# logs what it applies) -> our rolling sync_client on the same store ->
# a Cyrus replica.  After each hop the two Cyrus ends must hold the same
# user, as their IMAP dumps (cyrus-pair dump) show.

load ../helpers
load interop

setup_file() {
	export CYRUS_PAIR_SYNC_TIMEOUT=${CYRUS_PAIR_SYNC_TIMEOUT:-120}
	ia_workdir
	export D2=$D/r
	mkdir -p "$D2" "$D/rec"
	chmod 755 "$D2"
	# The Cyrus replica at the end of the chain.
	ia_up "$D2" --only replica
	REPLICA_CSYNC_PORT=$(. "$D2/ports.env" && echo "$REPLICA_CSYNC_PORT")
	export REPLICA_CSYNC_PORT
	# Our server in the middle: a replica of the master that logs what
	# it applies, and the master of the Cyrus replica.
	ia_our_server 'sync_log: 1' 'sync_log_chain: yes' \
	    "sync_host: 127.0.0.1:$REPLICA_CSYNC_PORT" \
	    'sync_authname: repluser' 'sync_password: replpass' \
	    'sync_try_imap: 0'
	# The Cyrus master at the start.
	ia_up "$D" --only master --sync-target "127.0.0.1:$PORT"
	ia_populate cyrus_pair populate "$D" alice 30 --seed 21
}

teardown_file() {
	ia_dir || return 0
	stop_proxy
	cyrus_pair down "$D/r" >/dev/null 2>&1 || true
	ia_teardown ours
}

stop_proxy() {
	local pid
	[[ -s $D/proxy.pid ]] || return 0
	pid=$(<"$D/proxy.pid")
	rm -f "$D/proxy.pid"
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# our_roll NAME: one pass of our rolling sync_client over our server's
# chained sync log, to the Cyrus replica, recorded through the harness's
# proxy in $D/rec/NAME.txt.
our_roll() {
	local pp i
	pp=$(sp_freeport)
	"$(sp_cyrus_pair_path)" proxy "$pp" "127.0.0.1:$REPLICA_CSYNC_PORT" \
	    "$D/rec/$1.txt" >"$D/rec/$1.proxy.log" 2>&1 3>&- &
	echo $! >"$D/proxy.pid"
	for ((i = 0; i < 50; i++)); do
		sp_port_open "$pp" && break
		sleep 0.1
	done
	echo "# our chained sync log before the pass:"
	cat "$OURS"/conf/sync/log* 2>/dev/null | sed 's/^/#   /' | head -n 40
	run timeout 120 "$(sp_project_root)/cmd/sync_client/sync_client" \
	    -C "$OURS/imapd.conf" -S "127.0.0.1:$pp" -v -r -1
	stop_proxy
	echo "$output" | tail -n 30 | cut -c1-300
	if [[ $status -ne 0 ]]; then
		echo "our sync_client -r -1 exited $status"
		echo "--- Cyrus replica syslog (tail)"
		tail -n 20 "$D2/replica/log/syslog" | cut -c1-300
		return 1
	fi
}

# same_dump NAME: the master's and the replica's dumps of alice are equal.
same_dump() {
	# The first line names the side ("# cyrus-pair dump side=..."): left out.
	cyrus_pair dump "$D" master alice 2>&1 |
	    grep -v '^# cyrus-pair dump ' >"$D/rec/$1.master.dump"
	cyrus_pair dump "$D2" replica alice 2>&1 |
	    grep -v '^# cyrus-pair dump ' >"$D/rec/$1.replica.dump"
	grep -q '^mailbox INBOX' "$D/rec/$1.master.dump"
	diff -u "$D/rec/$1.master.dump" "$D/rec/$1.replica.dump" |
	    head -n 80 | cut -c1-300
	cmp -s "$D/rec/$1.master.dump" "$D/rec/$1.replica.dump"
}

@test "hop 1: Cyrus master -u alice into our server, which logs what it applied" {
	run cyrus_pair sync "$D" --record "$D/rec/hop1-full.txt" -u alice
	echo "$output" | tail -n 10
	[[ $status -eq 0 ]] || { ia_server_log; false; }
	ia_compare_user alice || { ia_server_log; false; }
	# sync_log_chain: our server's sync log names alice's mailboxes.
	ls -l "$OURS/conf/sync" || true
	cat "$OURS"/conf/sync/log* | head -n 30
	grep -Eq 'user\.alice' "$OURS"/conf/sync/log*
}

@test "hop 2: our rolling sync_client replicates alice to the Cyrus replica" {
	our_roll hop2-full
	grep -q '^C: APPLY MAILBOX' "$D/rec/hop2-full.txt"
	grep -q '^C: EXIT' "$D/rec/hop2-full.txt"
	same_dump full
}

@test "an append and a flag change on the master reach the Cyrus replica" {
	cyrus_pair act "$D" master alice append INBOX 3 1500 >/dev/null
	cyrus_pair act "$D" master alice flag INBOX 1:4 '\Flagged,$Cascade' >/dev/null
	run cyrus_pair sync "$D" --record "$D/rec/hop1-roll.txt" -R -1
	echo "$output" | tail -n 10
	[[ $status -eq 0 ]] || { ia_server_log; false; }
	ia_compare_user alice || { ia_server_log; false; }
	grep -Eq 'user\.alice' "$OURS"/conf/sync/log*
	our_roll hop2-roll
	grep -q '^C: APPLY MESSAGE' "$D/rec/hop2-roll.txt"
	same_dump roll
	grep -q 'Cascade' "$D/rec/roll.replica.dump"
}
