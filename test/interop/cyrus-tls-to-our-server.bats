#!/usr/bin/env bats
# A real Cyrus 3.6 sync_client against our sync_server over STARTTLS
# (allowplaintext: no, so PLAIN is only offered under TLS, and COMPRESS
# is not offered under TLS), and over plain TCP with COMPRESS DEFLATE.
# In both cases a full user sync, and then rolling changes (append,
# flags, expunge, seen, rename) replicated by one sync_client -R pass,
# must leave our server describing the user as the Cyrus master does,
# and a following run must send nothing.

load ../helpers
load interop

setup_file() {
	export CYRUS_PAIR_SYNC_TIMEOUT=${CYRUS_PAIR_SYNC_TIMEOUT:-120}
	ia_workdir
	mkdir -p "$D/rec" "$D/tls" "$D/plain"
	ia_tls_cert

	# Our TLS-only server.
	TLS_PORT=$(sp_freeport)
	export TLS_PORT
	ia_server_conf "$D/tls"
	ia_tls_only "$D/tls/imapd.conf"
	sp_server_start "$D/tls/imapd.conf" "$TLS_PORT"

	# Our plain TCP server (COMPRESS DEFLATE on offer, the default).
	PLAIN_PORT=$(sp_freeport)
	export PLAIN_PORT
	ia_server_conf "$D/plain"
	sp_server_start "$D/plain/imapd.conf" "$PLAIN_PORT"

	# Cyrus 3.6.1's sync_client does STARTTLS whenever the server offers
	# it (and no plaintext mechanism is on offer before) and does not
	# insist on a verified certificate (it only logs "verify error");
	# tls_client_ca_file is given anyway, as a deployment would.
	cat >"$D/master-tls.conf" <<-EOF
	tls_client_ca_file: $D/cert.pem
	EOF
	ia_up "$D" --only master --sync-target "127.0.0.1:$TLS_PORT" \
	    --master-conf "$D/master-tls.conf"
	ia_populate cyrus_pair populate "$D" alice 30 --seed 11
}

teardown_file() {
	ia_teardown tls plain
}

# banner PORT [STARTTLS]: our server's banner lines (and, with STARTTLS,
# the banner after STARTTLS), one a line.
banner() {
	python3 - "$@" <<-'EOF'
	import socket, ssl, sys
	s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
	f = s.makefile("rb")
	def lines():
	    while True:
	        l = f.readline().decode().rstrip("\r\n")
	        print(l)
	        if not l.startswith("* ") or l.startswith("* OK"):
	            return
	lines()
	if len(sys.argv) > 2:
	    s.sendall(b"STARTTLS\r\n")
	    print(f.readline().decode().rstrip("\r\n"))
	    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
	    ctx.check_hostname = False
	    ctx.verify_mode = ssl.CERT_NONE
	    s = ctx.wrap_socket(s)
	    f = s.makefile("rb")
	    print("[tls]")
	    lines()
	EOF
}

# sent_nothing OUTPUT: the protocol log of a sync_client -v -v -u alice
# shows its GET USER alice, and no APPLY (but APPLY CAPABILITIES),
# RESTORE or RESERVE.
sent_nothing() {
	local extra
	grep -q 'GET USER alice' <<<"$1" || return 1
	extra=$(printf '%s\n' "$1" | grep -E '(APPLY|RESTORE|RESERVE) ' |
	    grep -v 'APPLY CAPABILITIES' || true)
	[[ -z $extra ]] || { printf '%s\n' "$extra" | cut -c1-200; false; }
}

@test "TLS-only server: no mechanism before STARTTLS, PLAIN after, no COMPRESS under TLS" {
	run banner "$TLS_PORT" STARTTLS
	echo "$output"
	[[ $status -eq 0 ]]
	[[ ${lines[0]} == '* STARTTLS' ]]
	# Before TLS: no usable (plaintext) mechanism.
	before=$(printf '%s\n' "$output" | sed '/^\[tls\]$/,$d')
	! grep -Eq '^\* SASL.*(PLAIN|LOGIN)' <<<"$before"
	after=$(printf '%s\n' "$output" | sed '1,/^\[tls\]$/d')
	grep -Eq '^\* SASL .*PLAIN' <<<"$after"
	! grep -q 'COMPRESS' <<<"$after"
	! grep -q 'STARTTLS' <<<"$after"
}

@test "TLS: Cyrus sync_client -u alice does STARTTLS, then PLAIN, and succeeds" {
	run cyrus_pair sync "$D" --record "$D/rec/tls1.txt" -v -v -u alice
	printf '%s\n' "$output" | tail -n 15 | cut -c1-200
	if [[ $status -ne 0 ]]; then
		OURS=$D/tls ia_server_log
		ia_master_syslog 20
		false
	fi
	# The plain part of the conversation: banner without mechanisms,
	# then the client's STARTTLS; no COMPRESS before or after (the rest
	# of the recording is ciphertext).
	grep -q '^S: \* STARTTLS' "$D/rec/tls1.txt"
	grep -q '^C: STARTTLS' "$D/rec/tls1.txt"
	grep -q '^S: OK' "$D/rec/tls1.txt"
	! grep -q '^C: AUTHENTICATE' "$D/rec/tls1.txt"
	! grep -q 'COMPRESS DEFLATE' "$D/rec/tls1.txt"
	# sync_client's own protocol log (after AUTHENTICATE) shows the data.
	grep -q 'APPLY MAILBOX' <<<"$output"
	# The authentication was PLAIN under TLS, by repluser (our log).
	grep -Eq 'login: .* repluser PLAIN\+TLS ' "$D/tls/sync_server.log" ||
	    { OURS=$D/tls ia_server_log; false; }
	# Cyrus 3.6.1's sync_client logs "verify error:num=18:self-signed
	# certificate" for our certificate, with or without
	# tls_client_ca_file, and carries on: it does not enforce
	# verification, so nothing more is needed on the master.
}

@test "TLS: our server now describes alice as the Cyrus master does" {
	PORT=$TLS_PORT OURS_CSYNC=csync_tls ia_compare_user alice
	[[ $(wc -l <"$D/cmp/mboxes.alice") -ge 6 ]]
	mapfile -t mb <"$D/cmp/mboxes.alice"
	PORT=$TLS_PORT OURS_CSYNC=csync_tls ia_bodies "${mb[@]}"
}

@test "TLS: a second sync_client -u alice sends nothing" {
	run cyrus_pair sync "$D" --record "$D/rec/tls2.txt" -v -v -u alice
	printf '%s\n' "$output" | tail -n 15 | cut -c1-200
	[[ $status -eq 0 ]]
	grep -q '^C: STARTTLS' "$D/rec/tls2.txt"
	# The recording is ciphertext after STARTTLS: judge from the client's
	# protocol log instead.
	sent_nothing "$output"
}

@test "plain TCP: Cyrus sync_client compresses (COMPRESS DEFLATE) and succeeds" {
	run banner "$PLAIN_PORT"
	echo "$output"
	grep -qx '\* COMPRESS DEFLATE' <<<"$output"
	run cyrus_pair sync "$D" --target "127.0.0.1:$PLAIN_PORT" \
	    --record "$D/rec/plain1.txt" -u alice
	echo "$output" | tail -n 10
	[[ $status -eq 0 ]] || { OURS=$D/plain ia_server_log; false; }
	grep -q '^S: \* COMPRESS DEFLATE' "$D/rec/plain1.txt"
	grep -q '^C: COMPRESS DEFLATE' "$D/rec/plain1.txt"
	grep -q '^S: OK' "$D/rec/plain1.txt"
	grep -q 'DEFLATE compression starts here' "$D/rec/plain1.txt"
	# What follows COMPRESS was understood by both ends.
	sed '1,/^C: COMPRESS DEFLATE/d' "$D/rec/plain1.txt" |
	    grep -q '^C: APPLY MAILBOX'
	grep -q '^C: EXIT' "$D/rec/plain1.txt"
}

@test "plain TCP: both sides agree, and a second run sends nothing" {
	PORT=$PLAIN_PORT ia_compare_user alice
	mapfile -t mb <"$D/cmp/mboxes.alice"
	PORT=$PLAIN_PORT ia_bodies "${mb[@]}"
	run cyrus_pair sync "$D" --target "127.0.0.1:$PLAIN_PORT" \
	    --record "$D/rec/plain2.txt" -u alice
	[[ $status -eq 0 ]]
	grep -q '^C: COMPRESS DEFLATE' "$D/rec/plain2.txt"
	ia_nothing_sent "$D/rec/plain2.txt"
}

# Rolling changes, replicated by one sync_client -R pass to each of our
# servers: over STARTTLS + PLAIN (the master's own sync log, -R -1), and
# over plain TCP with COMPRESS (a copy of that log, -R -f).

@test "rolling over TLS and over COMPRESS: append, flag, expunge, seen, rename" {
	{
		cyrus_pair act "$D" master alice append INBOX 2 1500 &&
		cyrus_pair act "$D" master alice flag INBOX 1:3 '\Flagged,$Important' &&
		cyrus_pair act "$D" master alice expunge INBOX 4 &&
		cyrus_pair act "$D" master alice seen INBOX '1:*' &&
		cyrus_pair act "$D" master alice rename Archive/2023 Archive/Y2023
	} >"$D/act.log" 2>&1 || { tail -n 5 "$D/act.log"; false; }
	log=$D/master/conf/sync/log
	cat "$log"
	grep -q '^APPEND user.alice' "$log"
	grep -q '^RENAME user.alice.Archive.2023 user.alice.Archive.Y2023' "$log"
	# sync_client opens the log read-write: the copy must be the cyrus
	# user's.
	cp "$log" "$D/rec/roll.synclog"
	chown cyrus "$D/rec/roll.synclog"

	run cyrus_pair sync "$D" --record "$D/rec/tls-roll.txt" -v -v -R -1
	printf '%s\n' "$output" | tail -n 10 | cut -c1-200
	if [[ $status -ne 0 ]]; then
		OURS=$D/tls ia_server_log
		ia_master_syslog 20
		false
	fi
	grep -q '^C: STARTTLS' "$D/rec/tls-roll.txt"
	! grep -q 'COMPRESS DEFLATE' "$D/rec/tls-roll.txt"
	grep -q 'APPLY MESSAGE' <<<"$output"
	grep -q 'APPLY RENAME' <<<"$output"

	run cyrus_pair sync "$D" --target "127.0.0.1:$PLAIN_PORT" \
	    --record "$D/rec/plain-roll.txt" -R -f "$D/rec/roll.synclog"
	printf '%s\n' "$output" | tail -n 10 | cut -c1-200
	[[ $status -eq 0 ]] || { OURS=$D/plain ia_server_log; false; }
	sed '1,/^C: COMPRESS DEFLATE/d' "$D/rec/plain-roll.txt" >"$D/rec/plain-roll.z"
	grep -q '^C: APPLY MESSAGE' "$D/rec/plain-roll.z"
	grep -q '^C: APPLY RENAME ' "$D/rec/plain-roll.z"
	grep -q '^C: EXIT' "$D/rec/plain-roll.z"
}

@test "rolling over TLS: our server describes alice as the master does; -u sends nothing" {
	PORT=$TLS_PORT OURS_CSYNC=csync_tls ia_compare_user alice ||
	    { OURS=$D/tls ia_server_log; false; }
	grep -qx 'user.alice.Archive.Y2023' "$D/cmp/mboxes.alice"
	! grep -qx 'user.alice.Archive.2023' "$D/cmp/mboxes.alice"
	# The expunged record is kept, flagged \Expunged (delayed expunge).
	ia_mailbox "$D/cmp/alice.ours" user.alice | grep -q 'Expunged'
	mapfile -t mb <"$D/cmp/mboxes.alice"
	PORT=$TLS_PORT OURS_CSYNC=csync_tls ia_bodies "${mb[@]}"
	run cyrus_pair sync "$D" --record "$D/rec/tls-roll2.txt" -v -v -u alice
	[[ $status -eq 0 ]]
	grep -q '^C: STARTTLS' "$D/rec/tls-roll2.txt"
	sent_nothing "$output"
}

@test "rolling over COMPRESS: our server describes alice as the master does; -u sends nothing" {
	PORT=$PLAIN_PORT ia_compare_user alice ||
	    { OURS=$D/plain ia_server_log; false; }
	grep -qx 'user.alice.Archive.Y2023' "$D/cmp/mboxes.alice"
	mapfile -t mb <"$D/cmp/mboxes.alice"
	PORT=$PLAIN_PORT ia_bodies "${mb[@]}"
	run cyrus_pair sync "$D" --target "127.0.0.1:$PLAIN_PORT" \
	    --record "$D/rec/plain-roll2.txt" -u alice
	[[ $status -eq 0 ]]
	grep -q '^C: COMPRESS DEFLATE' "$D/rec/plain-roll2.txt"
	ia_nothing_sent "$D/rec/plain-roll2.txt"
}
