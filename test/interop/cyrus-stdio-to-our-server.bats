#!/usr/bin/env bats
# A real Cyrus 3.6 sync_client replicates into our sync_server run once
# per connection with the connection on its standard input and output,
# as inetd(8) or a systemd socket with Accept=yes start it (here
# systemd-socket-activate --inetd, which does what either does).
#
# Over TCP the peer is not trusted: the client must AUTHENTICATE (SASL
# PLAIN as repluser, as Cyrus's sync_client does with sync_authname and
# sync_password), and may then COMPRESS.  Over a UNIX-domain socket
# (sync_host: /path) the peer is pre-authenticated, as with Cyrus's own
# sync_server: no SASL, and no capabilities beyond "* OK", so the client
# sends sieve scripts as APPLY SIEVE rather than in a #sieve mailbox.

load ../helpers
load interop

setup_file() {
	export CYRUS_PAIR_SYNC_TIMEOUT=${CYRUS_PAIR_SYNC_TIMEOUT:-120}
	if ! command -v systemd-socket-activate >/dev/null; then
		echo "systemd-socket-activate is needed" >&2
		return 1
	fi
	ia_workdir
	mkdir -p "$D/rec" "$D/ours" "$D/unix"

	# TCP: one sync_server per connection, stdin/stdout the socket.
	ia_our_conf
	inetd_start "$OURS" "127.0.0.1:$PORT"

	# UNIX-domain socket, reachable by the cyrus user sync_client runs as.
	export SOCK=$D/csync.sock
	sp_conf "$D/unix/imapd.conf" syncpipe-test
	inetd_start "$D/unix" "$SOCK"
	chmod 666 "$SOCK"

	ia_up "$D" --only master --sync-target "127.0.0.1:$PORT"
	ia_populate cyrus_pair populate "$D" alice 50 --seed 5
}

teardown_file() {
	ia_dir || return 0
	inetd_stop "$D/ours"
	inetd_stop "$D/unix"
	ia_teardown
}

# inetd_start DIR ADDR: systemd-socket-activate listening on ADDR
# (host:port or a socket path), starting sync_server -D -C DIR/imapd.conf
# for each connection on its stdin/stdout; its log and the servers'
# (-D: to stderr) go to DIR/sync_server.log, its pid to DIR/inetd.pid.
inetd_start() {
	local dir=$1 addr=$2 i
	systemd-socket-activate --accept --inetd --listen="$addr" -- \
	    "$(sp_sync_server_bin)" -D -C "$dir/imapd.conf" \
	    >"$dir/sync_server.log" 2>&1 </dev/null 3>&- &
	echo $! >"$dir/inetd.pid"
	for ((i = 0; i < 100; i++)); do
		grep -q '^Listening on ' "$dir/sync_server.log" && return 0
		kill -0 "$(<"$dir/inetd.pid")" 2>/dev/null || break
		sleep 0.1
	done
	echo "systemd-socket-activate did not start listening on $addr:" >&2
	cat "$dir/sync_server.log" >&2
	return 1
}

# inetd_stop DIR: stop what inetd_start DIR started, and any sync_server
# it spawned that is still running (there should be none).
inetd_stop() {
	local dir=$1 pid
	[[ -s $dir/inetd.pid ]] || return 0
	pid=$(<"$dir/inetd.pid")
	rm -f "$dir/inetd.pid"
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	sed -n 's/^Spawned .* as PID \([0-9]*\)\.$/\1/p' \
	    "$dir/sync_server.log" 2>/dev/null | while read -r pid; do
		if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
		    grep -qF -- "-C $dir/imapd.conf"; then
			kill -TERM "$pid" 2>/dev/null || true
		fi
	done
}

@test "stdio over TCP: the peer must authenticate (banner offers SASL, GET refused)" {
	run banner_then_get "$PORT"
	echo "$output"
	[[ $status -eq 0 ]]
	grep -Eq '^\* SASL .*PLAIN' <<<"$output"
	grep -qx '\* COMPRESS DEFLATE' <<<"$output"
	grep -qx '\* SIEVE-MAILBOX' <<<"$output"
	grep -q '^\* OK .*syncpipe sync server' <<<"$output"
	[[ ${lines[-2]} == 'NO Please authenticate first' ]]
	[[ ${lines[-1]} == OK* ]]
	# Each connection is its own process, told from stdin it is TCP.
	grep -Eq 'accepted connection \[127\.0\.0\.1\]:[0-9]+$' "$OURS/sync_server.log"
	! grep -q 'pre-authenticated' "$OURS/sync_server.log"
}

@test "stdio over TCP: Cyrus sync_client -u alice authenticates with PLAIN and succeeds" {
	run cyrus_pair sync "$D" --record "$D/rec/tcp1.txt" -u alice
	echo "$output" | tail -n 10
	[[ $status -eq 0 ]] || { ia_server_log; ia_master_syslog; false; }
	grep -q '^S: \* SASL .*PLAIN' "$D/rec/tcp1.txt"
	grep -q '^C: AUTHENTICATE PLAIN ' "$D/rec/tcp1.txt"
	# COMPRESS works on stdio as in listen mode.
	grep -q '^C: COMPRESS DEFLATE' "$D/rec/tcp1.txt"
	grep -q '^C: APPLY CAPABILITIES (SIEVE-MAILBOX)' "$D/rec/tcp1.txt"
	grep -q '^C: APPLY MAILBOX' "$D/rec/tcp1.txt"
	grep -q '^C: EXIT' "$D/rec/tcp1.txt"
	grep -Eq 'login: \[127\.0\.0\.1\]:[0-9]+ repluser PLAIN ' \
	    "$OURS/sync_server.log" || { ia_server_log; false; }
}

@test "stdio over TCP: our server describes alice as the Cyrus master does" {
	ia_compare_user alice || { ia_server_log; false; }
	# INBOX, #sieve, Archive, Archive.2023, Drafts, Sent
	[[ $(wc -l <"$D/cmp/mboxes.alice") -ge 6 ]]
	grep -q '^QUOTA {' "$D/cmp/alice.ours"
	grep -q '^LSUB \[' "$D/cmp/alice.ours"
	mapfile -t mb <"$D/cmp/mboxes.alice"
	ia_bodies "${mb[@]}"
	grep -Eq '^user\.alice: [1-9][0-9]* bodies checked$' "$D/cmp/bodies.ours"
}

@test "stdio over TCP: a second sync_client -u alice sends only GETs" {
	n=$(grep -c '^Spawned ' "$OURS/sync_server.log")
	run cyrus_pair sync "$D" --record "$D/rec/tcp2.txt" -u alice
	echo "$output" | tail -n 10
	[[ $status -eq 0 ]] || { ia_server_log; false; }
	grep -q '^C: AUTHENTICATE PLAIN ' "$D/rec/tcp2.txt"
	grep -q '^C: GET USER alice' "$D/rec/tcp2.txt"
	ia_nothing_sent "$D/rec/tcp2.txt"
	# New processes served it (the harness first checks the port is
	# open: one more connection), and they exited 0.
	(($(grep -c '^Spawned ' "$OURS/sync_server.log") >= n + 1))
	run grep -c '^Child [0-9]* died with code 0$' "$OURS/sync_server.log"
	((output >= n + 1))
}

@test "stdio over a UNIX socket: pre-authenticated, Cyrus sync_client -u alice succeeds" {
	run cyrus_pair sync "$D" --target "$SOCK" -v -u alice
	echo "$output" | tail -n 10
	[[ $status -eq 0 ]] || { OURS=$D/unix ia_server_log; ia_master_syslog; false; }
	grep -q 'accepted connection \[unix socket\] (pre-authenticated)' \
	    "$D/unix/sync_server.log"
	# No SASL: nothing was offered, nothing was attempted.
	! grep -q 'login: ' "$D/unix/sync_server.log"
	! grep -q 'AUTHENTICATE' "$D/unix/sync_server.log"
	grep -q ': Apply MAILBOX' "$D/unix/sync_server.log"
	# Without SIEVE-MAILBOX on offer, the script came as APPLY SIEVE.
	grep -q ': Apply SIEVE' "$D/unix/sync_server.log"
}

@test "stdio over a UNIX socket: mailboxes, quota and subscriptions as on the master; then nothing to send" {
	# Every mailbox but #sieve (the master keeps its scripts there; this
	# replica got them as files, as a Cyrus replica on a UNIX socket
	# would), from the master's list in $D/cmp (the TCP comparison).
	grep -v '\.#sieve$' "$D/cmp/mboxes.alice" >"$D/unix/mboxes"
	[[ $(wc -l <"$D/unix/mboxes") -ge 5 ]]
	cmds=('GET QUOTA user.alice' 'GET META alice')
	mapfile -t -O 2 cmds < <(sed 's/^/GET FULLMAILBOX /' "$D/unix/mboxes")
	ia_master --sort "${cmds[@]}" >"$D/unix/cmp.master"
	# Ours lists the sieve scripts in GET META too: leave them out.
	csync --sort "$SOCK" 0 "${cmds[@]}" | tee "$D/unix/cmp.ours.all" |
	    awk '/^SIEVE \{$/ { skip = 1 } !skip { print } /^\}$/ { skip = 0 }' \
	    >"$D/unix/cmp.ours"
	grep -q '^LSUB \[' "$D/unix/cmp.master"
	ia_diff "GET QUOTA/META/FULLMAILBOX over a UNIX socket" \
	    "$D/unix/cmp.master" "$D/unix/cmp.ours"
	# The script arrived.
	grep -q '"FILENAME": "main.script"' "$D/unix/cmp.ours.all"
	# Bodies, through the UNIX socket (the master's from the TCP test).
	mapfile -t mb <"$D/unix/mboxes"
	grep -v '\.#sieve: ' "$D/cmp/bodies.master" >"$D/unix/bodies.master"
	csync --verify-bodies "$SOCK" 0 "${mb[@]}" >"$D/unix/bodies.ours"
	ia_diff "bodies" "$D/unix/bodies.master" "$D/unix/bodies.ours"

	# A second run: one GET USER, no APPLY.
	n=$(wc -l <"$D/unix/sync_server.log")
	run cyrus_pair sync "$D" --target "$SOCK" -u alice
	[[ $status -eq 0 ]] || { OURS=$D/unix ia_server_log; false; }
	tail -n +"$((n + 1))" "$D/unix/sync_server.log" >"$D/unix/second.log"
	cat "$D/unix/second.log"
	grep -q ': Get USER' "$D/unix/second.log"
	! grep -Eq ': (Apply|Restore) ' "$D/unix/second.log"
}
