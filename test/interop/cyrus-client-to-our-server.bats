#!/usr/bin/env bats
# A real Cyrus 3.6 sync_client replicates a populated user into our
# sync_server; a second run must find nothing to do, and both servers must
# then describe the user (GET USER, GET QUOTA, GET META), every mailbox of
# the user (GET FULLMAILBOX) and every body identically over csync.

load ../helpers
load interop

setup_file() {
	export CYRUS_PAIR_SYNC_TIMEOUT=${CYRUS_PAIR_SYNC_TIMEOUT:-300}
	ia_workdir
	ia_our_server
	ia_up "$D" --only master --sync-target "127.0.0.1:$PORT"
	ia_populate cyrus_pair populate "$D" alice 200
}

teardown_file() {
	ia_teardown ours
}

@test "Cyrus sync_client -u alice into our sync_server succeeds" {
	run cyrus_pair sync "$D" --record "$D/rec1.txt" -u alice
	echo "$output"
	[[ $status -eq 0 ]] || { ia_server_log; false; }
	# Something was actually replicated, and the conversation finished.
	grep -q '^C: GET USER alice' "$D/rec1.txt"
	grep -q '^C: APPLY MAILBOX' "$D/rec1.txt"
	grep -q '^C: EXIT' "$D/rec1.txt"
}

@test "a second sync_client -u alice finds nothing to apply" {
	run cyrus_pair sync "$D" --record "$D/rec2.txt" -u alice
	echo "$output"
	[[ $status -eq 0 ]] || { ia_server_log; false; }
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
	ia_master --sort 'GET USER alice' >"$D/user.master"
	ia_ours --sort 'GET USER alice' >"$D/user.ours"
	grep -q '^MAILBOX ' "$D/user.master"
	diff -u "$D/user.master" "$D/user.ours"
}

@test "GET QUOTA user.alice and GET META alice: our server answers as the Cyrus master does" {
	ia_master --sort 'GET QUOTA user.alice' 'GET META alice' \
	    >"$D/meta.master"
	ia_ours --sort 'GET QUOTA user.alice' 'GET META alice' >"$D/meta.ours"
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
	ia_master --mboxnames 'GET USER alice'
}

@test "GET FULLMAILBOX of every mailbox of alice: equal on both sides" {
	master_mboxes >"$D/mboxes"
	cat "$D/mboxes"
	# INBOX, #sieve, Archive, Archive.2023, Drafts, Sent
	[[ $(wc -l <"$D/mboxes") -ge 6 ]]
	# One connection per side, one GET FULLMAILBOX per mailbox.
	mapfile -t cmds < <(sed 's/^/GET FULLMAILBOX /' "$D/mboxes")
	ia_master "${cmds[@]}" >"$D/full.master"
	[[ $(grep -c '^MAILBOX ' "$D/full.master") -eq ${#cmds[@]} ]]
	ia_ours "${cmds[@]}" >"$D/full.ours" || true
	diff -u "$D/full.master" "$D/full.ours" | head -n 80
	cmp -s "$D/full.master" "$D/full.ours"
}

@test "every live message body on our server has the master's GUID and size" {
	mapfile -t mboxes < <(master_mboxes)
	((${#mboxes[@]} >= 6))
	ia_master --verify-bodies "${mboxes[@]}" >"$D/bodies.master"
	run ia_ours --verify-bodies "${mboxes[@]}"
	echo "$output"
	[[ $status -eq 0 ]]
	# As many bodies per mailbox as the master has (INBOX: 171 of 180
	# after populate's expunges).
	diff -u "$D/bodies.master" <(printf '%s\n' "$output")
	grep -Eq '^user\.alice: (1[7-9][0-9]) bodies checked$' "$D/bodies.master"
}
