#!/usr/bin/env bats
# A real Cyrus 3.6 sync_client replicates a populated user into our
# sync_server; a second run must find nothing to do, and both servers must
# then describe the user (GET USER, GET QUOTA, GET META), every mailbox of
# the user (GET FULLMAILBOX) and every body identically over csync.

load ../helpers

setup_file() {
	export CYRUS_PAIR_SYNC_TIMEOUT=${CYRUS_PAIR_SYNC_TIMEOUT:-300}
	if ((EUID != 0)); then
		echo "the Cyrus peers need root (cyrus-pair up)" >&2
		return 1
	fi
	D=$(sp_tmpdir)
	export D
	echo "$D" >"$BATS_FILE_TMPDIR/dir"
	PORT=$(sp_freeport)
	export PORT
	export OURS=$D/ours
	mkdir -p "$OURS"
	sp_conf "$OURS/imapd.conf" syncpipe-test
	sp_sasluser "$OURS/conf/sasldb2" syncpipe-test repluser replpass
	sp_server_start "$OURS/imapd.conf" "$PORT"
	cyrus_pair up "$D" --only master --sync-target "127.0.0.1:$PORT" >"$D/up.log" 2>&1 ||
	    { cat "$D/up.log" >&2; return 1; }
	cyrus_pair populate "$D" alice 200 >"$D/populate.log" 2>&1 ||
	    { cat "$D/populate.log" >&2; return 1; }
	rm -f "$D/master/conf/sync/log"
}

teardown_file() {
	[[ -n ${D:-} ]] || D=$(cat "$BATS_FILE_TMPDIR/dir" 2>/dev/null) || true
	[[ -n ${D:-} ]] || return 0
	cyrus_pair down "$D" >/dev/null 2>&1 || true
	sp_server_stop "$D/ours/imapd.conf"
	sp_rmtmp "$D"
}

# Show what a failed test needs: the tail of our server's log.
server_log() {
	echo "--- our sync_server log (tail)"
	tail -n 30 "$OURS/sync_server.log"
}

@test "Cyrus sync_client -u alice into our sync_server succeeds" {
	run cyrus_pair sync "$D" --record "$D/rec1.txt" -u alice
	echo "$output"
	[[ $status -eq 0 ]] || { server_log; false; }
	# Something was actually replicated, and the conversation finished.
	grep -q '^C: GET USER alice' "$D/rec1.txt"
	grep -q '^C: APPLY MAILBOX' "$D/rec1.txt"
	grep -q '^C: EXIT' "$D/rec1.txt"
}

@test "a second sync_client -u alice finds nothing to apply" {
	run cyrus_pair sync "$D" --record "$D/rec2.txt" -u alice
	echo "$output"
	[[ $status -eq 0 ]] || { server_log; false; }
	grep -q '^C: GET USER alice' "$D/rec2.txt"
	grep -q '^C: EXIT' "$D/rec2.txt"
	# Any APPLY or RESTORE other than the capability handshake means
	# our CRCs, modseqs or UIDs differ from the master's.
	run grep -E '^C: (APPLY|RESTORE) ' "$D/rec2.txt"
	extra=$(printf '%s\n' "$output" | grep -v '^C: APPLY CAPABILITIES ' || true)
	if [[ -n $extra ]]; then
		echo "unexpected commands in the second run:"
		printf '%s\n' "$extra" | cut -c1-300
		false
	fi
}

@test "GET USER alice: our server answers as the Cyrus master does" {
	. "$D/ports.env"
	csync --sort --user "$REPL_USER" --password "$REPL_PASS" \
	    127.0.0.1 "$MASTER_CSYNC_PORT" 'GET USER alice' >"$D/user.master"
	csync --sort --user repluser --password replpass \
	    127.0.0.1 "$PORT" 'GET USER alice' >"$D/user.ours"
	grep -q '^MAILBOX ' "$D/user.master"
	diff -u "$D/user.master" "$D/user.ours"
}

@test "GET QUOTA user.alice and GET META alice: our server answers as the Cyrus master does" {
	. "$D/ports.env"
	csync --sort --user "$REPL_USER" --password "$REPL_PASS" \
	    127.0.0.1 "$MASTER_CSYNC_PORT" 'GET QUOTA user.alice' \
	    'GET META alice' >"$D/meta.master"
	csync --sort --user repluser --password replpass \
	    127.0.0.1 "$PORT" 'GET QUOTA user.alice' 'GET META alice' \
	    >"$D/meta.ours"
	# populate sets a STORAGE limit and subscribes to three folders.
	grep -q '^ "STORAGE": "[1-9]' "$D/meta.master"
	grep -q '^LSUB \[' "$D/meta.master"
	grep -q 'user.alice.Sent' "$D/meta.master"
	# Compared as is, MODSEQ included: a full sync sends the quota
	# root's modseq with APPLY QUOTA, and nothing has changed it on the
	# master since (later usage changes would: see ia_norm in
	# interop.bash).
	diff -u "$D/meta.master" "$D/meta.ours"
}

# The master's list of alice's mailboxes (internal names), one a line.
master_mboxes() {
	. "$D/ports.env"
	csync --mboxnames --user "$REPL_USER" --password "$REPL_PASS" \
	    127.0.0.1 "$MASTER_CSYNC_PORT" 'GET USER alice'
}

@test "GET FULLMAILBOX of every mailbox of alice: equal on both sides" {
	. "$D/ports.env"
	master_mboxes >"$D/mboxes"
	cat "$D/mboxes"
	# INBOX, #sieve, Archive, Archive.2023, Drafts, Sent
	[[ $(wc -l <"$D/mboxes") -ge 6 ]]
	# One connection per side, one GET FULLMAILBOX per mailbox.
	mapfile -t cmds < <(sed 's/^/GET FULLMAILBOX /' "$D/mboxes")
	csync --user "$REPL_USER" --password "$REPL_PASS" \
	    127.0.0.1 "$MASTER_CSYNC_PORT" "${cmds[@]}" >"$D/full.master"
	[[ $(grep -c '^MAILBOX ' "$D/full.master") -eq ${#cmds[@]} ]]
	csync --user repluser --password replpass \
	    127.0.0.1 "$PORT" "${cmds[@]}" >"$D/full.ours" || true
	diff -u "$D/full.master" "$D/full.ours" | head -n 80
	cmp -s "$D/full.master" "$D/full.ours"
}

@test "every live message body on our server has the master's GUID and size" {
	. "$D/ports.env"
	mapfile -t mboxes < <(master_mboxes)
	((${#mboxes[@]} >= 6))
	csync --verify-bodies --user "$REPL_USER" --password "$REPL_PASS" \
	    127.0.0.1 "$MASTER_CSYNC_PORT" "${mboxes[@]}" >"$D/bodies.master"
	run csync --verify-bodies --user repluser --password replpass \
	    127.0.0.1 "$PORT" "${mboxes[@]}"
	echo "$output"
	[[ $status -eq 0 ]]
	# As many bodies per mailbox as the master has (INBOX: 171 of 180
	# after populate's expunges).
	diff -u "$D/bodies.master" <(printf '%s\n' "$output")
	grep -Eq '^user\.alice: (1[7-9][0-9]) bodies checked$' "$D/bodies.master"
}
