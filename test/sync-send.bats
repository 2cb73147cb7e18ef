#!/usr/bin/env bats
# sync-send over a UNIX socket (-S /path): a small relay accepts on the
# socket and runs our sync_server on each connection's stdio, as inetd or
# a systemd socket would (a UNIX socket peer is pre-authenticated).

load helpers

setup() {
	ROOT=$(sp_project_root)
	T=$(sp_tmpdir)
	mkdir -p "$T/m" "$T/r"
	sp_conf "$T/m/imapd.conf"
	sp_conf "$T/r/imapd.conf"
	M=$T/m/imapd.conf
	R=$T/r/imapd.conf
	STORE=$ROOT/cmd/sync-store/sync-store
	PLAN=$ROOT/cmd/sync-plan/sync-plan
	SEND=$ROOT/cmd/sync-send/sync-send
	SOCK=$T/csync.sock
	"$STORE" -C "$M" create user.alice
	"$STORE" -C "$M" create user.alice.Sent
	for i in 1 2 3 4 5; do
		printf 'From: a@example.com\r\nSubject: %s\r\n\r\nbody %s\r\n' \
		    "$i" "$i" | "$STORE" -C "$M" deliver user.alice \
		    --flags '\Seen' >/dev/null
	done
	printf 'Subject: s\r\n\r\nsent\r\n' |
	    "$STORE" -C "$M" deliver user.alice.Sent >/dev/null
	"$STORE" -C "$M" sub alice user.alice.Sent
	"$STORE" -C "$M" quota user.alice 1000
}

teardown() {
	if [[ -s $T/relay.pid ]]; then
		kill "$(<"$T/relay.pid")" 2>/dev/null || true
	fi
	sp_rmtmp "$T"
}

# relay_start: listen on $SOCK; each connection gets its own sync_server
# -C $R on its stdin and stdout; one line per connection in relay.log.
relay_start() {
	python3 - "$SOCK" "$T/relay.log" "$ROOT/cmd/sync_server/sync_server" \
	    -C "$R" >"$T/relay.out" 2>&1 3>&- <<-'EOF' &
	import os, signal, socket, subprocess, sys
	path, log, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
	signal.signal(signal.SIGCHLD, signal.SIG_IGN)
	s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
	s.bind(path)
	s.listen(8)
	n = 0
	while True:
	    c, _ = s.accept()
	    n += 1
	    with open(log, "a") as f:
	        f.write("connection %d\n" % n)
	    subprocess.Popen(cmd, stdin=c.fileno(), stdout=c.fileno())
	    c.close()
	EOF
	echo $! >"$T/relay.pid"
	local i
	for ((i = 0; i < 300; i++)); do
		[[ -S $SOCK ]] && return 0
		sleep 0.1
	done
	cat "$T/relay.out" >&2
	return 1
}

@test "a user replicated over a UNIX socket: both stores dump the same" {
	relay_start
	"$PLAN" -C "$M" -S "$SOCK" -u alice >"$T/plan"
	grep -q '^APPLY MAILBOX %(UNIQUEID [^ ]* MBOXNAME user.alice ' "$T/plan"
	run "$SEND" -v -C "$M" -S "$SOCK" -f "$T/plan"
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q '^OK APPLY MAILBOX user.alice.Sent$' <<<"$output"
	diff <("$STORE" -C "$M" dump alice) <("$STORE" -C "$R" dump alice)
	[ "$("$STORE" -C "$R" dump alice | grep -c '^record ')" -eq 6 ]
	# Both tools went through the socket: one connection each.
	[ "$(grep -c '^connection' "$T/relay.log")" -eq 2 ]
	# A second plan over the socket finds nothing to do.
	"$PLAN" -C "$M" -S "$SOCK" -u alice >"$T/plan2"
	[ "$(grep -c '^APPLY' "$T/plan2")" -eq 0 ]
}

@test "an incremental change over a UNIX socket, plan piped to sync-send" {
	relay_start
	"$PLAN" -C "$M" -S "$SOCK" -u alice |
	    "$SEND" -C "$M" -S "$SOCK" >/dev/null
	"$STORE" -C "$M" flag user.alice 3 '\Flagged' >/dev/null
	printf 'Subject: n\r\n\r\nnew\r\n' |
	    "$STORE" -C "$M" deliver user.alice.Sent >/dev/null
	run bash -c "'$PLAN' -C '$M' -S '$SOCK' -u alice |
	    '$SEND' -v -C '$M' -S '$SOCK'"
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q '^OK APPLY MAILBOX user.alice$' <<<"$output"
	grep -q '^OK APPLY MAILBOX user.alice.Sent$' <<<"$output"
	diff <("$STORE" -C "$M" dump alice) <("$STORE" -C "$R" dump alice)
	"$STORE" -C "$R" dump alice | grep '^record user.alice 3 ' |
	    grep -qF '\Flagged'
}

@test "a UNIX socket nobody listens on: exit 69, nothing applied" {
	printf '%%syncpipe-plan 1\nAPPLY SUB %%(USERID alice MBOXNAME user.alice.Sent)\n%%end\n' \
	    >"$T/plan"
	run "$SEND" -C "$M" -S "$T/nobody.sock" -f "$T/plan"
	echo "$output"
	[ "$status" -eq 69 ]
	[ ! -e "$T/r/conf/syncpipe.db" ] ||
	    [ "$("$STORE" -C "$R" dump alice | grep -c '^sub ')" -eq 0 ]
}
