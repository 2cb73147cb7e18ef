#!/usr/bin/env bats
# Our client (sync-plan | sync-send) against our sync_server listening on
# TCP: STARTTLS (the server offers PLAIN only under TLS, the client
# verifies the server's certificate) with AUTHENTICATE PLAIN, and
# COMPRESS DEFLATE (-z).  The replica must end equal to the master.

load ../helpers
load interop

setup_file() {
	D=$(sp_tmpdir)
	export D
	echo "$D" >"$BATS_FILE_TMPDIR/dir"
	ia_tls_cert
	mkdir -p "$D/m" "$D/r"
	export M=$D/m/imapd.conf R=$D/r/imapd.conf
	sp_conf "$M" syncpipe-master
	sp_conf "$R" syncpipe-replica
	ia_tls_only "$R"
	sp_sasluser "$D/r/conf/sasldb2" syncpipe-replica repluser replpass
	PORT=$(sp_freeport)
	export TARGET=127.0.0.1:$PORT
	cat >>"$M" <<-EOF
	sync_host: $TARGET
	sync_authname: repluser
	sync_password: replpass
	tls_client_ca_file: $D/cert.pem
	EOF
	sp_server_start "$R" "$PORT"
}

teardown_file() {
	ia_teardown r
}

setup() {
	ia_tools
}

deliver() {
	printf 'Subject: %s\r\n\r\n%s\r\n' "$2" "$2" |
	    "$STORE" -C "$M" deliver "$1" >/dev/null
}

same() {
	diff <("$STORE" -C "$M" dump alice) <("$STORE" -C "$R" dump alice)
	"$PLAN" -C "$M" -u alice >"$D/plan2"
	! grep -q '^APPLY' "$D/plan2"
}

@test "STARTTLS + PLAIN: a user replicates, the trace shows TLS first" {
	"$STORE" -C "$M" create user.alice
	"$STORE" -C "$M" create user.alice.Sent
	for i in 1 2 3 4 5; do
		deliver user.alice "message $i"
	done
	"$STORE" -C "$M" flag user.alice 2 '\Flagged' >/dev/null
	"$STORE" -C "$M" sub alice user.alice.Sent
	"$PLAN" -C "$M" -u alice >"$D/plan"
	run "$SEND" -v -v -C "$M" <"$D/plan"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"C STARTTLS"*"S OK Begin TLS"*"C AUTHENTICATE"*"S OK Success (tls protection)"* ]]
	# The password never appears in the trace.
	[[ $output != *"replpass"* ]]
	same
}

@test "a wrong CA: the certificate is refused" {
	sed "s|^tls_client_ca_file:.*|tls_client_ca_file: /etc/ssl/certs/ca-certificates.crt|" \
	    "$M" >"$D/m/bad.conf"
	run "$SEND" -C "$D/m/bad.conf" </dev/null
	echo "$output"
	[ "$status" -ne 0 ]
	[[ $output == *"TLS"* || $output == *"certificate"* ]]
}

@test "-z: COMPRESS DEFLATE (no TLS), then an append replicates" {
	# The same replica store, served without TLS, where the server
	# offers COMPRESS.
	mkdir -p "$D/z"
	sed -e 's/^allowplaintext: no$/allowplaintext: yes/' \
	    -e '/^tls_server_/d' "$R" >"$D/z/imapd.conf"
	zport=$(sp_freeport)
	sp_server_start "$D/z/imapd.conf" "$zport"
	sed "s|^sync_host:.*|sync_host: 127.0.0.1:$zport|" "$M" >"$D/m/z.conf"
	for i in 6 7 8; do
		deliver user.alice "message $i"
	done
	deliver user.alice.Sent "sent 1"
	"$PLAN" -C "$D/m/z.conf" -u alice >"$D/plan"
	run "$SEND" -z -v -v -C "$D/m/z.conf" <"$D/plan"
	sp_server_stop "$D/z/imapd.conf"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"C COMPRESS DEFLATE"*"C APPLY MAILBOX"* ]]
	same
}
