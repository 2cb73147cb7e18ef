#!/usr/bin/env bats
# Rolling replication from a real Cyrus 3.6 master into our sync_server:
# after a full user sync, one change of each kind is made on the master
# (the scenarios of the peer's transcripts/), replicated with one pass of
# sync_client -r over the master's real sync log, and then the master's
# own csync service and ours must describe the user identically (GET
# USER, GET META, GET FULLMAILBOX of every mailbox), and a following
# sync_client -u must find nothing to send.  The tests run in file order
# and build on each other.

load ../helpers
load interop

setup_file() {
	export CYRUS_PAIR_SYNC_TIMEOUT=${CYRUS_PAIR_SYNC_TIMEOUT:-120}
	ia_workdir
	mkdir -p "$D/rec"
	ia_our_server
	ia_up "$D" --only master --sync-target "127.0.0.1:$PORT"
	ia_populate populate
}

# populate: alice, whose Archive/2023 gets a message for sure (renamed,
# then deleted), and bob, the second user, who can read alice's INBOX.
populate() {
	cyrus_pair populate "$D" alice 40 --seed 7 &&
	cyrus_pair act "$D" master alice append Archive/2023 1 &&
	cyrus_pair populate "$D" bob 5 --plain --seed 8 &&
	cyrus_pair act "$D" master alice setacl INBOX bob lrs
}

teardown_file() {
	ia_teardown ours
}

act() {
	cyrus_pair act "$D" master "$@" >>"$D/act.log" 2>&1 ||
	    { tail -n 5 "$D/act.log"; return 1; }
}

# roll NAME: one rolling pass over the master's sync log, recorded in
# $D/rec/NAME.txt; the log is kept in $D/rec/NAME.synclog.
roll() {
	cat "$D/master/conf/sync/log" >"$D/rec/$1.synclog" 2>/dev/null || true
	echo "# master's sync log:"
	sed 's/^/#   /' "$D/rec/$1.synclog" | head -n 40
	run cyrus_pair sync "$D" --record "$D/rec/$1.txt" -v -R -1
	echo "$output" | tail -n 20
	if [[ $status -ne 0 ]]; then
		echo "sync_client -R -1 exited $status"
		ia_server_log
		ia_master_syslog
		return 1
	fi
	grep -q '^C: EXIT' "$D/rec/$1.txt"
}

# quiet USER NAME: a following sync_client -u USER sends nothing.
quiet() {
	run cyrus_pair sync "$D" --record "$D/rec/$2.after-u-$1.txt" -u "$1"
	echo "$output" | tail -n 10
	[[ $status -eq 0 ]] || { ia_server_log; return 1; }
	ia_nothing_sent "$D/rec/$2.after-u-$1.txt"
}

# check NAME [EXTRA_MBOX...]: alice identical on both sides, then a -u
# of alice finds nothing to do.
check() {
	local name=$1
	shift
	ia_compare_user alice "$@" || { ia_server_log; return 1; }
	quiet alice "$name"
}

# The DELETED.* names the master's log renamed to in the last pass.
deleted_names() {
	awk '$1 == "RENAME" && $3 ~ /^DELETED\./ { print $3 }' "$D/rec/$1.synclog" |
	    sort -u
}

@test "full sync -u alice and -u bob, then both sides agree" {
	run cyrus_pair sync "$D" --record "$D/rec/full-alice.txt" -u alice
	echo "$output" | tail -n 10
	[[ $status -eq 0 ]] || { ia_server_log; false; }
	grep -q '^C: APPLY MAILBOX' "$D/rec/full-alice.txt"
	run cyrus_pair sync "$D" --record "$D/rec/full-bob.txt" -u bob
	[[ $status -eq 0 ]] || { ia_server_log; false; }
	ia_compare_user alice
	ia_compare_user bob
	# INBOX, #sieve, Archive, Archive.2023, Drafts, Sent
	[[ $(wc -l <"$D/cmp/mboxes.alice") -ge 6 ]]
	mapfile -t mb <"$D/cmp/mboxes.alice"
	ia_bodies "${mb[@]}"
	quiet alice full
	quiet bob full
}

@test "rolling: append" {
	act alice append INBOX 2 900
	roll append
	grep -q '^C: APPLY MESSAGE' "$D/rec/append.txt"
	ia_bodies user.alice
	check append
}

@test "rolling: flag change" {
	act alice flag INBOX 1:3 '\Flagged,$Important'
	act alice unflag INBOX 4 '\Seen'
	roll flag
	check flag
}

@test "rolling: expunge" {
	act alice expunge INBOX 5
	roll expunge
	check expunge
	# The record stays, flagged \Expunged (delayed expunge).
	ia_mailbox "$D/cmp/alice.ours" user.alice | grep -q 'Expunged'
}

@test "rolling: seen by the owner" {
	act alice seen INBOX '1:*'
	roll seen-own
	check seen-own
}

@test "rolling: seen by another user (APPLY SEEN)" {
	act bob seen 'Other Users/alice' 1:3
	roll seen-other
	grep -q '^C: APPLY SEEN' "$D/rec/seen-other.txt"
	check seen-other
	ia_compare_user bob
	quiet bob seen-other
}

@test "rolling: ACL change" {
	act alice setacl Sent bob lrs
	roll acl
	check acl
	ia_mailbox "$D/cmp/alice.ours" user.alice.Sent | grep -qF 'bob\tlrs'
}

@test "rolling: subscribe and unsubscribe" {
	act alice subscribe Archive
	act alice unsubscribe Sent
	roll sub
	grep -q '^C: APPLY SUB ' "$D/rec/sub.txt"
	grep -q '^C: APPLY UNSUB ' "$D/rec/sub.txt"
	check sub
}

@test "rolling: annotations, private and shared" {
	act alice annotate INBOX /private/comment 'changed comment'
	act alice annotate Archive /shared/comment 'archive folder'
	roll annot
	check annot
	ia_mailbox "$D/cmp/alice.ours" user.alice.Archive | grep -q 'archive folder'
}

@test "rolling: quota change" {
	act alice quota 50000 1000
	roll quota
	grep -q '^C: APPLY QUOTA ' "$D/rec/quota.txt"
	check quota
}

@test "rolling: sieve upload and activate (ManageSieve)" {
	act alice sieve vacation
	roll sieve
	check sieve
	ia_bodies 'user.alice.#sieve'
}

@test "rolling: mailbox create with special-use, and a child" {
	act alice create Projects '\Archive'
	act alice create Projects/Alpha
	roll create
	check create
	grep -qx 'user.alice.Projects.Alpha' "$D/cmp/mboxes.alice"
	ia_mailbox "$D/cmp/alice.ours" user.alice.Projects | grep -q 'Archive'
}

@test "rolling: rename of a folder with a message" {
	act alice rename Archive/2023 Archive/Y2023
	roll rename
	grep -q '^C: APPLY RENAME ' "$D/rec/rename.txt"
	check rename
	grep -qx 'user.alice.Archive.Y2023' "$D/cmp/mboxes.alice"
	! grep -qx 'user.alice.Archive.2023' "$D/cmp/mboxes.alice"
	run ia_ours "GET MAILBOXES (user.alice.Archive.2023)"
	[[ $output != *MAILBOX* ]]
	ia_bodies user.alice.Archive.Y2023
	grep -Eq ': [1-9][0-9]* bodies checked' "$D/cmp/bodies.ours"
}

@test "rolling: delete of a folder (delayed delete: DELETED.* rename)" {
	act alice delete Archive/Y2023
	roll delete
	mapfile -t del < <(deleted_names delete)
	echo "deleted: ${del[*]}"
	((${#del[@]} == 1))
	printf '%s\n' "${del[@]}" >>"$D/deleted"
	check delete "${del[@]}"
	! grep -qx 'user.alice.Archive.Y2023' "$D/cmp/mboxes.alice"
	ia_bodies "${del[@]}"
}

@test "rolling: user delete (deluser)" {
	act alice deluser
	roll deluser
	mapfile -t del < <(deleted_names deluser)
	echo "deleted: ${del[*]}"
	((${#del[@]} >= 6))
	printf '%s\n' "${del[@]}" >>"$D/deleted"
	grep -q '^C: APPLY UNUSER alice' "$D/rec/deluser.txt"
	mapfile -t all <"$D/deleted"
	ia_compare_user alice "${all[@]}" || { ia_server_log; false; }
	# Neither side lists a live mailbox of alice any more; both keep
	# her delayed-delete copies (DELETED.user.alice.*), as Cyrus does.
	run ia_master "GET USER alice"
	echo "$output"
	[[ $output != *'"MBOXNAME": "user.alice'* && $output == *'= OK'* ]]
	[[ $output == *'"MBOXNAME": "DELETED.user.alice.'* ]]
	run ia_ours "GET USER alice"
	echo "$output"
	[[ $output != *'"MBOXNAME": "user.alice'* && $output == *'= OK'* ]]
	[[ $output == *'"MBOXNAME": "DELETED.user.alice.'* ]]
	quiet alice deluser
	ia_compare_user bob
}
